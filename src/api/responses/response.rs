//! OpenAI `chat.completion` → Responses `response` object, and the pieces the stream conversion shares
//! (the echoed request fields, ids, usage, output items).

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// The request fields a `response` object echoes, read once from the client's request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    /// The `model` the response names (the client's, unless the caller sets another).
    pub model: String,
    /// `created_at` when the chat answer carries no `created`.
    pub created_at: u64,
    fields: Map<String, Value>,
}

/// The echoed fields as the request has them (any JSON; normalised in [`Echo::new`]).
#[derive(Deserialize, Default)]
struct Fields {
    model: Option<Value>,
    instructions: Option<Value>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<Value>,
    temperature: Option<Value>,
    top_p: Option<Value>,
    max_output_tokens: Option<Value>,
    text: Option<Value>,
    reasoning: Option<Value>,
    metadata: Option<Value>,
    user: Option<Value>,
    safety_identifier: Option<Value>,
    truncation: Option<Value>,
}

fn keep(v: Option<Value>, ok: fn(&Value) -> bool, default: Value) -> Value {
    v.filter(ok).unwrap_or(default)
}

impl Echo {
    /// The echo of a Responses request body (fields that are missing or of the wrong type take the
    /// defaults OpenAI reports); `now_secs` is the fallback `created_at`.
    pub fn new(body: &[u8], now_secs: u64) -> Echo {
        let f: Fields = serde_json::from_slice(body).unwrap_or_default();
        let model = f.model.as_ref().and_then(Value::as_str).unwrap_or("").to_string();
        let mut fields = Map::new();
        let mut put = |k: &str, v: Value| {
            fields.insert(k.to_string(), v);
        };
        put("instructions", keep(f.instructions, Value::is_string, Value::Null));
        put("tools", keep(f.tools, Value::is_array, json!([])));
        put("tool_choice", keep(f.tool_choice, |v| v.is_string() || v.is_object(), json!("auto")));
        put("parallel_tool_calls", keep(f.parallel_tool_calls, Value::is_boolean, json!(true)));
        put("temperature", keep(f.temperature, Value::is_number, Value::Null));
        put("top_p", keep(f.top_p, Value::is_number, Value::Null));
        put("max_output_tokens", keep(f.max_output_tokens, Value::is_u64, Value::Null));
        put("text", keep(f.text, Value::is_object, json!({"format": {"type": "text"}})));
        put("reasoning", keep(f.reasoning, Value::is_object, json!({"effort": null, "summary": null})));
        put("metadata", keep(f.metadata, Value::is_object, json!({})));
        put("user", keep(f.user, Value::is_string, Value::Null));
        put("safety_identifier", keep(f.safety_identifier, Value::is_string, Value::Null));
        put("truncation", keep(f.truncation, Value::is_string, json!("disabled")));
        put("store", json!(false));
        put("background", json!(false));
        put("previous_response_id", Value::Null);
        Echo { model, created_at: now_secs, fields }
    }

    /// A whole `response` object.
    pub(super) fn response(&self, r: Parts) -> Value {
        let mut o = self.fields.clone();
        let status = match (&r.error, r.incomplete) {
            (Some(_), _) => "failed",
            (None, Some(_)) => "incomplete",
            (None, None) if r.in_progress => "in_progress",
            (None, None) => "completed",
        };
        o.insert("id".into(), json!(r.id));
        o.insert("object".into(), json!("response"));
        o.insert("created_at".into(), json!(r.created_at));
        o.insert("model".into(), json!(self.model));
        o.insert("status".into(), json!(status));
        o.insert("output".into(), Value::Array(r.output));
        o.insert("usage".into(), r.usage.unwrap_or(Value::Null));
        o.insert("error".into(), r.error.unwrap_or(Value::Null));
        let incomplete = r.incomplete.filter(|_| status == "incomplete");
        o.insert("incomplete_details".into(), incomplete.map_or(Value::Null, |reason| json!({"reason": reason})));
        Value::Object(o)
    }
}

/// What differs between `response` objects of one answer.
pub(super) struct Parts {
    pub id: String,
    pub created_at: u64,
    pub in_progress: bool,
    pub output: Vec<Value>,
    pub usage: Option<Value>,
    /// A `ResponseError` (`code`, `message`): the response failed.
    pub error: Option<Value>,
    /// `incomplete_details.reason`: the response is incomplete.
    pub incomplete: Option<&'static str>,
}

/// The id suffix shared by an answer's ids: the chat id without its `chatcmpl-` prefix, or the seed in hex.
pub(super) fn id_suffix(chat_id: Option<&str>, seed: u64) -> String {
    match chat_id.filter(|s| !s.is_empty()) {
        Some(id) => id.strip_prefix("chatcmpl-").unwrap_or(id).to_string(),
        None => format!("{seed:016x}"),
    }
}

/// `incomplete_details.reason` for a chat `finish_reason`: length → max_output_tokens, content_filter.
pub(super) fn incomplete_reason(finish: Option<&str>) -> Option<&'static str> {
    match finish {
        Some("length") => Some("max_output_tokens"),
        Some("content_filter") => Some("content_filter"),
        _ => None,
    }
}

/// Responses `usage` from a chat `usage` object.
pub(super) fn usage_value(u: &Value) -> Value {
    let num = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let input = num(u.get("prompt_tokens"));
    let output = num(u.get("completion_tokens"));
    let prompt_details = u.get("prompt_tokens_details");
    let total = u.get("total_tokens").and_then(Value::as_u64).unwrap_or(input.saturating_add(output));
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": num(prompt_details.and_then(|d| d.get("cached_tokens"))),
            "cache_write_tokens": num(prompt_details.and_then(|d| d.get("cache_write_tokens"))),
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": num(u.get("completion_tokens_details").and_then(|d| d.get("reasoning_tokens"))),
        },
        "total_tokens": total,
    })
}

pub(super) fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

pub(super) fn refusal_part(refusal: &str) -> Value {
    json!({"type": "refusal", "refusal": refusal})
}

pub(super) fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

pub(super) fn call_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments})
}

/// A call id that is not empty and not used before in this answer (the SDK tells function calls apart
/// by `call_id`).
pub(super) fn unique_call_id(given: Option<&str>, suffix: &str, n: usize, used: &HashSet<String>) -> String {
    match given.filter(|id| !id.is_empty() && !used.contains(*id)) {
        Some(id) => id.to_string(),
        None => format!("call_{suffix}_{n}"),
    }
}

/// Text of a chat message `content` (string, or text parts concatenated).
fn content_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// OpenAI `chat.completion` → Responses `response`. Only the first choice is used. Output: one `message`
/// item (`output_text`, then a `refusal` part when the model refused; one empty `output_text` when the
/// answer holds nothing at all), then one `function_call` item per tool call. `finish_reason` length /
/// content_filter → status `incomplete` with `incomplete_details.reason` max_output_tokens /
/// content_filter (function calls, and the message when there are none, are then `incomplete`);
/// anything else → `completed`. Ids: `resp_`, `msg_`, `fc_` + the chat id without `chatcmpl-` (or
/// `id_seed` in hex when there is none). `created_at` is the chat `created` (else the echo's).
/// `Err`: the body is no chat completion.
pub fn response_from_openai(openai_body: &[u8], req: &Echo, id_seed: u64) -> Result<Vec<u8>, &'static str> {
    let Ok(v) = serde_json::from_slice::<Value>(openai_body) else {
        return Err("The upstream response was not valid JSON.");
    };
    let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
        return Err("The upstream response held no choices.");
    };
    let suffix = id_suffix(v.get("id").and_then(Value::as_str), id_seed);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let incomplete = incomplete_reason(choice.get("finish_reason").and_then(Value::as_str));
    let status = if incomplete.is_some() { "incomplete" } else { "completed" };
    let calls = message.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();

    let mut content = Vec::new();
    let text = content_string(message.get("content"));
    let refusal = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty());
    if !text.is_empty() {
        content.push(text_part(&text));
    }
    if let Some(r) = refusal {
        content.push(refusal_part(r));
    }
    if content.is_empty() && calls.is_empty() {
        content.push(text_part(""));
    }
    let mut output = Vec::with_capacity(1 + calls.len());
    if !content.is_empty() {
        let message_status = if calls.is_empty() { status } else { "completed" };
        output.push(message_item(&format!("msg_{suffix}"), message_status, content));
    }
    let mut used = HashSet::with_capacity(calls.len());
    for (n, call) in calls.iter().enumerate() {
        let f = call.get("function").unwrap_or(&Value::Null);
        let call_id = unique_call_id(call.get("id").and_then(Value::as_str), &suffix, n, &used);
        output.push(call_item(
            &format!("fc_{suffix}_{n}"),
            status,
            &call_id,
            f.get("name").and_then(Value::as_str).unwrap_or(""),
            f.get("arguments").and_then(Value::as_str).unwrap_or(""),
        ));
        used.insert(call_id);
    }
    let response = req.response(Parts {
        id: format!("resp_{suffix}"),
        created_at: v.get("created").and_then(Value::as_u64).unwrap_or(req.created_at),
        in_progress: false,
        output,
        usage: v.get("usage").filter(|u| u.is_object()).map(usage_value),
        error: None,
        incomplete,
    });
    serde_json::to_vec(&response).map_err(|_| "The response could not be written.")
}
