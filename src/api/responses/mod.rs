//! OpenAI Responses API input (`POST /v1/responses`): for providers other than OpenAI's own Responses
//! endpoint, the request is converted to the OpenAI Chat Completions pivot, served by any provider, and
//! the answer or stream converted back. Pure functions; no host calls. The schema is the OpenAI SDK's
//! `types/responses/`.
//!
//! - `request.rs`: parse, what the pivot refuses ([`check_pivot`]), and the conversion ([`to_openai`]).
//! - `response.rs`: the answer back ([`response_from_openai`], with the request's [`Echo`]).
//! - `stream.rs`: the stream back ([`StreamToResponses`]).
//! - `mock.rs`: the mock provider's answer ([`mock_answer`]).
//! - `upstream.rs`: one attempt of a Responses request at a provider (native or through the pivot).
//!
//! Errors stay in OpenAI's shape (`{"error":{…}}`), which is what the pivot already gives.
//!
//! Refused for the pivot (400 `invalid_request_error`, code `unsupported_parameter`, naming the param and
//! the provider): `previous_response_id`, `conversation`, `prompt` (stored prompts), `store: true`,
//! `background: true` (the gateway keeps no state), and hosted tools: any `tools[i].type` but
//! `function` (web_search, file_search, computer_use, code_interpreter, image_generation, mcp,
//! local_shell, custom, ...), and a `tool_choice` naming one. An absent or false `store` is fine.
//!
//! Request rules (Responses → chat):
//! - `instructions` → a leading `system` message. `input` a string → one `user` message.
//! - `input` items: `message` (`type` may be absent) with role user / assistant / system / developer
//!   (developer → system). User content: a string stays a string; parts `input_text` → `text`,
//!   `input_image` (`image_url`, a URL or data URL; `detail` low/high/auto kept) → `image_url`,
//!   `input_file` with `file_data` (+ `filename`) → `file`; `file_id` / `file_url` → 400. System and
//!   developer content: `input_text` parts joined with `\n` into a string. Assistant content:
//!   `output_text` / `input_text` / `refusal` texts concatenated into a string (an empty one is
//!   dropped). Other part types → 400 naming the part.
//! - `function_call` items → assistant `tool_calls` (`id` = `call_id`, `arguments` as given): a call
//!   joins the assistant message right before it (its text or the calls before), so consecutive calls
//!   make one message. `function_call_output` → a `tool` message (`tool_call_id` = `call_id`; output a
//!   string, or `input_text` parts joined with `\n`; other parts → 400). `reasoning` items are dropped;
//!   other item types (`item_reference`, hosted tool calls and outputs, ...) → 400 naming the item.
//!   An `input` with no message left → 400.
//! - `tools` (flat function tools: name, description, parameters, strict) → chat function tools.
//!   `tool_choice` auto / none / required / `{type: function, name}` → the chat forms;
//!   `{type: allowed_tools, mode, tools}` → `mode`, with `tools` cut to the allowed functions. Both, and
//!   `parallel_tool_calls`, only sent when there are tools.
//! - `max_output_tokens` → `max_tokens` (what every translator and OpenAI-style server reads);
//!   `temperature`, `top_p` copied; `user` (else `safety_identifier`) → `user`; `text.format`
//!   json_object → `response_format` json_object, json_schema (flat: name, schema, strict,
//!   description) → `response_format.json_schema`, text → nothing; `reasoning.effort` →
//!   `reasoning_effort`; `stream: true` → `stream` + `stream_options.include_usage`.
//! - Dropped (no chat equivalent, or nothing to do without state): `metadata` (echoed in the response
//!   only), `include`, `truncation`, `top_logprobs`, `max_tool_calls`, `service_tier`,
//!   `prompt_cache_key`, `prompt_cache_retention`, `stream_options`, `text.verbosity`,
//!   `reasoning.summary`, `store: false`, and unknown fields.
//!
//! Response rules: see [`response_from_openai`] and [`StreamToResponses`]. A response echoes the
//! request's `instructions`, `tools`, `tool_choice` (default auto), `parallel_tool_calls` (default true),
//! `temperature`, `top_p`, `max_output_tokens`, `text` (default plain text), `reasoning`, `metadata`
//! (default `{}`), `user`, `safety_identifier`, `truncation` (default disabled), and `store: false`,
//! `background: false`, `previous_response_id: null`. Usage: `input_tokens` = prompt tokens (with
//! `input_tokens_details.cached_tokens`), `output_tokens` = completion tokens (with
//! `output_tokens_details.reasoning_tokens`), `total_tokens`.

mod mock;
mod request;
mod response;
mod stream;
#[cfg(test)]
pub(crate) mod tests;
pub mod upstream;

/// The path of the Responses API.
pub const PATH: &str = "/v1/responses";

pub use mock::mock_answer;
pub use request::{check_pivot, parse, to_openai, ResponsesRequest};
pub use response::{response_from_openai, Echo};
pub use stream::StreamToResponses;
