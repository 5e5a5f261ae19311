//! Test-only fixture runner for the `tests/fixtures/<folder>/<case>/` layout: one folder per case holding
//! the files a test reads (`client_request.json`, `provider_response.json`, `client_stream.txt`, …).
//! [`run`] calls a closure on every case in name order; [`Case`] reads its files; [`assert_json`] and
//! [`assert_stream`] compare with a readable diff; [`replay`] and [`replay_translator`] check that a
//! stream translates the same whole, split in two at every byte, and byte by byte.

use super::{BodyMode, ResponseTranslator, Usage};
use crate::codec::sse;
use serde_json::Value;
use std::fmt::Write;
use std::path::PathBuf;

/// One case folder.
pub(crate) struct Case {
    /// The folder's name, for messages.
    pub(crate) name: String,
    dir: PathBuf,
}

impl Case {
    /// A file's bytes, if the case has it.
    pub(crate) fn read(&self, file: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(file)).ok()
    }

    /// A file's bytes; a case without it fails.
    pub(crate) fn bytes(&self, file: &str) -> Vec<u8> {
        self.read(file).unwrap_or_else(|| panic!("{}: missing {file}", self.name))
    }

    /// A text file, trimmed; a case without it fails.
    pub(crate) fn text(&self, file: &str) -> String {
        let bytes = self.bytes(file);
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}/{file}: {e}", self.name)).trim().to_string()
    }

    /// A number in a text file, if the case has the file (which must then hold a number).
    pub(crate) fn number<T: std::str::FromStr>(&self, file: &str) -> Option<T> {
        self.read(file)?;
        let text = self.text(file);
        Some(text.parse().unwrap_or_else(|_| panic!("{}/{file}: not a number: {text}", self.name)))
    }

    /// A JSON file; a case without it, or with something else in it, fails.
    pub(crate) fn json(&self, file: &str) -> Value {
        parse_json(&self.bytes(file), &format!("{}/{file}", self.name))
    }
}

/// The cases of `tests/fixtures/<folder>/`, in name order.
pub(crate) fn cases(folder: &str) -> Vec<Case> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(folder);
    let entries = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| Case { name: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), dir })
        .collect()
}

/// Runs `check` on every case of `tests/fixtures/<folder>/`, in name order, after making sure there are
/// at least `min_cases`. Returns how many cases ran.
pub(crate) fn run(folder: &str, min_cases: usize, mut check: impl FnMut(&Case)) -> usize {
    let cases = cases(folder);
    assert!(cases.len() >= min_cases, "{folder}: {} fixture cases, expected at least {min_cases}", cases.len());
    for case in &cases {
        check(case);
    }
    cases.len()
}

/// Bytes that must be JSON, parsed; `what` names them when they are not.
pub(crate) fn parse_json(bytes: &[u8], what: &str) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(bytes)))
}

/// Drops the top-level `created` (time-dependent) of a response or chunk.
pub(crate) fn without_created(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("created");
    }
    v
}

/// Where two JSON values differ, as `pointer: got … want …` lines (at most `limit` of them).
fn json_diff(got: &Value, want: &Value, at: &str, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit || got == want {
        return;
    }
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let mut keys: Vec<&String> = g.keys().chain(w.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let at = format!("{at}/{k}");
                match (g.get(k), w.get(k)) {
                    (Some(gv), Some(wv)) => json_diff(gv, wv, &at, out, limit),
                    (Some(gv), None) => out.push(format!("{at}: got {gv}, not expected")),
                    (None, Some(wv)) => out.push(format!("{at}: missing, want {wv}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                json_diff(gv, wv, &format!("{at}/{i}"), out, limit);
            }
        }
        _ => {
            let at = if at.is_empty() { "(root)" } else { at };
            out.push(format!("{at}: got {got}, want {want}"));
        }
    }
}

/// Asserts two JSON values are equal; on failure lists where they differ (JSON pointers), then both.
pub(crate) fn assert_json(got: &Value, want: &Value, what: &str) {
    if got == want {
        return;
    }
    let mut diffs = Vec::new();
    json_diff(got, want, "", &mut diffs, 20);
    panic!("{what}: JSON differs\n  {}\n got: {got}\nwant: {want}", diffs.join("\n  "));
}

/// SSE events as (event name, data): the data JSON, through `normalise`, or the literal text (`[DONE]`)
/// when it is not JSON.
pub(crate) fn sse_values(bytes: &[u8], normalise: &dyn Fn(Value) -> Value) -> Vec<(Option<String>, Value)> {
    sse::decode_all(bytes)
        .into_iter()
        .map(|e| {
            let data = match serde_json::from_str::<Value>(&e.data) {
                Ok(v) => normalise(v),
                Err(_) => Value::String(e.data),
            };
            (e.event, data)
        })
        .collect()
}

/// Asserts two SSE streams hold the same events (names and data, as [`sse_values`] reads them); on
/// failure names the first differing event and where it differs, then shows the stream got.
pub(crate) fn assert_stream(got: &[u8], want: &[u8], normalise: &dyn Fn(Value) -> Value, what: &str) {
    let (g, w) = (sse_values(got, normalise), sse_values(want, normalise));
    if g == w {
        return;
    }
    let mut report = format!("{what}: streams differ ({} events, want {})\n", g.len(), w.len());
    if let Some(i) = g.iter().zip(&w).position(|(a, b)| a != b) {
        let ((ge, gv), (we, wv)) = (&g[i], &w[i]);
        let _ = writeln!(report, "first difference at event {i}:");
        if ge != we {
            let _ = writeln!(report, "  event name: got {ge:?}, want {we:?}");
        }
        let mut diffs = Vec::new();
        json_diff(gv, wv, "", &mut diffs, 20);
        for d in diffs {
            let _ = writeln!(report, "  {d}");
        }
    }
    let _ = write!(report, "got stream:\n{}", String::from_utf8_lossy(got));
    panic!("{report}");
}

/// Asserts two outputs are the same bytes; on failure shows both as text.
pub(crate) fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        panic!(
            "{what}: output differs\n got: {}\nwant: {}",
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(want)
        );
    }
}

/// Feeds `input` to a fresh stream translation through `run` (which gets the pieces in order and returns
/// the output) whole, split in two at every byte, and byte by byte; all must give the same output, which
/// is returned.
pub(crate) fn replay(input: &[u8], what: &str, mut run: impl FnMut(&[&[u8]]) -> Vec<u8>) -> Vec<u8> {
    let whole = run(&[input]);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_same_bytes(&run(&[a, b]), &whole, &format!("{what}: split at {cut}"));
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_same_bytes(&run(&bytes), &whole, &format!("{what}: byte by byte"));
    whole
}

/// [`replay`] for a response translator: each run takes a `fresh` translator, checks its stream headers
/// (200, streamed, SSE out) and ends the stream both ways a host may (`end` with the last bytes, or with
/// an empty call after them); outputs and usage must agree. Returns the output and the usage.
pub(crate) fn replay_translator(
    input: &[u8],
    what: &str,
    mut fresh: impl FnMut() -> Box<dyn ResponseTranslator>,
) -> (Vec<u8>, Option<Usage>) {
    let mut usage: Option<Option<Usage>> = None;
    let whole = replay(input, what, |pieces| {
        let mut outs = Vec::new();
        for end_apart in [false, true] {
            let mut t = fresh();
            assert_eq!(t.on_headers(200, Some("text/event-stream")), (200, BodyMode::Stream), "{what}");
            assert_eq!(t.content_type(), "text/event-stream", "{what}");
            let mut out = Vec::new();
            for (i, p) in pieces.iter().enumerate() {
                t.on_stream(p, !end_apart && i + 1 == pieces.len(), &mut out);
            }
            if end_apart || pieces.is_empty() {
                t.on_stream(&[], true, &mut out);
            }
            let u = t.usage();
            let sizes: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
            assert_eq!(*usage.get_or_insert(u), u, "{what}: usage, pieces of {sizes:?}");
            outs.push(out);
        }
        let apart = outs.pop().unwrap_or_default();
        let together = outs.pop().unwrap_or_default();
        assert_same_bytes(&apart, &together, &format!("{what}: end with the last bytes, or after them"));
        together
    });
    (whole, usage.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs_name_the_differing_places() {
        let got = json!({"a": 1, "b": [1, 2], "c": {"d": "x"}, "extra": true});
        let want = json!({"a": 1, "b": [1, 3], "c": {"d": "y"}, "gone": null});
        let mut diffs = Vec::new();
        json_diff(&got, &want, "", &mut diffs, 20);
        assert_eq!(
            diffs,
            [
                "/b/1: got 2, want 3",
                "/c/d: got \"x\", want \"y\"",
                "/extra: got true, not expected",
                "/gone: missing, want null"
            ]
        );
        let r = std::panic::catch_unwind(|| assert_json(&got, &want, "case"));
        assert!(r.is_err());
        assert_json(&want, &want.clone(), "same");
    }

    #[test]
    fn streams_compare_by_event() {
        let a = b"data: {\"id\":1,\"created\":5}\n\ndata: [DONE]\n\n";
        let b = b"data: {\"created\":6,\"id\":1}\n\ndata: [DONE]\n\n";
        assert_stream(a, b, &without_created, "same but created");
        let c = b"event: x\ndata: {\"id\":1}\n\ndata: [DONE]\n\n";
        assert!(std::panic::catch_unwind(|| assert_stream(a, c, &without_created, "named")).is_err());
        let d = b"data: {\"id\":2}\n\ndata: [DONE]\n\n";
        assert!(std::panic::catch_unwind(|| assert_stream(a, d, &without_created, "data")).is_err());
    }

    #[test]
    fn replay_sees_every_split() {
        let mut calls = 0;
        let whole = replay(b"abc", "concat", |pieces| {
            calls += 1;
            pieces.concat()
        });
        assert_eq!((whole, calls), (b"abc".to_vec(), 1 + 4 + 1));
        let odd = std::panic::catch_unwind(|| replay(b"ab", "first piece", |pieces| pieces[0].to_vec()));
        assert!(odd.is_err());
    }
}
