//! Embeddings requests (`POST /v1/embeddings`).

use super::{check_model, explain, wrong_type};
use crate::api::error::{required, ApiError};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// What the gateway reads of an embeddings request.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest<'a> {
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub input: &'a RawValue,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(borrow, default)]
    pub encoding_format: Option<Cow<'a, str>>,
}

pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsRequest<'_>, ApiError> {
    let req: EmbeddingsRequest = match serde_json::from_str(super::utf8(body)?) {
        Ok(r) => r,
        Err(e) => return Err(explain(body, &e, wrong_field)),
    };
    check_model(&req.model)?;
    let first = req.input.get().as_bytes().first().copied();
    if !matches!(first, Some(b'"') | Some(b'[')) {
        return Err(ApiError::invalid_request("'input' must be a string or an array.", Some("input")));
    }
    Ok(req)
}

/// The embeddings fields [`explain`] checks after the model: input and dimensions.
fn wrong_field(o: &Map<String, Value>) -> Option<ApiError> {
    match o.get("input") {
        None => return Some(required("input")),
        Some(Value::String(_)) | Some(Value::Array(_)) => {}
        Some(other) => return Some(wrong_type("input", "a string or an array", other)),
    }
    match o.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|d| d <= u32::MAX as u64) => {}
        Some(other) => return Some(wrong_type("dimensions", "a positive integer", other)),
    }
    None
}
