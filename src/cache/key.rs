//! The cache key: the request in the pivot (chat) form, canonicalized ([`canonical`]), hashed with the
//! scope and the resolved model ([`key`]). The rules are in the module doc of `crate::cache`.

use crate::api::error::ApiError;
use crate::api::Operation;
use crate::codec::sha256;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::hash::BuildHasher;
use std::io::Write;

/// Top-level pivot fields that do not change the answer: removed from the canonical form.
pub const IGNORED: &[&str] = &[
    // How the answer is delivered, not what it says (the cache renders either way).
    "stream",
    "stream_options",
    // Who asks and what the provider keeps or bills: the scope carries the tenant.
    "user",
    "metadata",
    "safety_identifier",
    "store",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    // The key adds the resolved model itself.
    "model",
];

/// Where the fields of a native request that the pivot drops but that change a native provider's answer
/// are kept in the canonical form (no chat field has this name).
pub const NATIVE: &str = "~native";

/// Anthropic Messages fields the pivot drops that change what the Anthropic API answers (when the model
/// is served by an `anthropic` provider, the request passes through as it is): (field, sub-field).
const MESSAGES_NATIVE: &[(&str, Option<&str>)] =
    &[("top_k", None), ("thinking", None), ("output_config", Some("effort")), ("context_management", None)];

/// Responses fields the pivot drops that change what OpenAI's own Responses endpoint answers.
const RESPONSES_NATIVE: &[(&str, Option<&str>)] = &[
    ("include", None),
    ("truncation", None),
    ("top_logprobs", None),
    ("max_tool_calls", None),
    ("text", Some("verbosity")),
    ("reasoning", Some("summary")),
];

/// The canonical form of a request of operation `op` (rules in `crate::cache`). `Err`: the request is
/// malformed (the same error its front door gives), or of an operation that is not cached (embeddings,
/// models).
pub fn canonical(op: Operation, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let (pivot, native) = match op {
        Operation::ChatCompletions => (None, &[][..]),
        Operation::Messages => (Some(crate::api::anthropic::to_openai(body)?), MESSAGES_NATIVE),
        Operation::Responses => (Some(crate::api::responses::to_openai(body)?), RESPONSES_NATIVE),
        Operation::Embeddings | Operation::ListModels | Operation::RetrieveModel => {
            return Err(ApiError::gateway("this operation is not cached"))
        }
    };
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).map_err(|e| ApiError::invalid_json(&e.to_string()));
    let mut v = parse(pivot.as_deref().unwrap_or(body))?;
    let Some(o) = v.as_object_mut() else {
        return Err(ApiError::invalid_request("The request body must be a JSON object.", None));
    };
    for f in IGNORED {
        o.remove(*f);
    }
    o.retain(|_, v| !v.is_null());
    if o.get("n").and_then(Value::as_f64) == Some(1.0) {
        o.remove("n");
    }
    if !native.is_empty() {
        let extra = native_fields(&parse(body)?, native);
        if !extra.is_empty() {
            o.insert(NATIVE.into(), Value::Object(extra));
        }
    }
    let mut out = Vec::with_capacity(body.len());
    write(&v, &mut out);
    Ok(out)
}

/// The fields of `names` the client's request holds (not null).
fn native_fields(client: &Value, names: &[(&str, Option<&str>)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (field, sub) in names {
        let v = client.get(field);
        let v = match sub {
            Some(s) => v.and_then(|o| o.get(s)).map(|x| (format!("{field}.{s}"), x)),
            None => v.map(|x| (field.to_string(), x)),
        };
        if let Some((name, x)) = v.filter(|(_, x)| !x.is_null()) {
            out.insert(name, x.clone());
        }
    }
    out
}

/// Writes `v` canonically: object keys in byte order (serde_json's maps are sorted), no whitespace,
/// strings as serde_json escapes them, numbers by [`write_number`].
fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(o) => {
            out.push(b'{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write(x, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(x, out);
            }
            out.push(b']');
        }
        Value::Number(n) => write_number(n, out),
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// One spelling per number: an integral value that fits i64 or u64 as an integer (`1`, `1.0`, `1e0` and
/// `1.00` are all `1`; `-0` is `0`), anything else as the shortest form of its f64.
fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        // 2^63 and 2^64: the i64 and u64 ranges as exact f64 bounds.
        const I64_MIN: f64 = -9_223_372_036_854_775_808.0;
        const U64_END: f64 = 18_446_744_073_709_551_616.0;
        if f.fract() == 0.0 && (0.0..U64_END).contains(&f) {
            let _ = write!(out, "{}", f as u64);
        } else if f.fract() == 0.0 && (I64_MIN..0.0).contains(&f) {
            let _ = write!(out, "{}", f as i64);
        } else {
            let _ = serde_json::to_writer(&mut *out, &f);
        }
    }
}

/// The cache key: SHA-256 over a versioned tag and the length-prefixed scope (e.g. `key:<id>`,
/// `user:<id>`, `team:<name>`, `shared`), resolved model name and canonical request.
pub fn key(scope: &str, model: &str, canonical: &[u8]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(64 + scope.len() + model.len() + canonical.len());
    buf.extend_from_slice(b"switchyard-cache-v1");
    for part in [scope.as_bytes(), model.as_bytes(), canonical] {
        buf.extend_from_slice(&(part.len() as u64).to_be_bytes());
        buf.extend_from_slice(part);
    }
    sha256::digest(&buf)
}

/// Bodies up to this size have their key remembered by [`key_of`].
pub const MEMO_MAX_BODY: usize = 64 * 1024;
/// The memo holds at most this many keys and bytes per VM (a worker thread); past either it starts over.
pub const MEMO_MAX_ENTRIES: usize = 512;
pub const MEMO_MAX_BYTES: usize = 2 * 1024 * 1024;

/// The keys this VM computed lately, by the exact request they were computed from (operation, scope,
/// model, body bytes): a request repeated byte for byte (what a cache mostly sees) skips the canonical
/// form and the SHA-256, which are most of a hit's work. The lookup compares whole byte strings, so a
/// memo hit is exactly the key [`canonical`] and [`key`] would give.
#[derive(Default)]
struct Memo {
    /// By the hash of the request's bytes: the bytes and their key (a hash shared by two requests keeps
    /// the later one).
    keys: hashbrown::HashMap<u64, (Box<[u8]>, [u8; 32])>,
    hasher: hashbrown::DefaultHashBuilder,
    bytes: usize,
    /// The lookup's byte string, built in place (no allocation per request).
    scratch: Vec<u8>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

/// The cache key of a request: [`key`] of its [`canonical`] form, remembered per VM for bodies up to
/// [`MEMO_MAX_BODY`]. `Err` as [`canonical`].
pub fn key_of(op: Operation, scope: &str, model: &str, body: &[u8]) -> Result<[u8; 32], ApiError> {
    if body.len() > MEMO_MAX_BODY {
        return Ok(key(scope, model, &canonical(op, body)?));
    }
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let m = &mut *m;
        m.scratch.clear();
        m.scratch.push(op as u8);
        for part in [scope.as_bytes(), model.as_bytes()] {
            m.scratch.extend_from_slice(&(part.len() as u64).to_be_bytes());
            m.scratch.extend_from_slice(part);
        }
        m.scratch.extend_from_slice(body);
        let h = m.hasher.hash_one(m.scratch.as_slice());
        if let Some((bytes, k)) = m.keys.get(&h) {
            if crate::codec::bytes::eq(bytes, &m.scratch) {
                return Ok(*k);
            }
        }
        let k = key(scope, model, &canonical(op, body)?);
        if m.keys.len() >= MEMO_MAX_ENTRIES || m.bytes + m.scratch.len() > MEMO_MAX_BYTES {
            m.keys.clear();
            m.bytes = 0;
        }
        m.bytes += m.scratch.len();
        if let Some((old, _)) = m.keys.insert(h, (m.scratch.as_slice().into(), k)) {
            m.bytes -= old.len();
        }
        Ok(k)
    })
}

/// How many keys the memo holds and their bytes (tests).
#[cfg(test)]
pub fn memo_size() -> (usize, usize) {
    MEMO.with(|m| (m.borrow().keys.len(), m.borrow().bytes))
}

/// Lower-case hex of a key.
pub fn hex(key: &[u8; 32]) -> String {
    sha256::to_hex(key)
}
