//! Redis: one multiplexed connection that reconnects by itself (the redis crate's ConnectionManager),
//! every command bounded by the configured timeout, and outages tracked as episodes (one log line when
//! Redis stops answering, one when it is back) rather than per request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind};

use crate::budget::BudgetRow;
use crate::keys;
use crate::log;
use crate::metrics::RedisHealth;
use crate::plan::Item;
use crate::script::{self, Decision};

pub struct Store {
    /// What the logs call it: `redis`, or `cache redis` for the cache's own (`--cache-redis`).
    name: &'static str,
    conn: ConnectionManager,
    timeout: Duration,
    script: Script,
    health: Arc<RedisHealth>,
    up: AtomicBool,
    down_since: Mutex<Option<Instant>>,
    /// When an error answer (not an outage) was last logged: at most one such line per 10 s.
    last_error_log: Mutex<Option<Instant>>,
}

/// Whether an error means Redis is not there for us (an outage: logged once per episode) rather than an
/// error answer to one command (a script error such as WRONGTYPE, an unexpected reply), which Redis being
/// up can give. Outages: no connection or no answer, and the answers of a Redis that cannot serve writes
/// (loading, busy with a script, out of memory, read-only replica, persistence failing, cluster down).
fn is_outage(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(k) => matches!(
            k,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        ),
        ErrorKind::Extension => matches!(e.code(), Some("OOM" | "BUSY" | "MISCONF" | "NOREPLICAS")),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => false,
        _ => true,
    }
}

impl Store {
    /// Connects lazily: the service starts (and answers UNAVAILABLE) while Redis is still down. `name` is
    /// what the log lines call it, `health` where its errors, outages and latency are counted.
    pub fn new(url: &str, timeout: Duration, health: Arc<RedisHealth>, name: &'static str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis URL `{url}`: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnect quickly and give up soon: the next request starts a new attempt anyway.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| format!("redis: {e}"))?;
        Ok(Self {
            name,
            conn,
            timeout,
            script: script::script(),
            health,
            up: AtomicBool::new(true),
            down_since: Mutex::new(None),
            last_error_log: Mutex::new(None),
        })
    }

    /// Runs `f` on the connection within the timeout, recording latency and the outage state.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(v)) => {
                self.health.latency(start.elapsed());
                self.mark_up();
                Ok(v)
            }
            Ok(Err(e)) if !is_outage(&e) => {
                // Redis answered, with an error: it is up, this command failed.
                self.health.latency(start.elapsed());
                self.mark_up();
                let msg = e.to_string();
                self.command_error(&msg);
                Err(msg)
            }
            Ok(Err(e)) => Err(self.outage(e.to_string())),
            Err(_) => Err(self.outage(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    fn outage(&self, msg: String) -> String {
        self.health.error();
        self.mark_down(&msg);
        msg
    }

    /// Counts an error answer and logs it, at most once per 10 s.
    pub fn command_error(&self, msg: &str) {
        self.health.error();
        if let Ok(mut last) = self.last_error_log.lock() {
            if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                *last = Some(Instant::now());
                log::line(&format!(
                    "{} error answer: {msg} (answering UNAVAILABLE; logged at most every 10 s)",
                    self.name
                ));
            }
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.health.set_up(true);
            let since = self.down_since.lock().ok().and_then(|mut d| d.take());
            let secs = since.map(|s| s.elapsed().as_secs_f64()).unwrap_or_default();
            log::line(&format!("{} is back (unavailable for {secs:.1} s)", self.name));
        }
    }

    fn mark_down(&self, err: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.health.set_up(false);
            if let Ok(mut d) = self.down_since.lock() {
                *d = Some(Instant::now());
            }
            log::line(&format!("{} is unavailable: {err} (answering UNAVAILABLE until it is back)", self.name));
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// One script call deciding `items` (EVALSHA; the script is loaded again if Redis lost it).
    pub async fn decide(&self, items: &[&Item], now_ns: Option<u64>) -> Result<Decision, String> {
        let n = items.len();
        let reply: Vec<i64> = self
            .call(|mut c| async move { script::invocation(&self.script, items, now_ns).invoke_async(&mut c).await })
            .await?;
        script::decode(&reply, n).inspect_err(|e| self.command_error(e))
    }

    pub async fn ping(&self) -> Result<(), String> {
        self.call(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await.map(|_| ())
    }

    /// The budgets of one key id (its index, then each budget hash; never a scan of the keyspace).
    pub async fn budgets(&self, id: &str) -> Result<Vec<BudgetRow>, String> {
        let index = keys::budget_index(id);
        let names: Vec<String> = self
            .call(|mut c| async move { redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut c).await })
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for n in &names {
            pipe.cmd("HMGET").arg(n).arg("spent").arg("max");
        }
        let values: Vec<(Option<u64>, Option<u64>)> =
            self.call(|mut c| async move { pipe.query_async(&mut c).await }).await?;
        let prefix = keys::budget_prefix(id);
        let mut rows: Vec<BudgetRow> = names
            .iter()
            .zip(values)
            .filter_map(|(name, (spent, max))| {
                let suffix = name.strip_prefix(&prefix)?;
                // A key that expired since the index listed it has neither field.
                (spent.is_some() || max.is_some()).then(|| BudgetRow::new(suffix, spent.unwrap_or(0), max.unwrap_or(0)))
            })
            .collect();
        rows.sort_by(|a, b| (&a.period, &a.scope).cmp(&(&b.period, &b.scope)));
        Ok(rows)
    }

    /// A cache entry: the string value under `key`, if any.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.call(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await }).await
    }

    /// Stores a cache entry under `key` for `ttl_secs` (`SET key value EX ttl_secs`).
    pub async fn set_bytes(&self, key: &str, value: &[u8], ttl_secs: u64) -> Result<(), String> {
        self.call(|mut c| async move {
            redis::cmd("SET").arg(key).arg(value).arg("EX").arg(ttl_secs).query_async::<()>(&mut c).await
        })
        .await
    }

    /// Raw access for tests and tools: a command within the timeout.
    pub async fn query<T: redis::FromRedisValue + Send>(&self, cmd: redis::Cmd) -> Result<T, String> {
        self.call(|mut c| async move { cmd.query_async(&mut c).await }).await
    }
}
