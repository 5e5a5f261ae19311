//! Per-request use of the limits: what an admitted request reserves, and how it settles or releases.

use super::rate::{gcra_shift, gcra_step, period_of, BudgetState, Period, Rate, RateState, Refused};
use super::{format_duration, read_u64s, update, write_u64s, SharedStore};
use crate::api::error::ApiError;
use crate::config::Key;
use std::rc::Rc;

/// What one admitted request holds until its response ends.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    tokens: u64,
    cost_micros: u64,
    /// The key's record, when the key has key-level limits, and what of it this request took.
    key_record: Option<(Rc<str>, KeyParts)>,
    /// The key × model record, when the key limits this model.
    model_record: Option<(Rc<str>, ModelParts)>,
    reserved_at_secs: u64,
    /// `x-ratelimit-*` headers for the response.
    pub headers: Vec<(&'static str, String)>,
}

/// The key-level limits that apply, as copied from the config at reservation time.
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
/// `[requests TAT, tokens TAT]`.
fn key_record(key_id: &str) -> String {
    format!("switchyard/limits/{key_id}")
}

fn model_record(key_id: &str, model: &str) -> String {
    format!("switchyard/limits/{key_id}/model/{model}")
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
        if l.concurrent.is_some() || l.requests.is_some() || l.tokens.is_some() || l.budget.is_some() {
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
        let mut r = Reservation { tokens, cost_micros, reserved_at_secs: now_ns / 1_000_000_000, ..Default::default() };
        let l = &key.limits;
        // The model record's states, then the key's.
        let mut states: [Option<(&'static str, RateState)>; 4] = [None; 4];

        if let Some(ml) = l.per_model.get(model) {
            let parts = ModelParts { requests: ml.requests, tokens: ml.tokens };
            let name = ml.record.clone();
            let taken = update(store, &name, |v| {
                let [rq, tk] = read_u64s::<2>(v);
                let (rq, tk, st) = take_rates(rq, tk, parts.requests, parts.tokens, tokens, now_ns)?;
                Ok((write_u64s(&[rq, tk]), st))
            })
            .map_err(|_| contention())?;
            match taken {
                Ok(st) => {
                    states[..2].copy_from_slice(&st);
                    r.model_record = Some((name, parts));
                }
                Err(refusal) => return Err(r.refused(refusal, &states)),
            }
        }

        let parts = KeyParts { concurrent: l.concurrent, requests: l.requests, tokens: l.tokens, budget: l.budget };
        if parts.concurrent.is_some() || parts.requests.is_some() || parts.tokens.is_some() || parts.budget.is_some() {
            let name = l.record.clone();
            let (pid, reset_secs) = parts.budget.map_or((0, 0), |b| period_of(b.period, r.reserved_at_secs));
            let taken = update(store, &name, |v| {
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
            .map_err(|_| contention());
            match taken {
                Ok(Ok(st)) => {
                    states[2..].copy_from_slice(&st);
                    r.key_record = Some((name, parts));
                }
                Ok(Err(refusal)) => {
                    r.give_back_model(store, now_ns);
                    return Err(r.refused(refusal, &states));
                }
                Err(e) => {
                    r.give_back_model(store, now_ns);
                    return Err(e);
                }
            }
        }
        // Headers: the key's own limits where it has them (they come last), else the model's.
        r.headers.reserve_exact(6);
        for (kind, s) in states.into_iter().flatten() {
            rate_headers(&mut r.headers, kind, s);
        }
        Ok(r)
    }

    /// The 429 for a refusal (headers: what is known so far plus the refusing limit's state).
    fn refused(&mut self, refusal: Refusal, states: &[Option<(&'static str, RateState)>]) -> ApiError {
        for (kind, s) in states.iter().flatten() {
            rate_headers(&mut self.headers, kind, *s);
        }
        match refusal {
            Refusal::Concurrency(max) => too_many(
                "requests",
                format!("Too many concurrent requests for this key (limit {max})."),
                1_000_000_000,
                &self.headers,
            ),
            Refusal::Requests(rate, refused) => {
                rate_headers(&mut self.headers, "requests", refused.state);
                too_many(
                    "requests",
                    format!("Rate limit reached for requests: {} per {}s.", rate.max, rate.window_secs),
                    refused.retry_after_ns,
                    &self.headers,
                )
            }
            Refusal::Tokens(rate, refused) => {
                rate_headers(&mut self.headers, "tokens", refused.state);
                let message = if self.tokens > rate.max {
                    format!(
                        "Request too large for the token limit: needs {} tokens, limit {} per {}s.",
                        self.tokens, rate.max, rate.window_secs
                    )
                } else {
                    format!(
                        "Rate limit reached for tokens: {} per {}s (this request reserves {}).",
                        rate.max, rate.window_secs, self.tokens
                    )
                };
                too_many("tokens", message, refused.retry_after_ns, &self.headers)
            }
            Refusal::Budget(b, st) => {
                let mut e = ApiError::new(
                    429,
                    "insufficient_quota",
                    Some("insufficient_quota"),
                    format!(
                        "You exceeded this key's {} budget of ${:.2}.",
                        if b.period == Period::Day { "daily" } else { "monthly" },
                        b.micros as f64 / 1e6
                    ),
                );
                e.headers = self.headers.clone();
                e.headers.push(("retry-after", st.reset_secs.max(1).to_string()));
                e
            }
        }
    }

    /// Gives back what the key × model record took (the key's own record refused).
    fn give_back_model(&mut self, store: &dyn SharedStore, now_ns: u64) {
        let Some((name, parts)) = self.model_record.take() else { return };
        let tokens = self.tokens as i64;
        let _ = update(store, &name, |v| {
            let [rq, tk] = read_u64s::<2>(v);
            let rq = parts.requests.map_or(rq, |rate| gcra_shift(rq, rate, -1, now_ns));
            let tk = parts.tokens.map_or(tk, |rate| gcra_shift(tk, rate, -tokens, now_ns));
            Ok::<_, ()>((write_u64s(&[rq, tk]), ()))
        });
    }

    /// Ends the request: charges `actual` (tokens, cost) in place of the reservation, or gives the whole
    /// reservation back when `actual` is `None` (the attempt failed and nothing was used). The request
    /// itself stays counted.
    pub fn settle(&mut self, store: &dyn SharedStore, actual: Option<(u64, u64)>, now_ns: u64) {
        let (tokens, cost) = actual.unwrap_or((0, 0));
        let delta_tokens = tokens as i64 - self.tokens as i64;
        let delta_cost = cost as i64 - self.cost_micros as i64;
        if let Some((name, parts)) = self.model_record.take() {
            if let Some(rate) = parts.tokens.filter(|_| delta_tokens != 0) {
                let _ = update(store, &name, |v| {
                    let [rq, tk] = read_u64s::<2>(v);
                    Ok::<_, ()>((write_u64s(&[rq, gcra_shift(tk, rate, delta_tokens, now_ns)]), ()))
                });
            }
        }
        if let Some((name, parts)) = self.key_record.take() {
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
