//! Real components for the tests: a `redis-server` process on a free port (never a fake) and the built
//! `switchyard-limits` binary, driven over real gRPC and HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_limits::cache_proto::cache_client::CacheClient;
use switchyard_limits::proto::rate_limit_descriptor::{Entry, RateLimitOverride};
use switchyard_limits::proto::rate_limit_service_client::RateLimitServiceClient;
use switchyard_limits::proto::{RateLimitDescriptor, RateLimitRequest, RateLimitResponse};
use tonic::transport::Channel;

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn wait_for(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} not ready after {deadline:?}");
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("switchyard-limits-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A real redis-server without persistence on a free port.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let mut r = Redis { port: free_port(), child: None };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let dir = scratch_dir(&format!("redis-{}", self.port));
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need Debian's redis-server on PATH \
                     (`make unit` installs it: apt-get install redis-server)"
                )
            });
        self.child = Some(child);
        let port = self.port;
        wait_for("redis-server", Duration::from_secs(10), || self::ping(port));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url()).and_then(|c| c.get_connection()).expect("redis connection")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill").args([sig, &c.id().to_string()]).status().map(|s| s.success());
            assert_eq!(ok.ok(), Some(true), "kill {sig}");
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.resume();
        self.stop();
        let _ = std::fs::remove_dir_all(scratch_dir(&format!("redis-{}", self.port)));
    }
}

fn ping(port: u16) -> bool {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

/// The built switchyard-limits binary.
pub struct Service {
    pub grpc: u16,
    pub admin: u16,
    pub log: PathBuf,
    child: Child,
}

impl Service {
    pub fn start(redis_url: &str, extra: &[&str]) -> Self {
        let (grpc, admin) = (free_port(), free_port());
        let log = scratch_dir(&format!("svc-{grpc}")).join("service.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard-limits"))
            .args(["--grpc", &format!("127.0.0.1:{grpc}"), "--admin", &format!("127.0.0.1:{admin}")])
            .args(["--redis", redis_url])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn switchyard-limits");
        let s = Service { grpc, admin, log, child };
        wait_for("switchyard-limits", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", grpc)).is_ok() && TcpStream::connect(("127.0.0.1", admin)).is_ok()
        });
        s
    }

    pub async fn client(&self) -> RateLimitServiceClient<Channel> {
        RateLimitServiceClient::connect(format!("http://127.0.0.1:{}", self.grpc)).await.expect("gRPC connect")
    }

    /// A client of the response cache's fleet tier (same port), taking messages of any size.
    pub async fn cache_client(&self) -> CacheClient<Channel> {
        CacheClient::connect(format!("http://127.0.0.1:{}", self.grpc))
            .await
            .expect("gRPC connect")
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// `GET path` on the admin port: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

// ------------------------------------------------------------------------------------------ descriptors

pub fn desc(pairs: &[(&str, &str)], limit: Option<(u32, i32)>, hits: Option<u64>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: pairs.iter().map(|(k, v)| Entry { key: k.to_string(), value: v.to_string() }).collect(),
        limit: limit.map(|(requests_per_unit, unit)| RateLimitOverride { requests_per_unit, unit }),
        hits_addend: hits,
    }
}

/// A Switchyard rate descriptor: `limit` is requests|tokens, `max` per `window` seconds.
pub fn rate(key: &str, limit: &str, max: u32, window: u64, hits: Option<u64>, op: Option<&str>) -> RateLimitDescriptor {
    let w = window.to_string();
    let mut pairs = vec![("switchyard_key", key), ("limit", limit), ("window_secs", w.as_str())];
    if let Some(op) = op {
        pairs.push(("op", op));
    }
    desc(&pairs, Some((max, if window == 60 { 2 } else { 0 })), hits)
}

pub fn budget(key: &str, period: &str, max_micros: u64, amount: u64, op: Option<&str>) -> RateLimitDescriptor {
    let m = max_micros.to_string();
    let mut pairs = vec![("switchyard_key", key), ("limit", "budget"), ("period", period), ("max_micros", m.as_str())];
    if let Some(op) = op {
        pairs.push(("op", op));
    }
    desc(&pairs, None, Some(amount))
}

pub fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest { domain: domain.into(), descriptors, hits_addend: 0 }
}

pub async fn call(
    c: &mut RateLimitServiceClient<Channel>,
    descriptors: Vec<RateLimitDescriptor>,
) -> Result<RateLimitResponse, tonic::Status> {
    c.should_rate_limit(request("switchyard", descriptors)).await.map(|r| r.into_inner())
}

pub const OK: i32 = 1;
pub const OVER: i32 = 2;

/// (code, limit_remaining) of each status.
pub fn codes(r: &RateLimitResponse) -> Vec<(i32, u32)> {
    r.statuses.iter().map(|s| (s.code, s.limit_remaining)).collect()
}

pub fn reset(r: &RateLimitResponse, i: usize) -> Duration {
    let d = r.statuses[i].duration_until_reset.expect("duration_until_reset");
    Duration::new(d.seconds as u64, d.nanos as u32)
}

/// A sample's value in Prometheus text (0 when absent).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}
