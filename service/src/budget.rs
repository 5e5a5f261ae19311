//! Budget periods (`day:N`, `month:N` in UTC, N counted from the epoch as the filter's `period_of` does),
//! how long their keys are kept, and the `/spend` report.

use serde::Serialize;
use switchyard::limits::{period_of, Period};

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

    /// Seconds a budget key lives after its last write: the longest period plus a margin (2 days for a
    /// day, 40 for a month), so a key never expires inside its period and is still readable after it.
    pub fn ttl_secs(&self) -> u64 {
        match self.period {
            Period::Day => 2 * DAY,
            Period::Month => 40 * DAY,
        }
    }

    /// Seconds from `unix_secs` until the period ends (0 once it has; by this process's clock).
    pub fn secs_left(&self, unix_secs: u64) -> u64 {
        match self.period {
            Period::Day => ((self.number + 1) * DAY).saturating_sub(unix_secs),
            Period::Month => {
                let (current, left) = period_of(Period::Month, unix_secs);
                if self.number < current {
                    0
                } else {
                    // The current month; a later one (clocks apart) is reported as ending with this one.
                    left
                }
            }
        }
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
        assert!(p.ttl_secs() > 31 * DAY);
    }

    #[test]
    fn rows() {
        let r = BudgetRow::new("month:683", 1_500_000, 10_000_000);
        assert_eq!((r.period.as_str(), r.scope, r.spent_usd, r.remaining_usd), ("month:683", None, 1.5, 8.5));
        let r = BudgetRow::new("day:9:model=gpt%2D4", 20, 10);
        assert_eq!((r.scope.as_deref(), r.remaining_usd), (Some("model=gpt-4"), 0.0));
    }
}
