//! From a RateLimitRequest to the items one script call decides: a GCRA bucket or a budget per descriptor
//! (or nothing, for a standard descriptor no rule limits).
//!
//! Switchyard descriptors (in the service's domain, first entry `switchyard_key`):
//! - rates: `switchyard_key`, optional entries such as `model`, `limit` = `requests`|`tokens`,
//!   `window_secs`, with the descriptor's `limit` override giving the max (`requests_per_unit`);
//! - budgets: `switchyard_key`, `limit` = `budget`, `period` = `day:N`|`month:N`, `max_micros`;
//! - either with a last entry `op` = `refund`|`charge`: a settlement, applied and answered OK.
//!
//! Amount: the descriptor's `hits_addend` if set, else the request's (if non-zero), else 1.

use crate::budget::BudgetPeriod;
use crate::keys;
use crate::proto::{rate_limit_response::RateLimit, RateLimitDescriptor, RateLimitRequest};
use crate::rules::{unit_of_secs, unit_secs, RuleLimit, Rules};

/// The longest window a rate may have (a year and a day; the scripts are exact below ~104 days).
pub const MAX_WINDOW_SECS: u64 = 366 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Admit,
    Charge,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GCRA: `max` units per `window_secs`, burst `max`.
    Rate {
        window_secs: u64,
        max: u32,
    },
    Budget {
        max_micros: u64,
        period: BudgetPeriod,
    },
}

/// What a descriptor is, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Rate,
    Budget,
    Standard,
    Unlimited,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Rate => "rate",
            Class::Budget => "budget",
            Class::Standard => "standard",
            Class::Unlimited => "unlimited",
        }
    }
}

/// One descriptor's part of the script call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: String,
    pub kind: Kind,
    pub op: Op,
    pub cost: u64,
    /// The budget index (sorted set) this budget key is listed in.
    pub index_key: Option<String>,
    /// What the status reports as `current_limit`.
    pub current_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Script(Item),
    /// OK without touching Redis (a standard descriptor no rule limits).
    Unlimited,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub planned: Planned,
    pub class: Class,
}

/// Plans every descriptor of a request, in order; an error names the first bad descriptor.
pub fn plan(req: &RateLimitRequest, domain: &str, rules: &Rules) -> Result<Vec<Entry>, String> {
    req.descriptors
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let cost = d.hits_addend.unwrap_or(if req.hits_addend > 0 { req.hits_addend as u64 } else { 1 });
            let switchyard = req.domain == domain && d.entries.first().is_some_and(|e| e.key == "switchyard_key");
            if switchyard {
                switchyard_item(d, cost).map_err(|e| format!("descriptor {i}: {e}"))
            } else {
                Ok(standard_item(d, &req.domain, rules, cost))
            }
        })
        .collect()
}

fn switchyard_item(d: &RateLimitDescriptor, cost: u64) -> Result<Entry, String> {
    let mut id = None;
    let (mut limit, mut window, mut period, mut max_micros, mut op) = (None, None, None, None, Op::Admit);
    let mut extra = Vec::new();
    for e in &d.entries {
        let v = e.value.as_str();
        match e.key.as_str() {
            "switchyard_key" if id.is_none() => id = Some(v),
            "limit" => limit = Some(v),
            "window_secs" => window = Some(v.parse::<u64>().map_err(|_| format!("bad window_secs `{v}`"))?),
            "period" => period = Some(BudgetPeriod::parse(v).ok_or_else(|| format!("bad period `{v}`"))?),
            "max_micros" => max_micros = Some(v.parse::<u64>().map_err(|_| format!("bad max_micros `{v}`"))?),
            "op" => {
                op = match v {
                    "refund" => Op::Refund,
                    "charge" => Op::Charge,
                    _ => return Err(format!("unknown op `{v}`")),
                }
            }
            k => extra.push((k.to_string(), v.to_string())),
        }
    }
    let id = id.filter(|id| !id.is_empty()).ok_or("empty switchyard_key")?;
    match limit {
        Some(name @ ("requests" | "tokens")) => {
            let window_secs = window
                .filter(|w| (1..=MAX_WINDOW_SECS).contains(w))
                .ok_or("window_secs missing, 0 or over 366 days")?;
            let max =
                d.limit.as_ref().ok_or("a rate needs the descriptor's limit (requests_per_unit)")?.requests_per_unit;
            let current = RateLimit { name: String::new(), requests_per_unit: max, unit: unit_of_secs(window_secs) };
            Ok(Entry {
                planned: Planned::Script(Item {
                    key: keys::rate(id, name, window_secs, &extra),
                    kind: Kind::Rate { window_secs, max },
                    op,
                    cost,
                    index_key: None,
                    current_limit: Some(current),
                }),
                class: Class::Rate,
            })
        }
        Some("budget") => {
            let period = period.ok_or("a budget needs `period`")?;
            let max_micros = max_micros.ok_or("a budget needs `max_micros`")?;
            Ok(Entry {
                planned: Planned::Script(Item {
                    key: keys::budget(id, &period.name(), &extra),
                    kind: Kind::Budget { max_micros, period },
                    op,
                    cost,
                    index_key: Some(keys::budget_index(id)),
                    current_limit: None,
                }),
                class: Class::Budget,
            })
        }
        Some(other) => Err(format!("unknown limit `{other}`")),
        None => Err("no `limit` entry".into()),
    }
}

fn standard_item(d: &RateLimitDescriptor, domain: &str, rules: &Rules, cost: u64) -> Entry {
    let entries: Vec<(String, String)> = d.entries.iter().map(|e| (e.key.clone(), e.value.clone())).collect();
    let own = d.limit.as_ref().and_then(|l| {
        unit_secs(l.unit).map(|window_secs| RuleLimit {
            requests_per_unit: l.requests_per_unit,
            unit: l.unit,
            window_secs,
            name: String::new(),
        })
    });
    let Some(limit) = own.as_ref().or_else(|| rules.lookup(domain, &entries)) else {
        return Entry { planned: Planned::Unlimited, class: Class::Unlimited };
    };
    Entry {
        planned: Planned::Script(Item {
            key: keys::standard(domain, &entries, limit.window_secs),
            kind: Kind::Rate { window_secs: limit.window_secs, max: limit.requests_per_unit },
            op: Op::Admit,
            cost,
            index_key: None,
            current_limit: Some(RateLimit {
                name: limit.name.clone(),
                requests_per_unit: limit.requests_per_unit,
                unit: limit.unit,
            }),
        }),
        class: Class::Standard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rate_limit_descriptor::{Entry as E, RateLimitOverride};

    fn desc(pairs: &[(&str, &str)], rpu: Option<(u32, i32)>, hits: Option<u64>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: pairs.iter().map(|(k, v)| E { key: k.to_string(), value: v.to_string() }).collect(),
            limit: rpu.map(|(requests_per_unit, unit)| RateLimitOverride { requests_per_unit, unit }),
            hits_addend: hits,
        }
    }

    fn req(descriptors: Vec<RateLimitDescriptor>, hits: u32) -> RateLimitRequest {
        RateLimitRequest { domain: "switchyard".into(), descriptors, hits_addend: hits }
    }

    fn item(e: &Entry) -> &Item {
        match &e.planned {
            Planned::Script(i) => i,
            Planned::Unlimited => panic!("unlimited"),
        }
    }

    #[test]
    fn switchyard_descriptors() {
        let r = req(
            vec![
                desc(&[("switchyard_key", "k1"), ("limit", "requests"), ("window_secs", "60")], Some((10, 2)), None),
                desc(
                    &[("switchyard_key", "k1"), ("model", "m"), ("limit", "tokens"), ("window_secs", "90")],
                    Some((1000, 0)),
                    Some(250),
                ),
                desc(
                    &[
                        ("switchyard_key", "k1"),
                        ("limit", "budget"),
                        ("period", "month:683"),
                        ("max_micros", "5000000"),
                    ],
                    None,
                    Some(0),
                ),
                desc(
                    &[("switchyard_key", "k1"), ("limit", "tokens"), ("window_secs", "60"), ("op", "refund")],
                    Some((1000, 2)),
                    Some(7),
                ),
            ],
            3,
        );
        let p = plan(&r, "switchyard", &Rules::default()).unwrap();
        let a = item(&p[0]);
        assert_eq!((a.key.as_str(), a.cost, a.op), ("sy:{k1}:r:requests:60", 3, Op::Admit));
        assert_eq!(a.kind, Kind::Rate { window_secs: 60, max: 10 });
        assert_eq!(a.current_limit.as_ref().map(|l| l.unit), Some(2));
        let b = item(&p[1]);
        assert_eq!((b.key.as_str(), b.cost), ("sy:{k1}:r:tokens:90:model=m", 250));
        assert_eq!(b.current_limit.as_ref().map(|l| l.unit), Some(0));
        let c = item(&p[2]);
        assert_eq!(
            (c.key.as_str(), c.cost, c.index_key.as_deref()),
            ("sy:{k1}:b:month:683", 0, Some("sy:{k1}:budgets"))
        );
        assert_eq!(p[2].class, Class::Budget);
        assert_eq!((item(&p[3]).op, item(&p[3]).cost), (Op::Refund, 7));
        // Request hits_addend 0 means 1.
        let p = plan(&req(vec![r.descriptors[0].clone()], 0), "switchyard", &Rules::default()).unwrap();
        assert_eq!(item(&p[0]).cost, 1);
    }

    #[test]
    fn user_and_team_subjects_are_ids_like_any_other() {
        // The filter names users `user:<id>` and teams `team:<name>`: one hash tag each, kept apart from
        // every key id (which may not start with those prefixes when users or teams exist).
        let r = req(
            vec![
                desc(
                    &[("switchyard_key", "user:alice@example.com"), ("limit", "requests"), ("window_secs", "60")],
                    Some((10, 2)),
                    None,
                ),
                desc(
                    &[
                        ("switchyard_key", "team:data-science"),
                        ("limit", "budget"),
                        ("period", "day:20788"),
                        ("max_micros", "5"),
                    ],
                    None,
                    Some(3),
                ),
            ],
            1,
        );
        let p = plan(&r, "switchyard", &Rules::default()).unwrap();
        assert_eq!(item(&p[0]).key, "sy:{user%3Aalice%40example.com}:r:requests:60");
        assert_eq!(item(&p[1]).key, "sy:{team%3Adata-science}:b:day:20788");
        assert_eq!(item(&p[1]).index_key.as_deref(), Some("sy:{team%3Adata-science}:budgets"));
    }

    #[test]
    fn bad_switchyard_descriptors_are_errors() {
        for (pairs, limit) in [
            (vec![("switchyard_key", "k"), ("limit", "requests"), ("window_secs", "60")], None),
            (vec![("switchyard_key", "k"), ("limit", "requests"), ("window_secs", "0")], Some((1, 0))),
            (vec![("switchyard_key", "k"), ("limit", "requests")], Some((1, 0))),
            (vec![("switchyard_key", "k"), ("limit", "budget"), ("period", "week:1"), ("max_micros", "1")], None),
            (vec![("switchyard_key", "k"), ("limit", "budget"), ("period", "day:1")], None),
            (vec![("switchyard_key", "k"), ("limit", "concurrency")], None),
            (vec![("switchyard_key", ""), ("limit", "requests"), ("window_secs", "60")], Some((1, 0))),
            (vec![("switchyard_key", "k"), ("limit", "requests"), ("window_secs", "60"), ("op", "x")], Some((1, 0))),
        ] {
            assert!(
                plan(&req(vec![desc(&pairs, limit, None)], 0), "switchyard", &Rules::default()).is_err(),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn standard_descriptors() {
        let mut rules = Rules::default();
        rules
            .add_yaml("domain: edge\ndescriptors: [{key: user, rate_limit: {unit: minute, requests_per_unit: 3}}]")
            .unwrap();
        let mut r = req(
            vec![
                desc(&[("user", "bob")], None, None),
                desc(&[("path", "/")], None, None),
                desc(&[("path", "/")], Some((5, 1)), None),
            ],
            0,
        );
        r.domain = "edge".into();
        let p = plan(&r, "switchyard", &rules).unwrap();
        assert_eq!(item(&p[0]).key, "sy:{s:edge:user=bob}:60");
        assert_eq!(item(&p[0]).kind, Kind::Rate { window_secs: 60, max: 3 });
        assert_eq!(p[1], Entry { planned: Planned::Unlimited, class: Class::Unlimited });
        assert_eq!(item(&p[2]).kind, Kind::Rate { window_secs: 1, max: 5 });
        // switchyard_key outside the service's domain is a standard entry.
        r.descriptors = vec![desc(&[("switchyard_key", "k"), ("limit", "requests")], None, None)];
        assert_eq!(plan(&r, "switchyard", &rules).unwrap()[0].class, Class::Unlimited);
    }
}
