use super::rate::{civil_from_days, days_from_civil, gcra_shift, gcra_step, state};
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

// Single-bucket views of the GCRA steps the reservations use, for the arithmetic tests.
/// Takes `cost` units from a GCRA bucket stored under `key` at time `now_ns`, or refuses.
fn gcra_take(
    store: &dyn SharedStore,
    key: &str,
    rate: Rate,
    cost: u64,
    now_ns: u64,
) -> Result<Result<RateState, Refused>, StoreError> {
    update(store, key, |v| {
        let [tat] = read_u64s::<1>(v);
        gcra_step(tat, rate, cost, now_ns).map(|(t, st)| (write_u64s(&[t]), st))
    })
}

/// Adjusts a GCRA bucket by a signed number of units (settlement).
fn gcra_adjust(
    store: &dyn SharedStore,
    key: &str,
    rate: Rate,
    delta: i64,
    now_ns: u64,
) -> Result<RateState, StoreError> {
    let r = update(store, key, |v| {
        let [tat] = read_u64s::<1>(v);
        let t = gcra_shift(tat, rate, delta, now_ns);
        Ok::<_, ()>((write_u64s(&[t]), state(rate, t as u128, now_ns as u128)))
    })?;
    r.map_err(|_| StoreError::Contention)
}

/// Reads a GCRA bucket's state without changing it.
fn gcra_peek(store: &dyn SharedStore, key: &str, rate: Rate, now_ns: u64) -> RateState {
    let (v, _) = store.get(key);
    let [tat] = read_u64s::<1>(v.as_deref());
    state(rate, tat as u128, now_ns as u128)
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
fn durations() {
    assert_eq!(format_duration(250_000_000), "250ms");
    assert_eq!(format_duration(S), "1s");
    assert_eq!(format_duration(360 * S), "6m0s");
    assert_eq!(format_duration(3723 * S), "1h2m3s");
    assert_eq!(format_duration(1), "1ms");
}
