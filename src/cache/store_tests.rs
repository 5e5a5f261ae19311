use super::*;
use crate::codec::sha256;
use crate::limits::tests::MemStore;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

const S: u64 = 1_000_000_000;

fn h(n: u64) -> [u8; 32] {
    sha256::digest(&n.to_le_bytes())
}

/// Envoy's shared data as `SharedStore` sees it: tokens from one process-wide counter; a key that does
/// not exist is created whatever token comes with it; an existing key is written without a token, or
/// with its current one. (`MemStore`, the limits' double, refuses any token on an absent key instead:
/// the tests run on both.)
#[derive(Default)]
struct EnvoyStore {
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next: Cell<u32>,
}

impl SharedStore for EnvoyStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.data.borrow().get(key) {
            // The SDK hands an empty value back as no bytes.
            Some((v, c)) => (Some(v.clone()).filter(|v| !v.is_empty()), Some(*c)),
            None => (None, None),
        }
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
        let mut d = self.data.borrow_mut();
        if let (Some((_, current)), Some(c)) = (d.get(key), cas.filter(|c| *c != 0)) {
            if *current != c {
                return Err(());
            }
        }
        self.next.set(self.next.get().wrapping_add(1).max(1));
        d.insert(key.to_string(), (value.to_vec(), self.next.get()));
        Ok(())
    }
}

/// What another worker does meanwhile.
type Hook<T> = Box<dyn FnOnce(&T)>;

/// A store that runs `hook` once, on the first read of a key starting with `on`, after reading it (as
/// another worker would between this read and what follows).
struct Hooked<T> {
    inner: T,
    on: &'static str,
    hook: RefCell<Option<Hook<T>>>,
    sets: Cell<usize>,
}

impl<T: Default> Hooked<T> {
    fn new(on: &'static str) -> Hooked<T> {
        Hooked { inner: T::default(), on, hook: RefCell::new(None), sets: Cell::new(0) }
    }
    fn then(&self, f: impl FnOnce(&T) + 'static) {
        *self.hook.borrow_mut() = Some(Box::new(f));
    }
}

impl<T: SharedStore> SharedStore for Hooked<T> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let got = self.inner.get(key);
        if key.starts_with(self.on) {
            let hook = self.hook.borrow_mut().take();
            if let Some(f) = hook {
                f(&self.inner);
            }
        }
        got
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
        self.sets.set(self.sets.get() + 1);
        self.inner.set(key, value, cas)
    }
}

/// The index of `set` as stored.
fn index(st: &MemStore, l: &Layout, set: u32) -> Option<Index> {
    let (v, _) = st.get(&index_key(set));
    Index::decode(&v?, l.ways as usize)
}

#[test]
fn layouts() {
    let l = Layout::new(64 << 20, 10_000);
    assert_eq!((l.sets(), l.ways(), l.set_budget()), (1250, 8, (64 << 20) / 1250));
    assert_eq!(l.max_entries(), 10_000);
    let l = Layout::new(1000, 5);
    assert_eq!((l.sets(), l.ways(), l.set_budget()), (1, 5, 1000));
    assert_eq!(Layout::new(1000, 0), Layout::new(1000, 1));
    let l = Layout::new(1000, 12);
    assert_eq!((l.sets(), l.ways()), (1, 8), "entries stay at or below max_entries");
    let l = Layout::new(1 << 30, 1_000_000);
    assert_eq!((l.sets(), l.max_entries()), (125_000, 1_000_000));
    assert_eq!(Layout::decode(&l.encode()), Some(l));
}

#[test]
fn hit_miss_and_ttl() {
    let st = MemStore::default();
    let l = Layout::new(1 << 20, 100);
    assert_eq!(l.get(&st, &h(1), S), None, "nothing stored");
    let out = l.put(&st, &h(1), b"answer one", 10 * S, S);
    assert_eq!(out, PutOutcome { stored: true, evicted: 0, expired: 0, bytes_delta: 10 });
    let hit = l.get(&st, &h(1), 4 * S + 1).unwrap();
    assert_eq!(hit.bytes, b"answer one");
    assert_eq!((hit.stored_at_ns, hit.expires_at_ns, hit.age_secs(4 * S + 1)), (S, 11 * S, 3));
    assert_eq!(l.get(&st, &h(2), 2 * S), None, "another key");
    assert!(l.get(&st, &h(1), 11 * S - 1).is_some());
    assert_eq!(l.get(&st, &h(1), 11 * S), None, "expired at its TTL");
    // A zero TTL stores nothing.
    assert!(!l.put(&st, &h(3), b"x", 0, S).stored);
    assert_eq!(l.get(&st, &h(3), S), None);
    // An empty answer is an entry too.
    assert!(l.put(&st, &h(4), b"", S, S).stored);
    assert_eq!(l.get(&st, &h(4), S).unwrap().bytes, b"");
}

#[test]
fn a_key_put_again_replaces_its_entry() {
    let st = MemStore::default();
    let l = Layout::new(1000, 4);
    l.put(&st, &h(1), &[1; 100], 10 * S, S);
    let out = l.put(&st, &h(1), &[2; 30], 10 * S, 2 * S);
    assert_eq!(out, PutOutcome { stored: true, evicted: 0, expired: 0, bytes_delta: -70 });
    let hit = l.get(&st, &h(1), 3 * S).unwrap();
    assert_eq!((hit.bytes, hit.stored_at_ns), (vec![2; 30], 2 * S));
    let ix = index(&st, &l, 0).unwrap();
    assert_eq!(ix.slots().iter().filter(|s| s.live).count(), 1);
    assert_eq!(ix.slots()[0].generation, 2, "a replacement bumps the way's generation");
}

#[test]
fn the_oldest_entry_of_the_set_goes_first() {
    let st = MemStore::default();
    let l = Layout::new(1 << 20, 4); // one set of four ways
    for i in 1..=4 {
        assert!(l.put(&st, &h(i), &[i as u8; 10], 100 * S, i * S).stored);
    }
    let out = l.put(&st, &h(5), &[5; 10], 100 * S, 5 * S);
    assert_eq!(out, PutOutcome { stored: true, evicted: 1, expired: 0, bytes_delta: 0 });
    assert_eq!(l.get(&st, &h(1), 6 * S), None, "the oldest went");
    // Reading an entry does not make it younger; putting it again does.
    assert!(l.get(&st, &h(2), 6 * S).is_some());
    l.put(&st, &h(2), &[2; 10], 100 * S, 6 * S);
    l.put(&st, &h(6), &[6; 10], 100 * S, 7 * S);
    assert_eq!(l.get(&st, &h(3), 8 * S), None, "3 was the oldest then");
    for i in [2, 4, 5, 6] {
        assert_eq!(l.get(&st, &h(i), 8 * S).unwrap().bytes, vec![i as u8; 10]);
    }
    // An expired way is taken before any live one, and its bytes freed.
    l.put(&st, &h(7), &[7; 10], S, 8 * S); // evicts 4, the oldest; 7 lives one second
    l.put(&st, &h(8), &[8; 10], 100 * S, 8 * S); // evicts 5
    let out = l.put(&st, &h(9), &[9; 10], 100 * S, 20 * S);
    assert_eq!((out.evicted, out.expired), (0, 1), "7 expired: its way is taken, nothing evicted");
    for i in [2, 6, 8, 9] {
        assert!(l.get(&st, &h(i), 20 * S).is_some(), "{i}");
    }
}

#[test]
fn the_set_budget_is_kept_by_evicting_the_oldest() {
    let st = MemStore::default();
    let l = Layout::new(100, 4);
    assert_eq!(l.set_budget(), 100);
    l.put(&st, &h(1), &[1; 40], 100 * S, S);
    l.put(&st, &h(2), &[2; 40], 100 * S, 2 * S);
    let out = l.put(&st, &h(3), &[3; 50], 100 * S, 3 * S);
    assert_eq!(out, PutOutcome { stored: true, evicted: 1, expired: 0, bytes_delta: 10 });
    assert_eq!(l.get(&st, &h(1), 4 * S), None);
    // The evicted body is a tombstone now: its bytes are freed.
    let tomb = st.get(&body_key(0, 0)).0.unwrap();
    assert_eq!(tomb.len(), TRAILER);
    assert_eq!(Trailer::read(&tomb).unwrap().kind, KIND_TOMBSTONE);
    // One entry as large as the whole budget pushes out everything else.
    let out = l.put(&st, &h(4), &[4; 100], 100 * S, 4 * S);
    assert_eq!(out, PutOutcome { stored: true, evicted: 2, expired: 0, bytes_delta: 10 });
    assert_eq!(l.get(&st, &h(4), 5 * S).unwrap().bytes.len(), 100);
}

#[test]
fn an_entry_over_the_budget_is_not_stored_and_changes_nothing() {
    let st = MemStore::default();
    let l = Layout::new(100, 4);
    l.put(&st, &h(1), &[1; 60], 100 * S, S);
    let before = st.data.borrow().clone();
    assert_eq!(l.put(&st, &h(2), &[2; 101], 100 * S, 2 * S), PutOutcome::default());
    assert_eq!(l.put(&st, &h(1), &[1; 101], 100 * S, 2 * S), PutOutcome::default());
    assert_eq!(*st.data.borrow(), before);
    assert_eq!(l.get(&st, &h(1), 3 * S).unwrap().bytes, vec![1; 60], "the old answer stays");
}

/// A tiny deterministic generator (xorshift) for the randomized test.
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
fn many_random_puts_stay_within_the_bounds_and_answer_right() {
    let st = MemStore::default();
    let (max_bytes, max_entries) = (10_000u64, 40u32);
    let l = Layout::new(max_bytes, max_entries);
    assert_eq!((l.sets(), l.ways(), l.set_budget()), (5, 8, 2000));
    l.prepare(&st);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // key → (the bytes last stored, expiry).
    let mut model: HashMap<u64, (Vec<u8>, u64)> = HashMap::new();
    let mut held: i64 = 0;
    let mut now = S;
    for round in 0..3000u64 {
        now += rng.next(S / 2);
        let k = rng.next(120);
        let size = rng.next(2100) as usize;
        let ttl = 1 + rng.next(20 * S);
        let bytes: Vec<u8> = (0..size).map(|i| (round as usize + i) as u8).collect();
        let out = l.put(&st, &h(k), &bytes, ttl, now);
        held += out.bytes_delta;
        if size as u64 > l.set_budget() {
            assert!(!out.stored);
        } else {
            assert!(out.stored, "round {round}");
            model.insert(k, (bytes, now + ttl));
        }
        // Every body that holds an entry counts, stale or not: shared memory itself stays bounded.
        let data = st.data.borrow();
        let mut body_bytes = 0;
        let mut entries = 0;
        for (key, (v, _)) in data.iter() {
            if key.starts_with("sy.cache.b.") && Trailer::read(v).is_some_and(|t| t.kind == KIND_ENTRY) {
                body_bytes += v.len() - TRAILER;
                entries += 1;
            }
        }
        assert!(body_bytes as u64 <= max_bytes, "round {round}: {body_bytes} bytes");
        assert!(entries <= max_entries, "round {round}: {entries} entries");
        assert!(data.len() <= (l.sets() * (l.ways() + 1) + 1) as usize, "keys stay bounded");
        drop(data);
        let indexed: u64 = (0..l.sets())
            .filter_map(|s| index(&st, &l, s))
            .flat_map(|ix| ix.slots().to_vec())
            .filter(|s| s.live)
            .map(|s| u64::from(s.size))
            .sum();
        assert_eq!(held, indexed as i64, "the deltas add up to what the indexes hold");
        // Every hit is the latest answer stored for that key, unexpired.
        let probe = rng.next(120);
        if let Some(hit) = l.get(&st, &h(probe), now) {
            let (bytes, expires) = &model[&probe];
            assert_eq!(&hit.bytes, bytes, "round {round}");
            assert!(*expires > now);
        }
    }
}

fn racing_reader<T: SharedStore + Default + 'static>() {
    let st: Hooked<T> = Hooked::new("sy.cache.i.");
    let l = Layout::new(1000, 1); // one way: any put replaces the entry
    l.put(&st, &h(1), b"one", 100 * S, S);
    // Another worker replaces the entry after this reader read the index.
    st.then(move |inner| assert!(l.put(inner, &h(2), b"two", 100 * S, 2 * S).stored));
    assert_eq!(l.get(&st, &h(1), 3 * S), None, "the body is h(2)'s now");
    assert_eq!(l.get(&st, &h(2), 3 * S).unwrap().bytes, b"two");
    // Same key written again meanwhile: generation differs, so the stale index read is a miss too.
    st.then(move |inner| assert!(l.put(inner, &h(2), b"two again", 100 * S, 4 * S).stored));
    assert_eq!(l.get(&st, &h(2), 5 * S), None);
    assert_eq!(l.get(&st, &h(2), 5 * S).unwrap().bytes, b"two again");
    // Evicted meanwhile: the tombstone is a miss.
    let l2 = Layout::new(3, 1);
    st.then(move |inner| assert_eq!(l2.put(inner, &h(3), b"333", 100 * S, 6 * S).evicted, 1));
    assert_eq!(l.get(&st, &h(2), 6 * S), None);
}

#[test]
fn a_body_overwritten_between_index_and_body_reads_is_a_miss() {
    racing_reader::<EnvoyStore>();
    racing_reader::<MemStore>();
}

fn slow_writer<T: SharedStore + Default + 'static>(first: bool) {
    let st: Hooked<T> = Hooked::new("sy.cache.b.");
    let l = Layout::new(1000, 1);
    if !first {
        // The body key exists already (its token is then the one read).
        l.put(&st.inner, &h(0), b"zero", 100 * S, S);
    }
    // Writer 1 has committed its index record; before its body lands, writer 2 replaces the entry.
    st.then(move |inner| assert!(l.put(inner, &h(2), b"two", 100 * S, 2 * S).stored));
    let out = l.put(&st, &h(1), b"one", 100 * S, S);
    assert!(!out.stored, "its body would be older than what is there");
    assert_eq!(l.get(&st, &h(2), 3 * S).unwrap().bytes, b"two");
    assert_eq!(l.get(&st, &h(1), 3 * S), None);
    // An eviction's tombstone is not overwritten by a late body either.
    let st: Hooked<T> = Hooked::new("sy.cache.b.");
    let l = Layout::new(10, 2); // one set, two ways, 10 bytes
    l.put(&st.inner, &h(0), &[0; 10], 100 * S, 0);
    st.then(move |inner| assert_eq!(l.put(inner, &h(2), &[2; 10], 100 * S, 2 * S).evicted, 1));
    assert!(!l.put(&st, &h(1), &[1; 5], 100 * S, S).stored);
    let tomb = st.inner.get(&body_key(0, 1)).0.unwrap();
    assert_eq!(Trailer::read(&tomb).unwrap().kind, KIND_TOMBSTONE, "the tombstone stays");
    assert_eq!(l.get(&st, &h(2), 3 * S).unwrap().bytes, vec![2; 10]);
}

#[test]
fn a_slow_writer_never_puts_its_body_over_a_newer_one() {
    for first in [true, false] {
        slow_writer::<EnvoyStore>(first);
        slow_writer::<MemStore>(first);
    }
}

#[test]
fn corrupt_bytes_are_misses_and_are_overwritten() {
    let st = MemStore::default();
    let l = Layout::new(1000, 8);
    l.put(&st, &h(1), b"one", 100 * S, S);
    l.put(&st, &h(2), b"two", 100 * S, S);
    let bad_bodies: [&[u8]; 4] = [b"", b"garbage", &[0xff; TRAILER], &[9; 200]];
    for bad in bad_bodies {
        st.set(&body_key(0, 0), bad, None).unwrap();
        assert_eq!(l.get(&st, &h(1), 2 * S), None);
    }
    assert_eq!(l.get(&st, &h(2), 2 * S).unwrap().bytes, b"two");
    // A body whose trailer is right but whose length does not match its record.
    let mut b = vec![0u8; 10];
    b.extend_from_slice(&Trailer { hash: h(2), generation: 1, expires_at_ns: 100 * S, kind: KIND_ENTRY }.encode());
    st.set(&body_key(0, 1), &b, None).unwrap();
    assert_eq!(l.get(&st, &h(2), 2 * S), None);

    let bad_indexes: [&[u8]; 5] = [b"", b"\x01", &[1, 8, 0], &[7; 2 + 8 * RECORD], &[1, 4, 0]];
    for bad in bad_indexes {
        st.set(&index_key(0), bad, None).unwrap();
        assert_eq!(l.get(&st, &h(1), 2 * S), None);
        // The next put starts the set over, frees the other ways' bodies and is found.
        let out = l.put(&st, &h(3), b"three", 100 * S, 3 * S);
        assert!(out.stored);
        assert_eq!(l.get(&st, &h(3), 4 * S).unwrap().bytes, b"three");
        assert_eq!(l.get(&st, &h(2), 4 * S), None);
        let data = st.data.borrow();
        let live_bodies = (0..8)
            .filter_map(|w| data.get(&body_key(0, w)))
            .filter(|(v, _)| Trailer::read(v).is_some_and(|t| t.kind == KIND_ENTRY))
            .count();
        assert_eq!(live_bodies, 1);
    }
}

#[test]
fn a_store_that_always_refuses_gives_up_after_bounded_tries() {
    let st: Hooked<MemStore> = Hooked::new("-");
    let l = Layout::new(1000, 8);
    l.put(&st, &h(9), b"nine", 100 * S, S); // the index exists
    *st.inner.conflicts.borrow_mut() = usize::MAX;
    st.sets.set(0);
    assert_eq!(l.put(&st, &h(1), b"one", 100 * S, S), PutOutcome::default());
    assert_eq!(st.sets.get(), PUT_ATTEMPTS);
    assert_eq!(l.get(&st, &h(1), S), None);
    // A missing index too (two tries per attempt: with the create token, then without).
    let st: Hooked<MemStore> = Hooked::new("-");
    *st.inner.conflicts.borrow_mut() = usize::MAX;
    assert_eq!(l.put(&st, &h(1), b"one", 100 * S, S), PutOutcome::default());
    assert_eq!(st.sets.get(), 2 * PUT_ATTEMPTS);
    // Body writes that keep conflicting are bounded too.
    let st: Hooked<MemStore> = Hooked::new("sy.cache.b.");
    l.put(&st, &h(9), b"nine", 100 * S, S);
    st.sets.set(0);
    st.then(|inner| *inner.conflicts.borrow_mut() = usize::MAX);
    let out = l.put(&st, &h(1), b"one", 100 * S, S);
    assert!(!out.stored);
    assert_eq!(st.sets.get(), 1 + 2 * BODY_ATTEMPTS, "one index write, then the bounded body tries");
}

#[test]
fn prepare_empties_the_keys_of_another_layout() {
    let st = MemStore::default();
    let a = Layout::new(4000, 16); // 2 sets of 8
    assert!(!a.prepare(&st));
    assert_eq!(st.data.borrow().len(), 1, "only the layout: keys are made as entries come");
    for i in 0..10 {
        assert!(a.put(&st, &h(i), &[i as u8; 50], 100 * S, S).stored);
    }
    // The same layout again (a reload with the same bounds, another worker) keeps the entries.
    assert!(!a.prepare(&st));
    assert!((0..10).all(|i| a.get(&st, &h(i), 2 * S).is_some()));
    // Other bounds: every old key is emptied, the new indexes start empty.
    let b = Layout::new(4000, 8); // 1 set of 8
    assert!(b.prepare(&st));
    assert!((0..10).all(|i| b.get(&st, &h(i), 2 * S).is_none()));
    let data = st.data.borrow().clone();
    for (k, (v, _)) in &data {
        if k.starts_with("sy.cache.b.") {
            assert_eq!(v.len(), TRAILER, "{k} freed");
        }
    }
    assert_eq!(data[&index_key(1)].0, Vec::<u8>::new(), "an index outside the new layout is emptied");
    assert!(b.put(&st, &h(1), b"new", 100 * S, 3 * S).stored);
    assert_eq!(b.get(&st, &h(1), 3 * S).unwrap().bytes, b"new");
    // Back to the first layout: h(1) of layout b is gone again.
    assert!(a.prepare(&st));
    assert!(a.get(&st, &h(1), 3 * S).is_none());
}

#[test]
fn a_missing_index_is_created_by_the_first_put() {
    let st = MemStore::default();
    let l = Layout::new(1000, 8);
    assert!(l.put(&st, &h(1), b"one", 100 * S, S).stored);
    assert_eq!(l.get(&st, &h(1), S).unwrap().bytes, b"one");
}

#[test]
fn an_entry_put_with_its_own_times_keeps_its_age_and_expiry() {
    // A fleet hit fills the process tier: first stored 40 s ago elsewhere, 20 s left.
    let st = MemStore::default();
    let l = Layout::new(64 * 1024, 16);
    let t0 = 1_700_000_000 * S;
    let at = Times { now_ns: t0, stored_at_ns: t0 - 40 * S, expires_at_ns: t0 + 20 * S };
    assert!(l.put_at(&st, &h(1), b"answer", at).stored);
    let hit = l.get(&st, &h(1), t0 + S).unwrap();
    assert_eq!((hit.bytes.as_slice(), hit.age_secs(t0 + S), hit.expires_at_ns), (&b"answer"[..], 41, t0 + 20 * S));
    assert_eq!(l.get(&st, &h(1), t0 + 20 * S), None, "gone at its own expiry, not the model's TTL from now");
    // Already expired: not stored.
    let late = Times { now_ns: t0, stored_at_ns: t0 - 60 * S, expires_at_ns: t0 };
    assert!(!l.put_at(&st, &h(2), b"answer", late).stored);
    assert_eq!(l.get(&st, &h(2), t0 - S), None);
}
