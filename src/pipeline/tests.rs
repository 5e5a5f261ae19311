//! Unit tests of the route-level pipeline (moved from the former `route` module; assertions unchanged),
//! and of the callout state machine.

use super::*;
use crate::api::openai::Operation;
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
    if f.is_draining() {
        // A refusal at header time is held until the body has ended.
        return f.on_body_progress(body.len(), true).unwrap();
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
            translated: None,
            steering: Vec::new(),
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
    assert!(!f.is_draining());
    // Over the limit: 413, held while the rest of the body is read and dropped, sent when it ends.
    let d = f.on_body_progress(crate::config::DEFAULT_MAX_BODY_BYTES + 1, false).unwrap();
    assert_eq!(d.step, Step::NeedBody);
    assert!(f.is_draining());
    assert_eq!(f.on_body_progress(16384, false).unwrap().step, Step::NeedBody);
    let d = f.on_body_progress(100, true).unwrap();
    assert_eq!(status(&d), Some(413));
    assert!(!f.is_draining());
    // Over the limit in the last piece: answered at once.
    let mut f = filter();
    f.on_request_headers(&MapHeaders::new(&with(&[("authorization", "Bearer sk-all")])), false);
    let d = f.on_body_progress(crate::config::DEFAULT_MAX_BODY_BYTES + 1, true).unwrap();
    assert_eq!(status(&d), Some(413));
}

/// HTTP/2: Envoy resets a stream whose answer is complete before its request, and a client still
/// uploading loses the answer; so a refusal made before the body is in waits for the body's end.
#[test]
fn header_time_refusals_wait_for_the_body() {
    let headers = |extra: &[(&'static str, &'static str)]| MapHeaders::new(&with(extra));
    // No body: answered at once.
    assert_eq!(status(&filter().on_request_headers(&headers(&[]), true)), Some(401));
    // A body: held while it is read and dropped, then answered, whatever the refusal.
    for (method, key, content_type, want) in [
        ("POST", None, "application/json", 401),
        ("GET", Some("Bearer sk-all"), "application/json", 405),
        ("POST", Some("Bearer sk-all"), "text/plain", 415),
    ] {
        let mut h = vec![(":method", method), (":path", "/v1/chat/completions"), ("content-type", content_type)];
        h.extend(key.map(|k| ("authorization", k)));
        let mut f = filter();
        let d = f.on_request_headers(&MapHeaders::new(&h), false);
        assert_eq!(d.step, Step::NeedBody, "{want}");
        assert!(f.is_draining(), "{want}");
        for _ in 0..10 {
            assert_eq!(f.on_body_progress(65536, false).unwrap().step, Step::NeedBody);
        }
        assert_eq!(status(&f.on_body_progress(10, true).unwrap()), Some(want));
        assert!(!f.is_draining());
    }
    // 413 on the declared length: held too, as long as the body is within the drain limit.
    let mut f = filter();
    let limit = f.drain_limit();
    assert_eq!(limit, crate::config::DEFAULT_MAX_BODY_BYTES * DRAIN_FACTOR);
    let big = (crate::config::DEFAULT_MAX_BODY_BYTES + 1).to_string();
    let mut h = with(&[("authorization", "Bearer sk-all")]);
    h.push(("content-length", &big));
    assert_eq!(f.on_request_headers(&MapHeaders::new(&h), false).step, Step::NeedBody);
    assert_eq!(status(&f.on_body_progress(crate::config::DEFAULT_MAX_BODY_BYTES + 1, true).unwrap()), Some(413));
    // A declared length past the drain limit is answered at once (Envoy may reset an HTTP/2 stream).
    let mut f = filter();
    let huge = (limit + 1).to_string();
    let mut h = with(&[("authorization", "Bearer sk-all")]);
    h.push(("content-length", &huge));
    assert_eq!(status(&f.on_request_headers(&MapHeaders::new(&h), false)), Some(413));
    assert!(!f.is_draining());
    // A body that goes on past the drain limit gets its answer then.
    let mut f = filter();
    assert_eq!(f.on_request_headers(&headers(&[]), false).step, Step::NeedBody);
    assert_eq!(f.on_body_progress(limit, false).unwrap().step, Step::NeedBody);
    assert_eq!(status(&f.on_body_progress(1, false).unwrap()), Some(401));
    // A client gone while its answer is held: nothing is left held.
    let mut f = filter();
    f.on_request_headers(&headers(&[]), false);
    let store = crate::limits::tests::MemStore::default();
    f.on_done(&Ctx { clock: CLOCK, now_ns: 1, store: &store }, 0);
    assert!(!f.is_draining());
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

// ------------------------------------------------------------------------------------ callouts

mod callouts {
    use super::*;
    use crate::limits::tests::MemStore;
    use std::cell::RefCell;

    /// What a probe stage saw, shared with the test.
    #[derive(Default)]
    struct Seen {
        body_calls: u32,
        outcomes: Vec<CalloutOutcome>,
        done: bool,
    }

    /// A policy stage that asks a service before letting the request on: "allow" goes on, anything else
    /// is refused; a failure or timeout goes on when `fail_open`, else refuses with 503.
    struct Probe {
        seen: Rc<RefCell<Seen>>,
        fail_open: bool,
    }

    impl Stage for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }

        fn on_request_body(&mut self, _x: &mut Exchange, req: &Request, _ctx: &Ctx) -> Flow {
            self.seen.borrow_mut().body_calls += 1;
            Flow::Callout(Callout {
                cluster: "policy".into(),
                timeout_ms: 100,
                kind: CalloutKind::Http {
                    headers: vec![(":method".into(), "POST".into()), (":path".into(), "/check".into())],
                    body: req.model().as_bytes().to_vec(),
                },
            })
        }

        fn on_callout(&mut self, _x: &mut Exchange, _req: &Request, outcome: CalloutOutcome, _ctx: &Ctx) -> Flow {
            self.seen.borrow_mut().outcomes.push(outcome.clone());
            match outcome {
                CalloutOutcome::Answer { status: 200, body, .. } if body == b"allow" => Flow::Next,
                CalloutOutcome::Answer { .. } => Flow::Fail(ApiError::new(403, "permission_error", None, "denied")),
                _ if self.fail_open => Flow::Next,
                _ => Flow::Fail(ApiError::new(503, "server_error", Some("policy_unavailable"), "unavailable")),
            }
        }

        fn on_done(&mut self, _x: &mut Exchange, _ctx: &Ctx) {
            self.seen.borrow_mut().done = true;
        }
    }

    /// A stage before the probe, counting its calls (it must not run again on resume).
    struct Counter(Rc<RefCell<u32>>);

    impl Stage for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }

        fn on_request_body(&mut self, _x: &mut Exchange, _req: &Request, _ctx: &Ctx) -> Flow {
            *self.0.borrow_mut() += 1;
            Flow::Next
        }
    }

    fn config() -> Rc<Config> {
        let mut v: serde_json::Value = serde_json::from_str(&sample()).unwrap();
        v["keys"].as_array_mut().unwrap().push(serde_json::json!(
            {"id": "one-at-a-time", "sha256": crate::config::tests::demo_key_hash("sk-one"), "models": ["*"],
             "limits": {"concurrent": 1}}
        ));
        let cfg = Config::parse(v.to_string().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "sk-openai-secret")]));
        Rc::new(cfg.unwrap())
    }

    /// The fake host: runs one request through a pipeline with the probe after the local limits (so that
    /// a paused request holds a reservation), and plays Envoy's part for callouts.
    struct Host {
        p: Pipeline,
        seen: Rc<RefCell<Seen>>,
        counted: Rc<RefCell<u32>>,
        sent: Vec<Callout>,
    }

    impl Host {
        fn new(cfg: &Rc<Config>, fail_open: bool) -> Host {
            let seen = Rc::new(RefCell::new(Seen::default()));
            let counted = Rc::new(RefCell::new(0));
            let mut request = request_stages(cfg);
            let dispatch = request.pop().unwrap();
            request.push(Box::new(Counter(counted.clone())));
            request.push(Box::new(Probe { seen: seen.clone(), fail_open }));
            request.push(dispatch);
            let p = Pipeline::with_stages(cfg.clone(), request, response_stages(cfg));
            Host { p, seen, counted, sent: Vec::new() }
        }

        /// Headers and body of a chat request with key `key`: the decision the host gets.
        fn request(&mut self, key: &str, store: &MemStore, now_ns: u64) -> Decision {
            let auth = format!("Bearer {key}");
            let h = MapHeaders::new(&[
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                ("content-type", "application/json"),
                ("authorization", &auth),
            ]);
            assert_eq!(self.p.on_request_headers(&h, false).step, Step::NeedBody);
            let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
            let d = self.p.on_request_body(body, &Ctx { clock: CLOCK, now_ns, store });
            if let Step::Callout(c) = &d.step {
                self.sent.push(c.clone());
            }
            d
        }

        fn outcome(&mut self, o: CalloutOutcome, store: &MemStore, now_ns: u64) -> Option<Decision> {
            self.p.on_callout(o, &Ctx { clock: CLOCK, now_ns, store })
        }
    }

    fn answer(body: &[u8]) -> CalloutOutcome {
        CalloutOutcome::Answer { status: 200, headers: Vec::new(), body: body.to_vec() }
    }

    const T0: u64 = 1_000_000_000_000;

    #[test]
    fn an_answer_resumes_the_stage_that_asked() {
        let cfg = config();
        let store = MemStore::default();
        let mut h = Host::new(&cfg, false);
        let d = h.request("sk-all", &store, T0);
        assert!(matches!(d.step, Step::Callout(_)), "{d:?}");
        assert!(h.p.is_paused());
        assert_eq!(h.sent[0].cluster, "policy");
        assert_eq!(
            h.sent[0].kind,
            CalloutKind::Http {
                headers: vec![(":method".into(), "POST".into()), (":path".into(), "/check".into())],
                body: b"gpt-4o-mini".to_vec()
            }
        );
        let d = h.outcome(answer(b"allow"), &store, T0 + 1_000_000).unwrap();
        assert_eq!(d.step, Step::Continue);
        assert_eq!(d.set(H_CLUSTER), Some("openai"), "dispatch ran after the probe");
        assert!(d.register.is_some() && d.body.is_some());
        assert!(!h.p.is_paused());
        assert_eq!(*h.counted.borrow(), 1, "stages before the probe are not run again");
        assert_eq!(h.seen.borrow().body_calls, 1);
        // A second outcome for the same request finds nothing pending.
        assert_eq!(h.outcome(answer(b"allow"), &store, T0 + 2_000_000), None);
    }

    #[test]
    fn a_refusal_after_the_callout_is_in_the_clients_shape() {
        let cfg = config();
        let store = MemStore::default();
        let mut h = Host::new(&cfg, false);
        h.request("sk-all", &store, T0);
        let d = h.outcome(answer(b"deny"), &store, T0 + 1).unwrap();
        assert_eq!(status(&d), Some(403));
        let Step::Respond(r) = &d.step else { panic!() };
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["message"], "denied");
    }

    #[test]
    fn failure_and_timeout_follow_the_stages_choice() {
        let cfg = config();
        let store = MemStore::default();
        for (outcome, fail_open, want) in [
            (CalloutOutcome::Failed("no healthy upstream".into()), false, Some(503)),
            (CalloutOutcome::Failed("no healthy upstream".into()), true, None),
            (CalloutOutcome::TimedOut, false, Some(503)),
            (CalloutOutcome::TimedOut, true, None),
            (CalloutOutcome::grpc(4, Vec::new(), None), false, Some(503)),
        ] {
            let mut h = Host::new(&cfg, fail_open);
            h.request("sk-all", &store, T0);
            let d = h.outcome(outcome.clone(), &store, T0 + 1).unwrap();
            assert_eq!(status(&d), want, "{outcome:?} fail_open={fail_open}");
            if want.is_none() {
                assert_eq!(d.set(H_CLUSTER), Some("openai"), "fail open goes on to dispatch");
            }
        }
        assert_eq!(CalloutOutcome::grpc(4, Vec::new(), None), CalloutOutcome::TimedOut);
        assert_eq!(
            CalloutOutcome::grpc(14, Vec::new(), Some("unavailable".into())),
            CalloutOutcome::Failed("unavailable".into())
        );
        assert!(matches!(CalloutOutcome::grpc(0, b"m".to_vec(), None), CalloutOutcome::Answer { status: 0, .. }));
    }

    #[test]
    fn an_answer_after_the_deadline_is_a_timeout() {
        let cfg = config();
        let store = MemStore::default();
        let mut h = Host::new(&cfg, false);
        h.request("sk-all", &store, T0);
        // 100 ms timeout: an "allow" that comes at 100 ms is too late.
        let d = h.outcome(answer(b"allow"), &store, T0 + 100_000_000).unwrap();
        assert_eq!(status(&d), Some(503));
        assert_eq!(h.seen.borrow().outcomes, vec![CalloutOutcome::TimedOut]);
        let mut h = Host::new(&cfg, false);
        h.request("sk-all", &store, T0);
        assert_eq!(h.outcome(answer(b"allow"), &store, T0 + 99_999_999).unwrap().step, Step::Continue);
    }

    #[test]
    fn a_client_gone_while_paused_frees_what_the_request_holds() {
        let cfg = config();
        let store = MemStore::default();
        // The key allows one request at a time: the paused one holds the slot.
        let mut first = Host::new(&cfg, false);
        assert!(matches!(first.request("sk-one", &store, T0).step, Step::Callout(_)));
        let mut second = Host::new(&cfg, false);
        assert_eq!(status(&second.request("sk-one", &store, T0 + 1)), Some(429), "the slot is held while paused");
        // The client goes away: the host ends the request.
        let record = first.p.on_done(&Ctx { clock: CLOCK, now_ns: T0 + 2, store: &store }, 0).unwrap();
        assert_eq!(record.status, 0);
        assert!(!first.p.is_paused(), "the pending callout and its body are dropped");
        assert!(first.seen.borrow().done, "every stage hears that the request is over");
        // The callout's late answer finds nothing to resume.
        assert_eq!(first.outcome(answer(b"allow"), &store, T0 + 3), None);
        // The slot is free again.
        let mut third = Host::new(&cfg, false);
        assert!(matches!(third.request("sk-one", &store, T0 + 4).step, Step::Callout(_)));
    }
}

// ------------------------------------------------------------------------- answers reshaped or counted

mod answers {
    use super::*;
    use crate::limits::tests::MemStore;

    /// A chat request to gpt-4o-mini (an OpenAI provider, its answer passes through), forwarded.
    fn forwarded(store: &MemStore) -> Pipeline {
        let mut f = filter();
        let h = MapHeaders::new(&with(&[("authorization", "Bearer sk-all")]));
        assert_eq!(f.on_request_headers(&h, false).step, Step::NeedBody);
        let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}"#;
        let d = f.on_request_body(body, &Ctx { clock: CLOCK, now_ns: 1, store });
        assert_eq!(d.step, Step::Continue);
        f
    }

    fn ctx(store: &MemStore) -> Ctx<'_> {
        Ctx { clock: CLOCK, now_ns: 2, store }
    }

    fn get<'a>(set: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        set.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_provider_refusing_the_gateways_credential_is_a_502() {
        let store = MemStore::default();
        let mut f = forwarded(&store);
        let (set, framing) = f.response_head(401, Some("application/json"), None, true, true, false);
        assert_eq!(get(&set, ":status"), Some("502"));
        assert_eq!(framing, Framing::HoldForLength);
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-open****cret","code":"invalid_api_key"}}"#;
        let out = f.on_response_body(body.to_vec(), true, 3).expect("replaced");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["code"], "provider_auth_error");
        assert!(!out.windows(7).any(|w| w == b"sk-open"), "the provider's message quoting the key is dropped");
        let record = f.on_done(&ctx(&store), 1).unwrap();
        assert_eq!((record.status, record.outcome()), (502, "upstream_error"));
    }

    #[test]
    fn error_pages_and_non_json_answers_take_the_clients_shape() {
        let store = MemStore::default();
        // An HTML error page: the client's error shape, the status a translated provider's would get.
        let mut f = forwarded(&store);
        let (set, framing) = f.response_head(500, Some("text/html"), None, true, false, false);
        assert_eq!((get(&set, ":status"), get(&set, "content-type")), (Some("502"), Some("application/json")));
        assert_eq!(framing, Framing::HoldForLength, "held even without a length");
        let out = f.on_response_body(b"<html><h1>Internal error</h1></html>".to_vec(), true, 3).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("<h1>Internal error</h1>"), "{v}");
        // A 2xx that says it is HTML: a 502 once the body shows it is not JSON.
        let mut f = forwarded(&store);
        let (set, framing) = f.response_head(200, Some("text/html"), None, true, true, false);
        assert_eq!((get(&set, ":status"), framing), (None, Framing::HoldForLength));
        let out = f.on_response_body(b"<html>hi</html>".to_vec(), true, 3).unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap()["error"]["code"], "provider_error");
        let late = f.held_head();
        assert_eq!((get(&late, ":status"), get(&late, "content-type")), (Some("502"), Some("application/json")));
        assert_eq!(f.on_done(&ctx(&store), 1).unwrap().status, 502);
        // A mislabelled 2xx that is JSON passes as it is.
        let mut f = forwarded(&store);
        f.response_head(200, Some("text/plain"), None, true, true, false);
        assert_eq!(f.on_response_body(br#"{"choices":[]}"#.to_vec(), true, 3), None);
        assert!(f.held_head().is_empty());
        // JSON errors and JSON answers pass untouched and unbuffered.
        for status in [200, 429, 500] {
            let mut f = forwarded(&store);
            let (set, framing) = f.response_head(status, Some("application/json"), None, true, true, false);
            assert_eq!((get(&set, ":status"), framing, f.buffers_response()), (None, Framing::Keep, false), "{status}");
        }
        // Envoy's own answers are not the provider's.
        let mut f = forwarded(&store);
        let (set, _) = f.response_head(503, Some("text/plain"), None, false, true, false);
        assert_eq!(get(&set, ":status"), None);
    }

    #[test]
    fn the_record_follows_what_envoy_sent() {
        let store = MemStore::default();
        // Envoy answered after the head had passed (its buffer limit, mapped to 502).
        let mut f = forwarded(&store);
        f.response_head(200, Some("text/event-stream"), None, true, false, false);
        let record = f.on_done_with(&ctx(&store), 1, Sent::from_envoy(502, "response_payload_too_large")).unwrap();
        assert_eq!((record.status, record.outcome()), (502, "upstream_error"));
        assert_eq!(record.usage, None, "an error charges nothing");
        // The answer broke off after it had started: an upstream error whatever the status.
        let mut f = forwarded(&store);
        f.response_head(200, Some("text/event-stream"), None, true, false, false);
        let sent = Sent::from_envoy(200, "upstream_reset_after_response_started{protocol_error}");
        let record = f.on_done_with(&ctx(&store), 1, sent).unwrap();
        assert_eq!((record.status, record.outcome()), (200, "upstream_error"));
        // A client gone before any answer stays aborted.
        let mut f = forwarded(&store);
        let record = f.on_done_with(&ctx(&store), 1, Sent::from_envoy(0, "")).unwrap();
        assert_eq!(record.outcome(), "aborted");
    }
}
