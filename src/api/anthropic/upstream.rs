//! The Anthropic Messages API on the gateway (`POST /v1/messages`): requests for `anthropic` providers pass
//! through (model name and credential replaced); for every other provider the request is converted to the
//! OpenAI pivot format, translated for the provider, and the answer converted back to Anthropic's format.

use super::{self as anthropic_input, StreamToAnthropic};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::config::ProviderKind;
use crate::providers::{self, openai, Attempt, BodyMode, Outgoing, ResponseTranslator, Usage};

/// Prepares one attempt of a `/v1/messages` request.
pub fn prepare(a: &Attempt, body: &[u8]) -> Result<Outgoing, ApiError> {
    let req = anthropic_input::parse(body)?;
    if let ProviderKind::Anthropic { version, .. } = &a.provider.kind {
        let mut headers = vec![("anthropic-version", version.clone())];
        headers.extend(providers::credential(a.provider));
        return Ok(Outgoing {
            path: super::PATH.to_string(),
            headers,
            body: Some(openai::replace_model(body, a.model)?),
            response: None,
        });
    }
    let pivot = anthropic_input::to_openai(body)?;
    let chat = Attempt { op: Operation::ChatCompletions, chat: None, ..*a };
    let mut out = providers::prepare(&chat, &pivot)?;
    if out.body.is_none() {
        out.body = Some(pivot);
    }
    out.response = Some(Box::new(ToAnthropic {
        inner: out.response.take(),
        stream: req.stream,
        model: a.model.to_string(),
        provider: a.provider.name.clone(),
        status: 0,
        refused: None,
        unreadable: false,
        converter: StreamToAnthropic::new(a.model),
        scratch: Vec::new(),
    }));
    Ok(out)
}

/// Turns an attempt's OpenAI-format answer (the provider's own, or another translator's) into Anthropic's.
struct ToAnthropic {
    inner: Option<Box<dyn ResponseTranslator>>,
    stream: bool,
    model: String,
    /// The provider's name (errors made here name it).
    provider: String,
    status: u16,
    /// An OpenAI-format provider refused the gateway's credential with this status (401/403).
    refused: Option<u16>,
    /// An OpenAI-format provider's 2xx that is no chat completion: the client gets a 502.
    unreadable: bool,
    converter: StreamToAnthropic,
    scratch: Vec<u8>,
}

impl ResponseTranslator for ToAnthropic {
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
            return anthropic_input::error_from_openai(status, &e);
        }
        let openai_body = match self.inner.as_mut() {
            Some(t) => t.on_body(body),
            None => body.to_vec(),
        };
        if let Some(status) = self.body_status() {
            return anthropic_input::error_from_openai(status, &openai_body);
        }
        if !(200..300).contains(&self.status) {
            return anthropic_input::error_from_openai(self.status, &openai_body);
        }
        match anthropic_input::try_response_from_openai(&openai_body, &self.model) {
            Ok(message) => message,
            Err(why) => {
                self.unreadable = true;
                let e = crate::providers::toolkit::unreadable_answer(&self.provider, why);
                anthropic_input::error_from_openai(502, &e)
            }
        }
    }

    fn body_status(&self) -> Option<u16> {
        match self.inner.as_ref() {
            Some(t) => t.body_status(),
            None => self.unreadable.then_some(502),
        }
    }

    fn on_stream(&mut self, bytes: &[u8], end: bool, out: &mut Vec<u8>) {
        match self.inner.as_mut() {
            Some(t) => {
                self.scratch.clear();
                t.on_stream(bytes, end, &mut self.scratch);
                self.converter.push(&self.scratch, end, out);
            }
            None => self.converter.push(bytes, end, out),
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
