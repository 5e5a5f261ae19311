//! Unit tests of the route-level pipeline (moved from the former `route` module; assertions unchanged),
//! and of the callout state machine.

use super::*;
use crate::config::tests::{sample, MapEnv};
use crate::http::testing::MapHeaders;
use crate::http::{RequestInfo, H_CLUSTER};

fn filter() -> Pipeline {
    let cfg = Config::parse(sample().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "sk-openai-secret")])).unwrap();
    Pipeline::new(Rc::new(cfg))
}

const CLOCK: mock::Clock = mock::Clock { unix_secs: 1, seq: 1 };

fn run(headers: &[(&str, &str)], body: &str) -> Decision {
    let mut f = filter();
    let d = f.on_request_headers(&MapHeaders::new(headers), body.is_empty());
    if d.step != Step::NeedBody {
        return d;
    }
    assert_eq!(f.on_body_progress(body.len(), true), None);
    let store = crate::limits::tests::MemStore::default();
    f.on_request_body(body.as_bytes(), &Ctx { clock: CLOCK, now_ns: 1, store: &store })
}

fn status(d: &Decision) -> Option<u16> {
    match &d.step {
        Step::Respond(r) => Some(r.status),
        _ => None,
    }
}

fn error_code(d: &Decision) -> String {
    let Step::Respond(r) = &d.step else { panic!("no response: {d:?}") };
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["error"]["code"].as_str().unwrap_or("").to_string()
}

const CHAT: &[(&str, &str)] =
    &[(":method", "POST"), (":path", "/v1/chat/completions"), ("content-type", "application/json")];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut h = CHAT.to_vec();
    h.extend_from_slice(extra);
    h
}

#[test]
fn routes_to_the_models_cluster() {
    let d = run(
        &with(&[("authorization", "Bearer sk-all")]),
        r#"{"model":"gpt-prod","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(d.step, Step::Continue);
    assert_eq!(d.set(H_CLUSTER), Some("azure_cluster"));
    assert_eq!(d.set(crate::http::H_MODEL), None, "the model travels in the registry, not in a header");
    assert_eq!(
        d.register,
        Some(RequestInfo {
            op: Operation::ChatCompletions,
            alias: "gpt-prod".into(),
            body_ready: true,
            path: "/v1/chat/completions".into(),
            translated: None
        })
    );
    let body = d.body.clone().unwrap();
    assert_eq!(d.set("content-length"), Some(body.len().to_string().as_str()), "the written body's length");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["model"], "prod-deployment", "a single OpenAI-format target gets its body here");
}

#[test]
fn strips_client_credentials_and_internal_headers() {
    let mut f = filter();
    let d = f.on_request_headers(&MapHeaders::new(&with(&[("x-api-key", "sk-all")])), false);
    assert_eq!(d.step, Step::NeedBody);
    for h in ["authorization", "x-api-key", "api-key", H_CLUSTER, crate::http::H_MODEL, crate::http::H_KEY] {
        assert!(d.remove.contains(&h), "{h}");
    }
    assert!(!d.remove.contains(&"content-length"), "kept until the body is in (then set to its length)");
}

#[test]
fn mock_answers_locally() {
    let d = run(
        &with(&[("authorization", "bearer sk-all")]),
        r#"{"model":"demo","messages":[{"role":"user","content":"ping"}]}"#,
    );
    let Step::Respond(r) = d.step else { panic!() };
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "ping");
}

#[test]
#[allow(clippy::type_complexity)]
fn error_table() {
    let ok_body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}"#;
    let table: Vec<(Vec<(&str, &str)>, &str, u16, &str)> = vec![
        (with(&[]), ok_body, 401, "missing_api_key"),
        (with(&[("authorization", "Bearer sk-wrong")]), ok_body, 401, "invalid_api_key"),
        (with(&[("authorization", "Basic abc")]), ok_body, 401, "missing_api_key"),
        (
            with(&[("authorization", "Bearer sk-mini")]),
            r#"{"model":"demo","messages":[{"role":"user"}]}"#,
            403,
            "model_not_allowed",
        ),
        (
            with(&[("authorization", "Bearer sk-all")]),
            r#"{"model":"gpt-9","messages":[{"role":"user"}]}"#,
            404,
            "model_not_found",
        ),
        (
            with(&[("authorization", "Bearer sk-all")]),
            r#"{"model":"llama","messages":[{"role":"user"}]}"#,
            404,
            "model_not_found",
        ),
        (with(&[("authorization", "Bearer sk-all")]), "{nope", 400, "invalid_json"),
        (with(&[("authorization", "Bearer sk-all")]), "", 400, ""),
        (
            vec![
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                ("content-type", "text/plain"),
                ("authorization", "Bearer sk-all"),
            ],
            ok_body,
            415,
            "unsupported_media_type",
        ),
        (
            with(&[("authorization", "Bearer sk-all"), ("content-length", "999999999")]),
            ok_body,
            413,
            "request_too_large",
        ),
        (vec![(":method", "GET"), (":path", "/v1/chat/completions")], "", 405, "method_not_allowed"),
        (vec![(":method", "POST"), (":path", "/v1/nope")], "", 404, "unknown_url"),
    ];
    for (headers, body, want_status, want_code) in table {
        let d = run(&headers, body);
        assert_eq!(status(&d), Some(want_status), "{headers:?} {body}");
        assert_eq!(error_code(&d), want_code, "{headers:?} {body}");
    }
}

#[test]
fn anthropic_messages_on_the_mock_and_anthropic_errors() {
    let h =
        [(":method", "POST"), (":path", "/v1/messages"), ("content-type", "application/json"), ("x-api-key", "sk-all")];
    let d = run(&h, r#"{"model":"demo","max_tokens":10,"messages":[{"role":"user","content":"hey there"}]}"#);
    let Step::Respond(r) = d.step else { panic!() };
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "hey there");
    assert_eq!(v["stop_reason"], "end_turn");
    let d = run(&h, r#"{"model":"demo","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"a b"}]}"#);
    let Step::Respond(r) = d.step else { panic!() };
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.starts_with("event: message_start") && text.contains("message_stop"), "{text}");
    // Errors keep both shapes.
    for (headers, body, status, kind) in [
        (
            &h[..3],
            r#"{"model":"demo","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
            401,
            "authentication_error",
        ),
        (
            &h[..],
            r#"{"model":"nope","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
            404,
            "not_found_error",
        ),
        (&h[..], r#"{"model":"demo","messages":[{"role":"user","content":"x"}]}"#, 400, "invalid_request_error"),
    ] {
        let d = run(headers, body);
        let Step::Respond(r) = d.step else { panic!() };
        assert_eq!(r.status, status);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
        assert!(v["error"].get("code").is_some() && v["error"].get("param").is_some());
    }
}

#[test]
fn body_over_limit_while_streaming_in() {
    let mut f = filter();
    assert_eq!(
        f.on_request_headers(&MapHeaders::new(&with(&[("authorization", "Bearer sk-all")])), false).step,
        Step::NeedBody
    );
    assert_eq!(f.on_body_progress(1000, false).unwrap().step, Step::NeedBody);
    let d = f.on_body_progress(crate::config::DEFAULT_MAX_BODY_BYTES + 1, false).unwrap();
    assert_eq!(status(&d), Some(413));
}

#[test]
fn model_lists_follow_the_key() {
    let list = |key: &str| {
        let d = run(&[(":method", "GET"), (":path", "/v1/models"), ("authorization", key)], "");
        let Step::Respond(r) = d.step else { panic!() };
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(list("Bearer sk-mini"), vec!["gpt-4o-mini"]);
    assert_eq!(list("Bearer sk-all"), vec!["demo", "gpt-4o-mini", "gpt-prod", "qwen"]);
    let one = run(&[(":method", "GET"), (":path", "/v1/models/demo"), ("authorization", "Bearer sk-mini")], "");
    assert_eq!(status(&one), Some(404));
    let one = run(&[(":method", "GET"), (":path", "/v1/models/demo"), ("authorization", "Bearer sk-all")], "");
    assert_eq!(status(&one), Some(200));
}
