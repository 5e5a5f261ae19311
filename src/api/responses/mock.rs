//! The mock provider's answer to a Responses request: the request goes through the pivot, the mock
//! answers it in the OpenAI chat format, and the answer (or stream) is converted back
//! ([`crate::api::pivot::local_answer`], which cached answers share).

use super::to_openai;
use crate::api::error::ApiError;
use crate::api::openai::{error_response, parse_chat};
use crate::api::Operation;
use crate::http::LocalResponse;
use crate::providers::mock::{self, Clock};

/// The whole answer to a `/v1/responses` request served by the mock provider for model `alias`. An
/// invalid request gets an error in OpenAI's shape.
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
    crate::api::pivot::local_answer(Operation::Responses, &r.body, chat.is_stream(), alias, clock, body)
        .unwrap_or_else(|why| error_response(ApiError::gateway(why)))
}
