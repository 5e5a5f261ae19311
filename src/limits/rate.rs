//! The arithmetic of limits: GCRA buckets (requests and tokens per window) and UTC budget periods.

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

pub(super) fn state(rate: Rate, tat: u128, now: u128) -> RateState {
    let ahead = tat.saturating_sub(now);
    let free = rate.window_ns().saturating_sub(ahead);
    let remaining = (free / rate.interval_ns().max(1)) as u64;
    RateState { limit: rate.max, remaining: remaining.min(rate.max), reset_ns: ahead.min(u64::MAX as u128) as u64 }
}

/// One GCRA decision on a bucket's theoretical arrival time (TAT): a request of cost c fits when
/// `max(TAT, now) + c·interval - now <= window`; taking it moves TAT there.
pub fn gcra_step(tat: u64, rate: Rate, cost: u64, now_ns: u64) -> Result<(u64, RateState), Refused> {
    let now = now_ns as u128;
    let tat = (tat as u128).max(now);
    let new_tat = tat + cost as u128 * rate.interval_ns();
    if new_tat - now > rate.window_ns() {
        let retry = new_tat - now - rate.window_ns();
        return Err(Refused { retry_after_ns: retry.min(u64::MAX as u128) as u64, state: state(rate, tat, now) });
    }
    Ok((new_tat.min(u64::MAX as u128) as u64, state(rate, new_tat, now)))
}

/// Moves a TAT by a signed number of units: positive charges (even past the limit, which delays later
/// requests), negative refunds.
pub fn gcra_shift(tat: u64, rate: Rate, delta: i64, now_ns: u64) -> u64 {
    let step = delta.unsigned_abs() as u128 * rate.interval_ns();
    let tat = tat as u128;
    let new_tat = if delta >= 0 { tat.max(now_ns as u128) + step } else { tat.saturating_sub(step) };
    new_tat.min(u64::MAX as u128) as u64
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
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

/// (year, month 1-12, day) → days since 1970-01-01 (Howard Hinnant's civil calendar algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
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
