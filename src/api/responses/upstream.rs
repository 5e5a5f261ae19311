//! The Responses API on the gateway (`POST /v1/responses`): a provider that answers the Responses API
//! itself (`openai`, `azure_openai`, an `openai_compatible` server with `responses: native`) gets the
//! request as it is (model name and credential replaced, its own path); every other provider is served
//! through the chat pivot, after a refusal of what only OpenAI's own endpoint can do (hosted tools, stored
//! state), and its answer, error or stream is converted back.

use super::{check_pivot, parse, response_from_openai, to_openai, StreamToResponses};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::api::pivot::{ClientFormat, ToClient};
use crate::providers::{self, openai, Attempt, Outgoing};

/// Prepares one attempt of a `/v1/responses` request.
pub fn prepare(a: &Attempt, body: &[u8]) -> Result<Outgoing, ApiError> {
    let req = parse(body)?;
    if a.provider.kind.answers_responses() {
        let call = providers::plan(a.provider, Operation::Responses, a.model)?;
        return Ok(Outgoing {
            path: call.path,
            headers: call.auth.into_iter().collect(),
            body: Some(openai::replace_model(body, a.model)?),
            response: None,
        });
    }
    check_pivot(&req, &a.provider.name)?;
    let pivot = to_openai(body)?;
    let chat = Attempt { op: Operation::ChatCompletions, chat: None, ..*a };
    let mut out = providers::prepare(&chat, &pivot)?;
    if out.body.is_none() {
        out.body = Some(pivot);
    }
    let format = Responses { converter: StreamToResponses };
    out.response = Some(Box::new(ToClient::new(out.response.take(), req.stream, &a.provider.name, format)));
    Ok(out)
}

/// Responses answers and streams, written from the pivot's; errors keep the OpenAI shape.
struct Responses {
    converter: StreamToResponses,
}

impl ClientFormat for Responses {
    fn answer(&mut self, openai_body: &[u8]) -> Result<Vec<u8>, &'static str> {
        response_from_openai(openai_body)
    }

    fn error(&self, _status: u16, openai_body: &[u8]) -> Vec<u8> {
        openai_body.to_vec()
    }

    fn stream(&mut self, openai_sse: &[u8], end: bool, out: &mut Vec<u8>) {
        self.converter.push(openai_sse, end, out);
    }
}
