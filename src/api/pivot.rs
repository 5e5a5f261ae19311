//! Client formats other than the pivot's (Anthropic Messages, OpenAI Responses) served through the pivot:
//! one attempt's answer in the OpenAI Chat Completions format (the provider's own, or another translator's)
//! converted to the client's format. [`ToClient`] holds what every such format shares (the provider's
//! refusal of the gateway's credential, errors, an unreadable 2xx made a 502, plain or streamed answers);
//! a [`ClientFormat`] says how its own answers, errors and streams are written.

use crate::providers::{self, BodyMode, ResponseTranslator, Usage};

/// How a client format is written from the pivot's.
pub trait ClientFormat {
    /// A 2xx chat completion → the client's answer; `Err` says why it could not be read.
    fn answer(&mut self, openai_body: &[u8]) -> Result<Vec<u8>, &'static str>;
    /// An OpenAI-shaped error body, with the status the client gets → the client's error body.
    fn error(&self, status: u16, openai_body: &[u8]) -> Vec<u8>;
    /// Chat SSE bytes (split anywhere) → the client's stream bytes, appended to `out`; `end` closes it.
    fn stream(&mut self, openai_sse: &[u8], end: bool, out: &mut Vec<u8>);
}

/// Turns an attempt's pivot-format answer into the client's format `F`.
pub struct ToClient<F: ClientFormat> {
    /// The provider's translator to the pivot (`None`: the provider speaks the pivot).
    inner: Option<Box<dyn ResponseTranslator>>,
    stream: bool,
    /// The provider's name (errors made here name it).
    provider: String,
    status: u16,
    /// An OpenAI-format provider refused the gateway's credential with this status (401/403).
    refused: Option<u16>,
    /// An OpenAI-format provider's 2xx that is no chat completion: the client gets a 502.
    unreadable: bool,
    format: F,
    scratch: Vec<u8>,
}

impl<F: ClientFormat> ToClient<F> {
    pub fn new(inner: Option<Box<dyn ResponseTranslator>>, stream: bool, provider: &str, format: F) -> Self {
        ToClient {
            inner,
            stream,
            provider: provider.to_string(),
            status: 0,
            refused: None,
            unreadable: false,
            format,
            scratch: Vec::new(),
        }
    }
}

impl<F: ClientFormat> ResponseTranslator for ToClient<F> {
    fn on_headers(&mut self, status: u16, content_type: Option<&str>) -> (u16, BodyMode) {
        let (status, mode) = match self.inner.as_mut() {
            Some(t) => t.on_headers(status, content_type),
            None if (200..300).contains(&status) && self.stream => (status, BodyMode::Stream),
            // The provider refusing the gateway's own credential is not the caller's fault (the same
            // answer translated providers give).
            None if status == 401 || status == 403 => {
                self.refused = Some(status);
                (providers::client_status_for_provider_error(status), BodyMode::Buffer)
            }
            None => (status, BodyMode::Buffer),
        };
        self.status = status;
        (status, mode)
    }

    fn on_body(&mut self, body: &[u8]) -> Vec<u8> {
        if let Some(refused) = self.refused {
            let (status, e) =
                providers::provider_error_body(&self.provider, refused, providers::REFUSED_CREDENTIAL, None);
            return self.format.error(status, &e);
        }
        let openai_body = match self.inner.as_mut() {
            Some(t) => t.on_body(body),
            None => body.to_vec(),
        };
        if let Some(status) = self.body_status() {
            return self.format.error(status, &openai_body);
        }
        if !(200..300).contains(&self.status) {
            return self.format.error(self.status, &openai_body);
        }
        match self.format.answer(&openai_body) {
            Ok(answer) => answer,
            Err(why) => {
                self.unreadable = true;
                let e = providers::toolkit::unreadable_answer(&self.provider, why);
                self.format.error(502, &e)
            }
        }
    }

    fn body_status(&self) -> Option<u16> {
        if self.unreadable {
            return Some(502);
        }
        self.inner.as_ref().and_then(|t| t.body_status())
    }

    fn on_stream(&mut self, bytes: &[u8], end: bool, out: &mut Vec<u8>) {
        match self.inner.as_mut() {
            Some(t) => {
                self.scratch.clear();
                t.on_stream(bytes, end, &mut self.scratch);
                self.format.stream(&self.scratch, end, out);
            }
            None => self.format.stream(bytes, end, out),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.as_ref().and_then(|t| t.usage())
    }

    fn content_type(&self) -> &'static str {
        if self.stream && (200..300).contains(&self.status) {
            "text/event-stream"
        } else {
            "application/json"
        }
    }
}

/// A chat answer the gateway made itself (the mock provider's, a cached one) written as `op`'s client
/// expects it: the chat body as it is for Chat Completions; Anthropic's `message` or its stream
/// ([`StreamToAnthropic`](crate::api::anthropic::StreamToAnthropic)) for Messages; a Responses object or
/// its event stream ([`StreamToResponses`](crate::api::responses::StreamToResponses)) for Responses,
/// echoing `client_body` (the client's request) and naming `model`. `chat_body` is a chat completion, or a
/// whole chat SSE stream when `stream`. Ids the chat answer lacks are made from `clock`. `Err`: the body
/// is no chat completion, or `op` has no chat answer.
pub fn local_answer(
    op: crate::api::Operation,
    chat_body: &[u8],
    stream: bool,
    model: &str,
    clock: crate::providers::mock::Clock,
    client_body: &[u8],
) -> Result<crate::http::LocalResponse, &'static str> {
    use crate::api::{anthropic, responses, Operation};
    use crate::http::LocalResponse;
    match op {
        Operation::ChatCompletions if stream => Ok(LocalResponse::event_stream(chat_body)),
        Operation::ChatCompletions => Ok(LocalResponse::json(200, chat_body)),
        Operation::Messages if stream => {
            let mut out = Vec::with_capacity(chat_body.len() * 2);
            anthropic::StreamToAnthropic::new(model).push(chat_body, true, &mut out);
            Ok(LocalResponse::event_stream(out))
        }
        Operation::Messages => Ok(LocalResponse::json(200, anthropic::try_response_from_openai(chat_body, model)?)),
        Operation::Responses => {
            let mut echo = responses::Echo::new(client_body, clock.unix_secs);
            echo.model = model.to_string();
            if stream {
                let mut out = Vec::with_capacity(chat_body.len() * 2);
                responses::StreamToResponses::new(echo, clock.seq).push(chat_body, true, &mut out);
                Ok(LocalResponse::event_stream(out))
            } else {
                Ok(LocalResponse::json(200, responses::response_from_openai(chat_body, &echo, clock.seq)?))
            }
        }
        Operation::Embeddings | Operation::ListModels | Operation::RetrieveModel => {
            Err("this operation has no chat answer")
        }
    }
}

/// The mock provider's answer to a request of a client format served through the pivot: the request
/// converted to the chat format (`to_openai`), answered by the mock, and written back in the client's
/// format by [`local_answer`]; an invalid request gets an error in the client's shape (`error`).
pub fn mock_answer(
    op: crate::api::Operation,
    body: &[u8],
    alias: &str,
    clock: crate::providers::mock::Clock,
    to_openai: fn(&[u8]) -> Result<Vec<u8>, crate::api::error::ApiError>,
    error: fn(crate::api::error::ApiError) -> crate::http::LocalResponse,
) -> crate::http::LocalResponse {
    let answered = to_openai(body).and_then(|pivot| {
        let chat = crate::api::openai::parse_chat(&pivot)?;
        Ok((crate::providers::mock::chat(&chat, alias, clock).body, chat.is_stream()))
    });
    match answered {
        Ok((answer, stream)) => local_answer(op, &answer, stream, alias, clock, body)
            .unwrap_or_else(|why| error(crate::api::error::ApiError::gateway(why))),
        Err(e) => error(e),
    }
}
