//! The route-level role's host side: hands Envoy's events to the [`Pipeline`] and carries out its
//! decisions (header edits, body writes, local answers, callouts, the registry, the record).

use super::{apply, now_ns, read_map, write_response_headers, HostStore, HostTelemetry, METRICS, REQUESTS};
use crate::http::{Decision, Step, H_MODEL, H_SERVED_MODEL, H_SERVED_PROVIDER};
use crate::identity::Verified;
use crate::observe;
use crate::pipeline::callout::{Callout, CalloutKind, CalloutOutcome};
use crate::pipeline::{ClientApi, Ctx, Framing, Pipeline, Sent, API_PROPERTY};
use crate::providers::mock::Clock;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// The request's dynamic metadata (`envoy.config.core.v3.Metadata`), read from Envoy when asked.
struct HostMetadata;

impl Verified for HostMetadata {
    fn metadata(&self) -> Option<Vec<u8>> {
        hostcalls::get_property(vec!["metadata"]).ok().flatten()
    }
}

pub(super) struct RouteHttp {
    core: Pipeline,
    seq: Rc<Cell<u64>>,
    registered: Option<String>,
    /// The request's `x-request-id` as the client's headers had it.
    request_id: Option<String>,
    /// The response headers wait for the rewritten body (whose length they then get).
    held_headers: bool,
    /// The buffered request body's size (to replace it after a callout).
    body_size: usize,
    /// The request's sequence number in this VM (fresh request ids, the mock's ids).
    req_seq: u64,
    /// The callout the request waits for.
    callout: Option<u32>,
}

impl RouteHttp {
    pub(super) fn new(core: Pipeline, seq: Rc<Cell<u64>>) -> Self {
        RouteHttp {
            core,
            seq,
            registered: None,
            request_id: None,
            held_headers: false,
            body_size: 0,
            req_seq: 0,
            callout: None,
        }
    }

    fn ctx(&self, now: u64) -> Ctx<'static> {
        Ctx { clock: Clock { unix_secs: now / 1_000_000_000, seq: self.req_seq }, now_ns: now, store: &HostStore }
    }

    /// Ends the request once: settles limits, emits its metrics and access-log fields. `at_log`: the
    /// stream is over without this filter having seen the whole response; what Envoy sent is read then.
    fn finish(&mut self, at_log: bool) {
        if self.core.is_done() {
            return;
        }
        let now = now_ns(self);
        let attempts = self.registered.as_ref().map_or(0, |id| REQUESTS.with(|m| m.borrow().attempts(id)));
        let ctx = self.ctx(now);
        let record = if at_log {
            let code = self.get_property(vec!["response", "code"]).map_or(0, |b| {
                let mut word = [0u8; 8];
                for (w, v) in word.iter_mut().zip(b.iter()) {
                    *w = *v;
                }
                u16::try_from(u64::from_le_bytes(word)).unwrap_or(0)
            });
            let details = self.get_property(vec!["response", "code_details"]).unwrap_or_default();
            let sent = Sent::from_envoy(code, std::str::from_utf8(&details).unwrap_or(""));
            self.core.on_done_with(&ctx, attempts, sent)
        } else {
            self.core.on_done(&ctx, attempts)
        };
        super::fleet::queue(self.core.take_fleet_settlement());
        super::cache_fleet::queue(self.core.take_cache_put());
        if let Some(record) = record {
            METRICS.with(|ids| observe::emit(&record, &mut ids.borrow_mut(), &HostTelemetry));
        }
    }

    /// Carries out a decision made on the whole request body (at body time or after a callout).
    fn body_decision(&mut self, mut d: Decision, now: u64) -> Action {
        while let Step::Callout(c) = &d.step {
            match self.dispatch(c) {
                Ok(token) => {
                    self.callout = Some(token);
                    return Action::Pause;
                }
                Err(reason) => {
                    let outcome = CalloutOutcome::Failed(reason);
                    match self.core.on_callout(outcome, &self.ctx(now)) {
                        Some(next) => d = next,
                        None => return Action::Pause,
                    }
                }
            }
        }
        if let Some(info) = d.register.take() {
            let client_id = self.request_id.take();
            let reg = REQUESTS.with(|m| m.borrow_mut().register(client_id.as_deref(), info, now, self.req_seq));
            if let Some(id) = &reg.new_request_id {
                self.set_http_request_header("x-request-id", Some(id));
            }
            if let Some(model) = &reg.model_header {
                self.set_http_request_header(H_MODEL, Some(model));
            }
            self.registered = Some(reg.id);
        }
        if let Some(new_body) = d.body.take() {
            self.set_http_request_body(0, self.body_size, &new_body);
        }
        apply(self, d, None)
    }

    /// Starts a callout; `Err` says why Envoy would not.
    fn dispatch(&self, c: &Callout) -> Result<u32, String> {
        let timeout = Duration::from_millis(c.timeout_ms);
        let sent = match &c.kind {
            CalloutKind::Http { headers, body } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                hostcalls::dispatch_http_call(&c.cluster, headers, Some(body), Vec::new(), timeout)
            }
            CalloutKind::Grpc { service, method, metadata, message } => {
                let metadata: Vec<(&str, &[u8])> = metadata.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                hostcalls::dispatch_grpc_call(&c.cluster, service, method, metadata, Some(message), timeout)
            }
        };
        sent.map_err(|s| format!("Envoy refused the call to cluster '{}': {s:?}", c.cluster))
    }

    /// A callout's outcome: the paused request goes on (or is answered).
    fn resume(&mut self, token: u32, outcome: CalloutOutcome) {
        if self.callout != Some(token) {
            return;
        }
        self.callout = None;
        let now = now_ns(self);
        let Some(d) = self.core.on_callout(outcome, &self.ctx(now)) else { return };
        // A local answer leaves the request paused (`apply` says Pause); only a request sent on resumes.
        if self.body_decision(d, now) == Action::Continue {
            self.resume_http_request();
        }
    }
}

impl Context for RouteHttp {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        let outcome = if num_headers == 0 {
            CalloutOutcome::Failed("no answer (connection failed, reset or timed out)".into())
        } else {
            let headers = read_map(MapType::HttpCallResponseHeaders);
            let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default();
            CalloutOutcome::Answer {
                status: headers.status() as u32,
                headers: headers
                    .entries()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
                    .collect(),
                body,
            }
        };
        self.resume(token, outcome);
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let message = hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size).ok().flatten().unwrap_or_default();
        let detail = hostcalls::get_grpc_status().ok().and_then(|(_, m)| m);
        self.resume(token, CalloutOutcome::grpc(status, message, detail));
    }
}

impl HttpContext for RouteHttp {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        self.core.set_start(now_ns(self));
        let headers = read_map(MapType::HttpRequestHeaders);
        // Test builds only (feature `fault-injection`): a deliberate VM failure, to show Envoy reloads it.
        #[cfg(feature = "fault-injection")]
        if headers.value("x-switchyard-test-fault") == Some("abort") {
            std::process::abort();
        }
        self.request_id = headers.value("x-request-id").map(str::to_string);
        // Envoy's jwt_authn verdict is read only if the core asks (configs accepting JWTs, no key).
        let d = self.core.on_request_headers_with(&headers, &HostMetadata, end_of_stream);
        // Envoy's own answers to this request (local_reply_config) take the client API's error shape.
        if self.core.client_api() == ClientApi::Anthropic {
            self.set_property(vec![API_PROPERTY], Some(b"anthropic"));
        }
        apply(self, d, Some(&headers))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(d) = self.core.on_body_progress(body_size, end_of_stream) {
            if self.core.is_draining() && body_size > 0 {
                // The request is refused; its answer waits for the body's end. What came is dropped, so
                // nothing of it is held and the next call reports only the new piece.
                self.set_http_request_body(0, body_size, &[]);
            }
            return apply(self, d, None);
        }
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        self.req_seq = seq;
        self.body_size = body_size;
        // Limits and the mock's timestamps use the request's arrival time (one host call less).
        let now = self.core.started_ns();
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let d = self.core.on_request_body(&body, &self.ctx(now));
        self.body_decision(d, now)
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let headers = read_map(MapType::HttpResponseHeaders);
        let status = headers.status();
        let served = headers.value(H_SERVED_PROVIDER).zip(headers.value(H_SERVED_MODEL));
        // Envoy's own error answers (no upstream, timeouts) are not the provider's to translate.
        let from_provider = (200..300).contains(&status)
            || !self.core.tells_errors_apart()
            || self.get_property(vec!["response", "code_details"]).as_deref() == Some(b"via_upstream".as_slice());
        let has_length = headers.has("content-length");
        let (set, framing) = self.core.response_head(
            status,
            headers.value("content-type"),
            served,
            from_provider,
            has_length,
            end_of_stream,
        );
        let drop: &[&str] = if framing == Framing::DropLength { &["content-length"] } else { &[] };
        self.held_headers = framing == Framing::HoldForLength;
        write_response_headers(self, &headers, &set, drop);
        if self.held_headers {
            return Action::Pause;
        }
        if end_of_stream {
            self.finish(false);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream && self.core.buffers_response() {
            return Action::Pause;
        }
        let now = if body_size > 0 && self.core.wants_time() { now_ns(self) } else { 0 };
        if !self.core.watches_body() {
            self.core.count_response_bytes(body_size, now);
        } else {
            let chunk =
                if body_size > 0 { self.get_http_response_body(0, body_size).unwrap_or_default() } else { Vec::new() };
            if let Some(out) = self.core.on_response_body(chunk, end_of_stream, now) {
                self.set_http_response_body(0, body_size, &out);
                if self.held_headers {
                    self.set_http_response_header("content-length", Some(&out.len().to_string()));
                }
            }
            // The held head gets what the body decided (an unreadable answer's 502, its content type).
            if self.held_headers && end_of_stream {
                for (name, value) in self.core.held_head() {
                    self.set_http_response_header(name, Some(&value));
                }
            }
        }
        // Settle before the last bytes reach the client, so its next request sees the real usage.
        if end_of_stream {
            self.finish(false);
        }
        Action::Continue
    }

    /// The stream is over however it ended (also a reset or a client gone mid-stream, or while a callout
    /// was pending): release what is still held.
    fn on_log(&mut self) {
        self.finish(true);
        self.callout = None;
        if let Some(id) = self.registered.take() {
            REQUESTS.with(|m| m.borrow_mut().remove(&id));
        }
    }
}
