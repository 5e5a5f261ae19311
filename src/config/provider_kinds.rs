//! Each provider kind's own settings, one function per kind. They sit together here for now; each is
//! meant to move into its provider's module (`src/providers/<kind>.rs`) with the rest of that kind.
//!
//! A kind function reads the kind-specific fields of one `providers.<name>` object (`path` is that
//! object's JSON path) and says which fields the kind accepts and what it needs. The fields every kind
//! shares (`kind`, `cluster`, `api_key`) are read afterwards by the provider parser in `raw.rs`.

use super::fields::{credential, err, is_header_safe, join, opt_str, req_str, R};
use super::{Env, ProviderKind};
use serde_json::{Map, Value};

/// What a provider kind is configured as.
pub(crate) struct KindSettings {
    pub kind: ProviderKind,
    /// Every field a provider object of this kind may hold; any other one is rejected.
    pub fields: &'static [&'static str],
    /// Whether `api_key` must be given.
    pub needs_api_key: bool,
    /// Whether this build serves the kind.
    pub ready: bool,
}

/// A kind's settings, or `None` when an optional credential of the kind's own is not set (the
/// provider is then left out, like one whose optional `api_key` is not set).
pub(crate) type KindResult = R<Option<KindSettings>>;

/// The settings of provider kind `kind`, read from the provider object `o` at `path`.
pub(crate) fn settings(kind: &str, o: &Map<String, Value>, path: &str, env: &dyn Env) -> KindResult {
    match kind {
        "mock" => mock(o, path, env),
        "openai" => openai(o, path, env),
        "azure_openai" => azure_openai(o, path, env),
        "openai_compatible" => openai_compatible(o, path, env),
        "anthropic" => anthropic(o, path, env),
        "gemini" => gemini(o, path, env),
        "vertex" => vertex(o, path, env),
        "bedrock" => bedrock(o, path, env),
        other => Err(err(
            join(path, "kind"),
            format!("unknown provider kind '{other}' (expected mock, openai, azure_openai, openai_compatible, anthropic, gemini, vertex or bedrock)"),
        )),
    }
}

fn ready(kind: ProviderKind, fields: &'static [&'static str], needs_api_key: bool, ready: bool) -> KindResult {
    Ok(Some(KindSettings { kind, fields, needs_api_key, ready }))
}

fn mock(_o: &Map<String, Value>, _path: &str, _env: &dyn Env) -> KindResult {
    ready(ProviderKind::Mock, &["kind"], false, true)
}

fn openai(_o: &Map<String, Value>, _path: &str, _env: &dyn Env) -> KindResult {
    ready(ProviderKind::OpenAi, &["kind", "cluster", "api_key"], true, true)
}

fn azure_openai(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let v = req_str(o, path, "api_version")?;
    if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(err(join(path, "api_version"), "may hold only letters, digits, '-' and '.'"));
    }
    let kind = ProviderKind::AzureOpenAi { api_version: v.to_string() };
    ready(kind, &["kind", "cluster", "api_key", "api_version"], true, true)
}

fn openai_compatible(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let base = opt_str(o, path, "base_path")?.unwrap_or("/v1");
    if !base.starts_with('/') || base.contains('?') || base.contains('#') || !is_header_safe(base) || base.contains(' ')
    {
        return Err(err(join(path, "base_path"), "must be a path starting with '/', without query or spaces"));
    }
    let kind = ProviderKind::OpenAiCompatible { base_path: base.trim_end_matches('/').to_string() };
    ready(kind, &["kind", "cluster", "api_key", "base_path"], false, true)
}

fn anthropic(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let version = opt_str(o, path, "version")?.unwrap_or("2023-06-01");
    if !is_header_safe(version) {
        return Err(err(join(path, "version"), "must be printable ASCII"));
    }
    let default_max_tokens = match o.get("default_max_tokens") {
        None => 4096,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1_000_000).contains(&n) => n as u32,
            _ => return Err(err(join(path, "default_max_tokens"), "must be an integer from 1 to 1000000")),
        },
    };
    let kind = ProviderKind::Anthropic { version: version.to_string(), default_max_tokens };
    let fields: &[&str] = &["kind", "cluster", "api_key", "version", "default_max_tokens"];
    ready(kind, fields, true, crate::providers::anthropic::READY)
}

fn gemini(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let v = opt_str(o, path, "api_version")?.unwrap_or("v1beta");
    if v != "v1" && v != "v1beta" {
        return Err(err(join(path, "api_version"), "must be v1 or v1beta"));
    }
    let kind = ProviderKind::Gemini { api_version: v.to_string() };
    ready(kind, &["kind", "cluster", "api_key", "api_version"], true, crate::providers::gemini::READY)
}

fn vertex(o: &Map<String, Value>, path: &str, _env: &dyn Env) -> KindResult {
    let project = req_str(o, path, "project")?;
    let location = req_str(o, path, "location")?;
    for (k, v) in [("project", project), ("location", location)] {
        if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(err(join(path, k), "may hold only letters, digits, '-' and '_'"));
        }
    }
    let kind = ProviderKind::Vertex { project: project.to_string(), location: location.to_string() };
    ready(kind, &["kind", "cluster", "api_key", "project", "location"], true, crate::providers::gemini::READY)
}

fn bedrock(o: &Map<String, Value>, path: &str, env: &dyn Env) -> KindResult {
    let region = req_str(o, path, "region")?;
    if !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(err(join(path, "region"), "must look like us-east-1"));
    }
    // The access key pair is required; an optional one that is not set leaves the provider out.
    let mut pair = Vec::with_capacity(2);
    for k in ["access_key_id", "secret_access_key"] {
        let Some(v) = o.get(k) else {
            return Err(err(join(path, k), "is required for kind bedrock"));
        };
        match credential(v, &join(path, k), env)? {
            Some(s) => pair.push(s),
            None => return Ok(None),
        }
    }
    let session_token = match o.get("session_token") {
        None => None,
        Some(v) => credential(v, &join(path, "session_token"), env)?,
    };
    let mut pair = pair.into_iter();
    let (Some(access_key_id), Some(secret_access_key)) = (pair.next(), pair.next()) else {
        return Err(err(path, "bedrock credentials are incomplete"));
    };
    let kind = ProviderKind::Bedrock { region: region.to_string(), access_key_id, secret_access_key, session_token };
    let fields: &[&str] = &["kind", "cluster", "region", "access_key_id", "secret_access_key", "session_token"];
    ready(kind, fields, false, crate::providers::bedrock::READY)
}
