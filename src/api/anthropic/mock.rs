//! The mock provider's answer to an Anthropic Messages request: the request goes through the pivot, the
//! mock answers it in the OpenAI format, and the answer (or stream) is converted back
//! ([`crate::api::pivot::local_answer`], which cached answers share).

use super::error::error_response;
use super::to_openai;
use crate::api::error::ApiError;
use crate::api::openai::parse_chat;
use crate::api::Operation;
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
    crate::api::pivot::local_answer(Operation::Messages, &r.body, chat.is_stream(), alias, clock, body)
        .unwrap_or_else(|why| error_response(ApiError::gateway(why)))
}
