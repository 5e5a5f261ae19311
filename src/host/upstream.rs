//! The upstream role's host side: once per attempt, hands the registry's decision, the picked endpoint's
//! metadata, headers and bodies to the [`UpstreamFilter`] and carries out its edits.

use super::{apply, read_map, write_response_headers, REQUESTS};
use crate::http::{Decision, Pairs};
use crate::providers::BodyMode;
use crate::upstream::{EndpointMeta, UpstreamFilter};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::time::UNIX_EPOCH;

pub(super) struct UpstreamHttp {
    pub(super) core: UpstreamFilter,
    /// The response head waits for the body translated whole: its status and length come from it.
    pub(super) held_headers: bool,
}

impl UpstreamHttp {
    /// The picked endpoint's `filter_metadata.switchyard`, in one host call (Envoy serialises a map
    /// property like a header map).
    fn endpoint_meta(&self) -> EndpointMeta {
        let bytes = self.get_property(vec!["xds", "upstream_host_metadata", "filter_metadata", "switchyard"]);
        let meta = Pairs::parse(bytes.unwrap_or_default());
        let text = |k: &str| meta.value(k).filter(|v| !v.is_empty()).map(str::to_string);
        EndpointMeta { provider: text("provider"), model: text("model") }
    }
}

impl Context for UpstreamHttp {}

impl HttpContext for UpstreamHttp {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let info =
            self.get_http_request_header("x-request-id").and_then(|id| REQUESTS.with(|m| m.borrow_mut().attempt(&id)));
        let meta = self.endpoint_meta();
        if let Some(d) = info.as_ref().and_then(|i| self.core.on_ready_request(&meta, i)) {
            return apply(self, d, None);
        }
        let headers = read_map(MapType::HttpRequestHeaders);
        let d = self.core.on_request_headers(&headers, &meta, info.as_ref());
        apply(self, d, Some(&headers))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.core.wants_body() {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let now = self.get_current_time().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        match self.core.on_request_body(&body, now) {
            Ok(edit) => {
                for (name, value) in &edit.set {
                    self.set_http_request_header(name, Some(value));
                }
                if let Some(new_body) = edit.body {
                    self.set_http_request_body(0, body_size, &new_body);
                }
                Action::Continue
            }
            Err(e) => apply(self, Decision::respond(e), None),
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        if self.core.passes_response() {
            return Action::Continue;
        }
        let headers = read_map(MapType::HttpResponseHeaders);
        let status = headers.status();
        let mut edit = self.core.on_response_headers(status, headers.value("content-type"));
        if let Some(s) = edit.status {
            edit.set.push((":status", s.to_string()));
        }
        edit.remove.retain(|name| headers.has(name));
        write_response_headers(self, &headers, &edit.set, &edit.remove);
        // A body translated whole decides the status (an unreadable 2xx is a 502) and the length: the
        // head waits for it.
        self.held_headers = edit.mode == Some(BodyMode::Buffer) && !end_of_stream;
        if self.held_headers {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.core.mode() {
            None => Action::Continue,
            Some(BodyMode::Buffer) => {
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = self.get_http_response_body(0, body_size).unwrap_or_default();
                if let Some(out) = self.core.on_response_body(&body) {
                    self.set_http_response_body(0, body_size, &out);
                    if self.held_headers {
                        self.set_http_response_header("content-length", Some(&out.len().to_string()));
                    }
                }
                if let Some(status) = self.core.body_status().filter(|_| self.held_headers) {
                    self.set_http_response_header(":status", Some(&status.to_string()));
                }
                Action::Continue
            }
            Some(BodyMode::Stream) => {
                let chunk = self.get_http_response_body(0, body_size).unwrap_or_default();
                if let Some(out) = self.core.on_response_chunk(&chunk, end_of_stream) {
                    self.set_http_response_body(0, body_size, &out);
                }
                Action::Continue
            }
        }
    }
}
