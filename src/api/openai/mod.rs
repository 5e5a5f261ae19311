//! The OpenAI API as clients send it: a validating parse of the body that reads only what the gateway
//! needs (the rest is passed on untouched), and errors in OpenAI's shape. Which operation a method and
//! path name is the front door's ([`crate::api::classify`]), re-exported here.

mod chat;
mod embeddings;
#[cfg(test)]
mod tests;

pub use crate::api::{classify, is_json_content_type, retrieve_model_id, Operation};
pub use chat::{content_text, parse_chat, ChatRequest, Message, StreamOptions};
pub use embeddings::{parse_embeddings, EmbeddingsRequest};

use crate::api::error::{empty_model, not_an_object, wrong_type, ApiError};
use crate::http::LocalResponse;
use serde_json::{Map, Value};

/// An error answer for a client of the OpenAI API: the error's body in OpenAI's shape, its headers kept.
pub fn error_response(e: ApiError) -> LocalResponse {
    LocalResponse::from(e)
}

/// The body as text. JSON is UTF-8, and serde does not check the bytes of the fields it skips, so a
/// body with invalid UTF-8 in an unknown field would otherwise pass on to the provider (found by fuzzing).
fn utf8(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| ApiError::invalid_json(&format!("invalid UTF-8 at byte {}", e.valid_up_to())))
}

fn check_model(model: &str) -> Result<(), ApiError> {
    if model.is_empty() {
        return Err(empty_model());
    }
    Ok(())
}

/// The slow path, taken only when the fast typed parse failed: find which field is wrong and say so.
/// `wrong_field` checks the operation's own fields once the body is an object with a string model.
fn explain(body: &[u8], e: &serde_json::Error, wrong_field: fn(&Map<String, Value>) -> Option<ApiError>) -> ApiError {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return ApiError::invalid_json(&e.to_string()),
    };
    let Some(o) = v.as_object() else { return not_an_object(&v) };
    match o.get("model") {
        None => return ApiError::invalid_request("You must provide a 'model' parameter.", Some("model")),
        Some(Value::String(_)) => {}
        Some(other) => return wrong_type("model", "a string", other),
    }
    if let Some(err) = wrong_field(o) {
        return err;
    }
    ApiError::invalid_request(format!("Invalid request body: {e}."), None)
}

/// The documented token estimate used where no tokenizer answers: one token per four bytes, rounded up.
pub fn estimate_tokens(text_len: usize) -> u64 {
    text_len.div_ceil(4) as u64
}
