//! The floor of the benchmark: what any proxy-wasm filter that routes on the request body's model and
//! sets the provider credential after routing must do in Envoy, with nothing else (no auth, limits,
//! translation, metrics). Same two places as Switchyard:
//!
//! - route role (`root_id` other than `floor-upstream`): holds the headers, reads the whole body, finds
//!   the `"model"` value by a byte scan and sets the routing header to that model's cluster;
//! - upstream role (`root_id: floor-upstream`): sets the credential header.
//!
//! Plugin configuration, one `name=value` per line: `model.<model>=<cluster>` and `credential=<value>`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Settings {
    upstream: bool,
    clusters: Vec<(String, String)>,
    credential: String,
}

#[derive(Default)]
struct Root {
    settings: Rc<Settings>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id = self.get_property(vec!["plugin_root_id"]).unwrap_or_default();
        let text = self.get_plugin_configuration().unwrap_or_default();
        let mut s = Settings { upstream: root_id == b"floor-upstream", ..Settings::default() };
        for line in String::from_utf8_lossy(&text).lines() {
            match line.trim().split_once('=') {
                Some(("credential", v)) => s.credential = v.to_string(),
                Some((k, v)) if k.starts_with("model.") => {
                    s.clusters.push((k["model.".len()..].to_string(), v.to_string()))
                }
                _ => {}
            }
        }
        self.settings = Rc::new(s);
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor { settings: self.settings.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor {
    settings: Rc<Settings>,
}

impl Context for Floor {}

/// The string value of the first `"model"` field, by a byte scan (no JSON parse).
fn model(body: &[u8]) -> Option<&[u8]> {
    let key = b"\"model\"";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &body[at..];
    let open = rest.iter().position(|&b| b == b'"')? + 1;
    let len = rest[open..].iter().position(|&b| b == b'"')?;
    Some(&rest[open..open + len])
}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        if self.settings.upstream {
            self.set_http_request_header("authorization", Some(&self.settings.credential));
            return Action::Continue;
        }
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.settings.upstream {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let cluster = model(&body)
            .and_then(|m| self.settings.clusters.iter().find(|(name, _)| name.as_bytes() == m))
            .map(|(_, c)| c.as_str());
        if let Some(c) = cluster {
            self.set_http_request_header("x-switchyard-cluster", Some(c));
        }
        Action::Continue
    }
}
