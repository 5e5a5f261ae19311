//! What each request did, for operators: Envoy stats (counters and histograms defined by the filter) and
//! per-request fields for the access log. Everything here comes from the config or from measurements,
//! never from request input, so metric cardinality stays bounded by the config.

use crate::providers::Usage;

/// The host's metrics and per-request log fields.
pub trait Telemetry {
    fn counter(&self, name: &str, value: u64);
    fn histogram(&self, name: &str, value: u64);
    /// One field of the request's access-log record, as plain text.
    fn field(&self, name: &str, value: &str);
}

/// One finished request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// The virtual key's id (`None` before authentication succeeded).
    pub key_id: Option<String>,
    /// The configured model the client asked for (`None` when it is not in the config).
    pub requested_model: Option<String>,
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub operation: &'static str,
    pub status: u16,
    pub usage: Option<Usage>,
    /// The usage is the documented estimate (the provider reported none).
    pub usage_estimated: bool,
    pub cost_micros: u64,
    pub ttft_ms: Option<u64>,
    pub duration_ms: u64,
    pub attempts: u32,
    pub stream: bool,
}

/// The outcome class of a status, for the error counters.
pub fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        401 | 403 => "denied",
        429 => "limited",
        400..=499 => "client_error",
        0 => "aborted",
        _ => "upstream_error",
    }
}

/// Makes a config name safe as one segment of a stat name ('.' separates segments; tag extraction reads
/// a segment up to the next '.').
pub fn segment(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Emits a record's metrics and access-log fields.
pub fn emit(r: &Record, t: &dyn Telemetry) {
    let model = segment(r.requested_model.as_deref().unwrap_or("none"));
    let provider = segment(r.provider.as_deref().unwrap_or("none"));
    let key = segment(r.key_id.as_deref().unwrap_or("none"));
    let tags = format!("model.{model}.provider.{provider}.key.{key}");
    t.counter(&format!("switchyard.requests.{tags}.outcome.{}", outcome(r.status)), 1);
    if let Some(u) = r.usage {
        t.counter(&format!("switchyard.input_tokens.{tags}"), u.prompt_tokens);
        t.counter(&format!("switchyard.output_tokens.{tags}"), u.completion_tokens);
        t.counter(&format!("switchyard.cached_tokens.{tags}"), u.cached_tokens);
    }
    if r.cost_micros > 0 {
        t.counter(&format!("switchyard.cost_micro_usd.{tags}"), r.cost_micros);
    }
    if r.provider.is_some() {
        t.histogram(&format!("switchyard.latency_ms.model.{model}.provider.{provider}"), r.duration_ms);
        if let Some(ttft) = r.ttft_ms {
            t.histogram(&format!("switchyard.ttft_ms.model.{model}.provider.{provider}"), ttft);
        }
    }
    if r.attempts > 1 {
        t.counter(&format!("switchyard.fallbacks.model.{model}"), u64::from(r.attempts - 1));
    }

    // Access-log fields, named after the OpenTelemetry GenAI semantic conventions where one exists.
    t.field("gen_ai.operation.name", r.operation);
    if let Some(m) = &r.requested_model {
        t.field("gen_ai.request.model", m);
    }
    if let Some(m) = &r.served_model {
        t.field("gen_ai.response.model", m);
    }
    if let Some(p) = &r.provider {
        t.field("gen_ai.provider.name", p);
    }
    if let Some(u) = r.usage {
        t.field("gen_ai.usage.input_tokens", &u.prompt_tokens.to_string());
        t.field("gen_ai.usage.output_tokens", &u.completion_tokens.to_string());
        t.field("gen_ai.usage.cache_read.input_tokens", &u.cached_tokens.to_string());
        t.field("usage_estimated", if r.usage_estimated { "true" } else { "false" });
    }
    if let Some(k) = &r.key_id {
        t.field("key_id", k);
    }
    t.field("cost_usd", &format!("{:.6}", r.cost_micros as f64 / 1e6));
    t.field("attempts", &r.attempts.to_string());
    if let Some(ttft) = r.ttft_ms {
        t.field("ttft_ms", &ttft.to_string());
    }
    t.field("outcome", outcome(r.status));
    t.field("stream", if r.stream { "true" } else { "false" });
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    pub struct Recorder {
        pub counters: RefCell<Vec<(String, u64)>>,
        pub histograms: RefCell<Vec<(String, u64)>>,
        pub fields: RefCell<Vec<(String, String)>>,
    }

    impl Telemetry for Recorder {
        fn counter(&self, name: &str, value: u64) {
            self.counters.borrow_mut().push((name.into(), value));
        }
        fn histogram(&self, name: &str, value: u64) {
            self.histograms.borrow_mut().push((name.into(), value));
        }
        fn field(&self, name: &str, value: &str) {
            self.fields.borrow_mut().push((name.into(), value.into()));
        }
    }

    #[test]
    fn a_served_request() {
        let r = Record {
            key_id: Some("team.a".into()),
            requested_model: Some("gpt-4.1".into()),
            served_model: Some("claude-sonnet-4-5".into()),
            provider: Some("anthropic".into()),
            operation: "chat",
            status: 200,
            usage: Some(Usage { prompt_tokens: 10, completion_tokens: 5, cached_tokens: 2 }),
            cost_micros: 1234,
            ttft_ms: Some(40),
            duration_ms: 90,
            attempts: 2,
            stream: true,
            ..Default::default()
        };
        let t = Recorder::default();
        emit(&r, &t);
        let c = t.counters.borrow();
        let tags = "model.gpt-4_1.provider.anthropic.key.team_a";
        assert!(c.contains(&(format!("switchyard.requests.{tags}.outcome.ok"), 1)));
        assert!(c.contains(&(format!("switchyard.input_tokens.{tags}"), 10)));
        assert!(c.contains(&(format!("switchyard.output_tokens.{tags}"), 5)));
        assert!(c.contains(&(format!("switchyard.cached_tokens.{tags}"), 2)));
        assert!(c.contains(&(format!("switchyard.cost_micro_usd.{tags}"), 1234)));
        assert!(c.contains(&("switchyard.fallbacks.model.gpt-4_1".to_string(), 1)));
        let h = t.histograms.borrow();
        assert!(h.contains(&("switchyard.ttft_ms.model.gpt-4_1.provider.anthropic".to_string(), 40)));
        let f = t.fields.borrow();
        assert!(f.contains(&("gen_ai.response.model".to_string(), "claude-sonnet-4-5".to_string())));
        assert!(f.contains(&("cost_usd".to_string(), "0.001234".to_string())));
    }

    #[test]
    fn a_refused_request_has_bounded_names() {
        let r = Record { status: 401, operation: "chat", ..Default::default() };
        let t = Recorder::default();
        emit(&r, &t);
        assert_eq!(
            t.counters.borrow().as_slice(),
            &[("switchyard.requests.model.none.provider.none.key.none.outcome.denied".to_string(), 1)]
        );
        assert!(t.histograms.borrow().is_empty());
    }
}
