//! Per-key limits, exact across Envoy's worker threads: requests and tokens per window (GCRA, a token
//! bucket kept as one "theoretical arrival time" per limit), concurrent requests, and a money budget per
//! UTC day or month. State lives in the host's shared data and every update is a compare-and-swap, retried
//! on conflict, so all workers (one Wasm VM each) see one set of counters.
//!
//! Reserve, then settle: a request reserves its estimated tokens and cost before it is forwarded; when
//! the response ends it settles to the real usage (refunding or charging the difference), or releases the
//! whole reservation when no usage is known because the attempt failed.

use std::fmt;

/// Shared data of the host (Envoy's `proxy_get_shared_data` / `proxy_set_shared_data`).
pub trait SharedStore {
    /// The value and its CAS token (`None` when the key does not exist yet).
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes if the CAS token still matches; `Err(())` on a mismatch.
    #[allow(clippy::result_unit_err)]
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()>;
}

/// How many times a CAS update is retried before the limiter gives up (and refuses, fail-closed).
const CAS_RETRIES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    Contention,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shared counters are contended")
    }
}

/// Applies `f` to the value under `key` with compare-and-swap, retrying on conflict. `f` returns the new
/// value and a result, or `Err` to leave the value unchanged.
pub fn update<T, E>(
    store: &dyn SharedStore,
    key: &str,
    mut f: impl FnMut(Option<&[u8]>) -> Result<(Vec<u8>, T), E>,
) -> Result<Result<T, E>, StoreError> {
    for _ in 0..CAS_RETRIES {
        let (value, cas) = store.get(key);
        match f(value.as_deref()) {
            Err(e) => return Ok(Err(e)),
            Ok((new, out)) => {
                if store.set(key, &new, cas).is_ok() {
                    return Ok(Ok(out));
                }
            }
        }
    }
    Err(StoreError::Contention)
}

fn read_u64s<const N: usize>(v: Option<&[u8]>) -> [u64; N] {
    let mut out = [0u64; N];
    if let Some(bytes) = v {
        for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *o = u64::from_le_bytes(b);
        }
    }
    out
}

fn write_u64s(vals: &[u64]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A rate: `max` units per `window_secs`, with a burst of `max` (a full window's worth at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub max: u64,
    pub window_secs: u64,
}

impl Rate {
    /// Nanoseconds one unit takes to refill.
    fn interval_ns(&self) -> u128 {
        (self.window_secs as u128 * 1_000_000_000) / (self.max.max(1) as u128)
    }
    fn window_ns(&self) -> u128 {
        self.window_secs as u128 * 1_000_000_000
    }
}

/// What a GCRA limit says about itself after a decision (for the `x-ratelimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub limit: u64,
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub reset_ns: u64,
}

/// A refusal: how long until the request would fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after_ns: u64,
    pub state: RateState,
}

fn state(rate: Rate, tat: u128, now: u128) -> RateState {
    let ahead = tat.saturating_sub(now);
    let free = rate.window_ns().saturating_sub(ahead);
    let remaining = (free / rate.interval_ns().max(1)) as u64;
    RateState { limit: rate.max, remaining: remaining.min(rate.max), reset_ns: ahead.min(u64::MAX as u128) as u64 }
}

/// Takes `cost` units from a GCRA bucket stored under `key` at time `now_ns`, or refuses.
///
/// The stored value is the theoretical arrival time (TAT). A request of cost c fits when
/// `max(TAT, now) + c·interval - now <= window`; taking it moves TAT there. Refunds move it back.
pub fn gcra_take(
    store: &dyn SharedStore,
    key: &str,
    rate: Rate,
    cost: u64,
    now_ns: u64,
) -> Result<Result<RateState, Refused>, StoreError> {
    let now = now_ns as u128;
    update(store, key, |v| {
        let [tat] = read_u64s::<1>(v);
        let tat = (tat as u128).max(now);
        let new_tat = tat + cost as u128 * rate.interval_ns();
        if new_tat - now > rate.window_ns() {
            let retry = new_tat - now - rate.window_ns();
            return Err(Refused { retry_after_ns: retry.min(u64::MAX as u128) as u64, state: state(rate, tat, now) });
        }
        Ok((write_u64s(&[new_tat.min(u64::MAX as u128) as u64]), state(rate, new_tat, now)))
    })
}

/// Adjusts a GCRA bucket by a signed number of units (settlement): positive charges more (even past the
/// limit, which delays later requests), negative refunds.
pub fn gcra_adjust(
    store: &dyn SharedStore,
    key: &str,
    rate: Rate,
    delta: i64,
    now_ns: u64,
) -> Result<RateState, StoreError> {
    let now = now_ns as u128;
    let r = update(store, key, |v| {
        let [tat] = read_u64s::<1>(v);
        let tat = tat as u128;
        let step = delta.unsigned_abs() as u128 * rate.interval_ns();
        let new_tat = if delta >= 0 { tat.max(now) + step } else { tat.saturating_sub(step) };
        Ok::<_, ()>((write_u64s(&[new_tat.min(u64::MAX as u128) as u64]), state(rate, new_tat, now)))
    })?;
    r.map_err(|_| StoreError::Contention)
}

/// Reads a GCRA bucket's state without changing it.
pub fn gcra_peek(store: &dyn SharedStore, key: &str, rate: Rate, now_ns: u64) -> RateState {
    let (v, _) = store.get(key);
    let [tat] = read_u64s::<1>(v.as_deref());
    state(rate, tat as u128, now_ns as u128)
}

/// A calendar period for budgets, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

/// The period number containing `unix_secs` (days since the epoch, or months since January 1970) and the
/// seconds left in it.
pub fn period_of(p: Period, unix_secs: u64) -> (u64, u64) {
    let day = unix_secs / 86_400;
    match p {
        Period::Day => (day, 86_400 - unix_secs % 86_400),
        Period::Month => {
            let (y, m, _) = civil_from_days(day as i64);
            let month_index = (y - 1970) as u64 * 12 + (m - 1) as u64;
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let next = days_from_civil(ny, nm, 1) as u64 * 86_400;
            (month_index, next.saturating_sub(unix_secs))
        }
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31). Howard Hinnant's civil calendar algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Budget state after a decision: money in micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetState {
    pub limit_micros: u64,
    pub used_micros: u64,
    pub reset_secs: u64,
}

/// Reserves `cost` micro-dollars of a budget for the period containing `unix_secs`, or refuses (returning
/// the state, whose `reset_secs` is the Retry-After). The stored value is `[period, used]`; a new period
/// starts from zero.
pub fn budget_take(
    store: &dyn SharedStore,
    key: &str,
    period: Period,
    limit_micros: u64,
    cost: u64,
    unix_secs: u64,
) -> Result<Result<BudgetState, BudgetState>, StoreError> {
    let (pid, reset_secs) = period_of(period, unix_secs);
    update(store, key, |v| {
        let [p, used] = read_u64s::<2>(v);
        let used = if p == pid { used } else { 0 };
        let st = BudgetState { limit_micros, used_micros: used, reset_secs };
        if used >= limit_micros || used.saturating_add(cost) > limit_micros {
            return Err(st);
        }
        let used = used + cost;
        Ok((write_u64s(&[pid, used]), BudgetState { used_micros: used, ..st }))
    })
}

/// Settles a budget: adds `delta` micro-dollars (negative refunds) in the period of `reserved_at`, so a
/// refund never reaches into a new period.
pub fn budget_adjust(
    store: &dyn SharedStore,
    key: &str,
    period: Period,
    delta: i64,
    reserved_at: u64,
) -> Result<(), StoreError> {
    let (pid, _) = period_of(period, reserved_at);
    let r = update(store, key, |v| {
        let [p, used] = read_u64s::<2>(v);
        if p != pid && v.is_some() {
            // The period rolled over: the old period's spend no longer matters; charge nothing new.
            return Err(());
        }
        let used =
            if delta >= 0 { used.saturating_add(delta as u64) } else { used.saturating_sub(delta.unsigned_abs()) };
        Ok((write_u64s(&[pid, used]), ()))
    })?;
    let _ = r;
    Ok(())
}

/// Takes one concurrent slot, or refuses when `max` are in use.
pub fn concurrency_take(store: &dyn SharedStore, key: &str, max: u64) -> Result<Result<u64, u64>, StoreError> {
    update(store, key, |v| {
        let [n] = read_u64s::<1>(v);
        if n >= max {
            return Err(n);
        }
        Ok((write_u64s(&[n + 1]), n + 1))
    })
}

pub fn concurrency_release(store: &dyn SharedStore, key: &str) -> Result<(), StoreError> {
    let r = update(store, key, |v| {
        let [n] = read_u64s::<1>(v);
        Ok::<_, ()>((write_u64s(&[n.saturating_sub(1)]), ()))
    })?;
    let _ = r;
    Ok(())
}

/// OpenAI's duration format for `x-ratelimit-reset-*`: `1s`, `6m0s`, `1h2m3s`, `250ms`.
pub fn format_duration(ns: u64) -> String {
    let ms = ns.div_ceil(1_000_000);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// An in-memory shared store with CAS, like Envoy's.
    #[derive(Default)]
    pub struct MemStore {
        pub data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        /// Makes the next N writes fail with a CAS mismatch (as if another worker wrote first).
        pub conflicts: RefCell<usize>,
    }

    impl SharedStore for MemStore {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.data.borrow().get(key) {
                Some((v, c)) => (Some(v.clone()), Some(*c)),
                None => (None, None),
            }
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
            if *self.conflicts.borrow() > 0 {
                *self.conflicts.borrow_mut() -= 1;
                return Err(());
            }
            let mut d = self.data.borrow_mut();
            let current = d.get(key).map(|(_, c)| *c);
            if cas.is_some() && cas != current {
                return Err(());
            }
            let next = current.unwrap_or(0) + 1;
            d.insert(key.to_string(), (value.to_vec(), next));
            Ok(())
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn gcra_admits_exactly_the_burst_then_refills() {
        let st = MemStore::default();
        let rate = Rate { max: 5, window_secs: 60 };
        let t0 = 1_000 * S;
        for i in 0..5 {
            let s = gcra_take(&st, "k", rate, 1, t0).unwrap().unwrap();
            assert_eq!(s.remaining, 4 - i);
        }
        let refused = gcra_take(&st, "k", rate, 1, t0).unwrap().unwrap_err();
        assert_eq!(refused.retry_after_ns, 12 * S, "one unit refills every 60/5 s");
        assert_eq!(refused.state.remaining, 0);
        // Just before the refill: still refused; at it: admitted.
        assert!(gcra_take(&st, "k", rate, 1, t0 + 12 * S - 1).unwrap().is_err());
        assert!(gcra_take(&st, "k", rate, 1, t0 + 12 * S).unwrap().is_ok());
        // After a whole idle window the bucket is full again, never fuller.
        let s = gcra_peek(&st, "k", rate, t0 + 1000 * S);
        assert_eq!((s.remaining, s.reset_ns), (5, 0));
    }

    #[test]
    fn gcra_costs_and_settlement() {
        let st = MemStore::default();
        let rate = Rate { max: 1000, window_secs: 60 };
        let t = 50 * S;
        assert_eq!(gcra_take(&st, "t", rate, 600, t).unwrap().unwrap().remaining, 400);
        assert!(gcra_take(&st, "t", rate, 500, t).unwrap().is_err(), "600 + 500 > 1000");
        // The first request used only 100 of its 600: refund 500.
        assert_eq!(gcra_adjust(&st, "t", rate, -500, t).unwrap().remaining, 900);
        assert!(gcra_take(&st, "t", rate, 500, t).unwrap().is_ok());
        // A request that used more than it reserved is charged past the limit: later ones wait.
        gcra_adjust(&st, "t", rate, 700, t).unwrap();
        let r = gcra_take(&st, "t", rate, 1, t).unwrap().unwrap_err();
        assert!(r.retry_after_ns > 0);
    }

    #[test]
    fn cas_conflicts_are_retried() {
        let st = MemStore::default();
        *st.conflicts.borrow_mut() = 10;
        assert!(gcra_take(&st, "k", Rate { max: 2, window_secs: 1 }, 1, S).unwrap().is_ok());
        *st.conflicts.borrow_mut() = CAS_RETRIES + 1;
        assert_eq!(gcra_take(&st, "k", Rate { max: 2, window_secs: 1 }, 1, S), Err(StoreError::Contention));
    }

    #[test]
    fn calendar_periods() {
        // 2026-11-21T12:00:00Z
        let t = 1_795_262_400;
        assert_eq!(civil_from_days((t / 86_400) as i64), (2026, 11, 21));
        let (day, left) = period_of(Period::Day, t);
        assert_eq!((day, left), (t / 86_400, 12 * 3600));
        let (m, left) = period_of(Period::Month, t);
        assert_eq!(m, (2026 - 1970) * 12 + 10);
        assert_eq!(left, (9 * 86_400) + 12 * 3600, "to 2026-12-01T00:00Z");
        // Last second of December rolls into January of the next year.
        let dec31 = days_from_civil(2026, 12, 31) as u64 * 86_400 + 86_399;
        assert_eq!(period_of(Period::Month, dec31).1, 1);
        assert_eq!(period_of(Period::Month, dec31 + 1).0, period_of(Period::Month, dec31).0 + 1);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn budget_reserve_settle_rollover() {
        let st = MemStore::default();
        let t = 1_795_262_400;
        let ok = budget_take(&st, "b", Period::Day, 1_000_000, 600_000, t).unwrap().unwrap();
        assert_eq!(ok.used_micros, 600_000);
        let no = budget_take(&st, "b", Period::Day, 1_000_000, 500_000, t).unwrap().unwrap_err();
        assert_eq!(no.reset_secs, 12 * 3600);
        budget_adjust(&st, "b", Period::Day, -400_000, t).unwrap();
        assert!(budget_take(&st, "b", Period::Day, 1_000_000, 500_000, t).unwrap().is_ok());
        // Next day: a fresh budget; a late refund for yesterday does not touch it.
        let tomorrow = t + 86_400;
        assert_eq!(budget_take(&st, "b", Period::Day, 1_000_000, 100, tomorrow).unwrap().unwrap().used_micros, 100);
        budget_adjust(&st, "b", Period::Day, -50_000, t).unwrap();
        assert_eq!(budget_take(&st, "b", Period::Day, 1_000_000, 0, tomorrow).unwrap().unwrap().used_micros, 100);
        // An exhausted budget refuses even a zero-cost estimate.
        let st2 = MemStore::default();
        budget_take(&st2, "b", Period::Month, 10, 10, t).unwrap().unwrap();
        assert!(budget_take(&st2, "b", Period::Month, 10, 0, t).unwrap().is_err());
    }

    #[test]
    fn concurrency_slots() {
        let st = MemStore::default();
        assert_eq!(concurrency_take(&st, "c", 2).unwrap(), Ok(1));
        assert_eq!(concurrency_take(&st, "c", 2).unwrap(), Ok(2));
        assert_eq!(concurrency_take(&st, "c", 2).unwrap(), Err(2));
        concurrency_release(&st, "c").unwrap();
        assert_eq!(concurrency_take(&st, "c", 2).unwrap(), Ok(2));
        concurrency_release(&st, "c").unwrap();
        concurrency_release(&st, "c").unwrap();
        concurrency_release(&st, "c").unwrap();
        assert_eq!(concurrency_take(&st, "c", 2).unwrap(), Ok(1), "never below zero");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(250_000_000), "250ms");
        assert_eq!(format_duration(S), "1s");
        assert_eq!(format_duration(360 * S), "6m0s");
        assert_eq!(format_duration(3723 * S), "1h2m3s");
        assert_eq!(format_duration(1), "1ms");
    }
}

// ------------------------------------------------------------------------------------ per-request use

use crate::config::Key;
use crate::error::ApiError;

/// What one admitted request holds until its response ends.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    tokens: u64,
    cost_micros: u64,
    request_buckets: Vec<(String, Rate)>,
    token_buckets: Vec<(String, Rate)>,
    budget: Option<(String, Period)>,
    concurrency: Option<String>,
    reserved_at_secs: u64,
    /// `x-ratelimit-*` headers for the response.
    pub headers: Vec<(&'static str, String)>,
}

/// Every shared-data key the limits of `cfg` use. The route-level filter creates them (empty) when it
/// loads, before traffic: Envoy ignores the CAS token when a key does not exist yet, so two workers
/// creating the same key at once could lose an update; once a key exists every write is checked.
pub fn shared_keys(cfg: &crate::config::Config) -> Vec<String> {
    let mut out = Vec::new();
    for k in &cfg.keys {
        let l = &k.limits;
        for (what, on) in [
            ("concurrent", l.concurrent.is_some()),
            ("requests", l.requests.is_some()),
            ("tokens", l.tokens.is_some()),
            ("budget", l.budget.is_some()),
        ] {
            if on {
                out.push(shared_key(&k.id, None, what));
            }
        }
        for (m, ml) in &l.per_model {
            if ml.requests.is_some() {
                out.push(shared_key(&k.id, Some(m), "requests"));
            }
            if ml.tokens.is_some() {
                out.push(shared_key(&k.id, Some(m), "tokens"));
            }
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

fn shared_key(key_id: &str, model: Option<&str>, what: &str) -> String {
    match model {
        Some(m) => format!("switchyard/limits/{key_id}/model/{m}/{what}"),
        None => format!("switchyard/limits/{key_id}/{what}"),
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

fn too_many(kind: &'static str, message: String, retry_ns: u64, headers: Vec<(&'static str, String)>) -> ApiError {
    let mut e = ApiError::new(429, kind, Some("rate_limit_exceeded"), message);
    e.headers = headers;
    e.headers.push(("retry-after", retry_ns.div_ceil(1_000_000_000).max(1).to_string()));
    e
}

impl Reservation {
    /// Admits a request of `key` for `model`, reserving `tokens` and `cost_micros`, or refuses it with the
    /// 429 to send. Everything taken before a refusal is given back.
    pub fn reserve(
        store: &dyn SharedStore,
        key: &Key,
        model: &str,
        tokens: u64,
        cost_micros: u64,
        now_ns: u64,
    ) -> Result<Reservation, ApiError> {
        let mut r = Reservation { tokens, cost_micros, reserved_at_secs: now_ns / 1_000_000_000, ..Default::default() };
        match r.take_all(store, key, model, now_ns) {
            Ok(()) => Ok(r),
            Err(e) => {
                r.rollback(store, now_ns);
                Err(e)
            }
        }
    }

    fn take_all(&mut self, store: &dyn SharedStore, key: &Key, model: &str, now_ns: u64) -> Result<(), ApiError> {
        let l = &key.limits;
        let per_model = l.per_model.get(model);
        if let Some(max) = l.concurrent {
            let k = shared_key(&key.id, None, "concurrent");
            match concurrency_take(store, &k, max).map_err(|_| contention())? {
                Ok(_) => self.concurrency = Some(k),
                Err(_) => {
                    return Err(too_many(
                        "requests",
                        format!("Too many concurrent requests for this key (limit {max})."),
                        1_000_000_000,
                        self.headers.clone(),
                    ))
                }
            }
        }
        let request_buckets = [(l.requests, None), (per_model.and_then(|m| m.requests), Some(model))];
        for (rate, m) in request_buckets {
            let Some(rate) = rate else { continue };
            let k = shared_key(&key.id, m, "requests");
            match gcra_take(store, &k, rate, 1, now_ns).map_err(|_| contention())? {
                Ok(s) => {
                    rate_headers(&mut self.headers, "requests", s);
                    self.request_buckets.push((k, rate));
                }
                Err(refused) => {
                    rate_headers(&mut self.headers, "requests", refused.state);
                    return Err(too_many(
                        "requests",
                        format!("Rate limit reached for requests: {} per {}s.", rate.max, rate.window_secs),
                        refused.retry_after_ns,
                        self.headers.clone(),
                    ));
                }
            }
        }
        let token_buckets = [(l.tokens, None), (per_model.and_then(|m| m.tokens), Some(model))];
        for (rate, m) in token_buckets {
            let Some(rate) = rate else { continue };
            let k = shared_key(&key.id, m, "tokens");
            match gcra_take(store, &k, rate, self.tokens, now_ns) {
                Ok(Ok(s)) => {
                    rate_headers(&mut self.headers, "tokens", s);
                    self.token_buckets.push((k, rate));
                }
                other => {
                    let refused = other.map_err(|_| contention())?.err();
                    let (retry, state) = refused.map_or((1_000_000_000, None), |r| (r.retry_after_ns, Some(r.state)));
                    if let Some(s) = state {
                        rate_headers(&mut self.headers, "tokens", s);
                    }
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
                    return Err(too_many("tokens", message, retry, self.headers.clone()));
                }
            }
        }
        if let Some(b) = l.budget {
            let k = shared_key(&key.id, None, "budget");
            match budget_take(store, &k, b.period, b.micros, self.cost_micros, self.reserved_at_secs) {
                Ok(Ok(_)) => self.budget = Some((k, b.period)),
                other => {
                    let st = other.map_err(|_| contention())?.err();
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
                    e.headers.push(("retry-after", st.map_or(60, |s| s.reset_secs.max(1)).to_string()));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Gives back everything a refused request took, its request units included.
    fn rollback(&mut self, store: &dyn SharedStore, now_ns: u64) {
        for (k, rate) in std::mem::take(&mut self.request_buckets) {
            let _ = gcra_adjust(store, &k, rate, -1, now_ns);
        }
        self.settle(store, None, now_ns);
    }

    /// Ends the request: charges `actual` (tokens, cost) in place of the reservation, or gives the whole
    /// reservation back when `actual` is `None` (the attempt failed and nothing was used). The request
    /// itself stays counted.
    pub fn settle(&mut self, store: &dyn SharedStore, actual: Option<(u64, u64)>, now_ns: u64) {
        let (tokens, cost) = actual.unwrap_or((0, 0));
        let delta_tokens = tokens as i64 - self.tokens as i64;
        for (k, rate) in std::mem::take(&mut self.token_buckets) {
            if delta_tokens != 0 {
                let _ = gcra_adjust(store, &k, rate, delta_tokens, now_ns);
            }
        }
        if let Some((k, period)) = self.budget.take() {
            let delta = cost as i64 - self.cost_micros as i64;
            if delta != 0 {
                let _ = budget_adjust(store, &k, period, delta, self.reserved_at_secs);
            }
        }
        if let Some(k) = self.concurrency.take() {
            let _ = concurrency_release(store, &k);
        }
    }
}

#[cfg(test)]
mod reservation_tests {
    use super::tests::MemStore;
    use super::*;
    use crate::config::{Allowed, Budget, KeyLimits, ModelLimits};

    fn key(limits: KeyLimits) -> Key {
        Key { id: "k".into(), allowed: Allowed::All, limits, models_json: String::new() }
    }
    const S: u64 = 1_000_000_000;
    const T: u64 = 1_795_262_400 * S;

    #[test]
    fn tokens_reserve_then_settle_to_real_usage() {
        let st = MemStore::default();
        let k = key(KeyLimits { tokens: Some(Rate { max: 1000, window_secs: 60 }), ..Default::default() });
        let mut a = Reservation::reserve(&st, &k, "m", 600, 0, T).unwrap();
        assert!(a.headers.contains(&("x-ratelimit-remaining-tokens", "400".to_string())));
        let e = Reservation::reserve(&st, &k, "m", 600, 0, T).unwrap_err();
        assert_eq!((e.status, e.kind, e.code), (429, "tokens", Some("rate_limit_exceeded")));
        assert!(e.headers.iter().any(|(h, v)| *h == "retry-after" && v.parse::<u64>().unwrap() >= 1));
        a.settle(&st, Some((150, 0)), T);
        assert!(Reservation::reserve(&st, &k, "m", 600, 0, T).is_ok(), "150 + 600 fits once settled");
    }

    #[test]
    fn failures_release_and_refusals_roll_back() {
        let st = MemStore::default();
        let limits = KeyLimits {
            requests: Some(Rate { max: 3, window_secs: 60 }),
            tokens: Some(Rate { max: 100, window_secs: 60 }),
            concurrent: Some(1),
            ..Default::default()
        };
        let k = key(limits);
        let mut a = Reservation::reserve(&st, &k, "m", 80, 0, T).unwrap();
        let c = Reservation::reserve(&st, &k, "m", 10, 0, T).unwrap_err();
        assert!(c.message.contains("concurrent"));
        a.settle(&st, None, T);
        // The failed request gave its 80 tokens back but still counts as a request.
        let mut b = Reservation::reserve(&st, &k, "m", 90, 0, T).unwrap();
        assert!(b.headers.contains(&("x-ratelimit-remaining-requests", "1".to_string())));
        b.settle(&st, Some((90, 0)), T);
        // Too many tokens: refused, and its request unit is given back.
        let e = Reservation::reserve(&st, &k, "m", 50, 0, T).unwrap_err();
        assert_eq!(e.kind, "tokens");
        let ok = Reservation::reserve(&st, &k, "m", 5, 0, T).unwrap();
        assert!(ok.headers.contains(&("x-ratelimit-remaining-requests", "0".to_string())));
    }

    #[test]
    fn a_refusal_by_the_model_limit_gives_back_the_key_units() {
        let st = MemStore::default();
        let mut limits = KeyLimits { requests: Some(Rate { max: 2, window_secs: 60 }), ..Default::default() };
        limits
            .per_model
            .insert("m".into(), ModelLimits { requests: Some(Rate { max: 1, window_secs: 60 }), tokens: None });
        let k = key(limits);
        Reservation::reserve(&st, &k, "m", 0, 0, T).unwrap();
        for _ in 0..5 {
            assert!(Reservation::reserve(&st, &k, "m", 0, 0, T).is_err());
        }
        // Refusals by the model's limit took nothing from the key's: one request is still left.
        Reservation::reserve(&st, &k, "other", 0, 0, T).unwrap();
        assert!(Reservation::reserve(&st, &k, "other", 0, 0, T).is_err());
    }

    #[test]
    fn budget_refuses_with_insufficient_quota() {
        let st = MemStore::default();
        let k = key(KeyLimits { budget: Some(Budget { micros: 1000, period: Period::Day }), ..Default::default() });
        let mut a = Reservation::reserve(&st, &k, "m", 0, 800, T).unwrap();
        a.settle(&st, Some((0, 1200)), T);
        let e = Reservation::reserve(&st, &k, "m", 0, 1, T).unwrap_err();
        assert_eq!((e.status, e.code), (429, Some("insufficient_quota")));
        assert!(e.headers.iter().any(|(h, v)| *h == "retry-after" && v == "43200"));
        // Next UTC day it is open again.
        assert!(Reservation::reserve(&st, &k, "m", 0, 1, T + 86_400 * S).is_ok());
    }

    #[test]
    fn keys_are_created_once_and_kept_on_reload() {
        use crate::config::tests::{sample, MapEnv};
        let mut v: serde_json::Value = serde_json::from_str(&sample()).unwrap();
        v["keys"][0]["limits"] =
            serde_json::json!({"requests": {"limit": 2}, "models": {"demo": {"tokens": {"limit": 9}}}});
        let cfg =
            crate::config::Config::parse(v.to_string().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "x")])).unwrap();
        let keys = shared_keys(&cfg);
        assert_eq!(
            keys,
            vec!["switchyard/limits/all/requests".to_string(), "switchyard/limits/all/model/demo/tokens".to_string()]
        );
        let st = MemStore::default();
        create_missing(&st, &keys);
        let k = &cfg.keys[0];
        Reservation::reserve(&st, k, "x", 0, 0, T).unwrap();
        create_missing(&st, &keys);
        Reservation::reserve(&st, k, "x", 0, 0, T).unwrap();
        assert!(Reservation::reserve(&st, k, "x", 0, 0, T).is_err(), "a reload kept the count");
    }

    #[test]
    fn per_model_limits_apply_to_that_model_only() {
        let st = MemStore::default();
        let mut limits = KeyLimits::default();
        limits
            .per_model
            .insert("big".into(), ModelLimits { requests: Some(Rate { max: 1, window_secs: 60 }), tokens: None });
        let k = key(limits);
        Reservation::reserve(&st, &k, "big", 1, 0, T).unwrap();
        assert!(Reservation::reserve(&st, &k, "big", 1, 0, T).is_err());
        assert!(Reservation::reserve(&st, &k, "small", 1, 0, T).is_ok());
    }
}
