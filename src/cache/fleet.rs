//! The fleet tier of the response cache, the pure core: what the filter sends to and reads from the
//! cache service of `switchyard-limits` (`switchyard.cache.v1.Cache`, gRPC through the `fleet_limits`
//! cluster, state in Redis), the entry it keeps there, and the bounded queue of puts the host sends from
//! the route role's root context.
//!
//! - **The entry** is what the process tier keeps for one answer: the stored answer (the normalized
//!   chat completion of `answer.rs`) followed by a 49-byte trailer `[key hash 32][stored_at_ns u64]
//!   [expires_at_ns u64][version u8]` (little-endian). So a fleet hit fills the local tier with the same
//!   stored and expiry times (its `Age` counts from the first store, on whichever Envoy that was), and an
//!   entry is only ever served for the key it was stored under: any other trailer is corrupt.
//! - **Get**: `GetRequest{bytes key = 1}` → `GetResponse{bool found = 1; bytes entry = 2}`.
//! - **Put**: `PutRequest{bytes key = 1; bytes entry = 2; uint32 ttl_secs = 3}` → `PutResponse{}`; the TTL
//!   is the entry's remaining life rounded up to whole seconds (Redis `SET ... EX`), so the Redis key
//!   lives as long as the model's `ttl` says, and the trailer's expiry still decides to the nanosecond.
//! - **Puts are fire-and-forget**: a request whose answer was stored leaves its encoded `PutRequest` in
//!   the worker's [`PutQueue`] (bounded in items and bytes; past a bound the oldest puts are dropped and
//!   counted), sent on the root context's tick; a put that fails is counted, never retried.

use crate::codec::protobuf::{Reader, Writer};
use std::collections::VecDeque;

/// The gRPC service (see `service/proto/cache.proto`).
pub const SERVICE: &str = "switchyard.cache.v1.Cache";
pub const GET: &str = "Get";
pub const PUT: &str = "Put";

const ENTRY_VERSION: u8 = 1;
/// The entry trailer's length.
pub const TRAILER: usize = 49;

/// Puts a worker keeps waiting at most.
pub const MAX_QUEUED_PUTS: usize = 512;
/// Bytes of puts a worker keeps waiting at most.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

/// A fleet entry that may be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored answer (as the process tier keeps it).
    pub answer: Vec<u8>,
    pub stored_at_ns: u64,
    pub expires_at_ns: u64,
}

impl Entry {
    /// Whole seconds since the entry was first stored (for an `Age` header); 0 for an entry stored "in
    /// the future" by an Envoy whose clock is ahead.
    pub fn age_secs(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.stored_at_ns) / 1_000_000_000
    }
}

/// Why a fleet entry is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not an entry of this version for this key (garbage, truncated, another key's entry).
    Corrupt,
    /// Past its expiry (Redis keeps a key up to a second longer; clocks of Envoys differ).
    Expired,
}

/// The entry for `answer` stored under `hash` at `stored_at_ns` until `expires_at_ns`.
pub fn encode_entry(hash: &[u8; 32], answer: &[u8], stored_at_ns: u64, expires_at_ns: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(answer.len() + TRAILER);
    out.extend_from_slice(answer);
    out.extend_from_slice(hash);
    out.extend_from_slice(&stored_at_ns.to_le_bytes());
    out.extend_from_slice(&expires_at_ns.to_le_bytes());
    out.push(ENTRY_VERSION);
    out
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads an entry found under `hash`: its trailer must name this key and version, its times be ordered,
/// and it must not have expired at `now_ns`. (Whether the answer itself reads is the renderer's check.)
pub fn decode_entry(mut bytes: Vec<u8>, hash: &[u8; 32], now_ns: u64) -> Result<Entry, Refused> {
    let at = bytes.len().checked_sub(TRAILER).ok_or(Refused::Corrupt)?;
    let t = bytes.get(at..).ok_or(Refused::Corrupt)?;
    if t.get(48) != Some(&ENTRY_VERSION) || t.get(..32) != Some(&hash[..]) || at == 0 {
        return Err(Refused::Corrupt);
    }
    let (stored_at_ns, expires_at_ns) =
        (u64_at(t, 32).ok_or(Refused::Corrupt)?, u64_at(t, 40).ok_or(Refused::Corrupt)?);
    if stored_at_ns >= expires_at_ns {
        return Err(Refused::Corrupt);
    }
    if expires_at_ns <= now_ns {
        return Err(Refused::Expired);
    }
    bytes.truncate(at);
    Ok(Entry { answer: bytes, stored_at_ns, expires_at_ns })
}

/// A `GetRequest` for `hash`.
pub fn get_request(hash: &[u8; 32]) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(1, hash);
    w.buf
}

/// Reads a `GetResponse`: the entry's bytes when found; an error for bytes that are no such message.
pub fn get_response(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let (mut found, mut entry) = (false, None);
    for f in Reader::new(bytes) {
        let (n, v) = f.map_err(|e| format!("an unreadable answer from the cache service ({e})"))?;
        match n {
            1 => found = v.as_u64() != 0,
            2 => entry = Some(v.as_bytes()),
            _ => {}
        }
    }
    Ok(if found { Some(entry.unwrap_or_default().to_vec()) } else { None })
}

/// The Redis TTL of an entry expiring at `expires_at_ns`: its remaining life in whole seconds, rounded
/// up (at least 1).
pub fn ttl_secs(expires_at_ns: u64, now_ns: u64) -> u32 {
    let ns = expires_at_ns.saturating_sub(now_ns);
    u32::try_from(ns.div_ceil(1_000_000_000).max(1)).unwrap_or(u32::MAX)
}

/// A `PutRequest`: the entry for `answer` under `hash`, stored now until `expires_at_ns`.
pub fn put_request(hash: &[u8; 32], answer: &[u8], now_ns: u64, expires_at_ns: u64) -> Vec<u8> {
    let entry = encode_entry(hash, answer, now_ns, expires_at_ns);
    let mut w = Writer::new();
    w.bytes(1, hash).bytes(2, &entry).uint(3, u64::from(ttl_secs(expires_at_ns, now_ns)));
    w.buf
}

/// Encoded `PutRequest`s waiting for the root context's tick, bounded in items and bytes.
#[derive(Debug, Default)]
pub struct PutQueue {
    puts: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Puts dropped because the queue was full (the service slow or away for long).
    pub dropped: u64,
}

impl PutQueue {
    /// Adds a put; the oldest go while the queue is past a bound (a put larger than the byte bound is
    /// itself dropped).
    pub fn push(&mut self, put: Vec<u8>) {
        if put.len() > MAX_QUEUED_BYTES {
            self.dropped += 1;
            return;
        }
        self.bytes += put.len();
        self.puts.push_back(put);
        while self.puts.len() > MAX_QUEUED_PUTS || self.bytes > MAX_QUEUED_BYTES {
            let Some(old) = self.puts.pop_front() else { break };
            self.bytes -= old.len();
            self.dropped += 1;
        }
    }

    /// The oldest put waiting.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let put = self.puts.pop_front()?;
        self.bytes -= put.len();
        Some(put)
    }

    pub fn len(&self) -> usize {
        self.puts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::protobuf::Value;

    const H: [u8; 32] = [7; 32];
    const T0: u64 = 1_800_000_000_000_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn an_entry_reads_back_for_its_key_only_and_until_it_expires() {
        let e = encode_entry(&H, b"{\"answer\":1}", T0, T0 + 60 * S);
        assert_eq!(e.len(), 12 + TRAILER);
        let got = decode_entry(e.clone(), &H, T0 + 5 * S).unwrap();
        assert_eq!(got, Entry { answer: b"{\"answer\":1}".to_vec(), stored_at_ns: T0, expires_at_ns: T0 + 60 * S });
        assert_eq!(got.age_secs(T0 + 5 * S + S / 2), 5);
        assert_eq!(got.age_secs(T0 - S), 0, "a clock behind the storer's: age 0");
        assert_eq!(decode_entry(e.clone(), &[8; 32], T0), Err(Refused::Corrupt), "another key's entry");
        assert_eq!(decode_entry(e.clone(), &H, T0 + 60 * S), Err(Refused::Expired));
        // Garbage, truncations, another version, an empty answer, times out of order.
        let mut other = e.clone();
        *other.last_mut().unwrap() = 2;
        let mut swapped = e[..12].to_vec();
        swapped.extend_from_slice(&encode_entry(&H, b"", T0 + 60 * S, T0)[..]);
        for bad in [
            b"garbage".to_vec(),
            Vec::new(),
            e[..e.len() - 1].to_vec(),
            other,
            encode_entry(&H, b"", T0, T0 + S),
            swapped,
        ] {
            assert_eq!(decode_entry(bad.clone(), &H, T0), Err(Refused::Corrupt), "{bad:?}");
        }
    }

    #[test]
    fn messages_have_the_protos_fields() {
        let get = get_request(&H);
        let fields: Vec<_> = Reader::new(&get).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields, vec![(1, Value::Bytes(&H[..]))]);

        let put = put_request(&H, b"ans", T0, T0 + 1_500_000_000);
        let fields: Vec<_> = Reader::new(&put).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0], (1, Value::Bytes(&H[..])));
        assert_eq!(fields[1].1.as_bytes(), &encode_entry(&H, b"ans", T0, T0 + 1_500_000_000)[..]);
        assert_eq!((fields[2].0, fields[2].1.as_u64()), (3, 2), "1.5 s rounds up to 2");

        let mut w = Writer::new();
        w.uint(1, 1).bytes(2, b"entry");
        assert_eq!(get_response(&w.buf), Ok(Some(b"entry".to_vec())));
        assert_eq!(get_response(b""), Ok(None), "found: false is the empty message");
        let mut w = Writer::new();
        w.uint(1, 1);
        assert_eq!(get_response(&w.buf), Ok(Some(Vec::new())), "found with an empty entry (then corrupt)");
        assert!(get_response(b"\x0a\x05ab").is_err());
    }

    #[test]
    fn ttl_is_the_remaining_life_rounded_up() {
        assert_eq!(ttl_secs(T0 + 60 * S, T0), 60);
        assert_eq!(ttl_secs(T0 + 60 * S + 1, T0), 61);
        assert_eq!(ttl_secs(T0 + S / 4, T0), 1);
        assert_eq!(ttl_secs(T0, T0), 1);
        assert_eq!(ttl_secs(T0 + 30 * 86_400 * S, T0), 2_592_000);
    }

    #[test]
    fn the_put_queue_is_bounded_in_items_and_bytes() {
        let mut q = PutQueue::default();
        for i in 0..MAX_QUEUED_PUTS + 10 {
            q.push(vec![(i % 250) as u8; 10]);
        }
        assert_eq!((q.len(), q.bytes(), q.dropped), (MAX_QUEUED_PUTS, MAX_QUEUED_PUTS * 10, 10));
        assert_eq!(q.pop(), Some(vec![10; 10]), "the oldest went first");
        let mut q = PutQueue::default();
        let big = MAX_QUEUED_BYTES / 4 + 1;
        for _ in 0..4 {
            q.push(vec![0; big]);
        }
        assert_eq!((q.len(), q.dropped), (3, 1), "four of them pass the byte bound");
        assert!(q.bytes() <= MAX_QUEUED_BYTES);
        q.push(vec![0; MAX_QUEUED_BYTES + 1]);
        assert_eq!((q.len(), q.dropped), (3, 2), "a put over the bound is dropped itself");
        while q.pop().is_some() {}
        assert!(q.is_empty() && q.bytes() == 0);
    }
}
