//! Per-key (and per-user, per-team) limits, exact across Envoy's worker threads: requests and tokens per window (GCRA, a token
//! bucket kept as one "theoretical arrival time" per limit), concurrent requests, and a money budget per
//! UTC day or month. State lives in the host's shared data and every update is a compare-and-swap, retried
//! on conflict, so all workers (one Wasm VM each) see one set of counters.
//!
//! Reserve, then settle: a request reserves its estimated tokens and cost before it is forwarded; when
//! the response ends it settles to the real usage (refunding or charging the difference), or releases the
//! whole reservation when no usage is known because the attempt failed.
//!
//! Layout: this file is the shared-data store and its compare-and-swap update; `rate.rs` the GCRA and
//! budget-period arithmetic; `reservation.rs` what a request reserves and settles; `subject.rs` whose
//! limits a request counts against (its key or user, and its team).

pub mod fleet;
mod rate;
mod reservation;
#[cfg(test)]
mod reservation_tests;
mod subject;
#[cfg(test)]
pub mod tests;

pub use rate::{
    days_from_civil, format_duration, gcra_shift, gcra_step, period_of, BudgetState, Period, Rate, RateState, Refused,
};
pub use reservation::{create_missing, name_records, shared_keys, Reservation};
pub use subject::{Subject, Whose};

use std::fmt;

/// Shared data of the host (Envoy's `proxy_get_shared_data` / `proxy_set_shared_data`).
pub trait SharedStore {
    /// The value and its CAS token (`None` when the key does not exist yet).
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes if the CAS token still matches; `Err(())` on a mismatch.
    #[allow(clippy::result_unit_err)]
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()>;
}

/// How many times a CAS update is retried before the limiter gives up (and refuses, fail-closed).
const CAS_RETRIES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    Contention,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shared counters are contended")
    }
}

/// Applies `f` to the value under `key` with compare-and-swap, retrying on conflict. `f` returns the new
/// value and a result, or `Err` to leave the value unchanged.
pub fn update<T, E, V: AsRef<[u8]>>(
    store: &dyn SharedStore,
    key: &str,
    mut f: impl FnMut(Option<&[u8]>) -> Result<(V, T), E>,
) -> Result<Result<T, E>, StoreError> {
    for _ in 0..CAS_RETRIES {
        let (value, cas) = store.get(key);
        match f(value.as_deref()) {
            Err(e) => return Ok(Err(e)),
            Ok((new, out)) => {
                if store.set(key, new.as_ref(), cas).is_ok() {
                    return Ok(Ok(out));
                }
            }
        }
    }
    Err(StoreError::Contention)
}

fn read_u64s<const N: usize>(v: Option<&[u8]>) -> [u64; N] {
    let mut out = [0u64; N];
    if let Some(bytes) = v {
        for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *o = u64::from_le_bytes(b);
        }
    }
    out
}

/// Up to five counters as a record's bytes (little-endian), without a heap allocation.
struct Packed {
    buf: [u8; 40],
    len: usize,
}

impl AsRef<[u8]> for Packed {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn write_u64s(vals: &[u64]) -> Packed {
    let mut p = Packed { buf: [0; 40], len: 0 };
    for (chunk, v) in p.buf.chunks_exact_mut(8).zip(vals) {
        chunk.copy_from_slice(&v.to_le_bytes());
        p.len += 8;
    }
    p
}
