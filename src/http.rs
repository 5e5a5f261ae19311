//! Small HTTP vocabulary shared by the core: header access, header edits and local responses.

use crate::api::error::ApiError;
use crate::api::openai::Operation;

/// What the route-level filter decided for a forwarded request, kept by the host for the upstream role's
/// attempts: Envoy hands every retry the request headers as the previous attempt left them (rewritten
/// for its provider, internal headers removed), so they cannot carry this past the first attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub op: Operation,
    pub alias: String,
    /// The route-level filter already wrote the body for the model's only target: an attempt then needs
    /// just its path and credential, not the body again.
    pub body_ready: bool,
    /// The client's `:path` (an attempt whose provider path is the same leaves it alone).
    pub path: String,
    /// Set when the route-level filter translated the body for the model's only target (a provider with
    /// a format of its own): the attempt's path, and the client's body for an endpoint that pins another
    /// model (that attempt is prepared again from it).
    pub translated: Option<std::rc::Rc<Translated>>,
    /// Provider-steering headers the client sent that some but not every target forwards: each attempt
    /// sets or removes them for its provider ([`crate::forwarding::Forwarding::for_attempt`]).
    pub steering: Vec<crate::forwarding::Noted>,
}

/// A request body the route-level filter translated for a model's only target.
#[derive(Debug, PartialEq, Eq)]
pub struct Translated {
    /// The provider path the translation is for.
    pub path: String,
    /// The body as the client sent it.
    pub client_body: Vec<u8>,
}

/// Read access to the request or response headers the host holds.
pub trait Headers {
    fn get(&self, name: &str) -> Option<String>;
    /// Calls `f` with every header name, in the host's order (the forwarding allow-list reads them).
    fn each_name(&self, _f: &mut dyn FnMut(&str)) {}
}

/// A response the filter answers with itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        LocalResponse { status, headers: vec![("content-type", "application/json".into())], body: body.into() }
    }

    pub fn event_stream(body: impl Into<Vec<u8>>) -> Self {
        LocalResponse {
            status: 200,
            headers: vec![("content-type", "text/event-stream".into()), ("cache-control", "no-cache".into())],
            body: body.into(),
        }
    }
}

impl From<ApiError> for LocalResponse {
    fn from(e: ApiError) -> Self {
        let mut r = LocalResponse::json(e.status, e.body());
        r.headers.extend(e.headers);
        r
    }
}

/// What the host should do with the stream after a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let the stream go on.
    Continue,
    /// Hold the headers and buffer the body until it is complete.
    NeedBody,
    /// Answer locally and stop the stream.
    Respond(LocalResponse),
    /// Hold the request and make this call; the outcome goes to the pipeline's `on_callout`.
    Callout(crate::pipeline::Callout),
}

/// A callback's outcome: header edits to apply, then the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub step: Step,
    pub remove: Vec<&'static str>,
    pub set: Vec<(&'static str, String)>,
    /// Keep this for the upstream role's attempts.
    pub register: Option<RequestInfo>,
    /// Positions of request headers not forwarded, in the map as the host listed it to this callback
    /// (see [`crate::forwarding`]).
    pub drop: Vec<u32>,
    /// Provider-steering headers a provider forwards (names from the config): set (`Some`) or removed.
    pub steer: Vec<(std::rc::Rc<str>, Option<String>)>,
    /// Replace the request body with this.
    pub body: Option<Vec<u8>>,
}

impl Decision {
    pub fn new(step: Step) -> Self {
        Decision {
            step,
            remove: Vec::new(),
            set: Vec::new(),
            register: None,
            body: None,
            drop: Vec::new(),
            steer: Vec::new(),
        }
    }

    pub fn respond(r: impl Into<LocalResponse>) -> Self {
        Decision::new(Step::Respond(r.into()))
    }

    pub fn set(&self, name: &str) -> Option<&str> {
        self.set.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// Headers that carry a caller's or a provider's credential. Stripped from what the client sent.
pub const CREDENTIAL_HEADERS: &[&str] =
    &["authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization"];

/// Headers the route-level filter uses to talk to the upstream filter; never taken from clients and never
/// sent to providers.
pub const H_CLUSTER: &str = "x-switchyard-cluster";
pub const H_MODEL: &str = "x-switchyard-model";
/// Set by the route role on every forwarded request: the model's name, for a per-model Envoy route
/// (timeout, retries) to match on. Never reaches a provider.
pub const H_ROUTE: &str = "x-switchyard-route";
pub const H_KEY: &str = "x-switchyard-key-id";
pub const INTERNAL_HEADERS: &[&str] = &[H_CLUSTER, H_ROUTE, H_MODEL, H_KEY];

/// Response headers that tell the client what served the request.
pub const H_SERVED_PROVIDER: &str = "x-switchyard-provider";
pub const H_SERVED_MODEL: &str = "x-switchyard-model";

/// A header map (or any string map) as the proxy-wasm host serialises it, read in place: a little-endian
/// u32 count, then a (key length, value length) u32 pair per entry, then each key and value followed by a
/// NUL. One buffer, no allocation per entry. Malformed input reads as empty.
#[derive(Default)]
pub struct Pairs {
    buf: Vec<u8>,
    /// (key start, key end, value start, value end) per entry.
    spans: Vec<(u32, u32, u32, u32)>,
}

impl Pairs {
    pub fn parse(buf: Vec<u8>) -> Pairs {
        let spans = Self::spans(&buf).unwrap_or_default();
        Pairs { buf, spans }
    }

    fn spans(buf: &[u8]) -> Option<Vec<(u32, u32, u32, u32)>> {
        let word = |at: usize| -> Option<usize> {
            let b = buf.get(at..at + 4)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let n = word(0)?;
        // Each entry takes at least 10 bytes (two lengths and two NULs): a count past that is malformed.
        if n > buf.len() / 10 {
            return None;
        }
        let mut spans = Vec::with_capacity(n);
        let mut at = 4 + 8 * n;
        for i in 0..n {
            let (klen, vlen) = (word(4 + 8 * i)?, word(8 + 8 * i)?);
            let k = at;
            let v = k.checked_add(klen)?.checked_add(1)?;
            at = v.checked_add(vlen)?.checked_add(1)?;
            if at > buf.len() {
                return None;
            }
            spans.push((k as u32, (k + klen) as u32, v as u32, (v + vlen) as u32));
        }
        Some(spans)
    }

    fn text(&self, from: u32, to: u32) -> &str {
        self.buf.get(from as usize..to as usize).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }

    /// The name of an entry, as bytes (compared without a UTF-8 check: lookups run on every request).
    fn name_is(&self, s: &(u32, u32, u32, u32), name: &str) -> bool {
        self.buf.get(s.0 as usize..s.1 as usize) == Some(name.as_bytes())
    }

    /// The first value under `name` (exact match: Envoy keeps header names in lower case).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.spans.iter().find(|s| self.name_is(s, name)).map(|s| self.text(s.2, s.3))
    }

    /// A response map's `:status` (0 when missing or not a number).
    pub fn status(&self) -> u16 {
        self.value(":status").and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    pub fn has(&self, name: &str) -> bool {
        self.spans.iter().any(|s| self.name_is(s, name))
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Every entry as (name, value bytes), in order; values as they are (not only UTF-8). Names that are
    /// not UTF-8 come out empty (Envoy's are lower-case ASCII).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.spans.iter().map(|s| (self.text(s.0, s.1), self.buf.get(s.2 as usize..s.3 as usize).unwrap_or_default()))
    }
}

impl Headers for Pairs {
    fn get(&self, name: &str) -> Option<String> {
        self.value(name).map(str::to_string)
    }

    fn each_name(&self, f: &mut dyn FnMut(&str)) {
        for s in &self.spans {
            f(self.text(s.0, s.1));
        }
    }
}

#[cfg(test)]
pub mod testing {
    use super::Headers;

    /// A header map for tests.
    pub struct MapHeaders(pub Vec<(String, String)>);

    impl MapHeaders {
        pub fn new(pairs: &[(&str, &str)]) -> Self {
            MapHeaders(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        }
    }

    impl Headers for MapHeaders {
        fn get(&self, name: &str) -> Option<String> {
            self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
        }

        fn each_name(&self, f: &mut dyn FnMut(&str)) {
            for (k, _) in &self.0 {
                f(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pairs;

    fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn reads_the_host_serialisation_in_place() {
        let p = Pairs::parse(encode(&[(":path", "/v1/chat/completions"), ("x-empty", ""), ("a", "1"), ("a", "2")]));
        assert_eq!(p.value(":path"), Some("/v1/chat/completions"));
        assert_eq!(p.value("x-empty"), Some(""));
        assert_eq!(p.value("a"), Some("1"));
        assert!(p.has("a") && !p.has("b") && !p.is_empty());
        assert_eq!(Pairs::parse(encode(&[(":status", "503")])).status(), 503);
        assert_eq!(Pairs::parse(encode(&[(":status", "x")])).status(), 0);
        assert_eq!(p.value("missing"), None);
        assert!(Pairs::parse(encode(&[])).is_empty());
    }

    #[test]
    fn entries_keep_order_repeats_and_raw_values() {
        // A value in Latin-1 (not UTF-8) is kept byte for byte: the whole map may be written back.
        let mut buf = encode(&[("a", "1"), ("x-latin", "caf?"), ("a", "2")]);
        let at = buf.iter().rposition(|&b| b == b'?').unwrap();
        buf[at] = 0xE9;
        let p = Pairs::parse(buf);
        let got: Vec<(&str, &[u8])> = p.entries().collect();
        assert_eq!(got, vec![("a", &b"1"[..]), ("x-latin", &b"caf\xE9"[..]), ("a", &b"2"[..])]);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn malformed_input_reads_as_empty() {
        let good = encode(&[("key", "value"), ("k2", "v2")]);
        for cut in 0..good.len() {
            assert!(Pairs::parse(good[..cut].to_vec()).is_empty(), "cut at {cut}");
        }
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Pairs::parse(huge).is_empty());
        let mut long = good;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Pairs::parse(long).is_empty());
    }
}
