//! The mock provider's answer to a Responses request: the request goes through the pivot, the mock
//! answers it in the OpenAI chat format, and the answer (or stream) is converted back.

use super::{response_from_openai, to_openai, Echo, StreamToResponses};
use crate::api::error::ApiError;
use crate::api::openai::{error_response, parse_chat};
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
    let mut echo = Echo::new(body, clock.unix_secs);
    echo.model = alias.to_string();
    if chat.is_stream() {
        let mut out = Vec::with_capacity(r.body.len() * 2);
        StreamToResponses::new(echo, clock.seq).push(&r.body, true, &mut out);
        LocalResponse::event_stream(out)
    } else {
        match response_from_openai(&r.body, &echo, clock.seq) {
            Ok(body) => LocalResponse::json(200, body),
            Err(why) => error_response(ApiError::gateway(why)),
        }
    }
}
