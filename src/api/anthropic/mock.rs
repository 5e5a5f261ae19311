//! The mock provider's answer to an Anthropic Messages request: the request goes through the pivot, the
//! mock answers it in the OpenAI format, and the answer (or stream) is converted back.

use super::error::error_response;
use super::{response_from_openai, to_openai, StreamToAnthropic};
use crate::api::openai::parse_chat;
use crate::http::LocalResponse;
use crate::providers::mock::{self, Clock};

/// The whole answer to a `/v1/messages` request served by the mock provider for model `alias`. An
/// invalid request gets an error in Anthropic's shape.
pub fn mock_answer(body: &[u8], alias: &str, clock: Clock) -> LocalResponse {
    let pivot = match to_openai(body) {
        Ok(p) => p,
        Err(e) => return error_response(e),
    };
    let chat = match parse_chat(&pivot) {
        Ok(c) => c,
        Err(e) => return error_response(e),
    };
    let r = mock::chat(&chat, alias, clock);
    if chat.is_stream() {
        let mut out = Vec::with_capacity(r.body.len());
        StreamToAnthropic::new(alias).push(&r.body, true, &mut out);
        LocalResponse::event_stream(out)
    } else {
        LocalResponse::json(200, response_from_openai(&r.body, alias))
    }
}
