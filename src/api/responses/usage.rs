//! The usage of a native Responses answer (OpenAI's own `/v1/responses`), for the gateway's accounting.

use crate::providers::Usage;
use serde_json::Value;

/// The usage of a `response` object (a JSON answer, or the `response` of a stream's
/// `response.completed` / `response.incomplete` / `response.failed` event): prompt = `input_tokens`,
/// completion = `output_tokens`, cached = `input_tokens_details.cached_tokens`. `None` when the
/// response has no `usage` object with at least one of the token counts.
pub fn usage_of(response_json: &Value) -> Option<Usage> {
    let u = response_json.get("usage").filter(|u| u.is_object())?;
    let num = |v: Option<&Value>| v.and_then(Value::as_u64);
    let prompt = num(u.get("input_tokens"));
    let completion = num(u.get("output_tokens"));
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(Usage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: completion.unwrap_or(0),
        cached_tokens: num(u.get("input_tokens_details").and_then(|d| d.get("cached_tokens"))).unwrap_or(0),
    })
}
