//! The Lua script's GCRA against the filter's own `gcra_step` / `gcra_shift`: the same sequences of
//! admissions, charges and refunds at the same (fixed) times, run by the script in a real redis-server,
//! must give the same decisions, the same stored TAT (to the nanosecond), remaining and reset.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Redis;
use redis::Commands;
use switchyard::limits::{gcra_shift, gcra_step, Rate};
use switchyard_limits::plan::{Item, Kind, Op};
use switchyard_limits::script::{self, Decision};

/// xorshift64*: a fixed, reproducible sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn item(key: &str, rate: Rate, op: Op, cost: u64) -> Item {
    Item {
        key: key.into(),
        kind: Kind::Rate { window_secs: rate.window_secs, max: rate.max as u32 },
        op,
        cost,
        index_key: None,
        current_limit: None,
    }
}

fn run(con: &mut redis::Connection, it: &Item, now: u64) -> Decision {
    let s = script::script();
    let reply: Vec<i64> = script::invocation(&s, &[it], Some(now)).invoke(con).expect("script");
    script::decode(&reply, 1).expect("decode")
}

fn stored_tat(con: &mut redis::Connection, key: &str) -> u64 {
    let v: Option<String> = con.get(key).expect("GET");
    v.map(|s| s.parse().expect("TAT is decimal ns")).unwrap_or(0)
}

/// Runs `steps` random operations on one bucket in both implementations and compares every result.
fn compare(con: &mut redis::Connection, seed: u64, rate: Rate, steps: usize) {
    let key = format!("test:{seed}:{}:{}", rate.max, rate.window_secs);
    let mut rng = Rng(seed);
    let interval = rate.window_secs * 1_000_000_000 / rate.max.max(1);
    // Around now (2026), so TATs have the real magnitude (~1.8e18 ns, far past 2^53).
    let mut now: u64 = 1_780_000_000_123_456_789 + rng.below(1_000_000_000);
    let mut tat: u64 = 0;
    for step in 0..steps {
        // Time moves by nothing, a fraction of an interval, or up to a window and a half.
        now += match rng.below(4) {
            0 => 0,
            1 => rng.below(interval),
            2 => rng.below(interval * 3),
            _ => rng.below(rate.window_secs * 1_500_000_000),
        };
        let what = rng.below(10);
        let cost = match rng.below(4) {
            0 => 1,
            1 => 0,
            2 => rng.below(rate.max + 3),
            _ => rng.below(rate.max / 4 + 2),
        };
        let ctx = format!("seed {seed} rate {rate:?} step {step} now {now} tat {tat} cost {cost}");
        if what < 7 {
            let got = run(con, &item(&key, rate, Op::Admit, cost), now);
            let r = got.items[0];
            match gcra_step(tat, rate, cost, now) {
                Ok((new, state)) => {
                    tat = new;
                    assert!(!got.over && !r.over, "admit: script refused, Rust admitted: {ctx}");
                    assert_eq!((r.remaining, r.reset_ns), (state.remaining, state.reset_ns), "admit state: {ctx}");
                }
                Err(refused) => {
                    assert!(got.over && r.over, "admit: script admitted, Rust refused: {ctx}");
                    assert_eq!(r.reset_ns, refused.retry_after_ns, "retry after: {ctx}");
                    assert_eq!(r.remaining, refused.state.remaining, "refused remaining: {ctx}");
                }
            }
        } else {
            let (op, delta) = if what < 9 { (Op::Refund, -(cost as i64)) } else { (Op::Charge, cost as i64) };
            let got = run(con, &item(&key, rate, op, cost), now);
            assert!(!got.over && !got.items[0].over, "settlements are always OK: {ctx}");
            tat = gcra_shift(tat, rate, delta, now);
        }
        assert_eq!(stored_tat(con, &key), tat, "stored TAT: {ctx}");
    }
}

#[test]
fn script_gcra_matches_the_local_limiter() {
    let redis = Redis::start();
    let mut con = redis.conn();
    // Windows of a minute and more: the fixed test clock is not Redis's, and key expiry (PX, by Redis's
    // clock) must not fire during the run.
    let rates = [
        Rate { max: 1, window_secs: 60 },
        Rate { max: 3, window_secs: 60 },
        Rate { max: 7, window_secs: 90 },
        Rate { max: 10, window_secs: 3_600 },
        Rate { max: 1_000, window_secs: 60 },
        Rate { max: 120_000, window_secs: 86_400 },
        Rate { max: 999_983, window_secs: 3_600 },
        Rate { max: 5, window_secs: 30 * 86_400 },
    ];
    for (i, rate) in rates.iter().enumerate() {
        for seed in 1..=4u64 {
            compare(&mut con, seed * 7_919 + i as u64, *rate, 300);
        }
    }
}

#[test]
fn refund_below_now_and_exact_boundaries() {
    let redis = Redis::start();
    let mut con = redis.conn();
    let rate = Rate { max: 3, window_secs: 60 };
    let now = 1_780_000_000_000_000_001;
    // Exactly the window fits; one unit more does not.
    let d = run(&mut con, &item("edge", rate, Op::Admit, 3), now);
    assert!(!d.over);
    assert_eq!(stored_tat(&mut con, "edge"), now + 60_000_000_000);
    let d = run(&mut con, &item("edge", rate, Op::Admit, 1), now);
    assert!(d.over);
    assert_eq!(d.items[0].reset_ns, 20_000_000_000);
    // A refund larger than what was taken moves the TAT below now, exactly as gcra_shift does.
    run(&mut con, &item("edge", rate, Op::Refund, 5), now);
    assert_eq!(stored_tat(&mut con, "edge"), gcra_shift(now + 60_000_000_000, rate, -5, now));
    // A refund on an empty bucket saturates at 0.
    run(&mut con, &item("empty", rate, Op::Refund, 5), now);
    assert_eq!(stored_tat(&mut con, "empty"), 0);
    // A charge past the limit pushes the TAT beyond the window (later admissions wait).
    run(&mut con, &item("charged", rate, Op::Charge, 9), now);
    assert_eq!(stored_tat(&mut con, "charged"), now + 180_000_000_000);
    let d = run(&mut con, &item("charged", rate, Op::Admit, 1), now);
    assert_eq!(d.items[0].reset_ns, 140_000_000_000);
    let ttl: i64 = redis::cmd("PTTL").arg("charged").query(&mut con).expect("PTTL");
    assert!(ttl > 170_000, "a charged bucket lives as long as its TAT is ahead: {ttl} ms");
}
