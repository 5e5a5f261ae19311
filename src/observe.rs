//! What each request did, for operators: Envoy stats (counters and histograms defined by the filter) and
//! per-request fields for the access log. Everything here comes from the config or from measurements,
//! never from request input, so metric cardinality stays bounded by the config.

use crate::providers::Usage;

/// A metric's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
    /// A value that goes up and down ([`Telemetry::shift`]).
    Gauge,
}

/// The host's metrics and per-request log fields.
pub trait Telemetry {
    /// Defines a metric and returns the host's id for it (`None`: refused). Called once per name and VM
    /// ([`MetricIds`] keeps the ids).
    fn define(&self, kind: Kind, name: &str) -> Option<u32>;
    /// Adds to a counter, or records a histogram value.
    fn add(&self, kind: Kind, id: u32, value: u64);
    /// Moves a gauge by `delta`.
    fn shift(&self, id: u32, delta: i64);
    /// The request's access-log record: a serialised `google.protobuf.Struct` (see [`encode_struct`]),
    /// published in one host call.
    fn log_record(&self, record: &[u8]);
}

/// One value of the access-log record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
}

/// One finished request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// The virtual key's id (`None` before authentication succeeded, and for users).
    pub key_id: Option<String>,
    /// The caller is a user (JWT): the stats' key tag is `-`.
    pub by_user: bool,
    /// The user as the access log shows them (`identity.log_user`; never a stats tag).
    pub user: Option<String>,
    /// The team the request was attributed to, `-` for none; `None` when the config has no `identity`
    /// or `teams` (then stat names carry no team tag).
    pub team: Option<String>,
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
    /// The response reached the client in part only: the provider's answer broke off after it had
    /// started (an upstream reset or protocol error mid-body). An upstream error whatever the status.
    pub broke_off: bool,
    /// What the fleet-wide rate-limit service said (`ok`, `over_limit`, `unavailable`), when asked.
    pub fleet_limits: Option<&'static str>,
    /// What the response cache did (`hit`, `miss`, `bypass`), for a cached model.
    pub cache: Option<&'static str>,
    /// The tier that served a hit (`process`, `fleet`).
    pub cache_tier: Option<&'static str>,
    /// What the fleet tier said when it was asked ([`CACHE_FLEET_OUTCOMES`]).
    pub cache_fleet: Option<&'static str>,
    /// The tokens and cost (micro-USD) a hit saved.
    pub cache_saved: Option<(Usage, u64)>,
    /// The answer was stored: (entries evicted for it, change of the bytes the process tier holds).
    pub cache_stored: Option<(u32, i64)>,
}

impl Record {
    /// The outcome class: the status's ([`outcome`]), or `upstream_error` for an answer that broke off.
    pub fn outcome(&self) -> &'static str {
        if self.broke_off {
            "upstream_error"
        } else {
            outcome(self.status)
        }
    }
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

/// The outcome classes of [`outcome`], in a fixed order.
const OUTCOMES: [&str; 6] = ["ok", "denied", "limited", "client_error", "aborted", "upstream_error"];

/// The metric ids of one (model, provider, key) series, defined as they are first needed.
#[derive(Default)]
struct Series {
    model: String,
    provider: String,
    key: String,
    /// Empty without a team tag.
    team: String,
    requests: [Option<u32>; OUTCOMES.len()],
    input: Option<u32>,
    output: Option<u32>,
    cached: Option<u32>,
    cost: Option<u32>,
    latency: Option<u32>,
    ttft: Option<u32>,
    fallbacks: Option<u32>,
    cache: [Option<u32>; CACHE_OUTCOMES.len()],
    saved_tokens: Option<u32>,
    saved_cost: Option<u32>,
}

/// What the response cache may do for a request.
pub const CACHE_OUTCOMES: [&str; 3] = ["hit", "miss", "bypass"];

/// What the fleet tier of the response cache may say of a lookup.
pub const CACHE_FLEET_OUTCOMES: [&str; 5] = ["hit", "miss", "expired", "corrupt", "unavailable"];

/// Metric ids by series, kept per VM: a request's metrics cost a lookup, not names built and hashed.
/// The series are bounded by the config (its models, providers and keys, and "none").
#[derive(Default)]
pub struct MetricIds {
    series: hashbrown::HashTable<Series>,
    hasher: hashbrown::DefaultHashBuilder,
    /// `switchyard.fleet_limits.outcome.*`, by [`FLEET_OUTCOMES`].
    fleet: [Option<u32>; FLEET_OUTCOMES.len()],
    /// `switchyard.cache_fleet.outcome.*`, by [`CACHE_FLEET_OUTCOMES`].
    cache_fleet: [Option<u32>; CACHE_FLEET_OUTCOMES.len()],
    /// `switchyard.cache_evictions` and the `switchyard.cache_bytes` gauge.
    cache_evictions: Option<u32>,
    cache_bytes: Option<u32>,
}

/// What the fleet-wide rate-limit service may say of a request.
pub const FLEET_OUTCOMES: [&str; 3] = ["ok", "over_limit", "unavailable"];

/// The id in `slot`, defining the metric named by `name` the first time.
fn id(slot: &mut Option<u32>, t: &dyn Telemetry, kind: Kind, name: impl FnOnce() -> String) -> Option<u32> {
    if slot.is_none() {
        *slot = t.define(kind, &name());
    }
    *slot
}

/// Emits a record's metrics and access-log fields.
pub fn emit(r: &Record, ids: &mut MetricIds, t: &dyn Telemetry) {
    use std::hash::BuildHasher;
    let model = r.requested_model.as_deref().unwrap_or("none");
    let provider = r.provider.as_deref().unwrap_or("none");
    // Users never become a tag value: their requests are the key `-`.
    let key = r.key_id.as_deref().unwrap_or(if r.by_user { "-" } else { "none" });
    let team = r.team.as_deref().unwrap_or("");
    let hasher = &ids.hasher;
    let s = ids
        .series
        .entry(
            hasher.hash_one((model, provider, key, team)),
            |s| s.model == model && s.provider == provider && s.key == key && s.team == team,
            |s| hasher.hash_one((&s.model, &s.provider, &s.key, &s.team)),
        )
        .or_insert_with(|| Series {
            model: model.to_string(),
            provider: provider.to_string(),
            key: key.to_string(),
            team: team.to_string(),
            ..Series::default()
        })
        .into_mut();
    // Names are made only when a series' metric is first defined.
    let tags = || {
        let mut t = format!("model.{}.provider.{}.key.{}", segment(model), segment(provider), segment(key));
        if r.team.is_some() {
            t.push_str(".team.");
            t.push_str(&segment(team));
        }
        t
    };
    // Counters are defined even when there is nothing to add, so that the series exists from the first
    // request.
    let counter = |slot: &mut Option<u32>, name: &dyn Fn() -> String, value: u64| {
        if let Some(id) = id(slot, t, Kind::Counter, name) {
            if value > 0 {
                t.add(Kind::Counter, id, value);
            }
        }
    };
    let class = r.outcome();
    if let Some(i) = OUTCOMES.iter().position(|o| *o == class) {
        if let Some(slot) = s.requests.get_mut(i) {
            counter(slot, &|| format!("switchyard.requests.{}.outcome.{class}", tags()), 1);
        }
    }
    if let Some(u) = r.usage {
        counter(&mut s.input, &|| format!("switchyard.input_tokens.{}", tags()), u.prompt_tokens);
        counter(&mut s.output, &|| format!("switchyard.output_tokens.{}", tags()), u.completion_tokens);
        counter(&mut s.cached, &|| format!("switchyard.cached_tokens.{}", tags()), u.cached_tokens);
    }
    if r.cost_micros > 0 {
        counter(&mut s.cost, &|| format!("switchyard.cost_micro_usd.{}", tags()), r.cost_micros);
    }
    if r.provider.is_some() {
        let name = || format!("switchyard.latency_ms.model.{}.provider.{}", segment(model), segment(provider));
        if let Some(id) = id(&mut s.latency, t, Kind::Histogram, name) {
            t.add(Kind::Histogram, id, r.duration_ms);
        }
        if let Some(ttft) = r.ttft_ms {
            let name = || format!("switchyard.ttft_ms.model.{}.provider.{}", segment(model), segment(provider));
            if let Some(id) = id(&mut s.ttft, t, Kind::Histogram, name) {
                t.add(Kind::Histogram, id, ttft);
            }
        }
    }
    if r.attempts > 1 {
        counter(
            &mut s.fallbacks,
            &|| format!("switchyard.fallbacks.model.{}", segment(model)),
            u64::from(r.attempts - 1),
        );
    }

    if let Some(o) = r.cache {
        if let Some(slot) = CACHE_OUTCOMES.iter().position(|c| *c == o).and_then(|i| s.cache.get_mut(i)) {
            counter(slot, &|| format!("switchyard.cache.{}.outcome.{o}", tags()), 1);
        }
    }
    if let Some((u, cost)) = r.cache_saved {
        let tokens = u.prompt_tokens.saturating_add(u.completion_tokens);
        counter(&mut s.saved_tokens, &|| format!("switchyard.cache_saved_tokens.{}", tags()), tokens);
        counter(&mut s.saved_cost, &|| format!("switchyard.cache_saved_cost_micro_usd.{}", tags()), cost);
    }

    if let Some(o) = r.fleet_limits {
        if let Some(slot) = FLEET_OUTCOMES.iter().position(|f| *f == o).and_then(|i| ids.fleet.get_mut(i)) {
            counter(slot, &|| format!("switchyard.fleet_limits.outcome.{o}"), 1);
        }
    }
    if let Some(o) = r.cache_fleet {
        if let Some(slot) = CACHE_FLEET_OUTCOMES.iter().position(|f| *f == o).and_then(|i| ids.cache_fleet.get_mut(i)) {
            counter(slot, &|| format!("switchyard.cache_fleet.outcome.{o}"), 1);
        }
    }
    if let Some((evicted, delta)) = r.cache_stored {
        counter(&mut ids.cache_evictions, &|| "switchyard.cache_evictions".to_string(), u64::from(evicted));
        if let Some(id) = id(&mut ids.cache_bytes, t, Kind::Gauge, || "switchyard.cache_bytes".to_string()) {
            if delta != 0 {
                t.shift(id, delta);
            }
        }
    }

    t.log_record(&encode_struct(&log_fields(r)));
}

/// The request's access-log fields, named after the OpenTelemetry GenAI semantic conventions where one
/// exists.
pub fn log_fields(r: &Record) -> Vec<(&'static str, Value<'_>)> {
    let mut f = Vec::with_capacity(14);
    f.push(("gen_ai.operation.name", Value::Str(r.operation)));
    if let Some(m) = &r.requested_model {
        f.push(("gen_ai.request.model", Value::Str(m)));
    }
    if let Some(m) = &r.served_model {
        f.push(("gen_ai.response.model", Value::Str(m)));
    }
    if let Some(p) = &r.provider {
        f.push(("gen_ai.provider.name", Value::Str(p)));
    }
    if let Some(u) = r.usage {
        f.push(("gen_ai.usage.input_tokens", Value::Num(u.prompt_tokens as f64)));
        f.push(("gen_ai.usage.output_tokens", Value::Num(u.completion_tokens as f64)));
        f.push(("gen_ai.usage.cache_read.input_tokens", Value::Num(u.cached_tokens as f64)));
        f.push(("usage_estimated", Value::Bool(r.usage_estimated)));
    }
    if let Some(k) = &r.key_id {
        f.push(("key_id", Value::Str(k)));
    }
    if let Some(u) = &r.user {
        f.push(("user", Value::Str(u)));
    }
    if let Some(t) = r.team.as_deref().filter(|t| *t != "-") {
        f.push(("team", Value::Str(t)));
    }
    f.push(("cost_usd", Value::Num(r.cost_micros as f64 / 1e6)));
    f.push(("attempts", Value::Num(f64::from(r.attempts))));
    if let Some(ttft) = r.ttft_ms {
        f.push(("ttft_ms", Value::Num(ttft as f64)));
    }
    f.push(("outcome", Value::Str(r.outcome())));
    f.push(("stream", Value::Bool(r.stream)));
    if let Some(c) = r.cache {
        f.push(("cache", Value::Str(c)));
    }
    if let Some(t) = r.cache_tier {
        f.push(("cache_tier", Value::Str(t)));
    }
    if let Some(o) = r.cache_fleet {
        f.push(("cache_fleet", Value::Str(o)));
    }
    if let Some(o) = r.fleet_limits {
        f.push(("fleet_limits", Value::Str(o)));
    }
    f
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The filter state object (`wasm.` + this) that holds each request's log record.
pub const LOG_PROPERTY: &str = "switchyard";

/// The arguments of Envoy's `declare_property` foreign function (its `DeclarePropertyArguments` message)
/// that make [`LOG_PROPERTY`] a `google.protobuf.Struct` living as long as the request, so that the access
/// log can print it as JSON (`:TYPED`).
pub fn declare_record_args() -> Vec<u8> {
    let mut args = Vec::with_capacity(64);
    len_field(&mut args, 0x0a, LOG_PROPERTY.as_bytes()); // name = 1
    args.extend_from_slice(&[0x18, 3]); // type = 3: Protobuf
    len_field(&mut args, 0x22, b"type.googleapis.com/google.protobuf.Struct"); // schema = 4
    args.extend_from_slice(&[0x28, 1]); // span = 5: DownstreamRequest
    args
}

/// Protobuf wire encoding of a `google.protobuf.Struct` holding `fields`: Envoy keeps it as the typed
/// filter state object `wasm.switchyard`, which the access log prints as JSON with
/// `%FILTER_STATE(wasm.switchyard:TYPED)%` (one host call per request instead of one per field).
pub fn encode_struct(fields: &[(&str, Value)]) -> Vec<u8> {
    fn varint_len(v: usize) -> usize {
        (usize::BITS - (v | 1).leading_zeros()).div_ceil(7) as usize
    }
    let mut out = Vec::with_capacity(fields.len() * 48);
    for (name, v) in fields {
        // Value: number_value = 2 (fixed64), string_value = 3, bool_value = 4.
        let value_len = match v {
            Value::Num(_) => 9,
            Value::Str(s) => 1 + varint_len(s.len()) + s.len(),
            Value::Bool(_) => 2,
        };
        // Struct.fields = 1: map entries { key = 1, value = 2 }, written in place (sizes known ahead).
        let entry_len = 1 + varint_len(name.len()) + name.len() + 1 + varint_len(value_len) + value_len;
        out.push(0x0a);
        varint(&mut out, entry_len as u64);
        len_field(&mut out, 0x0a, name.as_bytes());
        out.push(0x12);
        varint(&mut out, value_len as u64);
        match v {
            Value::Num(n) => {
                out.push(0x11);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Value::Str(s) => len_field(&mut out, 0x1a, s.as_bytes()),
            Value::Bool(b) => out.extend_from_slice(&[0x20, u8::from(*b)]),
        }
    }
    out
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    pub struct Recorder {
        /// Defined metrics; an id is a position here.
        pub defined: RefCell<Vec<(Kind, String)>>,
        pub counters: RefCell<Vec<(String, u64)>>,
        pub histograms: RefCell<Vec<(String, u64)>>,
        pub gauges: RefCell<Vec<(String, i64)>>,
        pub records: RefCell<Vec<Vec<u8>>>,
    }

    impl Telemetry for Recorder {
        fn define(&self, kind: Kind, name: &str) -> Option<u32> {
            let mut d = self.defined.borrow_mut();
            assert!(!d.iter().any(|(_, n)| n == name), "{name} defined twice");
            d.push((kind, name.to_string()));
            Some(d.len() as u32 - 1)
        }
        fn add(&self, kind: Kind, id: u32, value: u64) {
            let (defined_kind, name) = self.defined.borrow()[id as usize].clone();
            assert_eq!(defined_kind, kind, "{name}");
            match kind {
                Kind::Counter => self.counters.borrow_mut().push((name, value)),
                Kind::Histogram => self.histograms.borrow_mut().push((name, value)),
                Kind::Gauge => panic!("{name}: a gauge moves with shift"),
            }
        }
        fn shift(&self, id: u32, delta: i64) {
            let (kind, name) = self.defined.borrow()[id as usize].clone();
            assert_eq!(kind, Kind::Gauge, "{name}");
            self.gauges.borrow_mut().push((name, delta));
        }
        fn log_record(&self, record: &[u8]) {
            self.records.borrow_mut().push(record.to_vec());
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
        let mut ids = MetricIds::default();
        emit(&r, &mut ids, &t);
        // The second request of the series defines nothing again (the recorder checks) and adds the same.
        emit(&r, &mut ids, &t);
        assert_eq!(t.defined.borrow().len(), 8);
        let c = t.counters.borrow();
        assert_eq!(c.len(), 12);
        let tags = "model.gpt-4_1.provider.anthropic.key.team_a";
        assert!(c.contains(&(format!("switchyard.requests.{tags}.outcome.ok"), 1)));
        assert!(c.contains(&(format!("switchyard.input_tokens.{tags}"), 10)));
        assert!(c.contains(&(format!("switchyard.output_tokens.{tags}"), 5)));
        assert!(c.contains(&(format!("switchyard.cached_tokens.{tags}"), 2)));
        assert!(c.contains(&(format!("switchyard.cost_micro_usd.{tags}"), 1234)));
        assert!(c.contains(&("switchyard.fallbacks.model.gpt-4_1".to_string(), 1)));
        let h = t.histograms.borrow();
        assert!(h.contains(&("switchyard.ttft_ms.model.gpt-4_1.provider.anthropic".to_string(), 40)));
        assert!(h.contains(&("switchyard.latency_ms.model.gpt-4_1.provider.anthropic".to_string(), 90)));
        // Another outcome of the same series, and a zero count: defined, nothing added.
        let failed = Record { status: 502, usage: Some(Usage::default()), ..r.clone() };
        drop((c, h));
        emit(&failed, &mut ids, &t);
        let names: Vec<String> = t.defined.borrow().iter().map(|(_, n)| n.clone()).collect();
        assert!(names.contains(&format!("switchyard.requests.{tags}.outcome.upstream_error")));
        assert!(!t.counters.borrow().contains(&(format!("switchyard.input_tokens.{tags}"), 0)));
        let f = log_fields(&r);
        assert!(f.contains(&("gen_ai.response.model", Value::Str("claude-sonnet-4-5"))));
        assert!(f.contains(&("cost_usd", Value::Num(0.001234))));
        assert!(f.contains(&("gen_ai.usage.cache_read.input_tokens", Value::Num(2.0))));
        assert_eq!(t.records.borrow().len(), 3);
        assert_eq!(t.records.borrow()[0], encode_struct(&f));
    }

    #[test]
    fn cache_tiers_and_the_fleet_tiers_outcome() {
        let hit = Record {
            status: 200,
            operation: "chat",
            cache: Some("hit"),
            cache_tier: Some("fleet"),
            cache_fleet: Some("hit"),
            ..Default::default()
        };
        let t = Recorder::default();
        let mut ids = MetricIds::default();
        emit(&hit, &mut ids, &t);
        emit(
            &Record { cache: Some("miss"), cache_tier: None, cache_fleet: Some("unavailable"), ..hit.clone() },
            &mut ids,
            &t,
        );
        let c = t.counters.borrow();
        assert!(c.contains(&("switchyard.cache_fleet.outcome.hit".to_string(), 1)));
        assert!(c.contains(&("switchyard.cache_fleet.outcome.unavailable".to_string(), 1)));
        let f = log_fields(&hit);
        assert!(f.contains(&("cache", Value::Str("hit"))));
        assert!(f.contains(&("cache_tier", Value::Str("fleet"))));
        assert!(f.contains(&("cache_fleet", Value::Str("hit"))));
        // Without the fleet tier, neither field nor counter.
        let local = Record { cache_tier: Some("process"), cache_fleet: None, ..hit };
        assert!(!log_fields(&local).iter().any(|(k, _)| *k == "cache_fleet"));
    }

    #[test]
    fn a_refused_request_has_bounded_names() {
        let r = Record { status: 401, operation: "chat", ..Default::default() };
        let t = Recorder::default();
        emit(&r, &mut MetricIds::default(), &t);
        assert_eq!(
            t.counters.borrow().as_slice(),
            &[("switchyard.requests.model.none.provider.none.key.none.outcome.denied".to_string(), 1)]
        );
        assert!(t.histograms.borrow().is_empty());
    }

    #[test]
    fn struct_wire_encoding() {
        // {"a": "xy"}, {"n": 1.0}, {"b": true} as protoc encodes them.
        assert_eq!(encode_struct(&[("a", Value::Str("xy"))]), b"\x0a\x09\x0a\x01a\x12\x04\x1a\x02xy");
        let mut n = b"\x0a\x0e\x0a\x01n\x12\x09\x11".to_vec();
        n.extend_from_slice(&1.0f64.to_le_bytes());
        assert_eq!(encode_struct(&[("n", Value::Num(1.0))]), n);
        assert_eq!(encode_struct(&[("b", Value::Bool(true))]), b"\x0a\x07\x0a\x01b\x12\x02\x20\x01");
        // Lengths past one varint byte: a 200-byte and a 20,000-byte string, nested as protoc nests them.
        for len in [126, 200, 20_000] {
            let text = "x".repeat(len);
            let mut value = vec![0x1a];
            varint(&mut value, len as u64);
            value.extend_from_slice(text.as_bytes());
            let mut entry = Vec::new();
            len_field(&mut entry, 0x0a, b"k");
            len_field(&mut entry, 0x12, &value);
            let mut want = Vec::new();
            len_field(&mut want, 0x0a, &entry);
            assert_eq!(encode_struct(&[("k", Value::Str(&text))]), want, "{len}");
        }
        // Lengths past 127 take two varint bytes.
        let long = "m".repeat(200);
        let e = encode_struct(&[("k", Value::Str(&long))]);
        assert_eq!(&e[..3], &[0x0a, 0xd1, 0x01]);
        assert_eq!(e.len(), 3 + 209);
    }

    #[test]
    fn declare_property_arguments() {
        let mut want = b"\x0a\x0aswitchyard\x18\x03\x22\x2a".to_vec();
        want.extend_from_slice(b"type.googleapis.com/google.protobuf.Struct");
        want.extend_from_slice(b"\x28\x01");
        assert_eq!(declare_record_args(), want);
    }
}
