//! Limits for standard descriptors (any descriptor not starting with `switchyard_key`, such as those sent
//! by Envoy's own `envoy.filters.http.ratelimit` filter), from rules files in envoyproxy/ratelimit's shape:
//!
//! ```yaml
//! domain: edge
//! descriptors:
//!   - key: user            # matches an entry with this key (any value: one bucket per value)
//!     rate_limit: { unit: minute, requests_per_unit: 100 }
//!   - key: path
//!     value: /v1/chat      # this exact value (a trailing `*` matches a prefix)
//!     rate_limit: { unit: second, requests_per_unit: 5, name: chat }
//!     descriptors:         # the next entry of the descriptor, nested
//!       - key: user
//!         unlimited: true
//! ```
//!
//! A descriptor's entries are matched level by level (an exact value first, then a prefix, then a rule
//! without value); the rule reached by the last entry gives the limit. No match, or a rule without
//! `rate_limit`, means no limit. Units: second, minute, hour, day, month (30 days), year (365 days).

use std::collections::HashMap;

use yaml_rust2::{Yaml, YamlLoader};

/// A limit from a rule or a descriptor's own override: `requests_per_unit` per `window_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLimit {
    pub requests_per_unit: u32,
    /// The protocol's unit number (SECOND=1 ... YEAR=6).
    pub unit: i32,
    pub window_secs: u64,
    pub name: String,
}

/// The window of a protocol unit; `None` for UNKNOWN and unknown numbers.
pub fn unit_secs(unit: i32) -> Option<u64> {
    match unit {
        1 => Some(1),
        2 => Some(60),
        3 => Some(3_600),
        4 => Some(86_400),
        5 => Some(30 * 86_400),
        6 => Some(365 * 86_400),
        _ => None,
    }
}

/// The protocol unit of a window, 0 (UNKNOWN) when it is not one of second/minute/hour/day.
pub fn unit_of_secs(window_secs: u64) -> i32 {
    match window_secs {
        1 => 1,
        60 => 2,
        3_600 => 3,
        86_400 => 4,
        _ => 0,
    }
}

fn unit_by_name(name: &str) -> Option<i32> {
    Some(match name.to_ascii_lowercase().as_str() {
        "second" => 1,
        "minute" => 2,
        "hour" => 3,
        "day" => 4,
        "month" => 5,
        "year" => 6,
        _ => return None,
    })
}

#[derive(Debug, Clone)]
struct Node {
    key: String,
    value: Option<String>,
    limit: Option<RuleLimit>,
    unlimited: bool,
    children: Vec<Node>,
}

/// Rules by domain.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    domains: HashMap<String, Vec<Node>>,
}

impl Rules {
    /// Adds one rules file's text (one domain per file; a second file for the same domain is refused).
    pub fn add_yaml(&mut self, text: &str) -> Result<(), String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("YAML: {e}"))?;
        let doc = docs.first().ok_or("empty rules file")?;
        let domain = doc["domain"].as_str().ok_or("`domain` (a string) is required")?;
        if domain.is_empty() {
            return Err("`domain` is empty".into());
        }
        let nodes = match &doc["descriptors"] {
            Yaml::BadValue | Yaml::Null => Vec::new(),
            d => parse_nodes(d, "descriptors")?,
        };
        if self.domains.insert(domain.to_string(), nodes).is_some() {
            return Err(format!("domain `{domain}` is defined twice"));
        }
        Ok(())
    }

    /// The limit for a descriptor's entries in `domain`, `None` when none applies (unlimited).
    pub fn lookup(&self, domain: &str, entries: &[(String, String)]) -> Option<&RuleLimit> {
        let mut level = self.domains.get(domain)?;
        let mut found: Option<&Node> = None;
        for (key, value) in entries {
            let same_key = || level.iter().filter(|n| n.key == *key);
            let node = same_key()
                .find(|n| n.value.as_deref() == Some(value.as_str()))
                .or_else(|| {
                    same_key().find(|n| {
                        n.value.as_deref().and_then(|v| v.strip_suffix('*')).is_some_and(|p| value.starts_with(p))
                    })
                })
                .or_else(|| same_key().find(|n| n.value.is_none()))?;
            level = &node.children;
            found = Some(node);
        }
        let node = found?;
        if node.unlimited {
            return None;
        }
        node.limit.as_ref()
    }

    pub fn domains(&self) -> usize {
        self.domains.len()
    }
}

fn parse_nodes(y: &Yaml, path: &str) -> Result<Vec<Node>, String> {
    let list = y.as_vec().ok_or_else(|| format!("`{path}` must be a list"))?;
    list.iter().enumerate().map(|(i, n)| parse_node(n, &format!("{path}[{i}]"))).collect()
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_node(y: &Yaml, path: &str) -> Result<Node, String> {
    if y.as_hash().is_none() {
        return Err(format!("`{path}` must be a mapping"));
    }
    let key = y["key"].as_str().filter(|k| !k.is_empty()).ok_or_else(|| format!("`{path}.key` is required"))?;
    let value = match &y["value"] {
        Yaml::BadValue | Yaml::Null => None,
        v => Some(scalar(v).ok_or_else(|| format!("`{path}.value` must be a scalar"))?),
    };
    let limit = match &y["rate_limit"] {
        Yaml::BadValue | Yaml::Null => None,
        r => {
            let unit_name = r["unit"].as_str().ok_or_else(|| format!("`{path}.rate_limit.unit` is required"))?;
            let unit = unit_by_name(unit_name)
                .ok_or_else(|| format!("`{path}.rate_limit.unit`: unknown unit `{unit_name}`"))?;
            let rpu = r["requests_per_unit"]
                .as_i64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("`{path}.rate_limit.requests_per_unit` must be an integer 0..2^32"))?;
            let name = r["name"].as_str().unwrap_or_default().to_string();
            Some(RuleLimit { requests_per_unit: rpu, unit, window_secs: unit_secs(unit).unwrap_or(1), name })
        }
    };
    let unlimited = y["unlimited"].as_bool().unwrap_or(false);
    let children = match &y["descriptors"] {
        Yaml::BadValue | Yaml::Null => Vec::new(),
        d => parse_nodes(d, &format!("{path}.descriptors"))?,
    };
    Ok(Node { key: key.to_string(), value, limit, unlimited, children })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const RULES: &str = "
domain: edge
descriptors:
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 100 }
  - key: user
    value: vip
    unlimited: true
  - key: path
    value: /v1/*
    rate_limit: { unit: SECOND, requests_per_unit: 5, name: api }
    descriptors:
      - key: user
        value: bob
        rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: tier
    value: free
";

    #[test]
    fn matches_like_envoyproxy_ratelimit() {
        let mut r = Rules::default();
        r.add_yaml(RULES).unwrap();
        let l = r.lookup("edge", &e(&[("user", "alice")])).unwrap();
        assert_eq!((l.requests_per_unit, l.unit, l.window_secs), (100, 2, 60));
        assert_eq!(r.lookup("edge", &e(&[("user", "vip")])), None);
        let l = r.lookup("edge", &e(&[("path", "/v1/chat")])).unwrap();
        assert_eq!((l.requests_per_unit, l.window_secs, l.name.as_str()), (5, 1, "api"));
        assert_eq!(r.lookup("edge", &e(&[("path", "/v1/chat"), ("user", "bob")])).unwrap().window_secs, 3600);
        assert_eq!(r.lookup("edge", &e(&[("path", "/v1/chat"), ("user", "carol")])), None);
        assert_eq!(r.lookup("edge", &e(&[("path", "/v2")])), None);
        assert_eq!(r.lookup("edge", &e(&[("tier", "free")])), None);
        assert_eq!(r.lookup("other", &e(&[("user", "alice")])), None);
    }

    #[test]
    fn bad_files_are_refused() {
        for bad in [
            "descriptors: []",
            "domain: d\ndescriptors: [{value: x}]",
            "domain: d\ndescriptors: [{key: k, rate_limit: {unit: fortnight, requests_per_unit: 1}}]",
            "domain: d\ndescriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: -1}}]",
            "domain: d\ndescriptors: {key: k}",
        ] {
            assert!(Rules::default().add_yaml(bad).is_err(), "{bad}");
        }
        let mut r = Rules::default();
        r.add_yaml("domain: d").unwrap();
        assert!(r.add_yaml("domain: d").is_err());
    }
}
