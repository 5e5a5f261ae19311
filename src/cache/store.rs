//! The process tier of the response cache: answers kept in Envoy's shared data, so that every worker of
//! the process (one Wasm VM each) shares them.
//!
//! Shared data has no delete: a key once written stays for the life of the process. So the set of keys
//! is fixed by the layout, and space is reclaimed by overwriting values (a small tombstone frees an
//! entry's bytes). The cache is set-associative: an entry's 32-byte key hash picks one of `sets` sets;
//! each set has one index key, `sy.cache.i.<set>`, listing up to `ways` entries, and one body key per way,
//! `sy.cache.b.<set>.<way>`. Keys are bounded by `sets × (ways + 1)`, entries by `sets × ways ≤
//! max_entries`, and the entries' bytes by `sets × set_budget ≤ max_bytes` (each set holds at most
//! `set_budget = max_bytes / sets` bytes of answers; the index and body trailers add a fixed ~50 bytes
//! per entry on top).
//!
//! Every change of an index is a compare-and-swap of the index key, retried a bounded number of times.
//! Each way's record carries a generation, bumped whenever the way changes (stored, replaced, evicted,
//! expired); a body is written after its index record, carrying that generation, the full key hash and
//! the expiry, so a reader that finds anything else in the body (another worker's newer entry, a
//! tombstone, bytes it cannot read) counts a miss, never a wrong answer. A body write is itself guarded:
//! it reads the body first and writes with that CAS token only if the body is not of a newer generation,
//! so a slow writer never puts an entry back over a newer one or over a tombstone.
//!
//! Encodings (little-endian, each with a version byte):
//! - index: `[1][ways]` then per way 41 bytes `[live 0|1][hash[8..24]][generation u32][stored_at_ns u64]
//!   [expires_at_ns u64][size u32]`;
//! - body: the entry's bytes, then a 46-byte trailer `[hash 32][generation u32][expires_at_ns u64]
//!   [kind: 0 tombstone, 1 entry][1]` (a trailer, not a header, so that a hit hands back the value it read
//!   truncated, without moving the answer's bytes); a tombstone is the trailer alone;
//! - layout (`sy.cache.layout`): `[1][sets u32][ways u32][set_budget u64]`.

use crate::limits::SharedStore;

/// Ways per set (fewer when `max_entries` is smaller).
pub const MAX_WAYS: u32 = 8;
/// Index updates tried before a put gives up (contention): it is then not stored.
const PUT_ATTEMPTS: usize = 8;
/// Guarded body writes tried before giving up.
const BODY_ATTEMPTS: usize = 4;

const INDEX_VERSION: u8 = 1;
const BODY_VERSION: u8 = 1;
const LAYOUT_VERSION: u8 = 1;
const RECORD: usize = 41;
const INDEX_MAX: usize = 2 + MAX_WAYS as usize * RECORD;
/// The body trailer's length.
pub const TRAILER: usize = 46;
const KIND_TOMBSTONE: u8 = 0;
const KIND_ENTRY: u8 = 1;
const LAYOUT_KEY: &str = "sy.cache.layout";

/// How the process tier is cut into sets, from the configured bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    sets: u32,
    ways: u32,
    set_budget: u64,
}

/// A cached answer found by `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The entry's bytes as they were put.
    pub bytes: Vec<u8>,
    pub stored_at_ns: u64,
    pub expires_at_ns: u64,
}

impl Hit {
    /// Whole seconds since the entry was stored (for an `Age` header).
    pub fn age_secs(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.stored_at_ns) / 1_000_000_000
    }
}

/// When an entry is put: now, when it was first stored, when it expires (ns since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub now_ns: u64,
    pub stored_at_ns: u64,
    pub expires_at_ns: u64,
}

/// What a `put` did, for the caller's metrics (`bytes held`, `evictions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// The entry can be found by `get` (false: too large, zero TTL, contention, or a newer write won).
    pub stored: bool,
    /// Live entries removed to make room.
    pub evicted: u32,
    /// Expired entries whose bytes were freed on the way.
    pub expired: u32,
    /// The change of the bytes the index accounts for (entries added minus entries removed).
    pub bytes_delta: i64,
}

/// One way of a set, as the index records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    live: bool,
    prefix: [u8; 16],
    generation: u32,
    stored_at_ns: u64,
    expires_at_ns: u64,
    size: u32,
}

/// A set's index: `ways` slots (the rest unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Index {
    slots: [Slot; MAX_WAYS as usize],
    ways: usize,
}

/// A body's trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Trailer {
    hash: [u8; 32],
    generation: u32,
    expires_at_ns: u64,
    kind: u8,
}

/// What an index update decided.
#[derive(Debug, Clone, Copy)]
struct Plan {
    index: Index,
    way: usize,
    /// Ways whose entries go (evicted or expired), as a bit mask: their bodies get a tombstone.
    freed: u32,
    evicted: u32,
    expired: u32,
    released: u64,
}

/// `a` is a later generation than `b` (generations wrap).
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn prefix_of(hash: &[u8; 32]) -> [u8; 16] {
    let mut p = [0u8; 16];
    p.copy_from_slice(&hash[8..24]);
    p
}

fn index_key(set: u32) -> String {
    format!("sy.cache.i.{set}")
}

fn body_key(set: u32, way: usize) -> String {
    format!("sy.cache.b.{set}.{way}")
}

impl Index {
    fn empty(ways: usize) -> Index {
        Index { slots: [Slot::default(); MAX_WAYS as usize], ways: ways.min(MAX_WAYS as usize) }
    }

    /// The index in `b`, or `None` when it is not one of this layout's (corrupt, another version,
    /// another number of ways).
    fn decode(b: &[u8], ways: usize) -> Option<Index> {
        if b.len() != 2 + ways * RECORD || b.first() != Some(&INDEX_VERSION) || b.get(1) != Some(&(ways as u8)) {
            return None;
        }
        let mut ix = Index::empty(ways);
        for (slot, r) in ix.slots.iter_mut().zip(b.get(2..)?.chunks_exact(RECORD)) {
            let live = match r.first()? {
                0 => false,
                1 => true,
                _ => return None,
            };
            let mut prefix = [0u8; 16];
            prefix.copy_from_slice(r.get(1..17)?);
            *slot = Slot {
                live,
                prefix,
                generation: u32_at(r, 17)?,
                stored_at_ns: u64_at(r, 21)?,
                expires_at_ns: u64_at(r, 29)?,
                size: u32_at(r, 37)?,
            };
        }
        Some(ix)
    }

    /// The encoded index and its length (no heap allocation).
    fn encode(&self) -> ([u8; INDEX_MAX], usize) {
        let mut out = [0u8; INDEX_MAX];
        out[0] = INDEX_VERSION;
        out[1] = self.ways as u8;
        for (s, r) in self.slots.iter().take(self.ways).zip(out[2..].chunks_exact_mut(RECORD)) {
            r[0] = u8::from(s.live);
            r[1..17].copy_from_slice(&s.prefix);
            r[17..21].copy_from_slice(&s.generation.to_le_bytes());
            r[21..29].copy_from_slice(&s.stored_at_ns.to_le_bytes());
            r[29..37].copy_from_slice(&s.expires_at_ns.to_le_bytes());
            r[37..41].copy_from_slice(&s.size.to_le_bytes());
        }
        (out, 2 + self.ways * RECORD)
    }

    fn slots(&self) -> &[Slot] {
        &self.slots[..self.ways]
    }

    /// The oldest live way other than `except` (by `stored_at_ns`, then the lower way).
    fn oldest_live(&self, except: Option<usize>) -> Option<usize> {
        self.slots()
            .iter()
            .enumerate()
            .filter(|(i, s)| s.live && Some(*i) != except)
            .min_by_key(|(i, s)| (s.stored_at_ns, *i))
            .map(|(i, _)| i)
    }

    /// Decides where an entry of `size` bytes for `prefix` goes and what leaves: the way holding the
    /// same key, else a free way, else the oldest; expired entries are freed on the way, then the
    /// oldest live entries until the set's bytes fit `budget`. `None` when the entry cannot fit.
    fn plan(&self, prefix: [u8; 16], size: u64, at: Times, budget: u64) -> Option<Plan> {
        let Times { now_ns, stored_at_ns, expires_at_ns } = at;
        if size > budget || self.ways == 0 {
            return None;
        }
        let mut p = Plan { index: *self, way: 0, freed: 0, evicted: 0, expired: 0, released: 0 };
        let same = self.slots().iter().position(|s| s.live && s.prefix == prefix);
        let slots = &mut p.index.slots[..self.ways];
        for (i, s) in slots.iter_mut().enumerate() {
            if s.live && s.expires_at_ns <= now_ns && Some(i) != same {
                s.live = false;
                s.generation = s.generation.wrapping_add(1);
                p.released += u64::from(s.size);
                p.expired += 1;
                p.freed |= 1 << i;
            }
        }
        let way = match same.or_else(|| slots.iter().position(|s| !s.live)) {
            Some(w) => w,
            None => {
                let w = p.index.oldest_live(None)?;
                p.evicted += 1;
                w
            }
        };
        p.way = way;
        let slots = &mut p.index.slots[..self.ways];
        if let Some(s) = slots.get_mut(way).filter(|s| s.live) {
            p.released += u64::from(s.size);
            s.live = false;
        }
        loop {
            let held: u64 = p.index.slots().iter().filter(|s| s.live).map(|s| u64::from(s.size)).sum();
            if held + size <= budget {
                break;
            }
            let victim = p.index.oldest_live(Some(way))?;
            let s = p.index.slots.get_mut(victim)?;
            s.live = false;
            s.generation = s.generation.wrapping_add(1);
            p.released += u64::from(s.size);
            p.evicted += 1;
            p.freed |= 1 << victim;
        }
        let s = p.index.slots.get_mut(way)?;
        *s = Slot {
            live: true,
            prefix,
            generation: s.generation.wrapping_add(1),
            stored_at_ns,
            expires_at_ns,
            size: size as u32,
        };
        Some(p)
    }
}

impl Trailer {
    fn read(b: &[u8]) -> Option<Trailer> {
        let at = b.len().checked_sub(TRAILER)?;
        let t = b.get(at..)?;
        if t.get(45) != Some(&BODY_VERSION) {
            return None;
        }
        let kind = *t.get(44)?;
        if kind > KIND_ENTRY || (kind == KIND_TOMBSTONE && at != 0) {
            return None;
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(t.get(..32)?);
        Some(Trailer { hash, generation: u32_at(t, 32)?, expires_at_ns: u64_at(t, 36)?, kind })
    }

    fn encode(&self) -> [u8; TRAILER] {
        let mut t = [0u8; TRAILER];
        t[..32].copy_from_slice(&self.hash);
        t[32..36].copy_from_slice(&self.generation.to_le_bytes());
        t[36..44].copy_from_slice(&self.expires_at_ns.to_le_bytes());
        t[44] = self.kind;
        t[45] = BODY_VERSION;
        t
    }

    fn tombstone(generation: u32) -> [u8; TRAILER] {
        Trailer { hash: [0; 32], generation, expires_at_ns: 0, kind: KIND_TOMBSTONE }.encode()
    }
}

/// A CAS token for creating a key: Envoy ignores the token of a key that does not exist and creates it,
/// but refuses it once another worker has created the key (whose token is another), where a write without
/// a token would overwrite that worker's value. (Envoy's tokens come from one process-wide counter; this
/// one would have to be the key's current token exactly for the create to go through wrongly.)
const CREATE_CAS: u32 = u32::MAX;

/// Writes `value` under `key` if the key still holds what was read: its token `cas`, or, when it was
/// absent, if it still is. A host that refuses any token on an absent key (as the test double does) is
/// asked again without one.
fn swap(store: &dyn SharedStore, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
    match cas {
        Some(c) => store.set(key, value, Some(c)),
        None => match store.set(key, value, Some(CREATE_CAS)) {
            Ok(()) => Ok(()),
            Err(()) if store.get(key).1.is_none() => store.set(key, value, None),
            Err(()) => Err(()),
        },
    }
}

/// Writes a body of `generation` unless the body holds a newer one; retried on CAS conflicts.
fn write_body(store: &dyn SharedStore, key: &str, value: &[u8], generation: u32) -> bool {
    for _ in 0..BODY_ATTEMPTS {
        let (current, cas) = store.get(key);
        if current.as_deref().and_then(Trailer::read).is_some_and(|t| newer(t.generation, generation)) {
            return false;
        }
        if swap(store, key, value, cas).is_ok() {
            return true;
        }
    }
    false
}

impl Layout {
    /// The layout for the configured bounds: `ways = min(8, max_entries)`, `sets = max_entries / ways`,
    /// `set_budget = max_bytes / sets`.
    pub fn new(max_bytes: u64, max_entries: u32) -> Layout {
        let entries = max_entries.max(1);
        let ways = entries.min(MAX_WAYS);
        let sets = (entries / ways).max(1);
        Layout { sets, ways, set_budget: max_bytes / u64::from(sets) }
    }

    pub fn sets(&self) -> u32 {
        self.sets
    }

    pub fn ways(&self) -> u32 {
        self.ways
    }

    /// The most bytes of answers one set holds; also the largest entry that can be stored.
    pub fn set_budget(&self) -> u64 {
        self.set_budget
    }

    /// The most entries the tier holds (`sets × ways`, at most `max_entries`).
    pub fn max_entries(&self) -> u64 {
        u64::from(self.sets) * u64::from(self.ways)
    }

    fn set_of(&self, hash: &[u8; 32]) -> u32 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&hash[..8]);
        (u64::from_le_bytes(b) % u64::from(self.sets)) as u32
    }

    fn encode(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = LAYOUT_VERSION;
        out[1..5].copy_from_slice(&self.sets.to_le_bytes());
        out[5..9].copy_from_slice(&self.ways.to_le_bytes());
        out[9..17].copy_from_slice(&self.set_budget.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<Layout> {
        if b.len() != 17 || b.first() != Some(&LAYOUT_VERSION) {
            return None;
        }
        let l = Layout { sets: u32_at(b, 1)?, ways: u32_at(b, 5)?, set_budget: u64_at(b, 9)? };
        (l.sets >= 1 && (1..=MAX_WAYS).contains(&l.ways)).then_some(l)
    }

    /// At load, before traffic: when the process tier was laid out differently before (the bounds
    /// changed on a config reload; shared data survives a reload), empties every key of the old layout
    /// (bodies become tombstones, indexes outside the new layout empty values, the new layout's indexes
    /// empty indexes), so no byte of the old layout stays unaccounted. Keys are otherwise created as
    /// entries arrive. Work is bounded by the old layout's key count. Returns whether old entries were
    /// dropped.
    pub fn prepare(&self, store: &dyn SharedStore) -> bool {
        let (stored, _) = store.get(LAYOUT_KEY);
        let old = stored.as_deref().and_then(Layout::decode);
        if old == Some(*self) {
            return false;
        }
        if let Some(old) = old {
            // Generations restart in an emptied set: its bodies get generation-0 tombstones.
            let tomb = Trailer::tombstone(0);
            let (empty, len) = Index::empty(self.ways as usize).encode();
            for set in 0..old.sets.max(self.sets) {
                for way in 0..old.ways as usize {
                    let key = body_key(set, way);
                    if set < old.sets && store.get(&key).1.is_some() {
                        let _ = store.set(&key, &tomb, None);
                    }
                }
                let key = index_key(set);
                if store.get(&key).1.is_some() {
                    let value = if set < self.sets { &empty[..len] } else { &[][..] };
                    let _ = store.set(&key, value, None);
                }
            }
        }
        let _ = store.set(LAYOUT_KEY, &self.encode(), None);
        stored.is_some()
    }

    /// The entry stored for `hash`, unless it expired (or is being replaced).
    pub fn get(&self, store: &dyn SharedStore, hash: &[u8; 32], now_ns: u64) -> Option<Hit> {
        let set = self.set_of(hash);
        let (index, _) = store.get(&index_key(set));
        let index = Index::decode(&index?, self.ways as usize)?;
        let prefix = prefix_of(hash);
        let way = index.slots().iter().position(|s| s.live && s.prefix == prefix)?;
        let slot = index.slots.get(way)?;
        if slot.expires_at_ns <= now_ns {
            return None;
        }
        let (body, _) = store.get(&body_key(set, way));
        let mut bytes = body?;
        let t = Trailer::read(&bytes)?;
        let len = bytes.len() - TRAILER;
        let same = t.kind == KIND_ENTRY && t.hash == *hash && t.generation == slot.generation;
        if !same || t.expires_at_ns <= now_ns || len != slot.size as usize {
            return None;
        }
        bytes.truncate(len);
        Some(Hit { bytes, stored_at_ns: slot.stored_at_ns, expires_at_ns: t.expires_at_ns })
    }

    /// Stores `bytes` as the answer for `hash` for `ttl_ns`. An entry above the set budget (or with a zero
    /// TTL) is not stored; callers capture at most the model's `max_entry_bytes`, which the config keeps
    /// within the set budget.
    pub fn put(&self, store: &dyn SharedStore, hash: &[u8; 32], bytes: &[u8], ttl_ns: u64, now_ns: u64) -> PutOutcome {
        if ttl_ns == 0 {
            return PutOutcome::default();
        }
        let at = Times { now_ns, stored_at_ns: now_ns, expires_at_ns: now_ns.saturating_add(ttl_ns) };
        self.put_at(store, hash, bytes, at)
    }

    /// Stores `bytes` for `hash` as an entry first stored at `at.stored_at_ns` (by this or another Envoy:
    /// a fleet hit keeps its age) that expires at `at.expires_at_ns`. Not stored when it has expired by
    /// `at.now_ns` or does not fit the set budget.
    pub fn put_at(&self, store: &dyn SharedStore, hash: &[u8; 32], bytes: &[u8], at: Times) -> PutOutcome {
        let size = bytes.len() as u64;
        if at.expires_at_ns <= at.now_ns || size > self.set_budget || size > u64::from(u32::MAX) {
            return PutOutcome::default();
        }
        let expires_at_ns = at.expires_at_ns;
        let set = self.set_of(hash);
        let ikey = index_key(set);
        let ways = self.ways as usize;
        for _ in 0..PUT_ATTEMPTS {
            let (current, cas) = store.get(&ikey);
            let decoded = current.as_deref().and_then(|b| Index::decode(b, ways));
            // An index that exists but cannot be read starts over: its ways' generations are taken from
            // their bodies, so that the tombstones written below win over what the bodies hold.
            let reset = cas.is_some() && decoded.is_none();
            let old = match decoded {
                Some(ix) => ix,
                None if reset => self.index_from_bodies(store, set),
                None => Index::empty(ways),
            };
            let Some(mut plan) = old.plan(prefix_of(hash), size, at, self.set_budget) else {
                return PutOutcome::default();
            };
            if reset {
                plan.freed |= ((1u32 << ways) - 1) & !(1 << plan.way);
            }
            let (enc, len) = plan.index.encode();
            if swap(store, &ikey, &enc[..len], cas).is_err() {
                continue;
            }
            // Free first, then write: the set's bytes never exceed its budget for long.
            for (w, s) in plan.index.slots().iter().enumerate() {
                if plan.freed & (1 << w) != 0 {
                    write_body(store, &body_key(set, w), &Trailer::tombstone(s.generation), s.generation);
                }
            }
            let generation = plan.index.slots.get(plan.way).map_or(0, |s| s.generation);
            let mut body = Vec::with_capacity(bytes.len() + TRAILER);
            body.extend_from_slice(bytes);
            body.extend_from_slice(&Trailer { hash: *hash, generation, expires_at_ns, kind: KIND_ENTRY }.encode());
            let stored = write_body(store, &body_key(set, plan.way), &body, generation);
            return PutOutcome {
                stored,
                evicted: plan.evicted,
                expired: plan.expired,
                bytes_delta: size as i64 - plan.released as i64,
            };
        }
        PutOutcome::default()
    }

    /// An empty index whose generations continue those of the set's bodies (after a corrupt index).
    fn index_from_bodies(&self, store: &dyn SharedStore, set: u32) -> Index {
        let mut ix = Index::empty(self.ways as usize);
        for (w, s) in ix.slots.iter_mut().take(self.ways as usize).enumerate() {
            let (body, _) = store.get(&body_key(set, w));
            s.generation = body.as_deref().and_then(Trailer::read).map_or(0, |t| t.generation);
        }
        ix
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
