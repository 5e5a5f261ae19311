use super::*;
use crate::config::Secret;
use crate::providers::client_status_for_provider_error;
use crate::providers::fixtures;

const NOW: u64 = 1_700_000_000;

fn provider(kind: ProviderKind) -> Provider {
    Provider { name: "gemini".into(), kind, cluster: "gemini".into(), credential: Some(Secret::for_tests("gk-secret")) }
}

fn gemini() -> Provider {
    provider(ProviderKind::Gemini { api_version: "v1beta".into() })
}

fn vertex() -> Provider {
    provider(ProviderKind::Vertex { project: "my-proj".into(), location: "us-central1".into() })
}

fn attempt<'a>(p: &'a Provider, op: Operation, model: &'a str) -> Attempt<'a> {
    Attempt {
        op,
        provider: p,
        model,
        alias: "alias",
        now_unix: NOW,
        now_ns: NOW * 1_000_000_000,
        usage_chunk: false,
        chat: None,
    }
}

/// Drops `created` (time-dependent) and checks a fallback id's shape before dropping it too.
fn normalise(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("created");
        if let Some(Value::String(id)) = o.get("id") {
            if id.starts_with("chatcmpl-") && id.len() == "chatcmpl-".len() + 24 || id == "chatcmpl-FALLBACK" {
                o.insert("id".into(), "chatcmpl-FALLBACK".into());
            }
        }
    }
    v
}

fn sse_values(bytes: &[u8]) -> Vec<Value> {
    fixtures::sse_values(bytes, &normalise).into_iter().map(|(_, v)| v).collect()
}

fn prepare_case(case: &fixtures::Case) -> (Provider, Operation, String, Vec<u8>) {
    let opts = case.read("attempt.json").map(|_| case.json("attempt.json")).unwrap_or(json!({}));
    let p = match opts.get("kind").and_then(Value::as_str) {
        Some("vertex") => vertex(),
        _ => provider(ProviderKind::Gemini {
            api_version: opts.get("api_version").and_then(Value::as_str).unwrap_or("v1beta").into(),
        }),
    };
    let op = match opts.get("op").and_then(Value::as_str) {
        Some("embeddings") => Operation::Embeddings,
        _ => Operation::ChatCompletions,
    };
    let model = opts.get("model").and_then(Value::as_str).unwrap_or("gemini-2.5-flash").to_string();
    (p, op, model, case.bytes("client_request.json"))
}

#[test]
fn fixtures() {
    let mut saw_crlf = false;
    fixtures::run("gemini", 12, |case| {
        let name = &case.name;
        let (p, op, model, body) = prepare_case(case);
        let a = attempt(&p, op, &model);
        let out = prepare(&a, &body).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(out.path, case.text("expected_path.txt"), "{name}: path");
        let want_auth = match p.kind {
            ProviderKind::Vertex { .. } => ("authorization", "Bearer gk-secret".to_string()),
            _ => ("x-goog-api-key", "gk-secret".to_string()),
        };
        assert_eq!(out.headers, vec![want_auth], "{name}: headers");
        let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
        fixtures::assert_json(&sent, &case.json("provider_request.json"), &format!("{name}: provider request"));

        if let Some(resp) = case.read("provider_response.json") {
            let status: u16 = case.number("provider_status.txt").unwrap_or(200);
            let mut t = out.response.unwrap();
            let (client_status, mode) = t.on_headers(status, Some("application/json"));
            assert_eq!(client_status, client_status_for_provider_error(status), "{name}");
            assert_eq!(mode, BodyMode::Buffer, "{name}");
            assert_eq!(t.content_type(), "application/json", "{name}");
            let got: Value = serde_json::from_slice(&t.on_body(&resp))
                .unwrap_or_else(|e| panic!("{name}: client body is not JSON: {e}"));
            let want = normalise(case.json("client_response.json"));
            fixtures::assert_json(&normalise(got), &want, &format!("{name}: response"));
        } else {
            let stream = case
                .read("provider_stream.txt")
                .or_else(|| case.read("provider_stream.bin"))
                .unwrap_or_else(|| panic!("{name}: no provider response or stream"));
            saw_crlf |= stream.windows(4).any(|w| w == b"\r\n\r\n");
            let fresh = || prepare(&a, &body).unwrap().response.unwrap();
            let (whole, _) = fixtures::replay_translator(&stream, name, fresh);
            let want = case.bytes("client_stream.txt");
            fixtures::assert_stream(&whole, &want, &normalise, &format!("{name}: whole stream"));
        }
    });
    assert!(saw_crlf, "stream fixtures must keep Gemini's CRLF framing");
}

fn chat(p: &Provider, body: &Value) -> Result<Outgoing, ApiError> {
    prepare(&attempt(p, Operation::ChatCompletions, "gemini-2.5-flash"), body.to_string().as_bytes())
}

fn sent(out: Outgoing) -> Value {
    serde_json::from_slice(&out.body.unwrap()).unwrap()
}

#[test]
fn rejects_what_gemini_cannot_take() {
    let user = |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});
    let table: Vec<(Provider, Operation, Value, &str)> = vec![
        (
            gemini(),
            Operation::ChatCompletions,
            user(json!([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])),
            "messages[0].content[0].image_url.url",
        ),
        (
            vertex(),
            Operation::ChatCompletions,
            user(
                json!([{"type": "image_url", "image_url": {"url": "https://generativelanguage.googleapis.com/v1beta/files/x"}}]),
            ),
            "messages[0].content[0].image_url.url",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            user(
                json!([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]),
            ),
            "messages[0].content[1].image_url.url",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            user(json!([{"type": "file", "file": {"file_id": "file-123"}}])),
            "messages[0].content[0].file.file_data",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            user(json!([{"type": "video", "video": {}}])),
            "messages[0].content[0].type",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
            "n",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "logprobs": true, "messages": [{"role": "user", "content": "x"}]}),
            "logprobs",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "stop": [1], "messages": [{"role": "user", "content": "x"}]}),
            "stop",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "tool_choice": "sometimes", "messages": [{"role": "user", "content": "x"}]}),
            "tool_choice",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "tools": [{"type": "web_search"}], "messages": [{"role": "user", "content": "x"}]}),
            "tools[0].type",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "response_format": {"type": "xml"}, "messages": [{"role": "user", "content": "x"}]}),
            "response_format.type",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}]}),
            "messages[1].tool_call_id",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            gemini(),
            Operation::ChatCompletions,
            json!({"model": "m", "messages": [{"role": "system", "content": "only a system prompt"}]}),
            "messages",
        ),
        (vertex(), Operation::Embeddings, json!({"model": "e", "input": "x"}), "model"),
        (gemini(), Operation::Embeddings, json!({"model": "e", "input": [[1, 2, 3]]}), "input"),
        (gemini(), Operation::Embeddings, json!({"model": "e", "input": []}), "input"),
        // Each input becomes a ~60-byte request of its own: more than OpenAI's 2048 is refused.
        (gemini(), Operation::Embeddings, json!({"model": "e", "input": vec![""; 2049]}), "input"),
        (
            gemini(),
            Operation::Embeddings,
            json!({"model": "e", "input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
    ];
    for (p, op, body, param) in table {
        let err = match prepare(&attempt(&p, op, "m"), body.to_string().as_bytes()) {
            Ok(_) => panic!("{body} was accepted"),
            Err(e) => e,
        };
        assert_eq!(err.status, 400, "{body}");
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
    }
    let e = prepare(&attempt(&vertex(), Operation::Embeddings, "m"), br#"{"model":"e","input":"x"}"#).err().unwrap();
    assert_eq!(e.message, "provider kind vertex does not serve embeddings");
    let e =
        chat(&gemini(), &user(json!([{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]))).err().unwrap();
    assert!(e.message.contains("data: URL"), "{}", e.message);
}

#[test]
fn model_segment_is_percent_encoded() {
    let p = gemini();
    let out = prepare(
        &attempt(&p, Operation::ChatCompletions, "tuned/ä b:c~x"),
        br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
    )
    .unwrap();
    assert_eq!(out.path, "/v1beta/models/tuned%2F%C3%A4%20b%3Ac~x:generateContent");
    let out = prepare(
        &attempt(&p, Operation::ChatCompletions, "models/gemini-2.0-flash"),
        br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
    )
    .unwrap();
    assert_eq!(out.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    let v = vertex();
    let out = prepare(
        &attempt(&v, Operation::ChatCompletions, "gemini-2.5-pro"),
        br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
    )
    .unwrap();
    assert_eq!(
        out.path,
        "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
}

#[test]
fn other_parts_and_legacy_function_messages() {
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "b.PDF"}},
            {"type": "image_url", "image_url": "data:image/jpeg;base64,/9j/"},
            {"type": "image_url", "image_url": {"url": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
            {"type": "text", "text": ""}
        ]},
        {"role": "assistant", "content": "", "function_call": {"name": "lookup", "arguments": "{\"q\":1}"}},
        {"role": "function", "name": "lookup", "content": "not json"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}
    ]});
    let v = sent(chat(&gemini(), &body).unwrap());
    assert_eq!(
        v["contents"],
        json!([
            {"role": "user", "parts": [
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}
            ]},
            {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": 1}}, "thoughtSignature": SKIP_SIGNATURE}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"content": "not json"}}}]},
            {"role": "model", "parts": [{"text": "I can't."}]}
        ])
    );
}

fn translator(stream: bool, include_usage: bool) -> Box<dyn ResponseTranslator> {
    let p = gemini();
    let body = json!({"model": "m", "stream": stream, "stream_options": {"include_usage": include_usage},
        "messages": [{"role": "user", "content": "x"}]});
    chat(&p, &body).unwrap().response.unwrap()
}

#[test]
fn usage_is_reported_without_being_asked() {
    let mut t = translator(true, false);
    t.on_headers(200, Some("text/event-stream"));
    let mut out = Vec::new();
    t.on_stream(
        b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":7,\"candidatesTokenCount\":3,\"thoughtsTokenCount\":2,\"cachedContentTokenCount\":4}}\r\n\r\n",
        true,
        &mut out,
    );
    assert_eq!(t.usage(), Some(Usage { prompt_tokens: 7, completion_tokens: 5, cached_tokens: 4 }));
    let events = sse_values(&out);
    assert!(events.iter().all(|e| e.get("usage").is_none()), "{events:?}");
    assert_eq!(events.last(), Some(&Value::String("[DONE]".into())));
    assert!(events.iter().any(|e| e["choices"][0]["finish_reason"] == "stop"));
}

#[test]
fn auth_errors_become_gateway_errors() {
    let mut t = translator(true, true);
    assert_eq!(t.on_headers(403, Some("application/json")), (502, BodyMode::Buffer));
    assert_eq!(t.content_type(), "application/json");
    let body = br#"{"error":{"code":403,"message":"API key not valid. Please pass a valid API key.","status":"PERMISSION_DENIED"}}"#;
    let v: Value = serde_json::from_slice(&t.on_body(body)).unwrap();
    assert_eq!(v["error"]["code"], "provider_auth_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("API key not valid"));
    let mut t = translator(false, false);
    assert_eq!(t.on_headers(500, None), (502, BodyMode::Buffer));
    let v: Value = serde_json::from_slice(&t.on_body(b"")).unwrap();
    assert_eq!(v["error"]["message"], "gemini (500): no error details");
}

#[test]
fn garbage_streams_end_well_formed() {
    let inputs: Vec<Vec<u8>> = vec![
        b"data: not json\r\n\r\ndata: {\"candidates\":[]}\r\n\r\n".to_vec(),
        vec![0xff, 0xfe, b'\n', b'\n', 0x00],
        b"event: x\ndata: [1,2]\n\n".to_vec(),
        b"data: {\"error\":\"flat\"}\n\n".to_vec(),
        b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":null}}]},\"finishReason\":\"MALFORMED_FUNCTION_CALL\"}]}\n\n".to_vec(),
        Vec::new(),
    ];
    for input in inputs {
        let mut t = translator(true, true);
        t.on_headers(200, Some("text/event-stream"));
        let mut out = Vec::new();
        t.on_stream(&input, false, &mut out);
        t.on_stream(b"", true, &mut out);
        t.on_stream(b"data: {}\n\n", true, &mut out);
        let events = sse_values(&out);
        assert_eq!(events.last(), Some(&Value::String("[DONE]".into())), "{input:?}");
        assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1, "{input:?}");
        let finished = events.iter().any(|e| e.get("error").is_some() || !e["choices"][0]["finish_reason"].is_null());
        assert!(finished, "{input:?}: {events:?}");
    }
}

#[test]
fn non_stream_without_candidates_or_usage() {
    let mut t = translator(false, false);
    t.on_headers(200, Some("application/json"));
    let v: Value = serde_json::from_slice(
        &t.on_body(br#"{"candidates":[{"content":{"parts":[{"text":"thinking","thought":true},{"text":"ok"}]}}]}"#),
    )
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "ok");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v.get("usage").is_none());
    assert_eq!(t.usage(), None);
    let v: Value = serde_json::from_slice(&t.on_body(b"<html>")).unwrap();
    assert_eq!(v["error"]["type"], "server_error");
}

#[test]
fn unreadable_or_empty_success_is_a_502() {
    for (body, status) in [
        (&b"<html>hi</html>"[..], Some(502)),
        (b"{}", Some(502)),
        (br#"{"usageMetadata":{"promptTokenCount":1}}"#, Some(502)),
        (br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#, None),
        (br#"{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"}]}"#, None),
    ] {
        let mut t = translator(false, false);
        assert_eq!(t.on_headers(200, Some("application/json")).0, 200);
        let v: Value = serde_json::from_slice(&t.on_body(body)).unwrap();
        assert_eq!(t.body_status(), status, "{}", String::from_utf8_lossy(body));
        assert_eq!(v["error"]["code"] == "provider_error", status.is_some());
    }
    // A streamed request answered with one body cannot be translated either.
    let mut t = translator(true, false);
    t.on_headers(200, Some("application/json"));
    t.on_body(br#"{"candidates":[]}"#);
    assert_eq!(t.body_status(), Some(502));
}

#[test]
fn empty_tool_schemas_are_left_out_and_typeless_ones_typed() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [
        {"type": "function", "function": {"name": "a", "parameters": {}}},
        {"type": "function", "function": {"name": "b", "parameters": {"properties": {"q": {"type": "string"}}}}}]});
    let v1 = provider(ProviderKind::Gemini { api_version: "v1".into() });
    for (p, key) in [(gemini(), "parametersJsonSchema"), (vertex(), "parametersJsonSchema"), (v1, "parameters")] {
        let v = sent(chat(&p, &body).unwrap());
        let decls = &v["tools"][0]["functionDeclarations"];
        assert_eq!(decls[0], json!({"name": "a"}));
        assert_eq!(decls[1][key], json!({"type": "object", "properties": {"q": {"type": "string"}}}));
    }
}

#[test]
fn reasoning_effort_becomes_a_thinking_budget() {
    let p = provider(ProviderKind::Gemini { api_version: "v1beta".into() });
    let a = attempt(&p, Operation::ChatCompletions, "gemini-2.5-flash");
    for (effort, budget) in [("none", 0), ("minimal", 1024), ("low", 1024), ("medium", 8192), ("high", 24576)] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": effort});
        let out = super::prepare(&a, &serde_json::to_vec(&body).unwrap()).unwrap();
        let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
        assert_eq!(sent["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": budget}), "{effort}");
    }
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let out = super::prepare(&a, &serde_json::to_vec(&body).unwrap()).unwrap();
    let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
    assert!(sent.pointer("/generationConfig/thinkingConfig").is_none(), "no effort, no thinking config");
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "max"});
    let e = super::prepare(&a, &serde_json::to_vec(&body).unwrap()).err().unwrap();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("reasoning_effort")));
}
