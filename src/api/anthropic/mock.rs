//! The mock provider's answer to an Anthropic Messages request: the request goes through the pivot, the
//! mock answers it in the OpenAI format, and the answer (or stream) is converted back
//! ([`crate::api::pivot::mock_answer`], which the Responses input shares).

use super::error::error_response;
use super::to_openai;
use crate::api::Operation;
use crate::http::LocalResponse;
use crate::providers::mock::Clock;

/// The whole answer to a `/v1/messages` request served by the mock provider for model `alias`. An
/// invalid request gets an error in Anthropic's shape.
pub fn mock_answer(body: &[u8], alias: &str, clock: Clock) -> LocalResponse {
    crate::api::pivot::mock_answer(Operation::Messages, body, alias, clock, to_openai, error_response)
}
