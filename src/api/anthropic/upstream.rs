//! The Anthropic Messages API on the gateway (`POST /v1/messages`): requests for `anthropic` providers pass
//! through (model name and credential replaced); for every other provider the request is converted to the
//! OpenAI pivot format, translated for the provider, and the answer converted back to Anthropic's format.

use super::{self as anthropic_input, StreamToAnthropic};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::api::pivot::{ClientFormat, ToClient};
use crate::config::ProviderKind;
use crate::providers::{self, openai, Attempt, Outgoing};

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
    let format = Anthropic { model: a.model.to_string(), converter: StreamToAnthropic::new(a.model) };
    out.response = Some(Box::new(ToClient::new(out.response.take(), req.stream, &a.provider.name, format)));
    Ok(out)
}

/// Anthropic's answers, errors and streams, written from the pivot's.
struct Anthropic {
    model: String,
    converter: StreamToAnthropic,
}

impl ClientFormat for Anthropic {
    fn answer(&mut self, openai_body: &[u8]) -> Result<Vec<u8>, &'static str> {
        anthropic_input::try_response_from_openai(openai_body, &self.model)
    }

    fn error(&self, status: u16, openai_body: &[u8]) -> Vec<u8> {
        anthropic_input::error_from_openai(status, openai_body)
    }

    fn stream(&mut self, openai_sse: &[u8], end: bool, out: &mut Vec<u8>) {
        self.converter.push(openai_sse, end, out);
    }
}
