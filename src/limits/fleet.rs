//! Fleet-wide limits: what the filter asks a rate-limit service (Envoy's `envoy.service.ratelimit.v3`
//! protocol, gRPC through an Envoy cluster) so that a limit holds for every Envoy of a fleet.
//!
//! One `ShouldRateLimit` call per admitted request carries one descriptor per limit of the key (and of the
//! key with the model); Switchyard's own service (`switchyard-limits`) reserves them all or none, and a
//! second call after the response (`op` = `refund` or `charge`, batched with other requests' by the host)
//! settles the tokens and money to what was really used. Against a standard service (`protocol:
//! standard`) requests are counted at admission and tokens charged after the response.
//!
//! Descriptor entries, in order: `("switchyard_key", id)`, optional `("model", m)`, `("limit",
//! "requests" | "tokens" | "budget")`, then `("window_secs", n)` (with the `limit` override: max per
//! unit) or, for budgets, `("period", "day:N" | "month:N")` and `("max_micros", n)`; settlement adds
//! `("op", "refund" | "charge")`. The amount is the descriptor's `hits_addend`.

use super::{period_of, Period, Rate};
use crate::codec::protobuf::{Reader, Writer};
use crate::config::Budget;
use hashbrown::HashMap;

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// `fleet_limits`: where the rate-limit service is and what to do without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetService {
    /// The Envoy cluster of the service (gRPC).
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    /// Admit on the local tier alone when the service fails (else refuse with 503).
    pub fail_open: bool,
    /// A standard rate-limit service: no reservations, tokens charged after the response.
    pub standard: bool,
}

/// `keys[i].limits.fleet`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetLimits {
    pub requests: Option<Rate>,
    pub tokens: Option<Rate>,
    pub budget: Option<Budget>,
    /// Per model: requests and tokens.
    pub per_model: HashMap<String, (Option<Rate>, Option<Rate>)>,
}

impl FleetLimits {
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none() && self.budget.is_none() && self.per_model.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Tokens,
    Budget,
}

/// One limit as the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub entries: Vec<(&'static str, String)>,
    /// The `limit` override: max per unit (a `RateLimitUnit`).
    pub limit: Option<(u32, u32)>,
    pub hits: u64,
    pub kind: Kind,
}

/// What an admitted request holds in the fleet tier until it is settled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hold {
    descriptors: Vec<Descriptor>,
}

/// The unit of a window, when it is one of the protocol's.
fn unit(window_secs: u64) -> u32 {
    match window_secs {
        1 => 1,
        60 => 2,
        3600 => 3,
        86_400 => 4,
        _ => 0,
    }
}

fn rate(key: &str, model: Option<&str>, kind: Kind, r: Rate, hits: u64) -> Descriptor {
    let mut entries = vec![("switchyard_key", key.to_string())];
    if let Some(m) = model {
        entries.push(("model", m.to_string()));
    }
    entries.push(("limit", if kind == Kind::Requests { "requests" } else { "tokens" }.to_string()));
    entries.push(("window_secs", r.window_secs.to_string()));
    let max = u32::try_from(r.max).unwrap_or(u32::MAX);
    Descriptor { entries, limit: Some((max, unit(r.window_secs))), hits, kind }
}

/// The descriptors of an admission: every fleet limit of the key and of the key with `model`, with what
/// the request may use (`tokens`, `cost_micros`: the same estimates as the local tier's).
pub fn admission(
    key: &str,
    limits: &FleetLimits,
    model: &str,
    tokens: u64,
    cost_micros: u64,
    now_unix: u64,
    standard: bool,
) -> Vec<Descriptor> {
    // A standard service cannot take a reservation back: it counts the request, and checks the token
    // limits with a unit (the tokens are charged after the response).
    let tokens = if standard { 1 } else { tokens.max(1) };
    let mut out = Vec::new();
    if let Some(r) = limits.requests {
        out.push(rate(key, None, Kind::Requests, r, 1));
    }
    if let Some(r) = limits.tokens {
        out.push(rate(key, None, Kind::Tokens, r, tokens));
    }
    if let Some((req, tok)) = limits.per_model.get(model) {
        if let Some(r) = req {
            out.push(rate(key, Some(model), Kind::Requests, *r, 1));
        }
        if let Some(r) = tok {
            out.push(rate(key, Some(model), Kind::Tokens, *r, tokens));
        }
    }
    if let (Some(b), false) = (limits.budget, standard) {
        let (n, _) = period_of(b.period, now_unix);
        let period = match b.period {
            Period::Day => format!("day:{n}"),
            Period::Month => format!("month:{n}"),
        };
        let entries = vec![
            ("switchyard_key", key.to_string()),
            ("limit", "budget".to_string()),
            ("period", period),
            ("max_micros", b.micros.to_string()),
        ];
        out.push(Descriptor { entries, limit: None, hits: cost_micros, kind: Kind::Budget });
    }
    out
}

impl Hold {
    pub fn new(admitted: Vec<Descriptor>) -> Hold {
        Hold { descriptors: admitted.into_iter().filter(|d| d.kind != Kind::Requests).collect() }
    }

    /// The settlement of what was held: `used` is the (tokens, micro-dollars) the answer really used, or
    /// `None` when it used nothing that counts (refused, failed). Nothing to send when it is empty.
    pub fn settle(self, used: Option<(u64, u64)>, standard: bool) -> Vec<Descriptor> {
        let (tokens, cost) = used.unwrap_or((0, 0));
        let mut out = Vec::new();
        for mut d in self.descriptors {
            let actual = if d.kind == Kind::Budget { cost } else { tokens };
            if standard {
                // Only tokens, charged now (the admission counted one).
                if d.kind == Kind::Tokens && actual > d.hits {
                    d.hits = actual - d.hits;
                    out.push(d);
                }
                continue;
            }
            let (op, amount) = if actual >= d.hits { ("charge", actual - d.hits) } else { ("refund", d.hits - actual) };
            if amount == 0 {
                continue;
            }
            d.entries.push(("op", op.to_string()));
            d.hits = amount;
            out.push(d);
        }
        out
    }
}

/// A `RateLimitRequest` for `descriptors`.
pub fn encode(domain: &str, descriptors: &[Descriptor]) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(1, domain.as_bytes());
    for d in descriptors {
        w.message(2, |m| {
            for (k, v) in &d.entries {
                m.message(1, |e| {
                    e.bytes(1, k.as_bytes()).bytes(2, v.as_bytes());
                });
            }
            if let Some((max, unit)) = d.limit {
                m.message(2, |l| {
                    l.uint(1, u64::from(max)).uint(2, u64::from(unit));
                });
            }
            // hits_addend: a google.protobuf.UInt64Value (0 is sent as an empty wrapper).
            m.message(3, |h| {
                h.uint(1, d.hits);
            });
        });
    }
    w.buf
}

/// One descriptor's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    pub over: bool,
    pub remaining: u32,
    /// Until the limit has room again (over) or is full again (ok), in milliseconds.
    pub reset_ms: u64,
}

/// A `RateLimitResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    pub over: bool,
    pub statuses: Vec<Status>,
}

/// Reads a `RateLimitResponse`; an answer that is neither OK nor OVER_LIMIT is an error.
pub fn decode(bytes: &[u8]) -> Result<Verdict, String> {
    let mut code = 0;
    let mut statuses = Vec::new();
    for f in Reader::new(bytes) {
        let (n, v) = f?;
        match n {
            1 => code = v.as_u64(),
            2 => statuses.push(status(v.as_bytes())?),
            _ => {}
        }
    }
    match code {
        1 => Ok(Verdict { over: false, statuses }),
        2 => Ok(Verdict { over: true, statuses }),
        c => Err(format!("the rate-limit service answered code {c} (neither OK nor OVER_LIMIT)")),
    }
}

fn status(bytes: &[u8]) -> Result<Status, String> {
    let mut s = Status::default();
    for f in Reader::new(bytes) {
        let (n, v) = f?;
        match n {
            1 => s.over = v.as_u64() == 2,
            3 => s.remaining = u32::try_from(v.as_u64()).unwrap_or(u32::MAX),
            4 => {
                let (mut secs, mut nanos) = (0u64, 0u64);
                for f in Reader::new(v.as_bytes()) {
                    let (n, v) = f?;
                    match n {
                        1 => secs = v.as_u64(),
                        2 => nanos = v.as_u64(),
                        _ => {}
                    }
                }
                s.reset_ms = secs.saturating_mul(1000).saturating_add(nanos / 1_000_000);
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Settlements waiting to be sent, batched: the host adds each request's and sends them every tick.
#[derive(Debug, Default)]
pub struct SettleQueue {
    pending: Vec<Descriptor>,
    /// Descriptors dropped because the queue was full (the service unreachable for long).
    pub dropped: u64,
}

/// Descriptors held at most (past it the oldest go: an over-count, never an under-count, for refunds;
/// charges lost are counted in `dropped`).
pub const MAX_QUEUED: usize = 10_000;
/// Descriptors per settlement call.
pub const BATCH: usize = 500;

impl SettleQueue {
    pub fn push(&mut self, ds: Vec<Descriptor>) {
        self.pending.extend(ds);
        if self.pending.len() > MAX_QUEUED {
            let extra = self.pending.len() - MAX_QUEUED;
            self.pending.drain(..extra);
            self.dropped += extra as u64;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The next call's descriptors: up to `BATCH` (see [`encode`]).
    pub fn next_batch(&mut self) -> Option<Vec<Descriptor>> {
        if self.pending.is_empty() {
            return None;
        }
        let n = self.pending.len().min(BATCH);
        Some(self.pending.drain(..n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::protobuf::Value;

    fn limits() -> FleetLimits {
        let mut per_model = HashMap::new();
        per_model.insert("gpt".to_string(), (Some(Rate { max: 5, window_secs: 60 }), None));
        FleetLimits {
            requests: Some(Rate { max: 100, window_secs: 60 }),
            tokens: Some(Rate { max: 10_000, window_secs: 3600 }),
            budget: Some(Budget { micros: 25_000_000, period: Period::Month }),
            per_model,
        }
    }

    #[test]
    fn admission_names_every_limit_with_its_amount() {
        // 2026-12-02: month 683 since 1970-01.
        let ds = admission("team-a", &limits(), "gpt", 300, 1_234, 1_796_256_000, false);
        let got: Vec<_> = ds.iter().map(|d| (d.entries.clone(), d.limit, d.hits)).collect();
        let e = |v: &[(&'static str, &str)]| v.iter().map(|(k, v)| (*k, v.to_string())).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (e(&[("switchyard_key", "team-a"), ("limit", "requests"), ("window_secs", "60")]), Some((100, 2)), 1),
                (
                    e(&[("switchyard_key", "team-a"), ("limit", "tokens"), ("window_secs", "3600")]),
                    Some((10_000, 3)),
                    300
                ),
                (
                    e(&[("switchyard_key", "team-a"), ("model", "gpt"), ("limit", "requests"), ("window_secs", "60")]),
                    Some((5, 2)),
                    1
                ),
                (
                    e(&[
                        ("switchyard_key", "team-a"),
                        ("limit", "budget"),
                        ("period", "month:683"),
                        ("max_micros", "25000000")
                    ]),
                    None,
                    1_234
                ),
            ]
        );
        // A standard service: no budget, tokens checked with one unit.
        let std = admission("team-a", &limits(), "other", 300, 1_234, 1_796_256_000, true);
        assert_eq!(
            std.iter().map(|d| (d.kind, d.hits)).collect::<Vec<_>>(),
            vec![(Kind::Requests, 1), (Kind::Tokens, 1)]
        );
    }

    #[test]
    fn settlement_refunds_or_charges_the_difference() {
        let ds = admission("k", &limits(), "x", 300, 1_000, 0, false);
        let s = Hold::new(ds.clone()).settle(Some((120, 1_500)), false);
        let got: Vec<_> = s.iter().map(|d| (d.kind, d.entries.last().map(|e| e.1.clone()), d.hits)).collect();
        assert_eq!(got, vec![(Kind::Tokens, Some("refund".into()), 180), (Kind::Budget, Some("charge".into()), 500)]);
        // Nothing used: everything held goes back; exactly what was reserved: nothing to send.
        let s = Hold::new(ds.clone()).settle(None, false);
        assert_eq!(s.iter().map(|d| d.hits).collect::<Vec<_>>(), vec![300, 1_000]);
        assert!(Hold::new(ds).settle(Some((300, 1_000)), false).is_empty());
        // Standard: the tokens beyond the admission's one unit are charged now.
        let std = admission("k", &limits(), "x", 300, 1_000, 0, true);
        let s = Hold::new(std).settle(Some((120, 0)), true);
        assert_eq!(
            s.iter().map(|d| (d.kind, d.hits, d.entries.len())).collect::<Vec<_>>(),
            vec![(Kind::Tokens, 119, 3)]
        );
    }

    #[test]
    fn the_request_message_is_the_protocol_s() {
        let ds = admission("k", &limits(), "x", 7, 0, 0, false);
        let bytes = encode("switchyard", &ds[..2]);
        let fields: Vec<_> = Reader::new(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields[0], (1, Value::Bytes(b"switchyard")));
        let d: Vec<_> = Reader::new(fields[2].1.as_bytes()).collect::<Result<_, _>>().unwrap();
        // entries (1) x3, limit (2) {requests_per_unit 10000, unit HOUR}, hits_addend (3) {value 7}.
        assert_eq!(d.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 1, 1, 2, 3]);
        assert_eq!(d[3].1.as_bytes(), &[0x08, 0x90, 0x4e, 0x10, 0x03]);
        assert_eq!(d[4].1.as_bytes(), &[0x08, 7]);
        let entry: Vec<_> = Reader::new(d[1].1.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(entry, vec![(1, Value::Bytes(b"limit")), (2, Value::Bytes(b"tokens"))]);
    }

    #[test]
    fn reads_verdicts() {
        let mut w = Writer::new();
        w.uint(1, 2);
        w.message(2, |s| {
            s.uint(1, 1).uint(3, 9);
        });
        w.message(2, |s| {
            s.uint(1, 2).message(4, |d| {
                d.uint(1, 3).uint(2, 500_000_000);
            });
        });
        let v = decode(&w.buf).unwrap();
        assert!(v.over);
        assert_eq!(
            v.statuses,
            vec![
                Status { over: false, remaining: 9, reset_ms: 0 },
                Status { over: true, remaining: 0, reset_ms: 3_500 }
            ]
        );
        assert!(decode(&[0x08, 0x00]).is_err(), "UNKNOWN is no verdict");
        assert!(decode(b"\x0a\x05").is_err());
        assert_eq!(decode(&[0x08, 1]).unwrap(), Verdict { over: false, statuses: vec![] });
    }

    #[test]
    fn the_settle_queue_batches_and_is_bounded() {
        let mut q = SettleQueue::default();
        let d = || Hold::new(admission("k", &limits(), "x", 10, 10, 0, false)).settle(None, false);
        for _ in 0..(MAX_QUEUED / 2 + 10) {
            q.push(d());
        }
        assert_eq!(q.dropped, 20);
        let mut calls = 0;
        while let Some(b) = q.next_batch() {
            calls += 1;
            let m = encode("switchyard", &b);
            assert_eq!(Reader::new(&m).filter(|f| matches!(f, Ok((2, _)))).count(), BATCH);
        }
        assert_eq!(calls, MAX_QUEUED / BATCH);
        assert!(q.is_empty());
    }
}
