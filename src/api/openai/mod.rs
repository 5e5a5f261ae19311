//! The unified API as clients send it: which operation a method and path name, and a validating parse of
//! the body that reads only what the gateway needs (the rest is passed on untouched).

use crate::api::error::{quote, ApiError};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Embeddings,
    /// Anthropic Messages API input (`POST /v1/messages`).
    Messages,
    ListModels,
    /// `GET /v1/models/{id}`: the id starts at this byte offset of the path.
    RetrieveModel,
}

/// Maps method and path (query string allowed) to an operation, or the 404/405 to answer.
pub fn classify(method: &str, path: &str) -> Result<Operation, ApiError> {
    let bare = path.split(['?', '#']).next().unwrap_or("");
    let (op, allow) = match bare {
        "/v1/chat/completions" => (Operation::ChatCompletions, "POST"),
        "/v1/embeddings" => (Operation::Embeddings, "POST"),
        "/v1/messages" => (Operation::Messages, "POST"),
        "/v1/models" => (Operation::ListModels, "GET"),
        p if p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => (Operation::RetrieveModel, "GET"),
        _ => return Err(ApiError::unknown_path(method, bare)),
    };
    if method == allow || (allow == "GET" && method == "HEAD") {
        Ok(op)
    } else {
        Err(ApiError::method_not_allowed(method, allow))
    }
}

/// The model id of a `GET /v1/models/{id}` path, percent-decoded.
pub fn retrieve_model_id(path: &str) -> String {
    let bare = path.split(['?', '#']).next().unwrap_or("");
    percent_decode(bare.strip_prefix("/v1/models/").unwrap_or(""))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or(0);
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True for `application/json`, with or without parameters, any case.
pub fn is_json_content_type(ct: &str) -> bool {
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug)]
pub struct Message<'a> {
    pub role: Cow<'a, str>,
    pub content: Option<&'a RawValue>,
    /// The message has fields beyond `role` and `content`.
    pub other_fields: bool,
}

/// What the gateway reads of a chat completion request. One pass over the body reads all of it that
/// any path needs (translators' fast paths too), so the body is parsed once per request.
#[derive(Debug)]
pub struct ChatRequest<'a> {
    /// Filled from `model_raw` once parsed.
    pub model: Cow<'a, str>,
    /// The `model` value as it stands in the body (its position lets the body be rewritten without a
    /// second parse).
    pub model_raw: &'a RawValue,
    pub messages: Vec<Message<'a>>,
    pub stream: Option<bool>,
    /// `stream_options` as it stands in the body, when present (also when `null`).
    pub stream_options_raw: Option<&'a RawValue>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    /// As written (`null` reads as absent).
    pub temperature: Option<&'a RawValue>,
    pub top_p: Option<&'a RawValue>,
    /// Only the fields above are present, and messages have only `role` and `content`: a translator
    /// may write its body from this alone.
    pub plain: bool,
}

/// An object key, borrowed from the body unless it holds escapes.
#[derive(Deserialize)]
#[serde(transparent)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

fn once<'de, T: Deserialize<'de>, A: serde::de::MapAccess<'de>>(
    slot: &mut Option<T>,
    map: &mut A,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(serde::de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// A raw value, with `null` read as absent.
fn non_null(v: Option<&RawValue>) -> Option<&RawValue> {
    v.filter(|v| v.get() != "null")
}

/// A type read from a JSON object key by key (see [`ObjectVisitor`]).
trait FromObject<'de>: Sized {
    const EXPECTING: &'static str;
    fn from_object<A: serde::de::MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// The serde visitor of every [`FromObject`] type: objects only (serde's derived parsers also take a
/// struct written as an array).
struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: FromObject<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_object(map)
    }
}

impl<'de: 'a, 'a> FromObject<'de> for Message<'a> {
    const EXPECTING: &'static str = "a message object";
    fn from_object<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let (mut role, mut content, mut other_fields) = (None::<Key<'a>>, None::<&'a RawValue>, false);
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "role" => once(&mut role, &mut map, "role")?,
                "content" => once(&mut content, &mut map, "content")?,
                _ => {
                    other_fields = true;
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let role = role.ok_or_else(|| serde::de::Error::missing_field("role"))?.0;
        // `"content": null` reads as no content, as an absent field does.
        Ok(Message { role, content: non_null(content), other_fields })
    }
}

impl<'de: 'a, 'a> FromObject<'de> for ChatRequest<'a> {
    const EXPECTING: &'static str = "a chat completion request object";
    fn from_object<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let (mut model, mut messages, mut stream, mut stream_options) =
            (None::<&'a RawValue>, None::<Vec<Message<'a>>>, None, None::<&'a RawValue>);
        let (mut max_tokens, mut max_completion_tokens) = (None, None);
        let (mut temperature, mut top_p) = (None::<&'a RawValue>, None::<&'a RawValue>);
        let mut plain = true;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "model" => once(&mut model, &mut map, "model")?,
                "messages" => once(&mut messages, &mut map, "messages")?,
                "stream" => once::<Option<bool>, _>(&mut stream, &mut map, "stream")?,
                "stream_options" => once(&mut stream_options, &mut map, "stream_options")?,
                "max_tokens" => once::<Option<u64>, _>(&mut max_tokens, &mut map, "max_tokens")?,
                "max_completion_tokens" => {
                    once::<Option<u64>, _>(&mut max_completion_tokens, &mut map, "max_completion_tokens")?
                }
                "temperature" => once(&mut temperature, &mut map, "temperature")?,
                "top_p" => once(&mut top_p, &mut map, "top_p")?,
                _ => {
                    plain = false;
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let model_raw = model.ok_or_else(|| serde::de::Error::missing_field("model"))?;
        let messages = messages.ok_or_else(|| serde::de::Error::missing_field("messages"))?;
        plain &= !messages.iter().any(|m| m.other_fields);
        Ok(ChatRequest {
            model: Cow::Borrowed(""),
            model_raw,
            messages,
            stream: stream.flatten(),
            stream_options_raw: stream_options,
            stream_options: None,
            max_tokens: max_tokens.flatten(),
            max_completion_tokens: max_completion_tokens.flatten(),
            temperature: non_null(temperature),
            top_p: non_null(top_p),
            plain,
        })
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Message<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ChatRequest<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

impl ChatRequest<'_> {
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true)
    }
}

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

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];

pub fn parse_chat(body: &[u8]) -> Result<ChatRequest<'_>, ApiError> {
    let mut req: ChatRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Err(explain(body, Operation::ChatCompletions, &e)),
    };
    // A model name without escapes borrows from the body; one with escapes is decoded.
    req.model = match serde_json::from_str::<&str>(req.model_raw.get()) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => match serde_json::from_str::<String>(req.model_raw.get()) {
            Ok(s) => Cow::Owned(s),
            Err(e) => return Err(explain(body, Operation::ChatCompletions, &e)),
        },
    };
    if let Some(raw) = req.stream_options_raw {
        match serde_json::from_str::<Option<StreamOptions>>(raw.get()) {
            Ok(o) => req.stream_options = o,
            Err(e) => return Err(explain(body, Operation::ChatCompletions, &e)),
        }
    }
    check_model(&req.model)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid_request("'messages' must hold at least one message.", Some("messages")));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_ref()) {
            return Err(ApiError::invalid_request(
                format!("Invalid role {} in messages[{i}]; expected one of {}.", quote(&m.role), ROLES.join(", ")),
                Some(&format!("messages[{i}].role")),
            ));
        }
    }
    Ok(req)
}

pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsRequest<'_>, ApiError> {
    let req: EmbeddingsRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Err(explain(body, Operation::Embeddings, &e)),
    };
    check_model(&req.model)?;
    let first = req.input.get().as_bytes().first().copied();
    if !matches!(first, Some(b'"') | Some(b'[')) {
        return Err(ApiError::invalid_request("'input' must be a string or an array.", Some("input")));
    }
    Ok(req)
}

fn check_model(model: &str) -> Result<(), ApiError> {
    if model.is_empty() {
        return Err(ApiError::invalid_request("'model' must not be empty.", Some("model")));
    }
    Ok(())
}

/// The JSON type of a value, as error messages name it.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A 400 for a field of the wrong JSON type, naming it.
pub(crate) fn wrong_type(field: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid_request(format!("'{field}' must be {want}, got {}.", kind(got)), Some(field))
}

/// The slow path, taken only when the fast typed parse failed: find which field is wrong and say so.
fn explain(body: &[u8], op: Operation, e: &serde_json::Error) -> ApiError {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return ApiError::invalid_json(&e.to_string()),
    };
    let Some(o) = v.as_object() else {
        return ApiError::invalid_request(format!("The request body must be a JSON object, got {}.", kind(&v)), None);
    };
    match o.get("model") {
        None => return ApiError::invalid_request("You must provide a 'model' parameter.", Some("model")),
        Some(Value::String(_)) => {}
        Some(other) => return wrong_type("model", "a string", other),
    }
    match op {
        Operation::ChatCompletions => {
            match o.get("messages") {
                None => return ApiError::invalid_request("'messages' is a required property.", Some("messages")),
                Some(Value::Array(msgs)) => {
                    for (i, m) in msgs.iter().enumerate() {
                        let field = format!("messages[{i}]");
                        let Some(mo) = m.as_object() else { return wrong_type(&field, "an object", m) };
                        match mo.get("role") {
                            None => {
                                return ApiError::invalid_request(
                                    format!("'{field}.role' is required."),
                                    Some(&format!("{field}.role")),
                                )
                            }
                            Some(Value::String(_)) => {}
                            Some(r) => return wrong_type(&format!("{field}.role"), "a string", r),
                        }
                    }
                }
                Some(other) => return wrong_type("messages", "an array", other),
            }
            match o.get("stream") {
                None | Some(Value::Null) | Some(Value::Bool(_)) => {}
                Some(other) => return wrong_type("stream", "a boolean", other),
            }
            match o.get("stream_options") {
                None | Some(Value::Null) => {}
                Some(Value::Object(so)) => match so.get("include_usage") {
                    None | Some(Value::Null) | Some(Value::Bool(_)) => {}
                    Some(other) => return wrong_type("stream_options.include_usage", "a boolean", other),
                },
                Some(other) => return wrong_type("stream_options", "an object", other),
            }
        }
        Operation::Embeddings => {
            match o.get("input") {
                None => return ApiError::invalid_request("'input' is a required property.", Some("input")),
                Some(Value::String(_)) | Some(Value::Array(_)) => {}
                Some(other) => return wrong_type("input", "a string or an array", other),
            }
            match o.get("dimensions") {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.as_u64().is_some_and(|d| d <= u32::MAX as u64) => {}
                Some(other) => return wrong_type("dimensions", "a positive integer", other),
            }
        }
        Operation::ListModels | Operation::RetrieveModel | Operation::Messages => {}
    }
    ApiError::invalid_request(format!("Invalid request body: {e}."), None)
}

/// Text of a message's `content`: a string, or the text parts of an array joined by newlines.
pub fn content_text(content: Option<&RawValue>) -> String {
    let Some(raw) = content else { return String::new() };
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::String(s)) => s,
        Ok(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The documented token estimate used where no tokenizer answers: one token per four bytes, rounded up.
pub fn estimate_tokens(text_len: usize) -> u64 {
    text_len.div_ceil(4) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        let table: &[(&str, &str, Result<Operation, u16>)] = &[
            ("POST", "/v1/chat/completions", Ok(Operation::ChatCompletions)),
            ("POST", "/v1/chat/completions?x=1", Ok(Operation::ChatCompletions)),
            ("POST", "/v1/embeddings", Ok(Operation::Embeddings)),
            ("POST", "/v1/messages", Ok(Operation::Messages)),
            ("GET", "/v1/messages", Err(405)),
            ("GET", "/v1/models", Ok(Operation::ListModels)),
            ("GET", "/v1/models/gpt-4o", Ok(Operation::RetrieveModel)),
            ("GET", "/v1/chat/completions", Err(405)),
            ("DELETE", "/v1/models", Err(405)),
            ("POST", "/v1/completions", Err(404)),
            ("POST", "/v2/chat/completions", Err(404)),
            ("GET", "/", Err(404)),
            ("GET", "/v1/models/", Err(404)),
        ];
        for (m, p, want) in table {
            let got = classify(m, p).map_err(|e| e.status);
            assert_eq!(&got, want, "{m} {p}");
        }
        assert_eq!(classify("PUT", "/v1/embeddings").unwrap_err().headers, vec![("allow", "POST".to_string())]);
    }

    #[test]
    fn model_id_is_decoded() {
        assert_eq!(retrieve_model_id("/v1/models/org%2Fmodel?x"), "org/model");
        assert_eq!(retrieve_model_id("/v1/models/bad%zz"), "bad%zz");
    }

    #[test]
    fn content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/jsonx"));
    }

    #[test]
    fn parses_chat() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stream":true,"stream_options":{"include_usage":true},"temperature":0.2}"#;
        let r = parse_chat(body).unwrap();
        assert_eq!(r.model, "m");
        assert!(r.is_stream() && r.include_usage());
        assert_eq!(content_text(r.messages[1].content), "a\nb");
        assert_eq!(content_text(r.messages[0].content), "s");
        assert_eq!(r.temperature.map(RawValue::get), Some("0.2"));
    }

    /// `plain` says whether the fields read are all there is; keys with escapes are still known;
    /// duplicates are refused as serde's derived parsers refuse them.
    #[test]
    fn chat_plainness_and_keys() {
        let table: &[(&str, Option<bool>)] = &[
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, Some(true)),
            (
                r#"{"model":"m","messages":[{"role":"user","content":null}],"max_tokens":null,"temperature":1,"top_p":null,"stream":null,"stream_options":null,"max_completion_tokens":3}"#,
                Some(true),
            ),
            (r#"{"mod\u0065l":"m","messages":[{"r\u006fle":"user","content":"x"}]}"#, Some(true)),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":"y"}"#, Some(false)),
            (r#"{"model":"m","messages":[{"role":"user","content":"x","name":"bob"}]}"#, Some(false)),
            (r#"{"model":"m","model":"n","messages":[{"role":"user"}]}"#, None),
            (r#"{"model":"m","messages":[{"role":"user","role":"user"}]}"#, None),
            (r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}"#, None),
        ];
        for (body, plain) in table {
            assert_eq!(parse_chat(body.as_bytes()).ok().map(|r| r.plain), *plain, "{body}");
        }
        let r = parse_chat(table[1].0.as_bytes()).unwrap();
        assert!(r.messages[0].content.is_none() && r.stream_options_raw.is_some() && r.top_p.is_none());
        assert_eq!(r.max_completion_tokens, Some(3));
    }

    #[test]
    fn chat_errors_name_the_param() {
        let table: &[(&str, u16, Option<&str>, &str)] = &[
            ("{", 400, None, "not valid JSON"),
            ("[1]", 400, None, "must be a JSON object"),
            // Serde's derived parsers took a struct as a sequence; a chat request is an object only.
            (r#"["m",[{"role":"user","content":"x"}]]"#, 400, None, "must be a JSON object"),
            (r#"{"messages":[]}"#, 400, Some("model"), "provide a 'model'"),
            (r#"{"model":7,"messages":[]}"#, 400, Some("model"), "must be a string"),
            (r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#, 400, Some("model"), "must not be empty"),
            (r#"{"model":"m"}"#, 400, Some("messages"), "required"),
            (r#"{"model":"m","messages":"hi"}"#, 400, Some("messages"), "must be an array"),
            (r#"{"model":"m","messages":[]}"#, 400, Some("messages"), "at least one"),
            (r#"{"model":"m","messages":[3]}"#, 400, Some("messages[0]"), "must be an object"),
            (r#"{"model":"m","messages":[{"content":"x"}]}"#, 400, Some("messages[0].role"), "required"),
            (
                r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
                400,
                Some("messages[0].role"),
                "Invalid role",
            ),
            (r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#, 400, Some("stream"), "boolean"),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":1}}"#,
                400,
                Some("stream_options.include_usage"),
                "boolean",
            ),
        ];
        for (body, status, param, msg) in table {
            let e = parse_chat(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, *status, "{body}");
            assert_eq!(e.param.as_deref(), *param, "{body}: {}", e.message);
            assert!(e.message.contains(msg), "{body}: {}", e.message);
        }
    }

    #[test]
    fn model_names_are_decoded_and_their_position_kept() {
        let body = br#"{"messages":[{"role":"user"}], "model" : "gpt\u002d4o"}"#;
        let r = parse_chat(body).unwrap();
        assert_eq!(r.model, "gpt-4o");
        assert_eq!(r.model_raw.get(), r#""gpt\u002d4o""#);
        let r = parse_chat(br#"{"model":"plain","messages":[{"role":"user"}],"stream_options":null}"#).unwrap();
        assert_eq!(r.model, "plain");
        assert!(matches!(r.model, Cow::Borrowed(_)));
        assert_eq!(r.stream_options_raw.map(|v| v.get()), Some("null"));
        assert!(!r.include_usage());
    }

    #[test]
    fn duplicate_model_key_is_rejected() {
        assert_eq!(parse_chat(br#"{"model":"a","model":"b","messages":[{"role":"user"}]}"#).unwrap_err().status, 400);
    }

    #[test]
    fn embeddings() {
        let r = parse_embeddings(br#"{"model":"e","input":["a","b"],"dimensions":4}"#).unwrap();
        assert_eq!(r.dimensions, Some(4));
        for (body, param) in [
            (r#"{"model":"e"}"#, "input"),
            (r#"{"model":"e","input":5}"#, "input"),
            (r#"{"model":"e","input":"x","dimensions":-2}"#, "dimensions"),
        ] {
            assert_eq!(parse_embeddings(body.as_bytes()).unwrap_err().param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn token_estimate() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(8), 2);
        assert_eq!(estimate_tokens(9), 3);
    }
}
