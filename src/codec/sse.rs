//! Server-sent events: an incremental decoder that takes bytes split anywhere (inside a line, inside a
//! CRLF, inside a UTF-8 sequence) and yields whole events, and a writer.

use super::bytes::find_either;

/// One decoded event. `data` lines are joined with `\n`, as the SSE spec says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// The previous byte was a CR (so an LF right after it ends nothing new).
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

/// Longest line kept while waiting for its end; a longer one is dropped (a hostile or broken upstream
/// must not grow memory without bound).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

impl Decoder {
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Feeds bytes; calls `on_event` for each event they complete.
    pub fn push(&mut self, bytes: &[u8], on_event: &mut dyn FnMut(Event)) {
        let mut start = 0;
        // An LF right after a CR that ended a line (in the previous piece) ends nothing new.
        if std::mem::take(&mut self.after_cr) && bytes.first() == Some(&b'\n') {
            start = 1;
        }
        while let Some(i) = bytes.get(start..).and_then(|rest| find_either(rest, b'\n', b'\r')).map(|at| start + at) {
            let part = bytes.get(start..i).unwrap_or_default();
            if self.line.is_empty() {
                // The whole line is in this piece: read in place.
                self.line_done(part, on_event);
            } else {
                self.extend_line(part);
                let mut line = std::mem::take(&mut self.line);
                self.line_done(&line, on_event);
                line.clear();
                self.line = line;
            }
            start = i + 1;
            if bytes.get(i) == Some(&b'\r') {
                match bytes.get(start) {
                    Some(b'\n') => start += 1,
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
        if let Some(rest) = bytes.get(start..) {
            self.extend_line(rest);
        }
    }

    /// Feeds bytes and returns the events they complete; with `end`, also the last unterminated one.
    pub fn events(&mut self, bytes: &[u8], end: bool) -> Vec<Event> {
        let mut events = Vec::new();
        self.push(bytes, &mut |e| events.push(e));
        if end {
            self.finish(&mut |e| events.push(e));
        }
        events
    }

    /// Ends the stream: an event not yet terminated by a blank line is dispatched (many upstreams end
    /// their last event with a single newline).
    pub fn finish(&mut self, on_event: &mut dyn FnMut(Event)) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, on_event);
        }
        self.dispatch(on_event);
    }

    fn extend_line(&mut self, part: &[u8]) {
        if self.line.len() + part.len() <= MAX_LINE {
            self.line.extend_from_slice(part);
        }
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(Event)) {
        let event = self.event.take();
        if let Some(data) = self.data.take() {
            on_event(Event { event, data });
        }
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut dyn FnMut(Event)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = text.get(i + 1..).unwrap_or("");
                (text.get(..i).unwrap_or(""), v.strip_prefix(' ').unwrap_or(v))
            }
            None => (text.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }
}

/// Appends one event (`event:` line only when named) to `out`.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Decodes a whole byte string at once (tests and fixtures).
pub fn decode_all(bytes: &[u8]) -> Vec<Event> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    d.push(bytes, &mut |e| out.push(e));
    d.finish(&mut |e| out.push(e));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_everywhere(input: &[u8]) {
        let whole = decode_all(input);
        for cut in 0..=input.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            d.push(&input[..cut], &mut |e| got.push(e));
            d.push(&input[cut..], &mut |e| got.push(e));
            d.finish(&mut |e| got.push(e));
            assert_eq!(got, whole, "split at {cut}");
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in input {
            d.push(std::slice::from_ref(b), &mut |e| got.push(e));
        }
        d.finish(&mut |e| got.push(e));
        assert_eq!(got, whole, "byte by byte");
    }

    #[test]
    fn decodes_events_split_anywhere() {
        let input = "event: message_start\ndata: {\"a\":1}\n\n: comment\r\ndata: x\r\ndata: y\r\n\r\ndata: é\rdata:no-space\r\r".as_bytes();
        let ev = decode_all(input);
        assert_eq!(
            ev,
            vec![
                Event { event: Some("message_start".into()), data: "{\"a\":1}".into() },
                Event { event: None, data: "x\ny".into() },
                Event { event: None, data: "é\nno-space".into() },
            ]
        );
        split_everywhere(input);
    }

    #[test]
    fn last_event_without_blank_line() {
        assert_eq!(decode_all(b"data: [DONE]\n"), vec![Event { event: None, data: "[DONE]".into() }]);
        assert_eq!(decode_all(b"data: [DONE]"), vec![Event { event: None, data: "[DONE]".into() }]);
    }

    #[test]
    fn writer_round_trips() {
        let mut out = Vec::new();
        write_event(&mut out, Some("ping"), "{}");
        write_event(&mut out, None, "a\nb");
        assert_eq!(out, b"event: ping\ndata: {}\n\ndata: a\ndata: b\n\n");
        assert_eq!(decode_all(&out)[1].data, "a\nb");
    }
}
