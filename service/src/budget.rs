//! Budget periods (`day:N`, `month:N` in UTC, N counted from the epoch as the filter's `period_of` does),
//! how long their keys are kept, and the `/spend` report.

use serde::Serialize;
use switchyard::limits::{days_from_civil, Period};

/// A validated budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetPeriod {
    pub period: Period,
    pub number: u64,
}

const DAY: u64 = 86_400;

impl BudgetPeriod {
    /// Parses `day:N` or `month:N`.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, n) = s.split_once(':')?;
        let period = match kind {
            "day" => Period::Day,
            "month" => Period::Month,
            _ => return None,
        };
        if n.is_empty() || n.len() > 12 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self { period, number: n.parse().ok()? })
    }

    /// Its name in keys and reports (`day:20527`, `month:674`).
    pub fn name(&self) -> String {
        match self.period {
            Period::Day => format!("day:{}", self.number),
            Period::Month => format!("month:{}", self.number),
        }
    }

    /// Unix time at which the period ends (the first second of the next day or month, UTC).
    pub fn end_secs(&self) -> u64 {
        match self.period {
            Period::Day => (self.number + 1) * DAY,
            Period::Month => {
                let next = self.number + 1;
                days_from_civil(1970 + (next / 12) as i64, (next % 12 + 1) as u32, 1).max(0) as u64 * DAY
            }
        }
    }

    /// Unix time at which the budget's key expires: the end of its period plus a margin (2 days for a
    /// day, 10 for a month), so it never expires inside its period and can still be read after it. Set
    /// once, when the key is created, so later writes do not have to touch expiries or the index.
    pub fn expires_at(&self) -> u64 {
        self.end_secs()
            + match self.period {
                Period::Day => 2 * DAY,
                Period::Month => 10 * DAY,
            }
    }

    /// Seconds from `unix_secs` until the period ends (0 once it has).
    pub fn secs_left(&self, unix_secs: u64) -> u64 {
        self.end_secs().saturating_sub(unix_secs)
    }
}

/// One budget of a key in the `/spend` report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BudgetRow {
    pub period: String,
    /// Extra descriptor entries of this budget (`k=v`, colon-separated), absent for a plain key budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub spent_usd: f64,
    pub spent_micros: u64,
    pub max_micros: u64,
    pub remaining_usd: f64,
}

impl BudgetRow {
    /// From the part of a budget key after its prefix (`month:683[:k=v...]`) and the hash's fields.
    pub fn new(suffix: &str, spent_micros: u64, max_micros: u64) -> Self {
        let mut parts = suffix.splitn(3, ':');
        let kind = parts.next().unwrap_or_default();
        let n = parts.next().unwrap_or_default();
        let scope = parts.next().map(crate::keys::dec);
        Self {
            period: format!("{kind}:{n}"),
            scope,
            spent_usd: spent_micros as f64 / 1e6,
            spent_micros,
            max_micros,
            remaining_usd: max_micros.saturating_sub(spent_micros) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard::limits::period_of;

    #[test]
    fn periods() {
        let p = BudgetPeriod::parse("month:683").unwrap();
        assert_eq!((p.period, p.number, p.name()), (Period::Month, 683, "month:683".to_string()));
        assert_eq!(BudgetPeriod::parse("day:20000").unwrap().name(), "day:20000");
        for bad in ["week:1", "day:", "day:-1", "month:1x", "day", "day:1:2"] {
            assert_eq!(BudgetPeriod::parse(bad), None, "{bad}");
        }
        // 2026-01-31T12:00:00Z: day 20484, month 672 (Jan 2026), half a day / half a day left.
        let t = 20_484 * DAY + DAY / 2;
        assert_eq!(period_of(Period::Day, t).0, 20_484);
        assert_eq!(BudgetPeriod { period: Period::Day, number: 20_484 }.secs_left(t), DAY / 2);
        assert_eq!(BudgetPeriod { period: Period::Month, number: 672 }.secs_left(t), DAY / 2);
        assert_eq!(BudgetPeriod { period: Period::Month, number: 671 }.secs_left(t), 0);
        // Every month's end is the first second of the next, by the core's own period_of.
        for n in 0..2_400u64 {
            let end = BudgetPeriod { period: Period::Month, number: n }.end_secs();
            assert_eq!((period_of(Period::Month, end - 1).0, period_of(Period::Month, end).0), (n, n + 1), "{n}");
        }
        assert_eq!(p.expires_at() - p.end_secs(), 10 * DAY);
        assert_eq!(BudgetPeriod { period: Period::Day, number: 3 }.expires_at(), 6 * DAY);
    }

    #[test]
    fn rows() {
        let r = BudgetRow::new("month:683", 1_500_000, 10_000_000);
        assert_eq!((r.period.as_str(), r.scope, r.spent_usd, r.remaining_usd), ("month:683", None, 1.5, 8.5));
        let r = BudgetRow::new("day:9:model=gpt%2D4", 20, 10);
        assert_eq!((r.scope.as_deref(), r.remaining_usd), (Some("model=gpt-4"), 0.0));
    }
}
