use super::*;
use crate::api::Operation;
use crate::providers::fixtures;
use serde_json::{json, Value};

mod roundtrip;

fn canon(op: Operation, body: &str) -> String {
    let c = canonical(op, body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {}", e.body()));
    String::from_utf8(c).unwrap()
}

#[test]
fn canonical_form() {
    let chat = Operation::ChatCompletions;
    let table: &[(&str, &str)] = &[
        // Key order at every depth, whitespace, the model and the delivery fields go.
        (
            r#"{ "model":"m", "temperature": 0.5, "messages": [ {"role":"user", "content":"Hi"} ], "stream": true, "stream_options": {"include_usage": true} }"#,
            r#"{"messages":[{"content":"Hi","role":"user"}],"temperature":0.5}"#,
        ),
        (
            r#"{"messages":[{"content":"Hi","role":"user"}],"tools":[{"type":"function","function":{"parameters":{"b":1,"a":2},"name":"f"}}]}"#,
            r#"{"messages":[{"content":"Hi","role":"user"}],"tools":[{"function":{"name":"f","parameters":{"a":2,"b":1}},"type":"function"}]}"#,
        ),
        // One spelling per number.
        (
            r#"{"messages":[],"seed":1.0,"max_tokens":1e2,"top_p":1.00,"x":[-0,0.0,-2.0,1.5e0,0.1,1e300,-1e-7]}"#,
            r#"{"max_tokens":100,"messages":[],"seed":1,"top_p":1,"x":[0,0,-2,1.5,0.1,1e+300,-1e-7]}"#,
        ),
        (
            r#"{"messages":[],"x":[18446744073709551615,-9223372036854775808,18446744073709551616]}"#,
            r#"{"messages":[],"x":[18446744073709551615,-9223372036854775808,1.8446744073709552e+19]}"#,
        ),
        // Who asks, what the provider keeps or bills; nulls; n = 1.
        (
            r#"{"messages":[],"user":"u","metadata":{"a":"b"},"safety_identifier":"s","store":true,"service_tier":"flex","prompt_cache_key":"k","prompt_cache_retention":"24h","temperature":null,"n":1}"#,
            r#"{"messages":[]}"#,
        ),
        // What changes the answer stays.
        (r#"{"messages":[],"n":2,"seed":7,"logprobs":true}"#, r#"{"logprobs":true,"messages":[],"n":2,"seed":7}"#),
        // Strings keep their text, escaped one way.
        (
            r#"{"messages":[{"role":"user","content":"\u00e9\"\/ x"}]}"#,
            r#"{"messages":[{"content":"é\"/ x","role":"user"}]}"#,
        ),
    ];
    for (body, want) in table {
        assert_eq!(canon(chat, body), *want, "{body}");
    }
    // 1, 1.0, 1e0, 1.00: one key.
    let keys: Vec<_> = ["1", "1.0", "1e0", "1.00", "10e-1"]
        .iter()
        .map(|n| {
            key("shared", "m", &canonical(chat, format!(r#"{{"messages":[],"temperature":{n}}}"#).as_bytes()).unwrap())
        })
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]));
}

#[test]
fn canonical_refuses_what_is_not_cached() {
    assert_eq!(canonical(Operation::ChatCompletions, b"{nope").unwrap_err().status, 400);
    assert_eq!(canonical(Operation::ChatCompletions, b"[1]").unwrap_err().status, 400);
    assert!(canonical(Operation::Embeddings, br#"{"model":"e","input":"x"}"#).is_err());
    assert!(canonical(Operation::ListModels, b"").is_err());
    // The front door's own refusals.
    assert_eq!(canonical(Operation::Messages, br#"{"model":"m","messages":[]}"#).unwrap_err().status, 400);
    let stored = br#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#;
    assert_eq!(canonical(Operation::Responses, stored).unwrap_err().status, 400);
}

/// A chat request and the Anthropic Messages and Responses requests with the same pivot meet in one key.
#[test]
fn formats_meet_in_one_key() {
    let chat = r#"{"model":"a","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":100,"temperature":0.2,"stream":true,"user":"u1"}"#;
    let messages = r#"{"model":"b","system":"Be brief.","max_tokens":100,"temperature":0.2,"messages":[{"role":"user","content":"Hi"}],"metadata":{"user_id":"u2"}}"#;
    let responses = r#"{"model":"c","instructions":"Be brief.","input":"Hi","max_output_tokens":100,"temperature":0.2,"stream":true,"store":false}"#;
    let want = r#"{"max_tokens":100,"messages":[{"content":"Be brief.","role":"system"},{"content":"Hi","role":"user"}],"temperature":0.2}"#;
    assert_eq!(canon(Operation::ChatCompletions, chat), want);
    assert_eq!(canon(Operation::Messages, messages), want);
    assert_eq!(canon(Operation::Responses, responses), want);

    // Fields a native provider reads but the pivot drops keep native requests apart.
    let thinking = r#"{"model":"b","system":"Be brief.","max_tokens":100,"temperature":0.2,"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled","budget_tokens":1024},"top_k":5}"#;
    assert_eq!(
        canon(Operation::Messages, thinking),
        r#"{"max_tokens":100,"messages":[{"content":"Be brief.","role":"system"},{"content":"Hi","role":"user"}],"temperature":0.2,"~native":{"thinking":{"budget_tokens":1024,"type":"enabled"},"top_k":5}}"#
    );
    let verbose = r#"{"model":"c","input":"Hi","text":{"verbosity":"low"},"reasoning":{"effort":"low","summary":"auto"},"include":["reasoning.encrypted_content"]}"#;
    assert_eq!(
        canon(Operation::Responses, verbose),
        r#"{"messages":[{"content":"Hi","role":"user"}],"reasoning_effort":"low","~native":{"include":["reasoning.encrypted_content"],"reasoning.summary":"auto","text.verbosity":"low"}}"#
    );

    // The real fixtures: a Responses request and its pivot meet (but for the native fields); so do an
    // Anthropic request and its pivot.
    let (mut met, mut native) = (0, 0);
    for (folder, op, request, pivot) in [
        ("responses", Operation::Responses, "client_request.json", "pivot_request.json"),
        ("anthropic_input", Operation::Messages, "anthropic_request.json", "openai_request.json"),
    ] {
        for case in fixtures::cases(folder) {
            let mut a: Value = serde_json::from_slice(&canonical(op, &case.bytes(request)).unwrap()).unwrap();
            let b = canonical(Operation::ChatCompletions, &case.bytes(pivot)).unwrap();
            match a.as_object_mut().unwrap().remove(key::NATIVE) {
                None => met += 1,
                Some(_) => native += 1,
            }
            assert_eq!(a, serde_json::from_slice::<Value>(&b).unwrap(), "{folder}/{}", case.name);
        }
    }
    assert!(met >= 25 && native >= 1, "{met} met, {native} apart");
}

#[test]
fn keys_are_length_prefixed() {
    let c = canonical(Operation::ChatCompletions, br#"{"messages":[]}"#).unwrap();
    let k = key("key:1", "gpt", &c);
    assert_eq!(k, key("key:1", "gpt", &c));
    assert_ne!(k, key("key:2", "gpt", &c));
    assert_ne!(k, key("key:1", "gpt2", &c));
    assert_ne!(key("ab", "c", &c), key("a", "bc", &c));
    assert_ne!(key("shared", "", b"m{}"), key("shared", "m", b"{}"));
    let h = hex(&k);
    assert_eq!(h.len(), 64);
    assert!(h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

/// Captures `body` whole, split in two at every byte, and byte by byte: always the same result.
pub(super) fn capture_all_ways(format: Format, body: &[u8], what: &str) -> Option<Vec<u8>> {
    let once = |pieces: &[&[u8]]| {
        let mut c = Capture::new(format, 1 << 20);
        for p in pieces {
            c.push(p);
        }
        c.finish()
    };
    let whole = once(&[body]);
    for cut in 0..=body.len() {
        assert_eq!(once(&[&body[..cut], &body[cut..]]), whole, "{what}: split at {cut}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(once(&bytes), whole, "{what}: byte by byte");
    whole
}

fn capture(format: Format, body: &[u8]) -> Option<Value> {
    let mut c = Capture::new(format, 1 << 20);
    c.push(body);
    c.finish().map(|p| serde_json::from_slice(&p).unwrap())
}

#[test]
fn incomplete_and_failed_answers_are_not_stored() {
    // Fixtures whose answer is an error, cut short, or incomplete.
    let none: &[(&str, &str, &str, Format)] = &[
        ("anthropic_input", "stream_error", "anthropic_stream.txt", Format::AnthropicSse),
        ("anthropic_input", "stream_error", "openai_stream.txt", Format::ChatSse),
        ("anthropic_input", "stream_no_done", "openai_stream.txt", Format::ChatSse),
        ("anthropic_input", "length_stop", "anthropic_response.json", Format::AnthropicJson),
        ("anthropic_input", "length_stop", "openai_response.json", Format::ChatJson),
        ("anthropic_input", "error_rate_limit", "anthropic_response.json", Format::AnthropicJson),
        ("anthropic_input", "error_rate_limit", "openai_response.json", Format::ChatJson),
        ("anthropic", "stream_truncated", "client_stream.txt", Format::ChatSse),
        ("anthropic", "stream_truncated", "provider_stream.txt", Format::AnthropicSse),
        ("anthropic", "stream_error", "provider_stream.txt", Format::AnthropicSse),
        ("anthropic", "refusal", "provider_response.json", Format::AnthropicJson),
        ("anthropic", "refusal", "client_response.json", Format::ChatJson),
        ("anthropic", "streaming_length_stop", "provider_stream.txt", Format::AnthropicSse),
        ("anthropic", "error_rate_limit", "client_response.json", Format::ChatJson),
        ("gemini", "stream_truncated", "client_stream.txt", Format::ChatSse),
        ("gemini", "stream_error", "client_stream.txt", Format::ChatSse),
        ("gemini", "stream_safety", "client_stream.txt", Format::ChatSse),
        ("responses", "stream_error", "response_stream.txt", Format::ResponsesSse),
        ("responses", "stream_ended_early", "response_stream.txt", Format::ResponsesSse),
        ("responses", "stream_length", "response_stream.txt", Format::ResponsesSse),
        ("responses", "length_incomplete", "response.json", Format::ResponsesJson),
        ("responses", "content_filter", "response.json", Format::ResponsesJson),
        ("responses", "content_filter", "chat_response.json", Format::ChatJson),
    ];
    for (folder, case, file, format) in none {
        let path = format!("{}/tests/fixtures/{folder}/{case}/{file}", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(capture_all_ways(*format, &body, &path), None, "{path}");
    }
    let odd: &[(Format, &str)] = &[
        (Format::ChatJson, ""),
        (Format::ChatJson, "not json"),
        (Format::ChatJson, r#"{"error":{"message":"x"}}"#),
        (Format::ChatJson, r#"{"object":"chat.completion","choices":[]}"#),
        (Format::ChatJson, r#"{"choices":[{"message":{"content":"x"},"finish_reason":null}]}"#),
        (Format::ChatJson, r#"{"choices":[{"message":{"content":"x"},"finish_reason":"stop","logprobs":{"content":[]}}]}"#),
        (Format::ChatJson, r#"{"choices":[{"message":{"content":"x"},"finish_reason":"stop"},{"message":{"content":"y"},"finish_reason":"length"}]}"#),
        (Format::ChatJson, r#"{"choices":[{"message":{"content":"x","audio":{"id":"a"}},"finish_reason":"stop"}]}"#),
        (Format::ChatJson, r#"{"choices":[{"message":{"content":[{"type":"image_url"}]},"finish_reason":"stop"}]}"#),
        (Format::ChatSse, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n"),
        (Format::ChatSse, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\ndata: {}\n\n"),
        (Format::ChatSse, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\ndata: [DONE]\n\n"),
        (Format::ChatSse, "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"),
        (Format::ChatSse, "data: nope\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"),
        (Format::ChatSse, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"error\":{\"message\":\"x\"}}\n\ndata: [DONE]\n\n"),
        (Format::AnthropicSse, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        (Format::AnthropicSse, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"pause_turn\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        (Format::AnthropicJson, r#"{"type":"message","content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"x"}],"stop_reason":"end_turn"}"#),
        (Format::AnthropicJson, r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#),
        (Format::ResponsesJson, r#"{"status":"completed","output":[{"type":"web_search_call","id":"ws"}]}"#),
        (Format::ResponsesJson, r#"{"status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"x","annotations":[{"type":"url_citation"}]}]}]}"#),
        (Format::ResponsesJson, r#"{"status":"in_progress","output":[]}"#),
        (Format::ResponsesSse, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"output\":[]}}\n\nevent: error\ndata: {\"type\":\"error\"}\n\n"),
    ];
    for (format, body) in odd {
        assert_eq!(capture_all_ways(*format, body.as_bytes(), body), None, "{format:?} {body}");
    }
    // A reasoning item is left out; its tokens stay.
    let r = r#"{"id":"resp_1","created_at":5,"model":"o","status":"completed","output":[{"type":"reasoning","id":"rs","summary":[]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"x","annotations":[],"logprobs":[]}]}],"usage":{"input_tokens":3,"output_tokens":9,"output_tokens_details":{"reasoning_tokens":6}}}"#;
    let got = capture(Format::ResponsesJson, r.as_bytes()).unwrap();
    assert_eq!(got["choices"][0]["message"]["content"], "x");
    assert_eq!(got["usage"]["completion_tokens_details"]["reasoning_tokens"], 6);
    assert_eq!(got["usage"]["total_tokens"], 12);
}

/// Every complete stream cut anywhere before its last event is not stored.
#[test]
fn truncated_streams_are_not_stored() {
    let mut checked = 0;
    for (format, body, what) in roundtrip::fixture_bodies() {
        let sse = matches!(format, Format::ChatSse | Format::AnthropicSse | Format::ResponsesSse);
        if !sse || capture(format, &body).is_none() {
            continue;
        }
        // Its last occurrence is inside the final event's data: a cut before it leaves that event out or
        // broken.
        let marker: &[u8] = match format {
            Format::ChatSse => b"[DONE]",
            Format::AnthropicSse => b"message_stop",
            _ => b"response.completed",
        };
        let end = body.windows(marker.len()).rposition(|w| w == marker).unwrap_or_else(|| panic!("{what}"));
        for cut in 0..end {
            assert_eq!(capture(format, &body[..cut]), None, "{what}: cut at {cut}");
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
}

#[test]
fn bounded_by_max_bytes() {
    for (format, body, what) in roundtrip::fixture_bodies() {
        let Some(whole) = capture(format, &body) else { continue };
        let mut c = Capture::new(format, body.len());
        c.push(&body);
        assert!(!c.too_large());
        assert_eq!(c.finish().map(|p| serde_json::from_slice::<Value>(&p).unwrap()), Some(whole), "{what}");
        let mut c = Capture::new(format, body.len() - 1);
        let (a, b) = body.split_at(body.len() / 2);
        c.push(a);
        c.push(b);
        assert!(c.too_large(), "{what}");
        // Nothing more is kept, whatever comes.
        for _ in 0..100 {
            c.push(&body);
        }
        assert_eq!(c.finish(), None, "{what}");
    }
}

#[test]
fn chat_streams_accumulate() {
    let chunk = |v: Value| format!("data: {v}\n\n");
    let mut s = String::new();
    s += &chunk(
        json!({"id":"c1","created":9,"model":"g","choices":[{"index":0,"delta":{"role":"assistant","content":""}},{"index":1,"delta":{"role":"assistant","content":"B"}}]}),
    );
    s += &chunk(json!({"id":"c1","choices":[{"index":0,"delta":{"content":"A1"}}]}));
    s += &chunk(
        json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_x","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}),
    );
    s += &chunk(
        json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_y","function":{"name":"g","arguments":""}}]}}]}),
    );
    s += &chunk(json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}));
    s += &chunk(
        json!({"choices":[{"index":0,"delta":{"refusal":"no"},"finish_reason":"tool_calls"},{"index":1,"delta":{},"finish_reason":"stop"}]}),
    );
    s += &chunk(json!({"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":99}}));
    s += "data: [DONE]\n\n";
    let got = capture_all_ways(Format::ChatSse, s.as_bytes(), "chat").unwrap();
    let want = json!({
        "id":"c1","object":"chat.completion","created":9,"model":"g",
        "choices":[
            {"index":0,"message":{"role":"assistant","content":"A1","refusal":"no","tool_calls":[
                {"id":"call_x","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},
                {"id":"call_y","type":"function","function":{"name":"g","arguments":""}}]},
             "logprobs":null,"finish_reason":"tool_calls"},
            {"index":1,"message":{"role":"assistant","content":"B","refusal":null},"logprobs":null,"finish_reason":"stop"}],
        "usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6,
                 "prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}
    });
    assert_eq!(serde_json::from_slice::<Value>(&got).unwrap(), want);
}

/// Garbage and damaged answers: no panic, in any format, and a stored form that renders.
#[test]
fn damaged_input_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let formats = [
        Format::ChatJson,
        Format::ChatSse,
        Format::AnthropicJson,
        Format::AnthropicSse,
        Format::ResponsesJson,
        Format::ResponsesSse,
    ];
    let clock = crate::providers::mock::Clock { unix_secs: 1, seq: 2 };
    for (format, body, _) in roundtrip::fixture_bodies() {
        for _ in 0..20 {
            let mut damaged = body.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % damaged.len().max(1) as u64) as usize;
                if let Some(b) = damaged.get_mut(at) {
                    *b = (next() % 256) as u8;
                }
            }
            for f in [format, formats[(next() % 6) as usize]] {
                let mut c = Capture::new(f, 1 << 20);
                c.push(&damaged);
                if let Some(stored) = c.finish() {
                    for op in [Operation::ChatCompletions, Operation::Messages, Operation::Responses] {
                        assert!(render(&stored, op, true, true, "m", clock, &damaged).is_some());
                    }
                }
                for op in [Operation::ChatCompletions, Operation::Messages, Operation::Responses] {
                    let _ = render(&damaged, op, next() % 2 == 0, true, "m", clock, &damaged);
                    let _ = canonical(op, &damaged);
                }
            }
        }
    }
}

#[test]
fn the_key_memo_gives_exactly_the_computed_key_and_stays_bounded() {
    use crate::cache::key::{key_of, memo_size, MEMO_MAX_BYTES, MEMO_MAX_ENTRIES};
    let chat = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let direct = |op, scope: &str, model: &str, body: &[u8]| key(scope, model, &canonical(op, body).unwrap());
    // Computed, then remembered: the same key both times, and the same as without the memo.
    for _ in 0..2 {
        assert_eq!(
            key_of(Operation::ChatCompletions, "key:a", "m", chat).unwrap(),
            direct(Operation::ChatCompletions, "key:a", "m", chat)
        );
    }
    // Each part of the request counts: scope, model, operation, body.
    let a = key_of(Operation::ChatCompletions, "key:a", "m", chat).unwrap();
    assert_ne!(a, key_of(Operation::ChatCompletions, "key:b", "m", chat).unwrap());
    assert_ne!(a, key_of(Operation::ChatCompletions, "key:a", "n", chat).unwrap());
    let messages = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        key_of(Operation::Messages, "key:a", "m", messages).unwrap(),
        direct(Operation::Messages, "key:a", "m", messages)
    );
    // A scope and model whose bytes run together differently are other requests.
    assert_ne!(
        key_of(Operation::ChatCompletions, "key:ab", "m", chat).unwrap(),
        key_of(Operation::ChatCompletions, "key:a", "bm", chat).unwrap()
    );
    // Bad bodies are refused as canonical() refuses them, every time.
    assert!(key_of(Operation::ChatCompletions, "key:a", "m", b"[1]").is_err());
    assert!(key_of(Operation::ChatCompletions, "key:a", "m", b"[1]").is_err());
    // Bounded: many distinct requests (small ones past the entry cap, large ones past the byte cap)
    // never hold more than the caps.
    let small = (0..MEMO_MAX_ENTRIES * 2 + 7).map(|i| (i, 1));
    let large = (0..40).map(|i| (i, 60_000));
    for (i, size) in small.chain(large) {
        let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{i} {}"}}]}}"#, "x".repeat(size));
        let k = key_of(Operation::ChatCompletions, "key:a", "m", body.as_bytes()).unwrap();
        if i % 100 == 0 {
            assert_eq!(k, direct(Operation::ChatCompletions, "key:a", "m", body.as_bytes()));
        }
        let (entries, bytes) = memo_size();
        assert!(entries <= MEMO_MAX_ENTRIES && bytes <= MEMO_MAX_BYTES, "{entries} {bytes}");
    }
}
