//! Usage: the response stage that measures the answer as the client gets it: bytes, time to first
//! byte, an opt-in sample for the log, and the token usage read out of the response (OpenAI or Anthropic
//! format, JSON or SSE) as it passes, without holding the stream back. It drops the OpenAI usage-only
//! chunk the gateway asked the provider for when the client did not ask for it.

use super::{cut, BodyNeeds, Chunk, Ctx, Exchange, ResponseHead, Stage};
use crate::api::openai::Operation;
use crate::providers::anthropic::RawUsage as AnthropicUsage;
use crate::providers::{BodyMode, Usage};
use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAiJson,
    OpenAiSse,
    AnthropicJson,
    AnthropicSse,
    /// An OpenAI Responses object (`usage` at its top level).
    ResponsesJson,
    /// A Responses event stream: the usage is in the final `response.completed` / `response.incomplete`
    /// / `response.failed` event's `response`.
    ResponsesSse,
}

/// Bytes of a JSON body's tail kept to find its `usage` object (it comes last, or nearly).
const JSON_TAIL: usize = 32 * 1024;
/// Longest SSE event kept while waiting for its end.
const MAX_EVENT: usize = 4 * 1024 * 1024;

pub struct Sniffer {
    format: Format,
    strip_usage_chunk: bool,
    /// Drop OpenAI chunks whose `choices` is empty and that carry no usage (Azure's first chunk).
    drop_choiceless: bool,
    /// SSE: bytes of an event not yet complete. JSON: the tail of the body.
    pending: Vec<u8>,
    usage: Option<Usage>,
    /// Anthropic streams report usage in pieces (`message_start`, then `message_delta`).
    anthropic: AnthropicUsage,
}

// Typed views of just the usage parts: serde skips everything else without building a document.

#[derive(Deserialize, Default, Clone, Copy)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<OpenAiDetails>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct OpenAiDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl OpenAiUsage {
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.unwrap_or(0),
            completion_tokens: self.completion_tokens.unwrap_or(0),
            cached_tokens: self.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
        }
    }
}

/// An OpenAI response or chunk: its usage, and whether it has choices (a usage-only chunk has none).
#[derive(Deserialize)]
struct OpenAiBody {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
}

/// An Anthropic message (JSON answer) or stream event (`message_start` has `message.usage`,
/// `message_delta` has `usage`).
#[derive(Deserialize)]
struct AnthropicBody {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(default)]
    message: Option<AnthropicMessage>,
}

/// The Responses API's usage: `input_tokens` (cached ones included), `output_tokens`.
#[derive(Deserialize, Default, Clone, Copy)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<OpenAiDetails>,
}

impl ResponsesUsage {
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0),
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: self.input_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
        }
    }
}

/// A Responses object, or a stream event that carries one (`response`).
#[derive(Deserialize)]
struct ResponsesBody {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
    #[serde(default)]
    response: Option<ResponsesObject>,
}

#[derive(Deserialize)]
struct ResponsesObject {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
}

#[derive(Deserialize)]
struct AnthropicMessage {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// The index of the first `needle` (at least two bytes) in `hay`. Every SSE event of a stream is searched
/// twice, so this is on the hot path: it scans for the needle's second byte (a letter, rarer in JSON than
/// the quote that opens every key) with a plain byte loop and compares only there, where a `windows()`
/// search compares a whole slice at every position.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let (&second, tail) = rest.split_first()?;
    let mut i = 1;
    while i < hay.len() {
        let off = hay.get(i..).and_then(|h| h.iter().position(|&b| b == second))?;
        let at = i + off;
        if hay.get(at - 1) == Some(&first) && hay.get(at + 1..at + 1 + tail.len()) == Some(tail) {
            return Some(at - 1);
        }
        i = at + 1;
    }
    None
}

/// Whether the bytes hold `"usage"` followed by an object (not `"usage":null`, which OpenAI puts in
/// every chunk of a stream that asked for usage): only those are worth parsing.
fn has_usage_object(b: &[u8]) -> bool {
    let needle = b"\"usage\"";
    let mut from = 0;
    while let Some(pos) = b.get(from..).and_then(|rest| find(rest, needle)) {
        let after = from + pos + needle.len();
        let mut rest = b.get(after..).unwrap_or_default().iter().skip_while(|c| c.is_ascii_whitespace());
        if rest.next() == Some(&b':') && rest.find(|c| !c.is_ascii_whitespace()) == Some(&b'{') {
            return true;
        }
        from = after;
    }
    false
}

/// Whether the bytes hold `"choices"` followed by an empty array.
fn has_empty_choices(b: &[u8]) -> bool {
    let needle = b"\"choices\"";
    let mut from = 0;
    while let Some(pos) = b.get(from..).and_then(|rest| find(rest, needle)) {
        let after = from + pos + needle.len();
        let mut rest = b.get(after..).unwrap_or_default().iter().filter(|c| !c.is_ascii_whitespace());
        if rest.next() == Some(&b':') && rest.next() == Some(&b'[') && rest.next() == Some(&b']') {
            return true;
        }
        from = after;
    }
    false
}

/// Finds the end of the first complete SSE event in `b` (the index after its blank line).
fn event_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < b.len() {
        if b.get(i) == Some(&b'\n') {
            match b.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if b.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The joined `data:` payload of one raw event.
fn event_data(raw: &[u8]) -> (Option<&str>, String) {
    let text = std::str::from_utf8(raw).unwrap_or("");
    let mut name = None;
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        } else if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim());
        }
    }
    (name, data)
}

impl Sniffer {
    pub fn new(format: Format, strip_usage_chunk: bool) -> Self {
        Sniffer {
            format,
            strip_usage_chunk,
            drop_choiceless: false,
            pending: Vec::new(),
            usage: None,
            anthropic: AnthropicUsage::default(),
        }
    }

    /// Also drops the chunks without choices and without usage (OpenAI-format streams to chat clients).
    pub fn dropping_choiceless(mut self) -> Self {
        if self.format == Format::OpenAiSse {
            self.drop_choiceless = true;
        }
        self
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Looks at a piece of the response; returns the bytes to send instead when they must change.
    pub fn on_chunk(&mut self, bytes: &[u8], end: bool) -> Option<Vec<u8>> {
        match self.format {
            Format::OpenAiJson | Format::AnthropicJson | Format::ResponsesJson => {
                self.pending.extend_from_slice(bytes);
                if self.pending.len() > JSON_TAIL * 2 {
                    let cut = self.pending.len() - JSON_TAIL;
                    self.pending.drain(..cut);
                }
                if end {
                    self.read_json_tail();
                }
                None
            }
            Format::OpenAiSse | Format::AnthropicSse | Format::ResponsesSse => self.on_sse(bytes, end),
        }
    }

    fn read_json_tail(&mut self) {
        let tail = std::mem::take(&mut self.pending);
        // Whole bodies parse directly (typed: no document is built); a cut tail is searched for its last
        // "usage" object.
        let whole = match self.format {
            Format::AnthropicJson => {
                serde_json::from_slice::<AnthropicBody>(&tail).ok().map(|b| b.usage.map(|u| u.usage()))
            }
            Format::ResponsesJson => {
                serde_json::from_slice::<ResponsesBody>(&tail).ok().map(|b| b.usage.map(|u| u.usage()))
            }
            _ => serde_json::from_slice::<OpenAiBody>(&tail).ok().map(|b| b.usage.map(|u| u.usage())),
        };
        if let Some(found) = whole {
            self.usage = found;
            return;
        }
        let needle = b"\"usage\"";
        let Some(pos) = tail.windows(needle.len()).rposition(|w| w == needle) else { return };
        let Some(rest) = tail.get(pos + needle.len()..) else { return };
        let Some(brace) = rest.iter().position(|b| *b == b'{') else { return };
        let Some(obj) = rest.get(brace..) else { return };
        self.usage = match self.format {
            Format::AnthropicJson => serde_json::Deserializer::from_slice(obj)
                .into_iter::<AnthropicUsage>()
                .next()
                .and_then(Result::ok)
                .map(|u| u.usage()),
            Format::ResponsesJson => serde_json::Deserializer::from_slice(obj)
                .into_iter::<ResponsesUsage>()
                .next()
                .and_then(Result::ok)
                .map(|u| u.usage()),
            _ => serde_json::Deserializer::from_slice(obj)
                .into_iter::<OpenAiUsage>()
                .next()
                .and_then(Result::ok)
                .map(|u| u.usage()),
        };
    }

    fn on_sse(&mut self, bytes: &[u8], end: bool) -> Option<Vec<u8>> {
        let rewrite = self.strip_usage_chunk || self.drop_choiceless;
        // Fast path: when nothing may change and the chunk cannot hold usage, only keep the event tail.
        let mut out = if rewrite { Some(Vec::with_capacity(bytes.len())) } else { None };
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(len) = buf.get(start..).and_then(event_end) {
            let Some(raw) = buf.get(start..start + len) else { break };
            let keep = self.inspect(raw);
            if let Some(o) = out.as_mut() {
                if keep {
                    o.extend_from_slice(raw);
                }
            }
            start += len;
        }
        buf.drain(..start);
        self.pending = buf;
        if end && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let keep = self.inspect(&rest);
            if let Some(o) = out.as_mut() {
                if keep {
                    o.extend_from_slice(&rest);
                }
            }
        }
        if self.pending.len() > MAX_EVENT {
            // A runaway event: stop holding it (pass it on unread).
            let rest = std::mem::take(&mut self.pending);
            if let Some(o) = out.as_mut() {
                o.extend_from_slice(&rest);
            }
        }
        out
    }

    /// Reads usage from one raw event; returns whether it is kept.
    fn inspect(&mut self, raw: &[u8]) -> bool {
        let choiceless = self.drop_choiceless && has_empty_choices(raw);
        if !choiceless && !has_usage_object(raw) {
            return true;
        }
        let (_, data) = event_data(raw);
        match self.format {
            Format::AnthropicSse => {
                let Ok(ev) = serde_json::from_str::<AnthropicBody>(&data) else { return true };
                for u in [ev.message.and_then(|m| m.usage), ev.usage].into_iter().flatten() {
                    self.anthropic.merge(&u);
                }
                self.usage = Some(self.anthropic.usage());
                true
            }
            Format::ResponsesSse => {
                let Ok(ev) = serde_json::from_str::<ResponsesBody>(&data) else { return true };
                if let Some(u) = ev.response.and_then(|r| r.usage) {
                    self.usage = Some(u.usage());
                }
                true
            }
            _ => {
                let Ok(chunk) = serde_json::from_str::<OpenAiBody>(&data) else { return true };
                let no_choices = chunk.choices.as_ref().is_some_and(Vec::is_empty);
                let Some(u) = chunk.usage else { return !(self.drop_choiceless && no_choices) };
                self.usage = Some(u.usage());
                !(self.strip_usage_chunk && no_choices)
            }
        }
    }
}

/// The usage stage: a [`Sniffer`] over the client's answer, and the body sample for the log.
#[derive(Default)]
pub struct UsageStage {
    sniffer: Option<Sniffer>,
    /// The sniffer may drop chunks (the response's `content-length` goes).
    rewrites: bool,
    /// Opt-in body logging: the start of the response, kept up to the configured size.
    sample: Vec<u8>,
}

impl Stage for UsageStage {
    fn name(&self) -> &'static str {
        "usage"
    }

    fn on_response_headers(&mut self, x: &mut Exchange, head: &mut ResponseHead) {
        let Some(ask) = x.ask.as_ref().filter(|_| x.forwarded) else { return };
        let sse = head.content_type.is_some_and(|c| c.starts_with("text/event-stream"));
        let json = head.content_type.is_some_and(|c| c.starts_with("application/json"));
        if (200..300).contains(&head.status) && (sse || json) {
            let format = match (x.op, sse) {
                (Some(Operation::Messages), true) => Format::AnthropicSse,
                (Some(Operation::Messages), false) => Format::AnthropicJson,
                (Some(Operation::Responses), true) => Format::ResponsesSse,
                (Some(Operation::Responses), false) => Format::ResponsesJson,
                (_, true) => Format::OpenAiSse,
                (_, false) => Format::OpenAiJson,
            };
            // The upstream role asks every streaming provider for usage; drop it where the client did not.
            let strip = format == Format::OpenAiSse && ask.stream && !ask.client_wants_usage;
            // A chat client's stream never shows a chunk without choices but the usage it asked for.
            let choiceless = sse
                && x.op == Some(Operation::ChatCompletions)
                && x.cfg.models.get(&ask.alias).is_some_and(|m| {
                    m.targets
                        .iter()
                        .any(|t| x.cfg.provider(t.provider).is_some_and(|p| p.kind.sends_choiceless_chunks()))
                });
            let sniffer = Sniffer::new(format, strip);
            self.sniffer = Some(if choiceless { sniffer.dropping_choiceless() } else { sniffer });
            self.rewrites = strip || choiceless;
        }
    }

    fn on_response_body(&mut self, x: &mut Exchange, chunk: &mut Chunk) {
        // A whole answer whose translator read the usage needs no second read of it.
        if x.translator_mode == Some(BodyMode::Buffer) && x.translator.as_ref().is_some_and(|t| t.usage().is_some()) {
            self.sniffer = None;
        }
        x.count(chunk.bytes.len(), chunk.now_ns);
        if let Some(max) = x.cfg.log_bodies_max_bytes {
            let room = max.saturating_sub(self.sample.len());
            self.sample.extend_from_slice(chunk.bytes.get(..room.min(chunk.bytes.len())).unwrap_or_default());
        }
        if let Some(out) = self.sniffer.as_mut().and_then(|s| s.on_chunk(&chunk.bytes, chunk.end)) {
            chunk.bytes = out;
            chunk.changed = true;
        }
    }

    fn on_response_end(&mut self, x: &mut Exchange, _ctx: &Ctx) {
        x.reported =
            x.translator.as_ref().and_then(|t| t.usage()).or_else(|| self.sniffer.as_ref().and_then(Sniffer::usage));
    }

    fn on_done(&mut self, x: &mut Exchange, _ctx: &Ctx) {
        if let Some(max) = x.cfg.log_bodies_max_bytes.filter(|_| x.forwarded) {
            log::info!("response body (status {}): {}", x.status, cut(&self.sample, max));
        }
    }

    fn body_needs(&self, x: &Exchange) -> BodyNeeds {
        BodyNeeds {
            watch: self.sniffer.is_some() || x.cfg.log_bodies_max_bytes.is_some(),
            rewrite: self.rewrites && self.sniffer.is_some(),
            buffer: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n\
data: [DONE]\n\n";

    fn run(s: &mut Sniffer, input: &[u8], cut: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (piece, end) in [(&input[..cut], false), (&input[cut..], true)] {
            match s.on_chunk(piece, end) {
                Some(b) => out.extend(b),
                None => out.extend_from_slice(piece),
            }
        }
        out
    }

    /// Azure's stream: a first chunk with no choices (prompt filter results), a content-filter chunk with a
    /// choice, then the answer and the usage chunk.
    const AZURE: &str = "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"content_filter_results\":{}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\" : [ ],\"note\":\"an extra of some server\"}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn chunks_without_choices_are_dropped_at_any_split_but_the_usage_asked_for() {
        let events: Vec<&str> = AZURE.split_inclusive("\n\n").collect();
        let want = Usage { prompt_tokens: 7, completion_tokens: 3, cached_tokens: 0 };
        for cut in 0..=AZURE.len() {
            // The client asked for usage: only the choiceless chunks without usage go.
            let mut s = Sniffer::new(Format::OpenAiSse, false).dropping_choiceless();
            let out = String::from_utf8(run(&mut s, AZURE.as_bytes(), cut)).unwrap();
            assert_eq!(out, [events[1], events[3], events[4]].concat(), "cut {cut}");
            assert_eq!(s.usage(), Some(want));
            // It did not: the usage chunk goes too.
            let mut s = Sniffer::new(Format::OpenAiSse, true).dropping_choiceless();
            let out = String::from_utf8(run(&mut s, AZURE.as_bytes(), cut)).unwrap();
            assert_eq!(out, [events[1], events[4]].concat(), "cut {cut}");
            assert_eq!(s.usage(), Some(want));
        }
        // Without the option (OpenAI itself), nothing is dropped.
        let mut s = Sniffer::new(Format::OpenAiSse, false);
        assert_eq!(run(&mut s, AZURE.as_bytes(), 10), AZURE.as_bytes());
        assert!(has_empty_choices(br#"{"choices" :[ ]}"#) && !has_empty_choices(br#"{"choices":[{}]}"#));
    }

    #[test]
    fn openai_stream_usage_kept_or_stripped_at_any_split() {
        let want = Usage { prompt_tokens: 7, completion_tokens: 3, cached_tokens: 2 };
        for cut in 0..=STREAM.len() {
            let mut keep = Sniffer::new(Format::OpenAiSse, false);
            assert_eq!(run(&mut keep, STREAM.as_bytes(), cut), STREAM.as_bytes());
            assert_eq!(keep.usage(), Some(want), "cut {cut}");
            let mut strip = Sniffer::new(Format::OpenAiSse, true);
            let out = String::from_utf8(run(&mut strip, STREAM.as_bytes(), cut)).unwrap();
            assert_eq!(strip.usage(), Some(want), "cut {cut}");
            assert!(
                !out.contains("prompt_tokens") && out.ends_with("data: [DONE]\n\n") && out.contains("finish_reason"),
                "{out}"
            );
        }
    }

    #[test]
    fn json_usage_whole_and_from_a_long_tail() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let mut s = Sniffer::new(Format::OpenAiJson, false);
        assert!(s.on_chunk(body, true).is_none());
        assert_eq!(s.usage().map(|u| (u.prompt_tokens, u.completion_tokens)), Some((5, 2)));
        let big = format!(
            r#"{{"choices":[{{"message":{{"content":"{}"}}}}],"usage":{{"prompt_tokens":9,"completion_tokens":4}},"system_fingerprint":"fp"}}"#,
            "z".repeat(200_000)
        );
        let mut s = Sniffer::new(Format::OpenAiJson, false);
        for piece in big.as_bytes().chunks(7000) {
            s.on_chunk(piece, false);
        }
        s.on_chunk(b"", true);
        assert_eq!(s.usage().map(|u| (u.prompt_tokens, u.completion_tokens)), Some((9, 4)));
    }

    #[test]
    fn anthropic_stream_and_json() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"usage\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        for cut in 0..=stream.len() {
            let mut s = Sniffer::new(Format::AnthropicSse, false);
            assert_eq!(run(&mut s, stream.as_bytes(), cut), stream.as_bytes());
            assert_eq!(
                s.usage(),
                Some(Usage { prompt_tokens: 25, completion_tokens: 9, cached_tokens: 5 }),
                "cut {cut}"
            );
        }
        let mut s = Sniffer::new(Format::AnthropicJson, false);
        s.on_chunk(br#"{"type":"message","usage":{"input_tokens":3,"output_tokens":4}}"#, true);
        assert_eq!(s.usage(), Some(Usage { prompt_tokens: 3, completion_tokens: 4, cached_tokens: 0 }));
    }

    #[test]
    fn responses_stream_and_json() {
        // The usage is in the final event's `response` (earlier events carry `"usage":null`); the whole
        // stream passes unchanged.
        let stream = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"\\\"usage\\\": {\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"output\":[],\"usage\":{\"input_tokens\":30,\"input_tokens_details\":{\"cached_tokens\":8},\"output_tokens\":12,\"output_tokens_details\":{\"reasoning_tokens\":4},\"total_tokens\":42}}}\n\n";
        let want = Usage { prompt_tokens: 30, completion_tokens: 12, cached_tokens: 8 };
        for cut in 0..=stream.len() {
            let mut s = Sniffer::new(Format::ResponsesSse, false);
            assert_eq!(run(&mut s, stream.as_bytes(), cut), stream.as_bytes());
            assert_eq!(s.usage(), Some(want), "cut {cut}");
        }
        let body = br#"{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":0},"output_tokens":2,"total_tokens":7}}"#;
        let mut s = Sniffer::new(Format::ResponsesJson, false);
        assert!(s.on_chunk(body, true).is_none());
        assert_eq!(s.usage(), Some(Usage { prompt_tokens: 5, completion_tokens: 2, cached_tokens: 0 }));
        // A long answer: found in the kept tail.
        let big = format!(
            r#"{{"output":[{{"type":"message","content":[{{"type":"output_text","text":"{}"}}]}}],"usage":{{"input_tokens":9,"output_tokens":4,"input_tokens_details":{{"cached_tokens":3}}}},"user":null}}"#,
            "z".repeat(200_000)
        );
        let mut s = Sniffer::new(Format::ResponsesJson, false);
        for piece in big.as_bytes().chunks(7000) {
            s.on_chunk(piece, false);
        }
        s.on_chunk(b"", true);
        assert_eq!(s.usage(), Some(Usage { prompt_tokens: 9, completion_tokens: 4, cached_tokens: 3 }));
    }

    #[test]
    fn find_is_a_substring_search() {
        let hay = br#"{"u":"usage","usage" :{"usage"}}"#;
        for start in 0..hay.len() {
            let h = &hay[start..];
            for needle in [&b"\"usage\""[..], b"\"u\"", b"ge\"", b"}}", b"\"x\"", b"us"] {
                let want = h.windows(needle.len()).position(|w| w == needle);
                assert_eq!(find(h, needle), want, "{:?} in {:?}", needle, std::str::from_utf8(h));
            }
        }
        assert_eq!(find(b"", b"ab"), None);
        assert_eq!(find(b"a", b"ab"), None);
    }

    #[test]
    fn only_usage_objects_are_parsed() {
        assert!(has_usage_object(br#"{"usage":{"a":1}}"#));
        assert!(has_usage_object(br#"{"usage" : {"a":1}}"#));
        assert!(has_usage_object(br#"{"usage":null,"x":{"usage":{}}}"#));
        assert!(!has_usage_object(br#"{"usage":null}"#));
        assert!(!has_usage_object(br#"{"text":"\"usage\""}"#));
    }

    #[test]
    fn garbage_is_harmless() {
        let mut s = Sniffer::new(Format::OpenAiSse, true);
        let junk = b"data: {\"usage\": [1,2\n\n\xff\xfe\n\ndata: \"usage\"\n\n";
        let out = s.on_chunk(junk, true).unwrap();
        assert_eq!(out, junk.to_vec());
        assert_eq!(s.usage(), None);
    }
}
