//! TEMPORARY stub (replaced by the responses-core branch): the OpenAI Responses API as a client format.

pub mod upstream;

use crate::api::error::ApiError;
use crate::http::LocalResponse;
use crate::providers::mock::Clock;
use serde::Deserialize;

pub const PATH: &str = "/v1/responses";

#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
}

pub fn parse(body: &[u8]) -> Result<ResponsesRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_request(format!("Invalid request body: {e}."), None))
}

pub fn check_pivot(_req: &ResponsesRequest, _provider: &str) -> Result<(), ApiError> {
    Ok(())
}

pub fn to_openai(_body: &[u8]) -> Result<Vec<u8>, ApiError> {
    Err(ApiError::gateway("stub"))
}

pub fn mock_answer(_body: &[u8], _alias: &str, _clock: Clock) -> LocalResponse {
    LocalResponse::from(ApiError::gateway("stub"))
}

pub struct StreamToResponses;
impl StreamToResponses {
    pub fn push(&mut self, _b: &[u8], _end: bool, _out: &mut Vec<u8>) {}
}
pub fn response_from_openai(_b: &[u8]) -> Result<Vec<u8>, &'static str> {
    Err("stub")
}
