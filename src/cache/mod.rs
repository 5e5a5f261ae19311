//! Response caching, the pure core (issue #19): exact-match keys, what is stored, and how a stored answer
//! is rendered, and the two tiers that keep it. No host calls: the pipeline stages live in
//! `pipeline/cache.rs`, the host's sending of fleet puts in `host/cache_fleet.rs`.
//!
//! One stored answer serves every client format: it is kept once in the pivot form (a normalized OpenAI
//! chat completion, not streamed) and rendered as a Chat Completions answer or stream, an Anthropic
//! message or stream, or a Responses object or stream, plain answers serving streaming requests and the
//! other way round.
//!
//! # The key ([`canonical`], [`key`])
//! - The request is taken in the pivot form: a chat request as it is, an Anthropic Messages request
//!   through `api::anthropic::to_openai`, a Responses request through `api::responses::to_openai`
//!   (which refuses what the pivot cannot serve: the front door's own 400s). Embeddings and the models
//!   endpoints are not cached.
//! - Removed, as they do not change the answer: `stream` and `stream_options` (the cache renders either
//!   way), `user`, `metadata`, `safety_identifier`, `store`, `service_tier`, `prompt_cache_key`,
//!   `prompt_cache_retention` (who asks, what the provider keeps or bills: the scope carries the
//!   tenant), `model` (the key adds the resolved model), every top-level field whose value is null (the
//!   default), and `n` when it is 1 (the default).
//! - Kept, as they change the answer: everything else, `n` > 1, `seed`, `temperature`, `top_p`, `logprobs`
//!   (such answers are not stored, see below), `max_tokens` and `max_completion_tokens` as written (not
//!   merged: some models refuse one of them), tools and `tool_choice`, `response_format`, ... Defaults are
//!   not filled in: `temperature: 1` and no temperature are two keys.
//! - Fields of a native request that the pivot drops but that change what a provider answering that API
//!   natively says (Anthropic's `top_k`, `thinking`, `output_config.effort`, `context_management`;
//!   Responses' `include`, `truncation`, `top_logprobs`, `max_tool_calls`, `text.verbosity`,
//!   `reasoning.summary`) are added under `"~native"` when present.
//! - Canonical bytes: object keys sorted (byte order) at every depth, no whitespace, strings as
//!   serde_json escapes them, one spelling per number (`1`, `1.0`, `1e0`, `1.00` are `1`; integers that
//!   fit i64/u64 printed as integers, other numbers as their shortest f64 form).
//! - So a chat request and the Anthropic Messages and Responses requests that convert to the same pivot
//!   meet in one key (and so share one answer), unless one of them carries a `~native` field.
//! - The key: SHA-256 over a versioned tag and the length-prefixed scope (`key:<id>`, `user:<id>`,
//!   `team:<name>`, `shared`), resolved model name and canonical bytes.
//!
//! # What is stored ([`Capture`])
//! Only complete, successful answers, read from the body as the client gets it: a chat completion whose
//! every choice finished with `stop` or `tool_calls`; a chat stream whose every choice finished so and that
//! ended with `[DONE]`, with no error event; an Anthropic message or stream that stopped with end_turn,
//! stop_sequence or tool_use (a stream: `message_stop` seen, no `error` event); a Responses object, or a
//! stream's final `response.completed`, with status `completed`. Not stored: errors, truncated or failed
//! streams, `length` / `content_filter` / `max_tokens` / `refusal` / `pause_turn` endings and incomplete
//! responses, bodies over `max_bytes`, and what the stored form cannot hold: log probabilities, audio,
//! the legacy `function_call`, Anthropic thinking and server tool blocks, Responses items other than
//! messages, function calls and reasoning (reasoning items are left out; their tokens stay in the usage),
//! text with annotations.
//!
//! The stored form: `{"id","object":"chat.completion","created","model","choices":[{"index","message":
//! {"role":"assistant","content","refusal","tool_calls"?},"logprobs":null,"finish_reason"}],"usage"?}`
//! (content null only when empty with tool calls; usage with `total_tokens` = prompt + completion,
//! `prompt_tokens_details.cached_tokens` and `completion_tokens_details.reasoning_tokens`). Usage is
//! stored when the body carried it: a chat stream captured after the gateway dropped the usage chunk a
//! client did not ask for has none, and then renders without usage (streams with no usage chunk,
//! Anthropic usage 0, Responses `usage: null`).
//!
//! # Rendering ([`render`])
//! A fresh id (`chatcmpl-cache…`, from the clock) and `created`, the model the caller names. Chat: the
//! stored completion, or chunks (per choice: role, content, refusal, each tool call's first chunk with
//! id, type, name and then its arguments, the finish chunk; the usage chunk only when `include_usage`;
//! `data: [DONE]`). Messages and Responses: that chat answer through the same converters a translated
//! answer takes (`api::pivot::local_answer`, which the mock shares); their streams always carry usage.
//! Lossy in those formats, as for any answer served through the pivot: only the first choice; a refusal
//! is text in an Anthropic message; reasoning tokens have no Anthropic field; Anthropic tool `input` is
//! the parsed arguments.
//!
//! Files: `key.rs`, `capture.rs` (+ `streams.rs`, the stream readers), `answer.rs` (the stored form),
//! `render.rs`, `store.rs`, the process tier (Envoy's shared data, shared by the workers), and
//! `fleet.rs`, the fleet tier's entry, messages and put queue (Redis behind `switchyard-limits`, with
//! `cache.fleet`). The pipeline's stages that use them are in `pipeline/cache.rs`.

pub(crate) mod answer;
pub mod capture;
pub mod fleet;
pub mod key;
pub mod render;
pub mod store;
mod streams;
#[cfg(test)]
mod tests;

pub use capture::{Capture, Format};
pub use key::{canonical, hex, key};
pub use render::render;
