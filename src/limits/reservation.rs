//! Per-request use of the limits: what an admitted request reserves, and how it settles or releases.
//! A request counts against one or more subjects (`subject.rs`: its key or user, and its team); it takes
//! from all of their records or from none, and settles all of them.

use super::rate::{gcra_shift, gcra_step, period_of, BudgetState, Period, Rate, RateState, Refused};
use super::subject::{model_record, own_record, Subject, Whose};
use super::{format_duration, read_u64s, update, write_u64s, SharedStore};
use crate::api::error::ApiError;
use crate::config::Key;
use std::rc::Rc;

/// The most records one request holds: its key's or user's and its team's, each with the model.
const MAX_HELD: usize = 4;

/// What one admitted request holds until its response ends.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    tokens: u64,
    cost_micros: u64,
    /// The records taken from and what of each this request took, in the order taken.
    held: [Option<Held>; MAX_HELD],
    reserved_at_secs: u64,
    /// Which subject's state each `x-ratelimit-*` kind shows (requests, tokens), and its remaining.
    shown: [Option<(usize, u64)>; 2],
    /// `x-ratelimit-*` headers for the response.
    pub headers: Vec<(&'static str, String)>,
}

/// A record a reservation took from.
#[derive(Debug, Clone)]
enum Held {
    /// A subject's own record, `[in flight, requests TAT, tokens TAT, budget period, budget used]`.
    Own(Rc<str>, KeyParts),
    /// A subject × model record, `[requests TAT, tokens TAT]`.
    Model(Rc<str>, ModelParts),
}

/// A subject's own limits that apply, as copied from the config at reservation time.
#[derive(Debug, Clone, Copy, Default)]
struct KeyParts {
    concurrent: Option<u64>,
    requests: Option<Rate>,
    tokens: Option<Rate>,
    budget: Option<crate::config::Budget>,
}

#[derive(Debug, Clone, Copy, Default)]
struct ModelParts {
    requests: Option<Rate>,
    tokens: Option<Rate>,
}

/// A key's limits live in one shared-data record, `[in flight, requests TAT, tokens TAT, budget period,
/// budget used]`, so that a reservation is one compare-and-swap; a key × model limit has its own record
/// `[requests TAT, tokens TAT]`. Teams and users have records of the same two kinds.
fn key_record(key_id: &str) -> String {
    own_record(key_id)
}

/// Names the records of key `key_id`'s limits (at config load, so requests never format them).
pub fn name_records(key_id: &str, limits: &mut crate::config::KeyLimits) {
    limits.record = key_record(key_id).into();
    for (model, ml) in limits.per_model.iter_mut() {
        ml.record = model_record(key_id, model).into();
    }
}

/// Every shared-data key the limits of `cfg` use. The route-level filter creates them (empty) when it
/// loads, before traffic: Envoy ignores the CAS token when a key does not exist yet, so two workers
/// creating the same key at once could lose an update; once a key exists every write is checked.
pub fn shared_keys(cfg: &crate::config::Config) -> Vec<String> {
    let mut out = Vec::new();
    // A user's records are made by their first request (users are not known ahead).
    for l in cfg.keys.iter().map(|k| &k.limits).chain(cfg.teams.iter().map(|t| &t.limits)) {
        if l.has_own() {
            out.push(l.record.to_string());
        }
        let mut models: Vec<&String> = l.per_model.keys().collect();
        models.sort();
        for m in models {
            out.extend(l.per_model.get(m).map(|ml| ml.record.to_string()));
        }
    }
    out
}

/// Creates the keys that do not exist yet, leaving existing counters (a config reload) as they are.
pub fn create_missing(store: &dyn SharedStore, keys: &[String]) {
    for k in keys {
        if store.get(k).0.is_none() {
            let _ = store.set(k, &[], None);
        }
    }
}

fn contention() -> ApiError {
    ApiError::new(503, "server_error", Some("limiter_contention"), "The gateway's limit counters are busy; retry.")
}

fn rate_headers(out: &mut Vec<(&'static str, String)>, kind: &'static str, s: RateState) {
    let (l, r, t) = match kind {
        "requests" => ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
        _ => ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    };
    out.retain(|(k, _)| *k != l && *k != r && *k != t);
    out.push((l, s.limit.to_string()));
    out.push((r, s.remaining.to_string()));
    out.push((t, format_duration(s.reset_ns)));
}

fn too_many(kind: &'static str, message: String, retry_ns: u64, headers: &[(&'static str, String)]) -> ApiError {
    let mut e = ApiError::new(429, kind, Some("rate_limit_exceeded"), message);
    e.headers = headers.to_vec();
    e.headers.push(("retry-after", retry_ns.div_ceil(1_000_000_000).max(1).to_string()));
    e
}

/// Bucket states by kind ("requests" or "tokens"), for the `x-ratelimit-*` headers: a key's or a key ×
/// model record's request and token buckets.
type States = [Option<(&'static str, RateState)>; 2];

/// Takes one request and `tokens` tokens from the request and token buckets that apply (either may be
/// absent): the new TATs and the buckets' states, or the first refusal.
fn take_rates(
    rq: u64,
    tk: u64,
    requests: Option<Rate>,
    tokens_rate: Option<Rate>,
    tokens: u64,
    now_ns: u64,
) -> Result<(u64, u64, States), Refusal> {
    let mut st: States = [None, None];
    let rq = match requests {
        Some(rate) => {
            let (t, s) = gcra_step(rq, rate, 1, now_ns).map_err(|e| Refusal::Requests(rate, e))?;
            st[0] = Some(("requests", s));
            t
        }
        None => rq,
    };
    let tk = match tokens_rate {
        Some(rate) => {
            let (t, s) = gcra_step(tk, rate, tokens, now_ns).map_err(|e| Refusal::Tokens(rate, e))?;
            st[1] = Some(("tokens", s));
            t
        }
        None => tk,
    };
    Ok((rq, tk, st))
}

/// Why a reservation did not fit.
enum Refusal {
    Concurrency(u64),
    Requests(Rate, Refused),
    Tokens(Rate, Refused),
    Budget(crate::config::Budget, BudgetState),
}

/// How a refusal names whose limit it was.
fn prefix(whose: Whose) -> String {
    match whose {
        Whose::Key => "Rate limit reached".to_string(),
        Whose::User => "User rate limit reached".to_string(),
        Whose::Team(t) => format!("Team '{t}' rate limit reached"),
    }
}

impl Reservation {
    /// Admits a request of `key` for `model`, reserving `tokens` and `cost_micros`, or refuses it with the
    /// 429 to send. A refused request takes nothing.
    pub fn reserve(
        store: &dyn SharedStore,
        key: &Key,
        model: &str,
        tokens: u64,
        cost_micros: u64,
        now_ns: u64,
    ) -> Result<Reservation, ApiError> {
        Reservation::reserve_for(store, [Subject::key(key, model)], tokens, cost_micros, now_ns)
    }

    /// Admits a request counting against every one of `subjects` (at most two: the key or user, then
    /// the team), reserving `tokens` and `cost_micros` from each, or refuses it with the 429 of the first
    /// limit that does not fit. A refused request takes nothing from any subject.
    pub fn reserve_for<'a>(
        store: &dyn SharedStore,
        subjects: impl IntoIterator<Item = Subject<'a>>,
        tokens: u64,
        cost_micros: u64,
        now_ns: u64,
    ) -> Result<Reservation, ApiError> {
        let mut r = Reservation { tokens, cost_micros, reserved_at_secs: now_ns / 1_000_000_000, ..Default::default() };
        for (i, s) in subjects.into_iter().enumerate() {
            if let Err(e) = r.take(store, i, &s, now_ns) {
                r.give_back(store, now_ns);
                return Err(e);
            }
        }
        Ok(r)
    }

    /// Takes from one subject's records: its limits with the model, then its own.
    fn take(&mut self, store: &dyn SharedStore, subject: usize, s: &Subject, now_ns: u64) -> Result<(), ApiError> {
        let tokens = self.tokens;
        let cost_micros = self.cost_micros;
        // The model record's states, then the subject's own.
        let mut states: [Option<(&'static str, RateState)>; 4] = [None; 4];

        if let Some((name, ml)) = &s.model {
            let parts = ModelParts { requests: ml.requests, tokens: ml.tokens };
            let taken = update(store, name, |v| {
                let [rq, tk] = read_u64s::<2>(v);
                let (rq, tk, st) = take_rates(rq, tk, parts.requests, parts.tokens, tokens, now_ns)?;
                Ok((write_u64s(&[rq, tk]), st))
            })
            .map_err(|_| contention())?;
            match taken {
                Ok(st) => {
                    states[..2].copy_from_slice(&st);
                    self.hold(Held::Model(name.clone(), parts));
                }
                Err(refusal) => return Err(self.refused(refusal, s.whose, &states)),
            }
        }

        let l = s.limits;
        let parts = KeyParts { concurrent: l.concurrent, requests: l.requests, tokens: l.tokens, budget: l.budget };
        if l.has_own() {
            let (pid, reset_secs) = parts.budget.map_or((0, 0), |b| period_of(b.period, self.reserved_at_secs));
            let taken = update(store, &s.record, |v| {
                let [inflight, rq, tk, period, used] = read_u64s::<5>(v);
                if let Some(max) = parts.concurrent {
                    if inflight >= max {
                        return Err(Refusal::Concurrency(max));
                    }
                }
                let (rq, tk, st) = take_rates(rq, tk, parts.requests, parts.tokens, tokens, now_ns)?;
                let (period, used) = match parts.budget {
                    Some(b) => {
                        let used = if period == pid { used } else { 0 };
                        let bs = BudgetState { limit_micros: b.micros, used_micros: used, reset_secs };
                        if used >= b.micros || used.saturating_add(cost_micros) > b.micros {
                            return Err(Refusal::Budget(b, bs));
                        }
                        (pid, used + cost_micros)
                    }
                    None => (period, used),
                };
                let inflight = inflight + u64::from(parts.concurrent.is_some());
                Ok((write_u64s(&[inflight, rq, tk, period, used]), st))
            })
            .map_err(|_| contention())?;
            match taken {
                Ok(st) => {
                    states[2..].copy_from_slice(&st);
                    self.hold(Held::Own(s.record.clone(), parts));
                }
                Err(refusal) => return Err(self.refused(refusal, s.whose, &states)),
            }
        }
        // Headers: the subject's own limits where it has them (they come last), else the model's.
        self.headers.reserve_exact(6);
        for (kind, st) in states.into_iter().flatten() {
            self.show(subject, kind, st);
        }
        Ok(())
    }

    fn hold(&mut self, h: Held) {
        if let Some(slot) = self.held.iter_mut().find(|s| s.is_none()) {
            *slot = Some(h);
        }
    }

    /// Shows a bucket's state in the `x-ratelimit-*` headers: within one subject the last wins (its own
    /// limits over its limits with the model); across subjects the one with the least remaining.
    fn show(&mut self, subject: usize, kind: &'static str, st: RateState) {
        let slot = usize::from(kind != "requests");
        if let Some(Some((shown_by, remaining))) = self.shown.get(slot) {
            if *shown_by != subject && *remaining <= st.remaining {
                return;
            }
        }
        if let Some(s) = self.shown.get_mut(slot) {
            *s = Some((subject, st.remaining));
        }
        rate_headers(&mut self.headers, kind, st);
    }

    /// The 429 for a refusal (headers: what is known so far plus the refusing limit's state).
    fn refused(&mut self, refusal: Refusal, whose: Whose, states: &[Option<(&'static str, RateState)>]) -> ApiError {
        for (kind, s) in states.iter().flatten() {
            rate_headers(&mut self.headers, kind, *s);
        }
        let on = |whose: Whose| match whose {
            Whose::Key => String::new(),
            Whose::User => " (your user limit)".to_string(),
            Whose::Team(t) => format!(" (team '{t}')"),
        };
        match refusal {
            Refusal::Concurrency(max) => {
                let what = match whose {
                    Whose::Key => "this key".to_string(),
                    Whose::User => "this user".to_string(),
                    Whose::Team(t) => format!("team '{t}'"),
                };
                too_many(
                    "requests",
                    format!("Too many concurrent requests for {what} (limit {max})."),
                    1_000_000_000,
                    &self.headers,
                )
            }
            Refusal::Requests(rate, refused) => {
                rate_headers(&mut self.headers, "requests", refused.state);
                too_many(
                    "requests",
                    format!("{} for requests: {} per {}s.", prefix(whose), rate.max, rate.window_secs),
                    refused.retry_after_ns,
                    &self.headers,
                )
            }
            Refusal::Tokens(rate, refused) => {
                rate_headers(&mut self.headers, "tokens", refused.state);
                let message = if self.tokens > rate.max {
                    format!(
                        "Request too large for the token limit{}: needs {} tokens, limit {} per {}s.",
                        on(whose),
                        self.tokens,
                        rate.max,
                        rate.window_secs
                    )
                } else {
                    format!(
                        "{} for tokens: {} per {}s (this request reserves {}).",
                        prefix(whose),
                        rate.max,
                        rate.window_secs,
                        self.tokens
                    )
                };
                too_many("tokens", message, refused.retry_after_ns, &self.headers)
            }
            Refusal::Budget(b, st) => {
                let period = if b.period == Period::Day { "daily" } else { "monthly" };
                let usd = b.micros as f64 / 1e6;
                let message = match whose {
                    Whose::Key => format!("You exceeded this key's {period} budget of ${usd:.2}."),
                    Whose::User => format!("You exceeded your {period} budget of ${usd:.2}."),
                    Whose::Team(t) => format!("You exceeded the {period} budget of team '{t}' (${usd:.2})."),
                };
                let mut e = ApiError::new(429, "insufficient_quota", Some("insufficient_quota"), message);
                e.headers = self.headers.clone();
                e.headers.push(("retry-after", st.reset_secs.max(1).to_string()));
                e
            }
        }
    }

    /// Gives back everything taken so far (a later record refused): the request, its tokens, its money
    /// and its place in flight.
    fn give_back(&mut self, store: &dyn SharedStore, now_ns: u64) {
        let tokens = self.tokens as i64;
        let cost = self.cost_micros;
        let (reserved_at, held) = (self.reserved_at_secs, std::mem::take(&mut self.held));
        for h in held.into_iter().rev().flatten() {
            match h {
                Held::Model(name, parts) => {
                    let _ = update(store, &name, |v| {
                        let [rq, tk] = read_u64s::<2>(v);
                        let rq = parts.requests.map_or(rq, |rate| gcra_shift(rq, rate, -1, now_ns));
                        let tk = parts.tokens.map_or(tk, |rate| gcra_shift(tk, rate, -tokens, now_ns));
                        Ok::<_, ()>((write_u64s(&[rq, tk]), ()))
                    });
                }
                Held::Own(name, parts) => {
                    let (pid, _) = parts.budget.map_or((0, 0), |b| period_of(b.period, reserved_at));
                    let _ = update(store, &name, |v| {
                        let [inflight, rq, tk, period, used] = read_u64s::<5>(v);
                        let inflight = if parts.concurrent.is_some() { inflight.saturating_sub(1) } else { inflight };
                        let rq = parts.requests.map_or(rq, |rate| gcra_shift(rq, rate, -1, now_ns));
                        let tk = parts.tokens.map_or(tk, |rate| gcra_shift(tk, rate, -tokens, now_ns));
                        let used =
                            if parts.budget.is_some() && period == pid { used.saturating_sub(cost) } else { used };
                        Ok::<_, ()>((write_u64s(&[inflight, rq, tk, period, used]), ()))
                    });
                }
            }
        }
    }

    /// Ends the request: charges `actual` (tokens, cost) in place of the reservation, or gives the whole
    /// reservation back when `actual` is `None` (the attempt failed and nothing was used). The request
    /// itself stays counted.
    pub fn settle(&mut self, store: &dyn SharedStore, actual: Option<(u64, u64)>, now_ns: u64) {
        let (tokens, cost) = actual.unwrap_or((0, 0));
        let delta_tokens = tokens as i64 - self.tokens as i64;
        let delta_cost = cost as i64 - self.cost_micros as i64;
        for h in std::mem::take(&mut self.held).into_iter().flatten() {
            match h {
                Held::Model(name, parts) => {
                    if let Some(rate) = parts.tokens.filter(|_| delta_tokens != 0) {
                        let _ = update(store, &name, |v| {
                            let [rq, tk] = read_u64s::<2>(v);
                            Ok::<_, ()>((write_u64s(&[rq, gcra_shift(tk, rate, delta_tokens, now_ns)]), ()))
                        });
                    }
                }
                Held::Own(name, parts) => {
                    let (pid, _) = parts.budget.map_or((0, 0), |b| period_of(b.period, self.reserved_at_secs));
                    let _ = update(store, &name, |v| {
                        let [inflight, rq, tk, period, used] = read_u64s::<5>(v);
                        let inflight = if parts.concurrent.is_some() { inflight.saturating_sub(1) } else { inflight };
                        let tk = match parts.tokens {
                            Some(rate) if delta_tokens != 0 => gcra_shift(tk, rate, delta_tokens, now_ns),
                            _ => tk,
                        };
                        // A budget settles in the period it was reserved in; after a rollover it is left alone.
                        let used = match parts.budget {
                            Some(_) if period == pid && delta_cost >= 0 => used.saturating_add(delta_cost as u64),
                            Some(_) if period == pid => used.saturating_sub(delta_cost.unsigned_abs()),
                            _ => used,
                        };
                        Ok::<_, ()>((write_u64s(&[inflight, rq, tk, period, used]), ()))
                    });
                }
            }
        }
    }
}
