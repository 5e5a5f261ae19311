//! What the fuzz targets share: the control bytes at the front of an input (which provider, where to
//! split), a config with one provider of every kind, and the checks.

use std::rc::Rc;
use switchyard::api::openai::Operation;
use switchyard::config::{Config, Env, Provider};
use switchyard::providers::Attempt;

/// Every environment variable is set (credentials of all kinds).
pub struct AllSet;
impl Env for AllSet {
    fn var(&self, name: &str) -> Option<String> {
        Some(format!("fuzz-{}", name.to_ascii_lowercase()))
    }
}

/// Control bytes at the front of the input (zeros when the input is shorter), then the payload.
pub fn control<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut c = [0u8; N];
    let n = data.len().min(N);
    c[..n].copy_from_slice(&data[..n]);
    (c, &data[n..])
}

/// The payload cut at the points the seeds choose (each seed a fraction of the length, in 256ths).
pub fn pieces<'a>(payload: &'a [u8], seeds: &[u8]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = seeds.iter().map(|&s| payload.len() * usize::from(s) / 256).collect();
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for c in cuts {
        out.push(&payload[at..c]);
        at = c;
    }
    out.push(&payload[at..]);
    out
}

/// Feeds `parts` in order to a stream converter's `push(bytes, end, out)`, the last part with `end`, or an
/// empty push with `end` after them when `end_apart`; returns what the converter wrote.
pub fn feed(parts: &[&[u8]], end_apart: bool, mut push: impl FnMut(&[u8], bool, &mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        push(p, !end_apart && i + 1 == parts.len(), &mut out);
    }
    if end_apart {
        push(&[], true, &mut out);
    }
    out
}

/// Panics (a crash for the fuzzer) unless `bytes` is one JSON document.
pub fn assert_json(bytes: &[u8], what: &str) {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(bytes) {
        panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(bytes));
    }
}

/// Panics unless two outputs are equal (a stream's output must not depend on how its bytes were split).
pub fn assert_same(split: &[u8], whole: &[u8], what: &str) {
    if split != whole {
        panic!(
            "{what}: output depends on the split\n--- whole\n{}\n--- split\n{}",
            String::from_utf8_lossy(whole),
            String::from_utf8_lossy(split)
        );
    }
}

/// A config with a provider of every kind (and a model and a key for each).
pub fn config() -> Rc<Config> {
    let key = switchyard::codec::sha256::to_hex(&switchyard::codec::sha256::digest(KEY.as_bytes()));
    let json = format!(
        r#"{{"max_body_bytes": 65536,
        "providers": {{
            "local": {{"kind": "mock"}},
            "openai": {{"kind": "openai", "api_key": "sk-openai"}},
            "azure": {{"kind": "azure_openai", "api_version": "2024-10-21", "api_key": "az"}},
            "compat": {{"kind": "openai_compatible", "base_path": "/openai/v1"}},
            "anthropic": {{"kind": "anthropic", "api_key": "sk-ant"}},
            "gemini": {{"kind": "gemini", "api_key": "g"}},
            "vertex": {{"kind": "vertex", "project": "p", "location": "us-central1", "api_key": "ya29"}},
            "bedrock": {{"kind": "bedrock", "region": "us-east-1", "access_key_id": "AKIDEXAMPLE",
                         "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session_token": "tok"}}
        }},
        "models": {{
            "echo": {{"provider": "local"}},
            "gpt": {{"provider": "openai", "model": "gpt-4o-mini", "price": {{"input": 0.15, "output": 0.6}}}},
            "azure-gpt": {{"provider": "azure", "model": "dep/loy"}},
            "compat": {{"provider": "compat", "model": "llama:3"}},
            "claude": {{"provider": "anthropic", "model": "claude-sonnet-4-5", "price": {{"input": 3, "output": 15}}}},
            "gemini": {{"provider": "gemini", "model": "gemini-2.5-flash"}},
            "vertex": {{"provider": "vertex", "model": "gemini-2.5-pro"}},
            "nova": {{"provider": "bedrock", "model": "us.amazon.nova-lite-v1:0"}}
        }},
        "keys": [{{"id": "fuzz", "sha256": "{key}", "models": ["*"],
                   "limits": {{"requests": {{"limit": 1000000, "window_secs": 1}}, "concurrent": 1000,
                               "tokens": {{"limit": 1000000000, "window_secs": 1}}}}}}]}}"#
    );
    match Config::parse(json.as_bytes(), &AllSet) {
        Ok(c) => Rc::new(c),
        Err(e) => panic!("the fuzz config does not load: {e}"),
    }
}

/// The virtual key of [`config`].
pub const KEY: &str = "sk-fuzz-key";

/// The models of [`config`] that go upstream: (public name, provider name, provider's model).
pub const UPSTREAMS: &[(&str, &str, &str)] = &[
    ("gpt", "openai", "gpt-4o-mini"),
    ("azure-gpt", "azure", "dep/loy"),
    ("compat", "compat", "llama:3"),
    ("claude", "anthropic", "claude-sonnet-4-5"),
    ("gemini", "gemini", "gemini-2.5-flash"),
    ("vertex", "vertex", "gemini-2.5-pro"),
    ("nova", "bedrock", "us.amazon.nova-lite-v1:0"),
];

pub fn provider<'a>(cfg: &'a Config, name: &str) -> &'a Provider {
    match cfg.provider_by_name(name) {
        Some((_, p)) => p,
        None => panic!("no provider {name} in the fuzz config"),
    }
}

/// An attempt at a fixed time (ids and SigV4 dates come from it, so runs are comparable).
pub fn attempt<'a>(cfg: &'a Config, which: u8, op: Operation) -> Attempt<'a> {
    let (alias, provider_name, model) = UPSTREAMS[usize::from(which) % UPSTREAMS.len()];
    Attempt {
        op,
        provider: provider(cfg, provider_name),
        model,
        alias,
        now_unix: 1_700_000_000,
        now_ns: 1_700_000_000_000_000_000,
        usage_chunk: which & 0x80 != 0,
        chat: None,
    }
}

/// A chat request for response and stream targets.
pub fn chat_request(stream: bool) -> Vec<u8> {
    format!(
        r#"{{"model":"m","stream":{stream},"stream_options":{{"include_usage":true}},"messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"hi"}}],"tools":[{{"type":"function","function":{{"name":"f","parameters":{{"type":"object"}}}}}}]}}"#
    )
    .into_bytes()
}

/// An Anthropic Messages request (the `/v1/messages` input) for response and stream targets.
pub fn messages_request(stream: bool) -> Vec<u8> {
    format!(
        r#"{{"model":"m","max_tokens":100,"stream":{stream},"system":"be brief","messages":[{{"role":"user","content":"hi"}}],"tools":[{{"name":"f","input_schema":{{"type":"object"}}}}]}}"#
    )
    .into_bytes()
}
