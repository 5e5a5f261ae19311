//! The mock provider's answer to a Responses request: the request goes through the pivot, the mock
//! answers it in the OpenAI chat format, and the answer (or stream) is converted back
//! ([`crate::api::pivot::mock_answer`], which the Anthropic input shares).

use super::to_openai;
use crate::api::openai::error_response;
use crate::api::Operation;
use crate::http::LocalResponse;
use crate::providers::mock::Clock;

/// The whole answer to a `/v1/responses` request served by the mock provider for model `alias`. An
/// invalid request gets an error in OpenAI's shape.
pub fn mock_answer(body: &[u8], alias: &str, clock: Clock) -> LocalResponse {
    crate::api::pivot::mock_answer(Operation::Responses, body, alias, clock, to_openai, error_response)
}
