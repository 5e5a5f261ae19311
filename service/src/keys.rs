//! Redis key names. Every key of one Switchyard key id carries the id as its hash tag (`{...}`), so all of
//! them (its rate buckets, budgets and budget index) land in one Redis Cluster slot and one request's
//! script call, whose descriptors all share the id, never spans slots.
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `sy:{<id>}:r:<limit>:<window_secs>[:<k>=<v>]...` | string | GCRA TAT (ns since the epoch) of a rate: `limit` is `requests` or `tokens`; extra descriptor entries such as `model=<m>` follow in order |
//! | `sy:{<id>}:b:<day\|month>:<N>[:<k>=<v>]...` | hash | budget: `spent` and `max` in micro-dollars |
//! | `sy:{<id>}:budgets` | sorted set | the id's budget keys, scored by expiry (read by `/spend`) |
//! | `sy:{s:<domain>:<k1>=<v1>}:<k2>=<v2>...:<window_secs>` | string | GCRA TAT of a standard descriptor (Envoy's own ratelimit filter), tagged by its first entry |
//! | `sy:{c:<hex>}` | string | a response cache entry of the fleet tier: `<hex>` is the 32-byte cache key in lower-case hex (a hash, so entries spread over a cluster's slots); expires with the entry (`SET ... EX`) |
//!
//! Ids, entry keys and values are percent-encoded (every byte outside `A-Z a-z 0-9 . _ -`), so names are
//! unambiguous whatever the id contains and `{`, `}`, `:` or glob characters never reach a key.

use std::fmt::Write;

/// Percent-encodes every byte outside `A-Z a-z 0-9 . _ -`.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Reverses [`enc`] (for reporting); bytes that are not valid UTF-8 are replaced.
pub fn dec(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes.get(i), bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (Some(b'%'), Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (Some(&b), _, _) => {
                out.push(b);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn extras(out: &mut String, extra: &[(String, String)]) {
    for (k, v) in extra {
        let _ = write!(out, ":{}={}", enc(k), enc(v));
    }
}

/// A Switchyard rate bucket.
pub fn rate(id: &str, limit: &str, window_secs: u64, extra: &[(String, String)]) -> String {
    let mut k = format!("sy:{{{}}}:r:{}:{}", enc(id), enc(limit), window_secs);
    extras(&mut k, extra);
    k
}

/// A Switchyard budget (`period` is `day:N` or `month:N`, already validated).
pub fn budget(id: &str, period: &str, extra: &[(String, String)]) -> String {
    let mut k = format!("sy:{{{}}}:b:{}", enc(id), period);
    extras(&mut k, extra);
    k
}

/// The sorted set listing an id's budget keys.
pub fn budget_index(id: &str) -> String {
    format!("sy:{{{}}}:budgets", enc(id))
}

/// The prefix of an id's budget keys (what follows it is the period and any extra entries).
pub fn budget_prefix(id: &str) -> String {
    format!("sy:{{{}}}:b:", enc(id))
}

/// A standard descriptor's bucket: tagged by the domain and the first entry, window in the name so a
/// changed unit starts a fresh bucket.
pub fn standard(domain: &str, entries: &[(String, String)], window_secs: u64) -> String {
    let mut k = String::from("sy:{s:");
    k.push_str(&enc(domain));
    let mut first = true;
    for (key, value) in entries {
        let _ = write!(k, ":{}={}", enc(key), enc(value));
        if first {
            k.push('}');
            first = false;
        }
    }
    if first {
        k.push('}');
    }
    let _ = write!(k, ":{window_secs}");
    k
}

/// A response cache entry of the fleet tier, by its 32-byte key.
pub fn cache(key: &[u8]) -> String {
    let mut k = String::with_capacity(7 + 2 * key.len());
    k.push_str("sy:{c:");
    for b in key {
        let _ = write!(k, "{b:02x}");
    }
    k.push('}');
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_tagged_and_encoded() {
        assert_eq!(rate("team-a", "requests", 60, &[]), "sy:{team-a}:r:requests:60");
        let m = vec![("model".to_string(), "gpt-4o".to_string())];
        assert_eq!(rate("team-a", "tokens", 60, &m), "sy:{team-a}:r:tokens:60:model=gpt-4o");
        assert_eq!(budget("a{b}:c*", "month:683", &[]), "sy:{a%7Bb%7D%3Ac%2A}:b:month:683");
        assert_eq!(budget_index("k"), "sy:{k}:budgets");
        let e = vec![("path".to_string(), "/v1".to_string()), ("user".to_string(), "u 1".to_string())];
        assert_eq!(standard("edge", &e, 60), "sy:{s:edge:path=%2Fv1}:user=u%201:60");
        assert_eq!(dec(&enc("a{b}:c*é")), "a{b}:c*é");
        let mut h = [0u8; 32];
        h[0] = 0xab;
        h[31] = 0x01;
        assert_eq!(cache(&h), format!("sy:{{c:ab{}01}}", "00".repeat(30)));
    }
}
