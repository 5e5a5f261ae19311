//! Chat completion requests (`POST /v1/chat/completions`): one pass over the body reads what the
//! gateway needs, with a hand-written visitor (objects only, duplicate keys refused).

use super::{check_model, explain, wrong_type};
use crate::api::error::{invalid_role, no_messages, required, ApiError};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

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

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];

pub fn parse_chat(body: &[u8]) -> Result<ChatRequest<'_>, ApiError> {
    let mut req: ChatRequest = match serde_json::from_str(super::utf8(body)?) {
        Ok(r) => r,
        Err(e) => return Err(explain(body, &e, wrong_field)),
    };
    // A model name without escapes borrows from the body; one with escapes is decoded.
    req.model = match serde_json::from_str::<&str>(req.model_raw.get()) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => match serde_json::from_str::<String>(req.model_raw.get()) {
            Ok(s) => Cow::Owned(s),
            Err(e) => return Err(explain(body, &e, wrong_field)),
        },
    };
    if let Some(raw) = req.stream_options_raw {
        match serde_json::from_str::<Option<StreamOptions>>(raw.get()) {
            Ok(o) => req.stream_options = o,
            Err(e) => return Err(explain(body, &e, wrong_field)),
        }
    }
    check_model(&req.model)?;
    if req.messages.is_empty() {
        return Err(no_messages());
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_ref()) {
            return Err(invalid_role(&m.role, i, ROLES));
        }
    }
    Ok(req)
}

/// The chat fields [`explain`] checks after the model: messages, roles, stream, stream options.
fn wrong_field(o: &Map<String, Value>) -> Option<ApiError> {
    match o.get("messages") {
        None => return Some(required("messages")),
        Some(Value::Array(msgs)) => {
            for (i, m) in msgs.iter().enumerate() {
                let field = format!("messages[{i}]");
                let Some(mo) = m.as_object() else { return Some(wrong_type(&field, "an object", m)) };
                match mo.get("role") {
                    None => {
                        return Some(ApiError::invalid_request(
                            format!("'{field}.role' is required."),
                            Some(&format!("{field}.role")),
                        ))
                    }
                    Some(Value::String(_)) => {}
                    Some(r) => return Some(wrong_type(&format!("{field}.role"), "a string", r)),
                }
            }
        }
        Some(other) => return Some(wrong_type("messages", "an array", other)),
    }
    match o.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(other) => return Some(wrong_type("stream", "a boolean", other)),
    }
    match o.get("stream_options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(so)) => match so.get("include_usage") {
            None | Some(Value::Null) | Some(Value::Bool(_)) => {}
            Some(other) => return Some(wrong_type("stream_options.include_usage", "a boolean", other)),
        },
        Some(other) => return Some(wrong_type("stream_options", "an object", other)),
    }
    None
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
