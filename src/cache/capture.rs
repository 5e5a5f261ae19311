//! Capture: the response body as the client gets it, in any client format, read into the stored form
//! (the normalized chat completion of [`super::answer`]) when the answer was complete and successful.

use super::answer::Answer;
use super::streams::{anthropic_finish, from_responses, AnthropicStream, ChatStream, ResponsesStream};
use crate::api::Operation;
use crate::config::{Provider, ProviderKind};
use crate::providers::{anthropic, Attempt, ResponseTranslator};
use serde::Deserialize;

/// The format of a response body the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A `chat.completion` (`POST /v1/chat/completions`, not streamed).
    ChatJson,
    /// `chat.completion.chunk` events ending with `data: [DONE]`.
    ChatSse,
    /// An Anthropic `message` (`POST /v1/messages`).
    AnthropicJson,
    /// Anthropic's typed events, ending with `message_stop`.
    AnthropicSse,
    /// A Responses `response` object (`POST /v1/responses`).
    ResponsesJson,
    /// Responses events, ending with `response.completed`.
    ResponsesSse,
}

impl Format {
    /// The format of an operation's answer, plain or streamed (`None`: not cached).
    pub fn of(op: Operation, stream: bool) -> Option<Format> {
        Some(match (op, stream) {
            (Operation::ChatCompletions, false) => Format::ChatJson,
            (Operation::ChatCompletions, true) => Format::ChatSse,
            (Operation::Messages, false) => Format::AnthropicJson,
            (Operation::Messages, true) => Format::AnthropicSse,
            (Operation::Responses, false) => Format::ResponsesJson,
            (Operation::Responses, true) => Format::ResponsesSse,
            _ => return None,
        })
    }
}

enum State {
    /// A plain answer, kept whole until the end.
    Whole(Format, Vec<u8>),
    Chat(Box<ChatStream>),
    Anthropic(Box<AnthropicStream>),
    Responses(Box<ResponsesStream>),
    /// More than `max_bytes` came: nothing is kept and nothing will be stored.
    TooLarge,
}

/// Reads one response body, pushed in order and split anywhere, into the stored form. Bounded: once more
/// than `max_bytes` came, nothing more is kept (memory stays within about `max_bytes` plus a small
/// constant) and [`Capture::finish`] gives `None`.
pub struct Capture {
    max_bytes: usize,
    seen: usize,
    state: State,
}

impl Capture {
    pub fn new(format: Format, max_bytes: usize) -> Capture {
        let state = match format {
            Format::ChatJson | Format::AnthropicJson | Format::ResponsesJson => Whole(format, Vec::new()),
            Format::ChatSse => State::Chat(Box::default()),
            Format::AnthropicSse => State::Anthropic(Box::default()),
            Format::ResponsesSse => State::Responses(Box::default()),
        };
        Capture { max_bytes, seen: 0, state }
    }

    /// The next bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        self.seen = self.seen.saturating_add(bytes.len());
        if self.seen > self.max_bytes {
            self.state = State::TooLarge;
            return;
        }
        match &mut self.state {
            Whole(_, body) => body.extend_from_slice(bytes),
            State::Chat(s) => s.push(bytes),
            State::Anthropic(s) => s.push(bytes),
            State::Responses(s) => s.push(bytes),
            State::TooLarge => {}
        }
    }

    /// More than `max_bytes` came: [`Capture::finish`] will give `None` (the caller may drop it now).
    pub fn too_large(&self) -> bool {
        matches!(self.state, State::TooLarge)
    }

    /// The stored form (a normalized chat completion JSON) when the answer was complete and successful.
    pub fn finish(self) -> Option<Vec<u8>> {
        let answer = match self.state {
            Whole(Format::ChatJson, body) => Answer::from_chat_bytes(&body),
            Whole(Format::AnthropicJson, body) => anthropic_answer(&body),
            Whole(_, body) => from_responses(&serde_json::from_slice(&body).ok()?),
            State::Chat(s) => s.finish(),
            State::Anthropic(s) => s.finish(),
            State::Responses(s) => s.finish(),
            State::TooLarge => None,
        }?;
        Some(answer.stored())
    }
}

use State::Whole;

#[derive(Deserialize)]
struct MessageCheck {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    content: Vec<BlockType>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
struct BlockType {
    #[serde(rename = "type")]
    kind: String,
}

/// An Anthropic `message` → the answer, through the anthropic provider's own answer translation, when it
/// is a message that stopped with a reason [`anthropic_finish`] accepts and holds only text and
/// `tool_use` blocks (thinking and server tool blocks have no place in the stored form).
fn anthropic_answer(body: &[u8]) -> Option<Answer> {
    let m: MessageCheck = serde_json::from_slice(body).ok()?;
    if m.kind.as_deref() != Some("message") || anthropic_finish(m.stop_reason.as_deref()).is_none() {
        return None;
    }
    if !m.content.iter().all(|b| b.kind == "text" || b.kind == "tool_use") {
        return None;
    }
    let provider = Provider {
        name: "anthropic".to_string(),
        kind: ProviderKind::Anthropic { version: String::new(), default_max_tokens: 0 },
        cluster: String::new(),
        credential: None,
    };
    let attempt = Attempt {
        op: Operation::ChatCompletions,
        provider: &provider,
        model: "",
        alias: "",
        now_unix: 0,
        now_ns: 0,
        usage_chunk: true,
        chat: None,
    };
    let mut t = anthropic::Translator::new(&attempt, false, true);
    t.on_headers(200, Some("application/json"));
    let chat = t.on_body(body);
    if t.body_status().is_some() {
        return None;
    }
    let mut answer = Answer::from_chat_bytes(&chat)?;
    // The translator names its own model; the message names the one that answered.
    answer.model = m.model.unwrap_or_default();
    Some(answer)
}
