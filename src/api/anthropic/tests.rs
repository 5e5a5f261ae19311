use super::stream::MAX_TOOL_CALLS;
use super::*;
use crate::api::error::ApiError;
use crate::codec::sse;
use crate::providers::fixtures;
use serde_json::{json, Value};

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// Events as (name, parsed data).
fn events(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    sse::decode_all(bytes).into_iter().map(|e| (e.event, json(e.data.as_bytes()))).collect()
}

fn replay(input: &[u8], cuts: &[usize], model: &str) -> Vec<u8> {
    let mut s = StreamToAnthropic::new(model);
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        s.push(&input[start..cut], false, &mut out);
        start = cut;
    }
    s.push(&input[start..], true, &mut out);
    out
}

#[test]
fn fixtures() {
    fixtures::run("anthropic_input", 10, |case| {
        let name = &case.name;
        let req = case.bytes("anthropic_request.json");
        let parsed = parse(&req).unwrap_or_else(|e| panic!("{name}: {}", e.body()));
        let got = to_openai(&req).unwrap_or_else(|e| panic!("{name}: {}", e.body()));
        assert_eq!(json(&got), case.json("openai_request.json"), "{name}: request");

        if let Some(stream) = case.read("openai_stream.txt") {
            assert!(parsed.stream, "{name}: stream flag");
            let want = events(&case.bytes("anthropic_stream.txt"));
            // The same output whole, split in two at every byte, and byte by byte.
            let whole = fixtures::replay(&stream, name, |pieces| {
                let mut s = StreamToAnthropic::new(&parsed.model);
                let mut out = Vec::new();
                for (i, p) in pieces.iter().enumerate() {
                    s.push(p, i + 1 == pieces.len(), &mut out);
                }
                out
            });
            assert_eq!(events(&whole), want, "{name}: stream\n{}", String::from_utf8_lossy(&whole));
            return;
        }
        let body = case.read("openai_response.json").or_else(|| case.read("openai_response.txt")).unwrap();
        let status: u16 = case.number("openai_status.txt").unwrap_or(200);
        let got =
            if status < 300 { response_from_openai(&body, &parsed.model) } else { error_from_openai(status, &body) };
        assert_eq!(json(&got), case.json("anthropic_response.json"), "{name}: response");
    });
}

#[test]
fn invalid_requests_name_the_param() {
    let table: &[(&str, &str)] = &[
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
        (r#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
        (r#"{"model":"m","max_tokens":1.5,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
        (r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#, "model"),
        (r#"{"model":7,"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#, "model"),
        (r#"{"model":"","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#, "model"),
        (r#"{"model":"m","max_tokens":1}"#, "messages"),
        (r#"{"model":"m","max_tokens":1,"messages":{}}"#, "messages"),
        (r#"{"model":"m","max_tokens":1,"messages":[]}"#, "messages"),
        (r#"{"model":"m","max_tokens":1,"messages":["x"]}"#, "messages[0]"),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"tool","content":"c"}]}"#,
            "messages[2].role",
        ),
        (r#"{"model":"m","max_tokens":1,"messages":[{"content":"a"}]}"#, "messages[0].role"),
        (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user"}]}"#, "messages[0].content"),
        (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":5}]}"#, "messages[0].content"),
        (
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"a"}]}]}"#,
            "messages[0].content[0].type",
        ),
        (r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#, "stream"),
    ];
    for (body, param) in table {
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some(*param)), "{body}: {}", e.message);
        let e2 = to_openai(body.as_bytes()).unwrap_err();
        assert_eq!(e2.param, e.param);
    }
    assert_eq!(parse(b"{").unwrap_err().code, Some("invalid_json"));
    assert_eq!(parse(b"[]").unwrap_err().status, 400);
}

#[test]
fn invalid_blocks_name_the_param() {
    let base = |messages: &str, extra: &str| format!(r#"{{"model":"m","max_tokens":1,"messages":{messages}{extra}}}"#);
    let table: Vec<(String, &str)> = vec![
        (base(r#"[{"role":"user","content":[{"type":"text"}]}]"#, ""), "messages[0].content[0].text"),
        (
            base(r#"[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]"#, ""),
            "messages[0].content[0].source.type",
        ),
        (
            base(r#"[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"x"}}]}]"#, ""),
            "messages[0].content[0].source.media_type",
        ),
        (
            base(r#"[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]"#, ""),
            "messages[0].content[0].tool_use_id",
        ),
        (
            base(
                r#"[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"document","source":{}}]}]}]"#,
                "",
            ),
            "messages[0].content[0].content[0].type",
        ),
        (base(r#"[{"role":"user","content":[{"type":"search_result"}]}]"#, ""), "messages[0].content[0].type"),
        (
            base(r#"[{"role":"user","content":[{"type":"tool_use","id":"a","name":"n","input":{}}]}]"#, ""),
            "messages[0].content[0].type",
        ),
        (base(r#"[{"role":"user","content":[]}]"#, ""), "messages[0].content"),
        (
            base(
                r#"[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"a","input":{}}]}]"#,
                "",
            ),
            "messages[1].content[0].name",
        ),
        (
            base(
                r#"[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"image","source":{}}]}]"#,
                "",
            ),
            "messages[1].content[0].type",
        ),
        (
            base(r#"[{"role":"system","content":[{"type":"image"}]},{"role":"user","content":"x"}]"#, ""),
            "messages[0].content[0]",
        ),
        (base(r#"[{"role":"user","content":"x"}]"#, r#","system":5"#), "system"),
        (base(r#"[{"role":"user","content":"x"}]"#, r#","system":[{"type":"text","text":1}]"#), "system[0].text"),
        (
            base(
                r#"[{"role":"user","content":"x"}]"#,
                r#","tools":[{"type":"web_search_20250305","name":"web_search"}]"#,
            ),
            "tools[0].type",
        ),
        (base(r#"[{"role":"user","content":"x"}]"#, r#","tools":[{"name":"a"}]"#), "tools[0].input_schema"),
        (base(r#"[{"role":"user","content":"x"}]"#, r#","tools":[{"input_schema":{}}]"#), "tools[0].name"),
        (
            base(
                r#"[{"role":"user","content":"x"}]"#,
                r#","tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"maybe"}"#,
            ),
            "tool_choice.type",
        ),
        (
            base(
                r#"[{"role":"user","content":"x"}]"#,
                r#","tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"tool"}"#,
            ),
            "tool_choice.name",
        ),
        (base(r#"[{"role":"user","content":"x"}]"#, r#","temperature":"hot""#), "temperature"),
        (base(r#"[{"role":"user","content":"x"}]"#, r#","stop_sequences":"END""#), "stop_sequences"),
        (base(r#"[{"role":"user","content":"x"}]"#, r#","stop_sequences":["a",1]"#), "stop_sequences[1]"),
        (base(r#"[{"role":"user","content":"x"}]"#, r#","metadata":{"user_id":3}"#), "metadata.user_id"),
        (
            base(r#"[{"role":"user","content":"x"}]"#, r#","output_config":{"format":{"type":"json_schema"}}"#),
            "output_config.format.schema",
        ),
    ];
    for (body, param) in &table {
        assert!(parse(body.as_bytes()).is_ok(), "{body}");
        let e = to_openai(body.as_bytes()).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some(*param)), "{body}: {}", e.message);
    }
}

#[test]
fn tool_choice_without_tools_is_not_sent() {
    let body = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"auto","disable_parallel_tool_use":true},"tools":[]}"#;
    let v = json(&to_openai(body).unwrap());
    assert!(v.get("tool_choice").is_none() && v.get("parallel_tool_calls").is_none() && v.get("tools").is_none());
}

#[test]
fn empty_assistant_turn_is_dropped() {
    let body = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"redacted_thinking","data":"abc"}]},{"role":"user","content":"y"}]}"#;
    let v = json(&to_openai(body).unwrap());
    assert_eq!(v["messages"], serde_json::json!([{"role":"user","content":"x"},{"role":"user","content":"y"}]));
}

#[test]
fn response_edge_cases() {
    // No id: a digest-based id; stop with tool calls is tool_use; no usage gives zeros.
    let body = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"tool_calls":[{"id":"c","function":{"name":"f","arguments":"[1]"}}]},"finish_reason":"stop"}]}"#;
    let v = json(&response_from_openai(body, "m"));
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("msg_") && id.len() == 28, "{id}");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][0], serde_json::json!({"type":"text","text":"ab"}));
    assert_eq!(v["content"][1]["input"], serde_json::json!({}));
    assert_eq!(v["usage"], serde_json::json!({"input_tokens":0,"output_tokens":0}));
    let v = json(&response_from_openai(
        br#"{"choices":[{"message":{"content":null,"refusal":"No."},"finish_reason":"content_filter"}]}"#,
        "m",
    ));
    assert_eq!(v["stop_reason"], "refusal");
    assert_eq!(v["content"][0]["text"], "No.");
    for bad in [&b"not json"[..], b"{}", b"{\"choices\":[]}"] {
        let v = json(&response_from_openai(bad, "m"));
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "api_error");
    }
}

#[test]
fn error_types_by_status() {
    let body = br#"{"error":{"message":"boom","type":"x","param":null,"code":null}}"#;
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ] {
        let v = json(&error_from_openai(status, body));
        assert_eq!(v, serde_json::json!({"type":"error","error":{"type":kind,"message":"boom"}}), "{status}");
    }
    assert_eq!(json(&error_from_openai(400, br#"{"error":"plain"}"#))["error"]["message"], "plain");
    assert_eq!(json(&error_from_openai(500, b""))["error"]["message"], "The upstream answered with status 500.");
    let long = "x".repeat(5000);
    assert_eq!(json(&error_from_openai(500, long.as_bytes()))["error"]["message"].as_str().unwrap().len(), 300);
    let e = ApiError::invalid_request("'max_tokens' is a required property.", Some("max_tokens"));
    assert_eq!(json(&error_from_openai(e.status, e.body().as_bytes())), json(&error_from_api(&e)));
    assert_eq!(json(&error_from_api(&e))["error"]["type"], "invalid_request_error");
}

fn chunk(delta: &str, finish: &str) -> String {
    format!("data: {{\"id\":\"chatcmpl-x\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
}

fn names(out: &[u8]) -> Vec<String> {
    sse::decode_all(out).into_iter().map(|e| e.event.unwrap_or_default()).collect()
}

#[test]
fn stream_truncated_mid_tool_call_still_ends_well_formed() {
    let input = chunk(
        r#"{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":"{\"a"}}]}"#,
        "null",
    );
    let out = replay(input.as_bytes(), &[], "m");
    assert_eq!(
        names(&out),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let ev = events(&out);
    assert_eq!(ev[4].1["delta"]["stop_reason"], "tool_use");
}

#[test]
fn stream_empty_input_and_error_first() {
    assert_eq!(names(&replay(b"", &[], "m")), ["message_start", "message_delta", "message_stop"]);
    let out = replay(b"data: {\"error\":{\"message\":\"nope\"}}\n\ndata: [DONE]\n\n", &[], "m");
    assert_eq!(
        events(&out),
        vec![(Some("error".into()), serde_json::json!({"type":"error","error":{"type":"api_error","message":"nope"}}))]
    );
}

#[test]
fn stream_text_after_tool_and_late_argument_piece() {
    let input = [
        chunk(r#"{"tool_calls":[{"index":0,"id":"c0","function":{"name":"f","arguments":""}}]}"#, "null"),
        chunk(r#"{"tool_calls":[{"index":1,"id":"c1","function":{"name":"g","arguments":"{}"}}]}"#, "null"),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}"#, "null"),
        chunk(r#"{"content":"done"}"#, "null"),
        chunk("{}", "\"stop\""),
        "data: [DONE]\n\n".to_string(),
        "data: {\"choices\":[{\"delta\":{\"content\":\"ignored\"}}]}\n\n".to_string(),
    ]
    .concat();
    let ev = events(&replay(input.as_bytes(), &[], "m"));
    let kinds: Vec<(String, Value)> =
        ev.iter().map(|(n, d)| (n.clone().unwrap(), d.get("index").cloned().unwrap_or(Value::Null))).collect();
    let want = [
        ("message_start", Value::Null),
        ("content_block_start", json!(0)),
        ("content_block_stop", json!(0)),
        ("content_block_start", json!(1)),
        ("content_block_delta", json!(1)),
        ("content_block_delta", json!(0)),
        ("content_block_stop", json!(1)),
        ("content_block_start", json!(2)),
        ("content_block_delta", json!(2)),
        ("content_block_stop", json!(2)),
        ("message_delta", Value::Null),
        ("message_stop", Value::Null),
    ];
    let want: Vec<(String, Value)> = want.iter().map(|(n, i)| (n.to_string(), i.clone())).collect();
    assert_eq!(kinds, want);
    assert_eq!(ev[10].1["delta"]["stop_reason"], "tool_use");
}

#[test]
fn stream_garbage_is_bounded() {
    let mut s = StreamToAnthropic::new("m");
    let mut out = Vec::new();
    for i in 0..3000 {
        let c = chunk(&format!(r#"{{"tool_calls":[{{"index":{i},"id":"c","function":{{"name":"f"}}}}]}}"#), "null");
        s.push(c.as_bytes(), false, &mut out);
        s.push(b"data: not json\n\n:comment\n\n", false, &mut out);
    }
    s.push(b"", true, &mut out);
    assert_eq!(s.tools.len(), MAX_TOOL_CALLS);
    assert_eq!(names(&out).last().map(String::as_str), Some("message_stop"));
}

/// Anthropic's documented pairs, each both ways.
const DOCUMENTED: &[(u16, &str)] = &[
    (400, "invalid_request_error"),
    (401, "authentication_error"),
    (402, "billing_error"),
    (403, "permission_error"),
    (404, "not_found_error"),
    (413, "request_too_large"),
    (429, "rate_limit_error"),
    (500, "api_error"),
    (504, "timeout_error"),
    (529, "overloaded_error"),
];

#[test]
fn status_type_table_both_ways_and_fallbacks() {
    for &(status, kind) in DOCUMENTED {
        assert_eq!(type_for_status(status), kind, "{status}");
        assert_eq!(status_for_type(kind), status, "{kind}");
    }
    // Status → type only: 503 is overloaded, other 4xx invalid requests, everything else api_error.
    for (status, kind) in [
        (503, "overloaded_error"),
        (405, "invalid_request_error"),
        (408, "invalid_request_error"),
        (409, "invalid_request_error"),
        (415, "invalid_request_error"),
        (422, "invalid_request_error"),
        (499, "invalid_request_error"),
        (501, "api_error"),
        (502, "api_error"),
        (599, "api_error"),
        (200, "api_error"),
        (399, "api_error"),
        (0, "api_error"),
    ] {
        assert_eq!(type_for_status(status), kind, "{status}");
    }
    for unknown in ["", "error", "server_error", "Overloaded_Error"] {
        assert_eq!(status_for_type(unknown), 500, "{unknown}");
    }
}

/// The gateway's own errors, the OpenAI-format upstream's errors and their stream form all name the type
/// by the one table.
#[test]
fn every_error_conversion_uses_the_table() {
    for status in [400, 401, 402, 403, 404, 405, 408, 409, 413, 415, 422, 429, 500, 502, 503, 504, 529] {
        let e = ApiError::new(status, "x", None, "m");
        let want = type_for_status(status);
        assert_eq!(json(e.anthropic_body().as_bytes())["error"]["type"], want, "{status}");
        assert_eq!(json(&error_response(e.clone()).body)["error"]["type"], want, "{status}");
        assert_eq!(json(&error_from_api(&e))["error"]["type"], want, "{status}");
        assert_eq!(json(&error_from_openai(status, e.body().as_bytes()))["error"]["type"], want, "{status}");
    }
}

#[test]
fn error_response_is_anthropic_shaped_and_keeps_headers() {
    let r = error_response(ApiError::method_not_allowed("GET", "POST"));
    assert_eq!(r.status, 405);
    assert_eq!(r.headers, vec![("content-type", "application/json".to_string()), ("allow", "POST".to_string())]);
    let v = json(&r.body);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "method_not_allowed");
    assert!(v["error"]["param"].is_null());
    assert!(v["error"]["message"].as_str().unwrap().contains("'GET'"));
    // The statuses the two old tables disagreed on follow Anthropic's documented mapping.
    for (status, kind) in [(402, "billing_error"), (409, "invalid_request_error"), (504, "timeout_error")] {
        let r = error_response(ApiError::new(status, "server_error", None, "m"));
        assert_eq!((r.status, json(&r.body)["error"]["type"].clone()), (status, json!(kind)));
    }
}

const CLOCK: crate::providers::mock::Clock = crate::providers::mock::Clock { unix_secs: 1, seq: 1 };

#[test]
fn mock_answer_message_stream_and_error() {
    let body = br#"{"model":"demo","max_tokens":10,"messages":[{"role":"user","content":"hey there"}]}"#;
    let r = mock_answer(body, "demo", CLOCK);
    assert_eq!((r.status, r.headers[0].1.as_str()), (200, "application/json"));
    let v = json(&r.body);
    assert_eq!((v["type"].as_str(), v["model"].as_str()), (Some("message"), Some("demo")));
    assert_eq!(v["content"], json!([{"type": "text", "text": "hey there"}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let body = br#"{"model":"demo","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"a b"}]}"#;
    let r = mock_answer(body, "demo", CLOCK);
    assert_eq!((r.status, r.headers[0].1.as_str()), (200, "text/event-stream"));
    let ev = events(&r.body);
    assert_eq!(names(&r.body).first().map(String::as_str), Some("message_start"));
    assert_eq!(names(&r.body).last().map(String::as_str), Some("message_stop"));
    let text: String =
        ev.iter().filter_map(|(_, d)| d.get("delta").and_then(|d| d.get("text")).and_then(Value::as_str)).collect();
    assert_eq!(text, "a b");

    let r = mock_answer(br#"{"model":"demo","messages":[{"role":"user","content":"x"}]}"#, "demo", CLOCK);
    assert_eq!(r.status, 400);
    let v = json(&r.body);
    assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("invalid_request_error")));
    assert_eq!(v["error"]["param"], "max_tokens");
}

/// `/v1/messages` to an OpenAI-format provider: the provider refusing the gateway's credential is a 502
/// (not the caller's 401), and a 2xx that is no chat completion is a 502 too, both in Anthropic's shape.
#[test]
fn openai_provider_refusals_and_unreadable_answers() {
    use crate::config::{Provider, ProviderKind, Secret};
    use crate::providers::{Attempt, BodyMode};
    let p = Provider {
        name: "oai".into(),
        kind: ProviderKind::OpenAi,
        cluster: "oai".into(),
        credential: Some(Secret::for_tests("sk-PROVIDER-SECRET")),
    };
    let a = Attempt {
        op: crate::api::openai::Operation::Messages,
        provider: &p,
        model: "gpt-x",
        alias: "gpt",
        now_unix: 1,
        now_ns: 1,
        usage_chunk: false,
        chat: None,
    };
    let body = br#"{"model":"gpt","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let translator = || crate::providers::prepare(&a, body).unwrap().response.unwrap();
    for status in [401, 403] {
        let mut t = translator();
        assert_eq!(t.on_headers(status, Some("application/json")), (502, BodyMode::Buffer));
        let v = json(&t.on_body(
            br#"{"error":{"message":"Incorrect API key provided: sk-PROV****CRET","code":"invalid_api_key"}}"#,
        ));
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "api_error");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(&format!("oai ({status}): the provider refused")), "{msg}");
        assert!(!msg.contains("sk-PROV"), "the provider's message quoting the key is not passed on: {msg}");
    }
    for (answer, status) in [
        (&b"<html>hi</html>"[..], Some(502)),
        (br#"{"object":"chat.completion"}"#, Some(502)),
        (br#"{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}]}"#, None),
    ] {
        let mut t = translator();
        assert_eq!(t.on_headers(200, Some("application/json")).0, 200);
        let v = json(&t.on_body(answer));
        assert_eq!(t.body_status(), status, "{}", String::from_utf8_lossy(answer));
        assert_eq!(v["type"] == "error", status.is_some());
    }
    // Other errors keep their status.
    let mut t = translator();
    assert_eq!(t.on_headers(429, Some("application/json")).0, 429);
    assert_eq!(json(&t.on_body(br#"{"error":{"message":"slow"}}"#))["error"]["type"], "rate_limit_error");
    assert_eq!(t.body_status(), None);
}
