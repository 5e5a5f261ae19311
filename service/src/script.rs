//! The Lua script (`limits.lua`) that decides one request atomically, its arguments and its reply.

use redis::{Script, ScriptInvocation};

use crate::plan::{Item, Kind, Op};

/// The script's source: admission (all or nothing) and settlement of every item of one request.
pub const SOURCE: &str = include_str!("limits.lua");

/// 2^53: integers up to here are exact in Lua's doubles.
const LUA_EXACT: u64 = 1 << 53;

pub fn script() -> Script {
    Script::new(SOURCE)
}

/// One item's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemResult {
    pub over: bool,
    /// Units (rates) or micro-dollars (budgets) left.
    pub remaining: u64,
    /// Rates: ns until the bucket is full again, or until the refused amount would fit. Budgets: 0.
    pub reset_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub over: bool,
    pub items: Vec<ItemResult>,
}

/// The script call for `items`; `now_ns` fixes the clock (tests), `None` uses Redis's `TIME`.
pub fn invocation<'a>(script: &'a Script, items: &[&Item], now_ns: Option<u64>) -> ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    for it in items {
        inv.key(&it.key);
    }
    let mut index_keys: Vec<&str> = Vec::new();
    inv.arg(now_ns.map(|n| n.to_string()).unwrap_or_default());
    for it in items {
        // Lua numbers are doubles: amounts past 2^53 (absurd anyway) are clamped there, which changes no
        // decision (they exceed every window and budget).
        let cost = it.cost.min(LUA_EXACT);
        let op = match it.op {
            Op::Admit => "a",
            Op::Charge => "+",
            Op::Refund => "-",
        };
        match it.kind {
            Kind::Rate { window_secs, max } => {
                inv.arg("r").arg(op).arg(cost).arg(window_secs * 1_000_000_000).arg(max).arg(0);
            }
            Kind::Budget { max_micros, period } => {
                let idx = it.index_key.as_deref().unwrap_or_default();
                let pos = match index_keys.iter().position(|k| *k == idx) {
                    Some(p) => p,
                    None => {
                        index_keys.push(idx);
                        index_keys.len() - 1
                    }
                };
                let key_pos = items.len() + pos + 1;
                inv.arg("b").arg(op).arg(cost).arg(max_micros.min(LUA_EXACT)).arg(period.expires_at()).arg(key_pos);
            }
        }
    }
    for k in index_keys {
        inv.key(k);
    }
    inv
}

/// Reads the script's reply (`{overall, code, remaining, reset, ...}`) for `n` items.
pub fn decode(reply: &[i64], n: usize) -> Result<Decision, String> {
    if reply.len() != 1 + 3 * n {
        return Err(format!("script replied {} values for {n} items", reply.len()));
    }
    let u = |v: i64| v.max(0) as u64;
    let items = reply[1..]
        .chunks_exact(3)
        .map(|c| ItemResult { over: c[0] == 2, remaining: u(c[1]), reset_ns: u(c[2]) })
        .collect();
    Ok(Decision { over: reply[0] == 2, items })
}
