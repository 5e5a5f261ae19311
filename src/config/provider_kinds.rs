//! From a provider's `kind` string to its kind's settings. Each kind reads and checks its own fields in
//! its provider module (`providers::openai::settings`, `providers::anthropic::settings`, ...); what
//! differs between kinds once they are read is a method of `ProviderKind` (`providers/kind.rs`).
//!
//! A kind function reads the kind-specific fields of one `providers.<name>` object (`path` is that
//! object's JSON path) and says which fields the kind accepts. The fields every kind shares (`kind`,
//! `cluster`, `api_key`) are read afterwards by the provider parser in `raw.rs`.

use super::fields::{err, join, R};
use super::{Env, ProviderKind};
use crate::providers::{anthropic, azure_openai, bedrock, gemini, mock, openai, openai_compatible};
use serde_json::{Map, Value};

/// What a provider kind is configured as.
pub(crate) struct KindSettings {
    pub kind: ProviderKind,
    /// Every field a provider object of this kind may hold; any other one is rejected.
    pub fields: &'static [&'static str],
}

/// A kind's settings, or `None` when an optional credential of the kind's own is not set (the
/// provider is then left out, like one whose optional `api_key` is not set).
pub(crate) type KindResult = R<Option<KindSettings>>;

/// Settings as a kind function returns them (never left out).
pub(crate) fn read(kind: ProviderKind, fields: &'static [&'static str]) -> KindResult {
    Ok(Some(KindSettings { kind, fields }))
}

/// The settings of provider kind `kind`, read from the provider object `o` at `path`.
pub(crate) fn settings(kind: &str, o: &Map<String, Value>, path: &str, env: &dyn Env) -> KindResult {
    match kind {
        "mock" => mock::settings(o, path, env),
        "openai" => openai::settings(o, path, env),
        "azure_openai" => azure_openai::settings(o, path, env),
        "openai_compatible" => openai_compatible::settings(o, path, env),
        "anthropic" => anthropic::settings(o, path, env),
        "gemini" => gemini::settings(o, path, env),
        "vertex" => gemini::vertex_settings(o, path, env),
        "bedrock" => bedrock::settings(o, path, env),
        other => Err(err(
            join(path, "kind"),
            format!("unknown provider kind '{other}' (expected mock, openai, azure_openai, openai_compatible, anthropic, gemini, vertex or bedrock)"),
        )),
    }
}
