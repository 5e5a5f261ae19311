use super::request::translate_request;
use super::response::compact_json;
use super::simple::translate_simple;
use super::stream::MAX_OPEN_TOOLS;
use super::*;
use crate::config::{Provider, Secret};
use crate::providers::fixtures;

const NOW: u64 = 1_700_000_000;

fn provider() -> Provider {
    Provider {
        name: "anthropic".into(),
        kind: ProviderKind::Anthropic { version: "2023-06-01".into(), default_max_tokens: 1024 },
        cluster: "anthropic".into(),
        credential: Some(Secret::for_tests("sk-ant-test")),
    }
}

fn attempt(p: &Provider, op: Operation) -> Attempt<'_> {
    Attempt {
        op,
        provider: p,
        model: "claude-sonnet-4-5",
        alias: "claude",
        now_unix: NOW,
        now_ns: NOW * 1_000_000_000,
        usage_chunk: false,
        chat: None,
    }
}

/// The fast path writes what the general path writes (compared as JSON), and leaves everything else
/// to it.
#[test]
fn simple_requests_translate_as_the_general_path_does() {
    let same = [
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"a \"quoted\" \u00e9 line\nbreak"}],"max_tokens":50,"temperature":0.70,"top_p":1}"#,
        r#"{"model":"m","messages":[{"role":"developer","content":"one"},{"role":"system","content":""},{"role":"system","content":"two"},{"role":"user","content":"x"},{"role":"user","content":""},{"role":"assistant","content":""},{"role":"assistant","content":"y"},{"role":"assistant","content":"z"},{"role":"user","content":"w"}],"max_completion_tokens":7,"max_tokens":9,"temperature":null}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"s"}],"stream":true,"stream_options":{"include_usage":true}}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"s"}],"stream":false,"stream_options":null,"top_p":-0.5e0}"#,
    ];
    for body in same {
        let chat = openai::parse_chat(body.as_bytes()).expect(body);
        let fast = translate_simple(&chat, "claude-x", 1024).expect(body);
        let req: Value = serde_json::from_str(body).unwrap();
        let general = translate_request(req.as_object().unwrap(), "claude-x", 1024).unwrap();
        assert_eq!(json_of(&fast.body, body), general, "{body}");
        assert_eq!(fast.stream, req["stream"] == true);
    }
    let general_only = [
        // Other fields, other content shapes, other roles, invalid values, no turns.
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":"END"}"#,
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"bob"}]}"#,
        r#"{"model":"m","messages":[{"role":"tool","content":"hi"}]}"#,
        r#"{"model":"m","messages":[{"role":"assistant","content":null}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":-1}"#,
        r#"{"model":"m","messages":[{"role":"system","content":"only"}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[]}"#,
        r#"[1]"#,
    ];
    for body in general_only {
        let chat = openai::parse_chat(body.as_bytes());
        assert!(chat.is_err() || translate_simple(&chat.unwrap(), "claude-x", 1024).is_none(), "{body}");
    }
    // Through `prepare`: the same request either way.
    let p = provider();
    let out = prepare(&attempt(&p, Operation::ChatCompletions), same[1].as_bytes()).unwrap();
    let v = json_of(out.body.as_deref().unwrap(), "body");
    assert_eq!(v["system"], "Be brief.");
    assert_eq!(v["messages"][0]["content"], "a \"quoted\" \u{e9} line\nbreak");
}

fn prep(body: &[u8]) -> Result<Outgoing, ApiError> {
    let p = provider();
    prepare(&attempt(&p, Operation::ChatCompletions), body)
}

fn json_of(bytes: &[u8], what: &str) -> Value {
    fixtures::parse_json(bytes, what)
}

/// SSE events as JSON (or the literal `[DONE]`), `created` removed.
fn events(bytes: &[u8]) -> Vec<Value> {
    fixtures::sse_values(bytes, &fixtures::without_created).into_iter().map(|(_, v)| v).collect()
}

fn stream_translator(client: &[u8]) -> Box<dyn ResponseTranslator> {
    let mut t = prep(client).unwrap().response.unwrap();
    assert_eq!(t.on_headers(200, Some("text/event-stream")), (200, BodyMode::Stream));
    assert_eq!(t.content_type(), "text/event-stream");
    t
}

/// Replays a stream whole, split in two at every byte, and byte by byte; all must agree.
fn replay(client: &[u8], stream: &[u8], name: &str) -> (Vec<u8>, Option<Usage>) {
    fixtures::replay_translator(stream, name, || prep(client).unwrap().response.unwrap())
}

fn run_case(case: &fixtures::Case) {
    let name = &case.name;
    let client = case.bytes("client_request.json");
    let out = prep(&client).unwrap_or_else(|e| panic!("{name}: {}", e.message));
    let want_req = case.json("provider_request.json");
    fixtures::assert_json(
        &json_of(out.body.as_deref().unwrap(), name),
        &want_req,
        &format!("{name}: provider request"),
    );
    assert_eq!(out.path, case.text("expected_path.txt"), "{name}: path");
    let mut t = out.response.unwrap();

    let usage = if let Some(resp) = case.read("provider_response.json") {
        let status = case.number("provider_status.txt").unwrap_or(200u16);
        let (client_status, mode) = t.on_headers(status, Some("application/json"));
        assert_eq!(mode, BodyMode::Buffer, "{name}");
        assert_eq!(client_status, case.number("client_status.txt").unwrap_or(200u16), "{name}: status");
        assert_eq!(t.content_type(), "application/json", "{name}");
        let got = t.on_body(&resp);
        let want = case.json("client_response.json");
        fixtures::assert_json(&json_of(&got, name), &want, &format!("{name}: client response"));
        t.usage()
    } else {
        let stream =
            case.read("provider_stream.txt").or_else(|| case.read("provider_stream.bin")).expect("stream fixture");
        let (got, usage) = replay(&client, &stream, name);
        let want = case.bytes("client_stream.txt");
        fixtures::assert_stream(&got, &want, &fixtures::without_created, &format!("{name}: client stream"));
        usage
    };
    if case.read("expected_usage.json").is_some() {
        let u = case.json("expected_usage.json");
        let want = Usage {
            prompt_tokens: u["prompt_tokens"].as_u64().unwrap(),
            completion_tokens: u["completion_tokens"].as_u64().unwrap(),
            cached_tokens: u["cached_tokens"].as_u64().unwrap(),
        };
        assert_eq!(usage, Some(want), "{name}: usage");
    }
}

#[test]
fn fixtures() {
    fixtures::run("anthropic", 12, run_case);
}

#[test]
fn headers_and_path() {
    let out = prep(br#"{"model":"claude","messages":[{"role":"user","content":"x"}]}"#).unwrap();
    assert_eq!(out.path, "/v1/messages");
    assert_eq!(
        out.headers,
        vec![
            ("x-api-key", "sk-ant-test".to_string()),
            ("anthropic-version", "2023-06-01".to_string()),
            ("content-type", "application/json".to_string()),
        ]
    );
}

#[test]
fn embeddings_are_refused() {
    let p = provider();
    let e = prepare(&attempt(&p, Operation::Embeddings), br#"{"model":"m","input":"x"}"#).err().unwrap();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("model")));
    assert!(e.message.contains("does not serve embeddings"), "{}", e.message);
}

#[test]
fn rejections_name_the_param() {
    let table: &[(&str, &str)] = &[
        (
            r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}"#,
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            r#"{"messages":[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"[1]"}}]}]}"#,
            "messages[0].tool_calls[0].function.arguments",
        ),
        (r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
        (r#"{"messages":[{"role":"user","content":"x"}],"logprobs":true}"#, "logprobs"),
        (r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#, "response_format"),
        (r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#, "max_tokens"),
        (r#"{"messages":[{"role":"user","content":"x"}],"stop":[1]}"#, "stop"),
        (r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"required"}"#, "tool_choice"),
        (r#"{"messages":[{"role":"system","content":"only system"}]}"#, "messages"),
        (r#"{"messages":[{"role":"function","name":"f","content":"x"}]}"#, "messages[0].role"),
        (r#"{"messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}"#,
            "messages[0].content[0].type",
        ),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/bmp;base64,AA=="}}]}]}"#,
            "messages[0].content[0].image_url.url",
        ),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}]}]}"#,
            "messages[0].content[0].image_url.url",
        ),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}"#,
            "messages[0].content[0].image_url.url",
        ),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#,
            "messages[0].content[0].file.file_data",
        ),
        (r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{}}]}"#, "tools[0].type"),
    ];
    for (body, param) in table {
        let e = prep(body.as_bytes()).err().unwrap_or_else(|| panic!("accepted: {body}"));
        assert_eq!((e.status, e.param.as_deref()), (400, Some(*param)), "{body}: {}", e.message);
    }
}

fn translated(body: &str) -> Value {
    json_of(&prep(body.as_bytes()).unwrap().body.unwrap(), body)
}

#[test]
fn request_details() {
    // Empty arguments mean no arguments; PDF files become documents; image/jpg is image/jpeg.
    let v = translated(
        r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBE"}},{"type":"image_url","image_url":{"url":"DATA:image/JPG;base64,/9j/"}}]},{"role":"assistant","content":"","tool_calls":[{"id":"t1","type":"function","function":{"name":"now","arguments":""}}]}]}"#,
    );
    assert_eq!(v["messages"][0]["content"][0]["source"]["media_type"], "application/pdf");
    assert_eq!(v["messages"][0]["content"][1]["source"]["media_type"], "image/jpeg");
    assert_eq!(v["messages"][1]["content"], json!([{"type":"tool_use","id":"t1","name":"now","input":{}}]));
    // parallel_tool_calls false without tool_choice; tool_choice none without tools is a no-op.
    let v = translated(
        r#"{"messages":[{"role":"user","content":"x"}],"parallel_tool_calls":false,"tools":[{"type":"function","function":{"name":"f","strict":true}}]}"#,
    );
    assert_eq!(v["tool_choice"], json!({"type":"auto","disable_parallel_tool_use":true}));
    assert_eq!(v["tools"][0]["strict"], true);
    let v = translated(r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"none","seed":1}"#);
    assert!(v.get("tool_choice").is_none() && v.get("seed").is_none());
    let v = translated(
        r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"none","parallel_tool_calls":false,"tools":[{"type":"function","function":{"name":"f"}}]}"#,
    );
    assert_eq!(v["tool_choice"], json!({"type":"none"}));
}

#[test]
fn garbage_streams_end_well_formed() {
    let client = br#"{"model":"claude","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let inputs: &[&[u8]] = &[
        b"",
        b"\xff\xfe\x00garbage\n\n",
        b"data: {not json}\n\ndata: [1,2]\n\nevent: message_start\ndata: {\"type\":\"message_start\",\"message\":7}\n\n",
        b"data: {\"type\":\"content_block_delta\",\"index\":5,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"x\"}}\n\n",
    ];
    for input in inputs {
        let (out, _) = replay(client, input, "garbage");
        let ev = events(&out);
        assert_eq!(ev.last(), Some(&Value::String("[DONE]".into())), "{}", String::from_utf8_lossy(&out));
        assert!(ev[ev.len() - 2].get("error").is_some(), "{}", String::from_utf8_lossy(&out));
    }
    // A huge unterminated line is not kept whole, and bytes after [DONE] are ignored.
    let mut t = stream_translator(client);
    let mut out = Vec::new();
    let big = vec![b'a'; 1 << 20];
    for _ in 0..20 {
        t.on_stream(&big, false, &mut out);
    }
    t.on_stream(b"\n\n", true, &mut out);
    let n = out.len();
    t.on_stream(b"data: {\"type\":\"message_stop\"}\n\n", true, &mut out);
    assert_eq!(out.len(), n);
}

#[test]
fn many_tool_blocks_stay_bounded() {
    let mut t = Translator::new(&attempt(&provider(), Operation::ChatCompletions), true, false);
    t.on_headers(200, None);
    let mut out = Vec::new();
    for i in 0..1000 {
        let ev = format!(
            "data: {{\"type\":\"content_block_start\",\"index\":{i},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"t{i}\",\"name\":\"f\",\"input\":{{}}}}}}\n\n"
        );
        t.on_stream(ev.as_bytes(), false, &mut out);
    }
    assert!(t.open_tools.len() <= MAX_OPEN_TOOLS);
    assert_eq!(t.next_tool, 1000);
}

#[test]
fn compacts_tool_input() {
    assert_eq!(compact_json("{ \"b\" : [1, 2],\n \"a\": \"x \\\" y\" }"), r#"{"b":[1,2],"a":"x \" y"}"#);
}

#[test]
fn unreadable_success_body_is_an_error() {
    let mut t = prep(br#"{"model":"c","messages":[{"role":"user","content":"x"}]}"#).unwrap().response.unwrap();
    t.on_headers(200, Some("application/json"));
    let v = json_of(&t.on_body(b"not json"), "body");
    assert_eq!(v["error"]["code"], "provider_error");
    assert_eq!(t.usage(), None);
}

/// The provider's message id is the answer's; one of our own only when it sent none, in answers and
/// in streams alike.
#[test]
fn ids_are_the_providers_or_made_when_missing() {
    let client = br#"{"model":"c","messages":[{"role":"user","content":"x"}]}"#;
    let answer = |body: &[u8]| {
        let mut t = prep(client).unwrap().response.unwrap();
        t.on_headers(200, Some("application/json"));
        json_of(&t.on_body(body), "answer")["id"].as_str().unwrap_or("").to_string()
    };
    let text = r#""type":"message","role":"assistant","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}"#;
    assert_eq!(answer(format!("{{\"id\":\"msg_1\",{text}}}").as_bytes()), "msg_1");
    let made = answer(format!("{{{text}}}").as_bytes());
    assert!(made.starts_with("chatcmpl-") && made.len() > "chatcmpl-".len(), "{made}");

    let stream_ids = |stream: &str| {
        let mut t = stream_translator(br#"{"model":"c","messages":[{"role":"user","content":"x"}],"stream":true}"#);
        let mut out = Vec::new();
        t.on_stream(stream.as_bytes(), true, &mut out);
        let ids: Vec<String> = sse::Decoder::new()
            .events(&out, true)
            .into_iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| json_of(e.data.as_bytes(), "chunk")["id"].as_str().unwrap_or("").to_string())
            .collect();
        ids
    };
    let delta = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":0}}}\n\n";
    let named = stream_ids(&format!("{start}{delta}"));
    assert!(named.len() > 1 && named.iter().all(|id| id == "msg_s"), "{named:?}");
    let unnamed = stream_ids(delta);
    assert!(unnamed.len() > 1 && unnamed[0].starts_with("chatcmpl-"), "{unnamed:?}");
    assert!(unnamed.iter().all(|id| *id == unnamed[0]), "{unnamed:?}");
}

/// Ids of our own come from the attempt's clock, not from a counter: the same clock gives the same id,
/// another clock another id, in answers and in streams alike.
#[test]
fn made_ids_follow_the_attempts_clock() {
    let p = provider();
    let answer =
        br#"{"type":"message","role":"assistant","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn"}"#;
    let stream = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let ids = |now_ns: u64| {
        let a = Attempt { now_ns, ..attempt(&p, Operation::ChatCompletions) };
        let mut t =
            prepare(&a, br#"{"model":"c","messages":[{"role":"user","content":"x"}]}"#).unwrap().response.unwrap();
        t.on_headers(200, Some("application/json"));
        let answered = json_of(&t.on_body(answer), "answer")["id"].as_str().unwrap_or("").to_string();
        let body = br#"{"model":"c","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        let mut t = prepare(&a, body).unwrap().response.unwrap();
        t.on_headers(200, Some("text/event-stream"));
        let mut out = Vec::new();
        t.on_stream(stream, true, &mut out);
        let streamed =
            json_of(sse::decode_all(&out)[0].data.as_bytes(), "chunk")["id"].as_str().unwrap_or("").to_string();
        (answered, streamed)
    };
    let first = ids(NOW * 1_000_000_000 + 1);
    assert!(first.0.starts_with("chatcmpl-") && first.1.starts_with("chatcmpl-"), "{first:?}");
    assert_eq!(first.0, first.1);
    assert_eq!(ids(NOW * 1_000_000_000 + 1), first);
    let later = ids(NOW * 1_000_000_000 + 2);
    assert_ne!(later.0, first.0);
    assert_ne!(later.1, first.1);
}

/// A 2xx the translator cannot read, or that holds neither content nor a stop reason, is the client's
/// 502 (the status follows the body); a readable one keeps its 200.
#[test]
fn unreadable_or_empty_success_is_a_502() {
    let client = br#"{"model":"c","messages":[{"role":"user","content":"x"}]}"#;
    for (body, status) in [
        (&b"not json"[..], Some(502)),
        (b"{}", Some(502)),
        (br#"{"type":"message","usage":{"input_tokens":1}}"#, Some(502)),
        (br#"{"content":[]}"#, None),
        (br#"{"stop_reason":"end_turn"}"#, None),
        (br#"{"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn"}"#, None),
    ] {
        let mut t = prep(client).unwrap().response.unwrap();
        assert_eq!(t.on_headers(200, Some("application/json")).0, 200);
        let v = json_of(&t.on_body(body), "answer");
        assert_eq!(t.body_status(), status, "{}", String::from_utf8_lossy(body));
        if status.is_some() {
            assert_eq!(v["error"]["code"], "provider_error");
        } else {
            assert_eq!(v["object"], "chat.completion");
        }
    }
    // An error status is the prologue's business: no status change after the body.
    let mut t = prep(client).unwrap().response.unwrap();
    assert_eq!(t.on_headers(429, Some("application/json")).0, 429);
    t.on_body(b"<html>slow down</html>");
    assert_eq!(t.body_status(), None);
}

#[test]
fn empty_and_typeless_tool_schemas_become_object_schemas() {
    let v = translated(
        r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a","parameters":{}}},{"type":"function","function":{"name":"b","parameters":{"properties":{"q":{"type":"string"}}}}},{"type":"function","function":{"name":"c","parameters":{"type":"object","properties":{}}}}]}"#,
    );
    assert_eq!(v["tools"][0]["input_schema"], json!({"type": "object", "properties": {}}));
    assert_eq!(v["tools"][1]["input_schema"], json!({"type": "object", "properties": {"q": {"type": "string"}}}));
    assert_eq!(v["tools"][2]["input_schema"], json!({"type": "object", "properties": {}}));
}
