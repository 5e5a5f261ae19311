use super::*;
use crate::config::Secret;
use crate::providers::fixtures;
use serde_json::json;

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const NOW: u64 = 1_718_897_445;
const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";

fn provider(token: Option<&str>) -> Provider {
    Provider {
        name: "bedrock".into(),
        kind: ProviderKind::Bedrock {
            region: "us-east-1".into(),
            access_key_id: Secret::for_tests("AKIAIOSFODNN7EXAMPLE"),
            secret_access_key: Secret::for_tests("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(Secret::for_tests),
        },
        cluster: "bedrock".into(),
        credential: None,
    }
}

fn attempt(p: &Provider, op: Operation) -> Attempt<'_> {
    Attempt {
        op,
        provider: p,
        model: MODEL,
        alias: "claude",
        now_unix: NOW,
        now_ns: NOW * 1_000_000_000,
        usage_chunk: false,
        chat: None,
    }
}

fn run(body: &str) -> Result<Outgoing, ApiError> {
    let p = provider(None);
    prepare(&attempt(&p, Operation::ChatCompletions), body.as_bytes())
}

fn check_case(case: &fixtures::Case) -> &'static str {
    let name = &case.name;
    let client = case.bytes("client_request.json");
    let out = run(std::str::from_utf8(&client).unwrap()).unwrap_or_else(|e| panic!("{name}: {}", e.message));
    assert_eq!(out.path, case.text("expected_path.txt"), "{name}: path");
    let sent: Value = serde_json::from_slice(out.body.as_deref().unwrap()).unwrap();
    fixtures::assert_json(&sent, &case.json("provider_request.json"), &format!("{name}: provider request"));
    let mut t = out.response.unwrap();

    if let Some(stream) = case.read("provider_stream.bin") {
        let want = case.bytes("client_stream.txt");
        let fresh = || run(std::str::from_utf8(&client).unwrap()).unwrap().response.unwrap();
        let (whole, _) = fixtures::replay_translator(&stream, name, fresh);
        fixtures::assert_stream(&whole, &want, &fixtures::without_created, &format!("{name} whole"));
        return "stream";
    }

    let status: u16 = case.number("provider_status.txt").unwrap_or(200);
    let want_status: u16 = case.number("client_status.txt").unwrap_or(200);
    assert_eq!(t.on_headers(status, Some("application/json")), (want_status, BodyMode::Buffer), "{name}");
    assert_eq!(t.content_type(), "application/json");
    let body = case.bytes("provider_response.json");
    let got: Value = serde_json::from_slice(&t.on_body(&body)).unwrap();
    let want = fixtures::without_created(case.json("client_response.json"));
    fixtures::assert_json(&fixtures::without_created(got.clone()), &want, name);
    if status == 200 {
        assert_eq!(got["created"], NOW);
        let u = &got["usage"];
        assert_eq!(
            t.usage(),
            Some(Usage {
                prompt_tokens: u["prompt_tokens"].as_u64().unwrap(),
                completion_tokens: u["completion_tokens"].as_u64().unwrap(),
                cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap(),
            })
        );
    }
    "response"
}

#[test]
fn fixtures() {
    let mut streams = 0;
    let cases = fixtures::run("bedrock", 12, |case| {
        if check_case(case) == "stream" {
            streams += 1;
        }
    });
    assert!(cases >= 12 && streams >= 3, "{cases} cases, {streams} streams");
}

#[test]
fn signs_what_it_sends() {
    for token in [None, Some("session-token")] {
        let p = provider(token);
        let body = r#"{"model":"claude","messages":[{"role":"user","content":"Hello"}],"stream":true}"#;
        let out = prepare(&attempt(&p, Operation::ChatCompletions), body.as_bytes()).unwrap();
        let payload = out.body.clone().unwrap();
        let headers = [("content-type", "application/json"), ("host", HOST)];
        let req = sigv4::Request { method: "POST", path: &out.path, query: "", headers: &headers, payload: &payload };
        let creds = sigv4::Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            session_token: token,
        };
        let mut want = vec![
            (":authority", HOST.to_string()),
            ("content-type", "application/json".to_string()),
            ("accept-encoding", "identity".to_string()),
        ];
        want.extend(sigv4::sign(&req, &creds, "us-east-1", "bedrock", NOW));
        assert_eq!(out.headers, want);
        let auth = &out.headers.iter().find(|(k, _)| *k == "authorization").unwrap().1;
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240620/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date"
        ));
        assert_eq!(auth.contains("x-amz-security-token"), token.is_some());
        assert!(!auth.contains("wJalr"), "the secret never appears");
    }
}

#[test]
fn model_ids_are_percent_encoded() {
    let p = provider(None);
    let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    for (model, path) in [
        ("meta.llama3-70b-instruct-v1:0", "/model/meta.llama3-70b-instruct-v1%3A0/converse"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc/converse",
        ),
        ("us.amazon.nova-pro-v1:0", "/model/us.amazon.nova-pro-v1%3A0/converse"),
    ] {
        let a = Attempt { model, ..attempt(&p, Operation::ChatCompletions) };
        let out = prepare(&a, body).unwrap();
        assert_eq!(out.path, path);
    }
}

#[test]
fn rejections_name_the_param() {
    let table: &[(&str, &str)] = &[
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x.test/a.png"}}]}]}"#,
            "messages[0].content[0].image_url.url",
        ),
        (
            r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/bmp;base64,Qk0="}}]}]}"#,
            "messages[1].content[1].image_url.url",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}]}]}"#,
            "messages[0].content[0].image_url.url",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
            "messages[0].content[0].type",
        ),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}"#, "logprobs"),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#,
            "response_format",
        ),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, "max_tokens"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#, "temperature"),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#, "stop"),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search"}]}"#,
            "tools[0].type",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}"#,
            "tool_choice",
        ),
        (r#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#, "messages[0].role"),
        (r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
        (
            r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}"#,
            "messages[0].tool_calls[0].function.arguments",
        ),
    ];
    for (body, param) in table {
        let e = run(body).err().unwrap_or_else(|| panic!("accepted: {body}"));
        assert_eq!(e.status, 400, "{body}");
        assert_eq!(e.param.as_deref(), Some(*param), "{body}: {}", e.message);
    }
    let p = provider(None);
    let e = prepare(&attempt(&p, Operation::Embeddings), br#"{"model":"m","input":"x"}"#).err().unwrap();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("model")));
    assert!(e.message.contains("does not serve embeddings"));
}

#[test]
fn tool_choice_none_with_tool_history_keeps_tools() {
    let body = r#"{"model":"m","tool_choice":"none",
            "tools":[{"type":"function","function":{"name":"f","description":"","parameters":null}}],
            "messages":[{"role":"user","content":"x"},
              {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":""}}]},
              {"role":"tool","tool_call_id":"c1","content":""}]}"#;
    let v: Value = serde_json::from_slice(&run(body).unwrap().body.unwrap()).unwrap();
    assert_eq!(
        v["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
    );
    assert_eq!(v["messages"][1]["content"][0]["toolUse"]["input"], json!({}));
    assert_eq!(v["messages"][2]["content"][0]["toolResult"]["content"], json!([{"text": ""}]));
}

#[test]
fn non_json_errors_keep_a_prefix() {
    let mut t = run(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).unwrap().response.unwrap();
    assert_eq!(t.on_headers(500, Some("text/html")), (502, BodyMode::Buffer));
    let body = format!("<html>upstream exploded{}</html>", "!".repeat(5000));
    let v: Value = serde_json::from_slice(&t.on_body(body.as_bytes())).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("bedrock (500): <html>upstream exploded"), "{msg}");
    assert!(msg.len() < 300);
    assert_eq!(v["error"]["code"], "provider_error");
    assert_eq!(t.usage(), None);
}

#[test]
fn garbage_stream_ends_well_formed() {
    let req = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
    let good =
        eventstream::encode(&[(":event-type", "messageStart"), (":message-type", "event")], br#"{"role":"assistant"}"#);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            {
                let mut b = good.clone();
                b[20] ^= 1;
                b
            },
            "checksumError",
        ),
        (vec![0xff; 64], "checksumError"),
        (good[..good.len() - 3].to_vec(), "cut inside a message"),
        (
            eventstream::encode(&[(":event-type", "messageStart"), (":message-type", "event")], b"not json"),
            "unreadable 'messageStart'",
        ),
        (
            eventstream::encode(
                &[(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "boom")],
                b"",
            ),
            "bedrock (InternalFailure): boom",
        ),
    ];
    for (bytes, want) in cases {
        let mut t = run(req).unwrap().response.unwrap();
        t.on_headers(200, None);
        let mut out = Vec::new();
        t.on_stream(&good, false, &mut out);
        t.on_stream(&bytes, false, &mut out);
        t.on_stream(&[], true, &mut out);
        t.on_stream(&good, true, &mut out);
        let events = sse::decode_all(&out);
        let last = events.last().unwrap();
        assert_eq!(last.data, "[DONE]", "{want}");
        let err: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{want}: {msg}");
        assert_eq!(events.iter().filter(|e| e.data == "[DONE]").count(), 1);
    }
}

#[test]
fn stream_request_with_error_status_is_buffered_json() {
    let mut t =
        run(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#).unwrap().response.unwrap();
    assert_eq!(t.on_headers(429, Some("application/json")), (429, BodyMode::Buffer));
    assert_eq!(t.content_type(), "application/json");
    let v: Value = serde_json::from_slice(&t.on_body(br#"{"message":"slow down"}"#)).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["message"], "bedrock (429): slow down");
}

#[test]
fn unreadable_or_empty_success_is_a_502() {
    for (body, status) in [
        (&b"<html>hi</html>"[..], Some(502)),
        (b"{}", Some(502)),
        (br#"{"usage":{"inputTokens":1}}"#, Some(502)),
        (br#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn"}"#, None),
    ] {
        let mut t = run(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).unwrap().response.unwrap();
        assert_eq!(t.on_headers(200, Some("application/json")).0, 200);
        let v: Value = serde_json::from_slice(&t.on_body(body)).unwrap();
        assert_eq!(t.body_status(), status, "{}", String::from_utf8_lossy(body));
        assert_eq!(v["error"]["code"] == "provider_error", status.is_some());
    }
}

#[test]
fn empty_and_typeless_tool_schemas_become_object_schemas() {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}],
            "tools":[{"type":"function","function":{"name":"a","parameters":{}}},
                     {"type":"function","function":{"name":"b","parameters":{"properties":{"q":{"type":"string"}}}}}]}"#;
    let v: Value = serde_json::from_slice(&run(body).unwrap().body.unwrap()).unwrap();
    let schema = |i: usize| v["toolConfig"]["tools"][i]["toolSpec"]["inputSchema"]["json"].clone();
    assert_eq!(schema(0), json!({"type": "object", "properties": {}}));
    assert_eq!(schema(1), json!({"type": "object", "properties": {"q": {"type": "string"}}}));
}

#[test]
fn many_tool_blocks_stay_bounded_and_indexed() {
    let req = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
    let mut t = run(req).unwrap().response.unwrap();
    t.on_headers(200, None);
    let ev = |kind: &str, payload: String| {
        eventstream::encode(&[(":event-type", kind), (":message-type", "event")], payload.as_bytes())
    };
    let mut out = Vec::new();
    for i in 0..1000u32 {
        let start = format!(r#"{{"contentBlockIndex":{i},"start":{{"toolUse":{{"toolUseId":"t{i}","name":"f"}}}}}}"#);
        t.on_stream(&ev("contentBlockStart", start), false, &mut out);
    }
    // Only the newest blocks stay open: a late piece of block 999 finds its index (999), one of block 0 is
    // dropped (its block was pushed out), and none searched more than MAX_OPEN_TOOLS entries.
    for i in [999u32, 0] {
        let delta = format!(r#"{{"contentBlockIndex":{i},"delta":{{"toolUse":{{"input":"{{\"a\":{i}}}"}}}}}}"#);
        t.on_stream(&ev("contentBlockDelta", delta), false, &mut out);
    }
    t.on_stream(&ev("contentBlockStop", r#"{"contentBlockIndex":999}"#.into()), false, &mut out);
    t.on_stream(&[], true, &mut out);
    let events = sse::decode_all(&out);
    let args: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter(|v| {
            v.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
                .is_some_and(|a| !a.is_empty())
        })
        .collect();
    assert_eq!(args.len(), 1, "only the open block's piece is sent");
    assert_eq!(args[0]["choices"][0]["delta"]["tool_calls"][0]["index"], 999);
}
