//! One line per event on stderr, with a UTC timestamp (the service logs episodes, never per request).

use std::time::{SystemTime, UNIX_EPOCH};

use switchyard::limits::{period_of, Period};

/// `2026-05-01T12:00:00.123Z`.
pub fn timestamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (month_index, _) = period_of(Period::Month, secs);
    let (day_index, _) = period_of(Period::Day, secs);
    // The first day of this month: walk back from today by the day of month.
    let mut first = day_index;
    while first > 0 && period_of(Period::Month, (first - 1) * 86_400).0 == month_index {
        first -= 1;
    }
    let (y, m, d) = (1970 + month_index / 12, month_index % 12 + 1, day_index - first + 1);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, unix_ms % 1000)
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn line(msg: &str) {
    eprintln!("{} switchyard-limits: {msg}", timestamp(now_ms()));
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::timestamp(1_769_860_800_123), "2026-01-31T12:00:00.123Z");
        assert_eq!(super::timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
