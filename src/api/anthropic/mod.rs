//! Anthropic Messages API input (`POST /v1/messages`): clients speak Anthropic, the gateway converts the
//! request to the OpenAI Chat Completions pivot, serves it from any provider, and converts the answer,
//! error or stream back. Pure functions; no host calls.
//!
//! - `request.rs`: parse and convert the request (rules below).
//! - `response.rs`: the answer back ([`response_from_openai`]).
//! - `stream.rs`: the stream back ([`StreamToAnthropic`]).
//! - `error.rs`: the one status ↔ error type table ([`type_for_status`], [`status_for_type`]) and
//!   Anthropic's error body ([`error_from_openai`], [`error_response`]).
//! - `mock.rs`: the mock provider's answer ([`mock_answer`]).
//! - [`upstream`]: one attempt of a Messages request at a provider.
//!
//! Request rules (Anthropic → OpenAI):
//! - `system` (string or text blocks, joined with `\n`) → a leading `system` message; a `system`-role
//!   message inside `messages` (allowed by the current SDK) → a `system` message at that place.
//! - User turns: `text` → text parts, `image` (base64 → `data:` URL, url → URL) → `image_url` parts,
//!   `document` (base64 PDF → `file` part with `file_data`; plain-text source → text part; other sources
//!   → 400). `tool_result` blocks → `tool` messages (`tool_call_id` = `tool_use_id`, text joined with `\n`,
//!   `is_error: true` → content prefixed with `"Error: "` since OpenAI has no error flag), emitted before
//!   the rest of the turn, which follows as one `user` message. Images inside a `tool_result` move to that
//!   user message (OpenAI tool messages carry text only). String content stays a string; block arrays
//!   stay part arrays.
//! - Assistant turns: text blocks concatenated into `content`, `tool_use` → `tool_calls` (arguments = JSON
//!   text of `input`). `thinking` / `redacted_thinking` blocks are dropped (no OpenAI input form); an
//!   assistant turn left empty is dropped. A final assistant turn (prefill) is passed on as is.
//! - `tools`: custom tools → function tools (`input_schema` → `parameters`; `strict`, `cache_control`,
//!   `input_examples` dropped). Anthropic server tools (any other `type`) → 400 `tools[i].type`.
//! - `tool_choice`: auto / any / tool / none → "auto" / "required" / named function / "none";
//!   `disable_parallel_tool_use: true` → `parallel_tool_calls: false`. Both only sent when tools are.
//! - `max_tokens` (required) → `max_tokens`; `temperature`, `top_p` copied; `stop_sequences` → `stop`;
//!   `metadata.user_id` → `user`; `stream: true` → `stream` + `stream_options.include_usage`;
//!   `output_config.format` (json_schema) → `response_format` json_schema named "output".
//! - Dropped without error (no OpenAI equivalent): `top_k`, `thinking`, `output_config.effort`,
//!   `cache_control` anywhere, `citations`, `service_tier`, `container`, `inference_geo`, `speed`,
//!   `diagnostics`, and unknown fields. Other block types (server tool results, search results, files
//!   by id, ...) → 400 naming the block.
//!
//! Response rules: see [`response_from_openai`], [`error_from_openai`] and [`StreamToAnthropic`].

mod error;
mod mock;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;
pub mod upstream;

pub(crate) use error::api_error_body;
/// The path of the Messages API.
pub const PATH: &str = "/v1/messages";

pub use error::{error_from_api, error_from_openai, error_response, status_for_type, type_for_status};
pub use mock::mock_answer;
pub use request::{parse, to_openai, MessagesRequest};
pub use response::{response_from_openai, try_response_from_openai};
pub use stream::StreamToAnthropic;
