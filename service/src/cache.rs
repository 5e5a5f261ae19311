//! `switchyard.cache.v1.Cache`: the fleet tier of Switchyard's response cache. `Get` and `Put` of opaque
//! entries under 32-byte keys (the filter's SHA-256 cache keys), one Redis `GET` or `SET ... EX` each,
//! under `keys::cache`. The filter checks every entry it reads (its trailer names the key, the store and
//! expiry times), so the service keeps bytes and never looks inside them.
//!
//! Refused with INVALID_ARGUMENT: a key that is not 32 bytes, a TTL of 0, an empty entry, an entry over
//! `--cache-max-entry-bytes`. TTLs above 30 days are cut to 30 days (the filter's own bound). Redis
//! unreachable, slow or failing → UNAVAILABLE, as for the limits (the filter then counts a miss, or a
//! failed put; a cache never fails a client's request).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cache_proto::cache_server::Cache;
use crate::cache_proto::{GetRequest, GetResponse, PutRequest, PutResponse};
use crate::keys;
use crate::metrics::{GetOutcome, Metrics, PutOutcome};
use crate::store::Store;

/// Bytes of a cache key.
pub const KEY_BYTES: usize = 32;
/// The longest TTL kept (longer ones are cut to it): the filter's own bound on a model's `cache.ttl`.
pub const MAX_TTL_SECS: u32 = 30 * 86_400;
/// `--cache-max-entry-bytes` by default.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 4 << 20;

pub struct CacheService {
    /// The cache's Redis: the limits' one, or its own (`--cache-redis`).
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub max_entry_bytes: usize,
}

fn check_key(key: &[u8]) -> Result<String, Status> {
    if key.len() != KEY_BYTES {
        return Err(Status::invalid_argument(format!("key must be {KEY_BYTES} bytes, got {}", key.len())));
    }
    Ok(keys::cache(key))
}

impl CacheService {
    /// One `Get` (the method without its envelope).
    pub async fn get(&self, req: &GetRequest) -> Result<GetResponse, Status> {
        let key = check_key(&req.key)?;
        let found = self.store.get_bytes(&key).await.map_err(|e| Status::unavailable(format!("redis: {e}")))?;
        Ok(match found {
            Some(entry) => GetResponse { found: true, entry },
            None => GetResponse { found: false, entry: Vec::new() },
        })
    }

    /// One `Put`.
    pub async fn put(&self, req: &PutRequest) -> Result<PutResponse, Status> {
        let key = check_key(&req.key)?;
        if req.ttl_secs == 0 {
            return Err(Status::invalid_argument("ttl_secs must be above 0"));
        }
        if req.entry.is_empty() {
            return Err(Status::invalid_argument("entry is empty"));
        }
        if req.entry.len() > self.max_entry_bytes {
            return Err(Status::invalid_argument(format!(
                "entry of {} bytes is over --cache-max-entry-bytes {}",
                req.entry.len(),
                self.max_entry_bytes
            )));
        }
        let ttl = req.ttl_secs.min(MAX_TTL_SECS);
        self.store
            .set_bytes(&key, &req.entry, u64::from(ttl))
            .await
            .map_err(|e| Status::unavailable(format!("redis: {e}")))?;
        Ok(PutResponse {})
    }
}

#[tonic::async_trait]
impl Cache for CacheService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let res = CacheService::get(self, request.get_ref()).await;
        self.metrics.cache_get(match &res {
            Ok(r) if r.found => GetOutcome::Hit,
            Ok(_) => GetOutcome::Miss,
            Err(_) => GetOutcome::Error,
        });
        res.map(Response::new)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.get_ref();
        let res = CacheService::put(self, req).await;
        self.metrics.cache_put(
            match &res {
                Ok(_) => PutOutcome::Ok,
                Err(s) if s.code() == tonic::Code::InvalidArgument => PutOutcome::Refused,
                Err(_) => PutOutcome::Error,
            },
            req.entry.len(),
        );
        res.map(Response::new)
    }
}
