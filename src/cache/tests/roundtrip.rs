//! Real fixture answers: the two formats of one answer capture to one stored form, and every stored form
//! rendered in every format, plain and streamed, captures back to itself (ids aside).

use super::capture_all_ways;
use crate::api::responses::tests::invariants;
use crate::api::Operation;
use crate::cache::{render, Capture, Format};
use crate::codec::sse;
use crate::providers::fixtures;
use crate::providers::mock::Clock;
use serde_json::{json, Value};

/// The files of a fixture case folder that hold an answer as a client gets it, with their format.
const FILES: &[(&str, Format)] = &[
    ("client_response.json", Format::ChatJson),
    ("client_stream.txt", Format::ChatSse),
    ("provider_response.json", Format::AnthropicJson),
    ("provider_stream.txt", Format::AnthropicSse),
    ("openai_response.json", Format::ChatJson),
    ("openai_stream.txt", Format::ChatSse),
    ("anthropic_response.json", Format::AnthropicJson),
    ("anthropic_stream.txt", Format::AnthropicSse),
    ("chat_response.json", Format::ChatJson),
    ("chat_stream.txt", Format::ChatSse),
    ("response.json", Format::ResponsesJson),
    ("response_stream.txt", Format::ResponsesSse),
];

/// Folders whose `provider_*` files are not Anthropic's (their client files still count).
const NOT_ANTHROPIC: &[&str] = &["gemini", "bedrock"];

/// Every answer body of the fixtures: (format, body, "folder/case/file").
pub(super) fn fixture_bodies() -> Vec<(Format, Vec<u8>, String)> {
    let mut out = Vec::new();
    for folder in ["anthropic", "anthropic_input", "responses", "gemini", "bedrock"] {
        for case in fixtures::cases(folder) {
            for (file, format) in FILES {
                if file.starts_with("provider_") && NOT_ANTHROPIC.contains(&folder) {
                    continue;
                }
                if let Some(body) = case.read(file) {
                    out.push((*format, body, format!("{folder}/{}/{file}", case.name)));
                }
            }
        }
    }
    out
}

/// What a format cannot say, for comparing stored forms.
#[derive(Clone, Copy, PartialEq)]
enum Loss {
    /// Nothing but ids, `created` and the model.
    Ids,
    /// Also: only the first choice.
    FirstChoice,
    /// Also: a refusal is text; no reasoning tokens; tool arguments are parsed JSON.
    Anthropic,
}

fn norm(stored: &[u8], loss: Loss) -> Value {
    let mut v: Value = serde_json::from_slice(stored).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in ["id", "created", "model"] {
        o.remove(k);
    }
    if loss != Loss::Ids {
        let first = o["choices"][0].clone();
        o.insert("choices".into(), json!([first]));
    }
    for c in o["choices"].as_array_mut().unwrap() {
        let m = &mut c["message"];
        for call in m.get_mut("tool_calls").and_then(Value::as_array_mut).into_iter().flatten() {
            let args = &mut call["function"]["arguments"];
            match args.as_str().and_then(|a| serde_json::from_str::<Value>(a).ok()) {
                Some(parsed) if parsed.is_object() || loss != Loss::Anthropic => *args = parsed,
                // Anthropic's `input` is an object: other arguments become `{}`.
                _ if loss == Loss::Anthropic => *args = json!({}),
                _ => {}
            }
        }
        if loss == Loss::Anthropic {
            if let Some(r) = m["refusal"].as_str().map(str::to_string) {
                let text = format!("{}{r}", m["content"].as_str().unwrap_or(""));
                m["content"] = json!(text);
                m["refusal"] = Value::Null;
            }
        }
    }
    if loss == Loss::Anthropic {
        if let Some(u) = o.get_mut("usage") {
            u["completion_tokens_details"]["reasoning_tokens"] = json!(0);
        }
    }
    v
}

/// The two stored forms agree, given what was lost; usage is compared only when both have it.
fn assert_same(a: &[u8], b: &[u8], loss: Loss, what: &str) {
    let (mut x, mut y) = (norm(a, loss), norm(b, loss));
    if x.get("usage").is_none() || y.get("usage").is_none() {
        x.as_object_mut().unwrap().remove("usage");
        y.as_object_mut().unwrap().remove("usage");
    }
    assert_eq!(x, y, "{what}\n{}\n{}", String::from_utf8_lossy(a), String::from_utf8_lossy(b));
}

/// The formats of one answer in a fixture case capture to one stored form (or are both not stored).
#[test]
fn formats_of_one_answer_agree() {
    let pairs: &[(&str, &str, &str)] = &[
        ("anthropic", "provider_response.json", "client_response.json"),
        ("anthropic", "provider_stream.txt", "client_stream.txt"),
        ("anthropic_input", "anthropic_response.json", "openai_response.json"),
        ("anthropic_input", "anthropic_stream.txt", "openai_stream.txt"),
        ("responses", "response.json", "chat_response.json"),
        ("responses", "response_stream.txt", "chat_stream.txt"),
    ];
    let format = |file: &str| FILES.iter().find(|(f, _)| *f == file).map(|(_, fmt)| *fmt).unwrap();
    let (mut stored, mut compared) = (0, 0);
    for (folder, a, b) in pairs {
        for case in fixtures::cases(folder) {
            let (Some(x), Some(y)) = (case.read(a), case.read(b)) else { continue };
            let what = format!("{folder}/{}: {a} vs {b}", case.name);
            let px = capture_all_ways(format(a), &x, &what);
            let py = capture_all_ways(format(b), &y, &what);
            compared += 1;
            match (px, py) {
                (Some(px), Some(py)) => {
                    let loss = if folder.starts_with("anthropic") { Loss::Anthropic } else { Loss::Ids };
                    assert_same(&px, &py, loss, &what);
                    stored += 1;
                }
                (None, None) => {}
                (px, py) => panic!("{what}: stored {:?} vs {:?}", px.is_some(), py.is_some()),
            }
        }
    }
    assert!(compared >= 40 && stored >= 20, "{compared} pairs, {stored} stored");
}

const CLOCK: Clock = Clock { unix_secs: 1_800_000_000, seq: 42 };
const CLIENT: &[u8] = br#"{"model":"asked","input":"x","metadata":{"k":"v"}}"#;

/// Renders `stored` for `op`, checks the answer's shape, and captures it back.
fn render_and_capture(stored: &[u8], op: Operation, stream: bool, include_usage: bool, what: &str) -> Vec<u8> {
    let r = render(stored, op, stream, include_usage, "served", CLOCK, CLIENT).unwrap_or_else(|| panic!("{what}"));
    assert_eq!(r.status, 200, "{what}");
    let ct = if stream { "text/event-stream" } else { "application/json" };
    assert_eq!(r.headers.first().map(|(_, v)| v.as_str()), Some(ct), "{what}");
    let id_prefix = match op {
        Operation::Messages => "msg_cache",
        Operation::Responses => "resp_cache",
        _ => "chatcmpl-cache",
    };
    if stream {
        let events = sse::decode_all(&r.body);
        assert!(events.len() >= 3, "{what}");
        for e in &events {
            if e.data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("{what}: {err}: {}", e.data));
            if op == Operation::ChatCompletions {
                assert_eq!(v.get("usage").is_some(), include_usage, "{what}: {v}");
                assert!(v["id"].as_str().unwrap().starts_with(id_prefix), "{what}");
            }
        }
        match op {
            Operation::ChatCompletions => assert_eq!(events.last().unwrap().data, "[DONE]", "{what}"),
            Operation::Messages => {
                assert_eq!(events.last().unwrap().event.as_deref(), Some("message_stop"), "{what}");
                let start: Value = serde_json::from_str(&events[0].data).unwrap();
                assert!(start["message"]["id"].as_str().unwrap().starts_with(id_prefix), "{what}");
            }
            _ => invariants::check(&r.body, what),
        }
    } else {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["id"].as_str().unwrap().starts_with(id_prefix), "{what}: {v}");
        assert_eq!(v["model"], "served", "{what}");
        if op == Operation::Responses {
            assert_eq!(v["metadata"], json!({"k": "v"}), "{what}: the request is echoed");
            assert_eq!(v["status"], "completed", "{what}");
        }
    }
    let mut c = Capture::new(Format::of(op, stream).unwrap(), 1 << 20);
    c.push(&r.body);
    c.finish().unwrap_or_else(|| panic!("{what}: not captured back:\n{}", String::from_utf8_lossy(&r.body)))
}

#[test]
fn every_stored_answer_renders_in_every_format() {
    let mut stored = 0;
    let multi = br#"{"id":"c","object":"chat.completion","created":1,"model":"g","choices":[
        {"index":0,"message":{"role":"assistant","content":"A"},"finish_reason":"stop"},
        {"index":1,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],
        "usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
    let mut bodies = fixture_bodies();
    bodies.push((Format::ChatJson, multi.to_vec(), "two choices".to_string()));
    for (format, body, what) in bodies {
        let mut c = Capture::new(format, 1 << 20);
        c.push(&body);
        let Some(pivot) = c.finish() else { continue };
        stored += 1;
        for op in [Operation::ChatCompletions, Operation::Messages, Operation::Responses] {
            let loss = match op {
                Operation::ChatCompletions => Loss::Ids,
                Operation::Messages => Loss::Anthropic,
                _ => Loss::FirstChoice,
            };
            for stream in [false, true] {
                let what = format!("{what} as {op:?} stream={stream}");
                let back = render_and_capture(&pivot, op, stream, true, &what);
                assert_same(&pivot, &back, loss, &what);
                if serde_json::from_slice::<Value>(&pivot).unwrap().get("usage").is_some() {
                    assert!(serde_json::from_slice::<Value>(&back).unwrap().get("usage").is_some(), "{what}");
                }
                let model = serde_json::from_slice::<Value>(&back).unwrap()["model"].clone();
                assert_eq!(model, "served", "{what}");
            }
        }
        // A chat stream without the usage chunk: the same answer, no usage.
        let what = format!("{what} as a chat stream without usage");
        let back = render_and_capture(&pivot, Operation::ChatCompletions, true, false, &what);
        let mut want = norm(&pivot, Loss::Ids);
        want.as_object_mut().unwrap().remove("usage");
        assert_eq!(norm(&back, Loss::Ids), want, "{what}");
    }
    assert!(stored >= 30, "{stored} stored answers");
}

#[test]
fn unreadable_stored_bytes_are_a_miss() {
    for bad in
        [&b""[..], b"null", b"{}", br#"{"choices":[]}"#, br#"{"choices":[{"finish_reason":"length","message":{}}]}"#]
    {
        for op in [Operation::ChatCompletions, Operation::Messages, Operation::Responses] {
            assert!(render(bad, op, false, false, "m", CLOCK, CLIENT).is_none());
        }
    }
    let ok = br#"{"choices":[{"message":{"content":"x"},"finish_reason":"stop"}]}"#;
    assert!(render(ok, Operation::Embeddings, false, false, "m", CLOCK, CLIENT).is_none());
    assert!(render(ok, Operation::ChatCompletions, true, false, "m", CLOCK, CLIENT).is_some());
}

/// The stored form as serde_json writes a `Value` of it (what `Answer::chat_json` wrote before it wrote
/// the bytes itself): the oracle for the direct writer.
fn chat_json_by_value(stored: &[u8], id: &str, created: u64, model: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(stored).unwrap();
    v["id"] = json!(id);
    v["created"] = json!(created);
    v["model"] = json!(model);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn the_stored_form_is_written_as_serde_json_writes_it() {
    let mut seen = 0;
    for (format, body, what) in fixture_bodies() {
        let mut c = Capture::new(format, 1 << 20);
        c.push(&body);
        let Some(stored) = c.finish() else { continue };
        // Rendered under other ids (escapes included) and re-read: the same bytes the Value would give.
        let rendered = render(
            &stored,
            Operation::ChatCompletions,
            false,
            false,
            "m\"\u{e9}/x",
            Clock { unix_secs: 7, seq: 9 },
            b"{}",
        )
        .unwrap_or_else(|| panic!("{what}"));
        let id = crate::cache::render::answer_id(Clock { unix_secs: 7, seq: 9 });
        assert_eq!(
            String::from_utf8(rendered.body.clone()).unwrap(),
            String::from_utf8(chat_json_by_value(&stored, &id, 7, "m\"\u{e9}/x")).unwrap(),
            "{what}"
        );
        seen += 1;
    }
    assert!(seen > 40, "{seen}");
}

#[test]
fn a_stored_form_reads_the_same_typed_as_through_a_value() {
    use crate::cache::answer::Answer;
    let mut seen = 0;
    for (format, body, what) in fixture_bodies() {
        let mut c = Capture::new(format, 1 << 20);
        c.push(&body);
        let Some(stored) = c.finish() else { continue };
        assert_eq!(Answer::from_stored(&stored), Answer::from_chat_bytes(&stored), "{what}");
        assert!(Answer::from_stored(&stored).is_some(), "{what}");
        seen += 1;
    }
    assert!(seen > 40, "{seen}");
    // Not a stored form: nothing, never a panic.
    for bad in [
        &b""[..],
        b"{}",
        b"[]",
        b"{\"choices\":[]}",
        b"{\"choices\":[{\"finish_reason\":\"length\",\"message\":{}}]}",
        b"\xff",
    ] {
        assert_eq!(Answer::from_stored(bad), None, "{bad:?}");
    }
}
