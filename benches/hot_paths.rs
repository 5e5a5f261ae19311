//! Native micro-benchmark of the filter's hot paths (no Envoy in the loop), so regressions show quickly.
//! Run with `make bench-native` (or `cargo bench --bench hot_paths`). Prints ns per operation.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;
use switchyard::config::{Config, Env};
use switchyard::http::{Headers, Step};
use switchyard::limits::SharedStore;
use switchyard::pipeline::Ctx;
use switchyard::pipeline::Pipeline as RouteFilter;
use switchyard::providers::mock::Clock;
use switchyard::upstream::{EndpointMeta, UpstreamFilter};

/// The system allocator, counting allocations so each bench reports them per operation (the filter's
/// allocations cost more in the VM than here; the bench's own doubles of Envoy allocate a little too).
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

struct NoEnv;
impl Env for NoEnv {
    fn var(&self, name: &str) -> Option<String> {
        matches!(name, "OPENAI_API_KEY" | "ANTHROPIC_API_KEY").then(|| "sk-bench".to_string())
    }
}

struct H(Vec<(&'static str, String)>);
impl Headers for H {
    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    fn each_name(&self, f: &mut dyn FnMut(&str)) {
        for (k, _) in &self.0 {
            f(k);
        }
    }
}

const KEY: &str = "sk-bench-key";
const LIMITED_KEY: &str = "sk-bench-limited";

/// Shared data as Envoy keeps it: values with a CAS counter.
#[derive(Default)]
struct Store(RefCell<HashMap<String, (Vec<u8>, u32)>>);
impl SharedStore for Store {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.0.borrow().get(key) {
            Some((v, c)) => (Some(v.clone()), Some(*c)),
            None => (None, None),
        }
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
        let mut m = self.0.borrow_mut();
        let cur = m.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != cur {
            return Err(());
        }
        m.insert(key.to_string(), (value.to_vec(), cur.unwrap_or(0) + 1));
        Ok(())
    }
}

fn config() -> Rc<Config> {
    config_with("")
}

/// The bench config, with `extra_models` (JSON members) added to its models.
fn config_with(extra_models: &str) -> Rc<Config> {
    let digest = switchyard::codec::sha256::to_hex(&switchyard::codec::sha256::digest(KEY.as_bytes()));
    let limited = switchyard::codec::sha256::to_hex(&switchyard::codec::sha256::digest(LIMITED_KEY.as_bytes()));
    let cfg = format!(
        r#"{{"providers":{{"openai":{{"kind":"openai","api_key":{{"env":"OPENAI_API_KEY"}}}},"local":{{"kind":"mock"}},
                "anthropic":{{"kind":"anthropic","api_key":{{"env":"ANTHROPIC_API_KEY"}}}}}},
            "models":{{"gpt-4o-mini":{{"provider":"openai","model":"gpt-4o-mini-2024-07-18","price":{{"input":0.15,"output":0.6}}}},"echo":{{"provider":"local"}},
                "claude":{{"provider":"anthropic","model":"claude-haiku","price":{{"input":0.8,"output":4}}}}{extra_models}}},
            "keys":[{{"id":"bench","sha256":"{digest}","models":["*"]}},
                    {{"id":"limited","sha256":"{limited}","models":["*"],"limits":{{"requests":{{"limit":1000000000,"window_secs":1}},
                      "tokens":{{"limit":1000000000000,"window_secs":1}},"concurrent":1000000,"budget":{{"usd":1000000000,"period":"day"}}}}}}]}}"#
    );
    match Config::parse(cfg.as_bytes(), &NoEnv) {
        Ok(c) => Rc::new(c),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

/// A chat request of about `size` bytes: a system prompt and turns of ordinary text.
fn chat_body(size: usize, model: &str, stream: bool) -> Vec<u8> {
    let mut messages =
        vec![r#"{"role":"system","content":"You are a helpful assistant. Answer briefly."}"#.to_string()];
    let turn = "Tell me about the history of the city, its rivers, bridges and the people who built them. ";
    let mut i = 0;
    while messages.iter().map(String::len).sum::<usize>() < size.saturating_sub(120) {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(format!(r#"{{"role":"{role}","content":"{turn}"}}"#));
        i += 1;
    }
    format!(r#"{{"model":"{model}","messages":[{}],"temperature":0.7,"stream":{stream}}}"#, messages.join(","))
        .into_bytes()
}

/// Runs `f` and prints its time per call; only the benches whose name holds the command line's first
/// argument, when one is given (`cargo bench --bench hot_paths -- Anthropic`).
fn bench(name: &str, iters: u32, mut f: impl FnMut()) {
    if std::env::args().nth(1).is_some_and(|only| !only.starts_with('-') && !name.contains(&only)) {
        return;
    }
    for _ in 0..iters / 10 {
        f();
    }
    let allocs = ALLOCS.load(Relaxed);
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    let allocs = (ALLOCS.load(Relaxed) - allocs) as f64 / iters as f64;
    println!("{name:<48} {ns:>10.0} ns/op {allocs:>7.1} allocs/op");
}

fn main() {
    let cfg = config();
    let headers = H(vec![
        (":method", "POST".into()),
        (":path", "/v1/chat/completions".into()),
        ("content-type", "application/json".into()),
        ("authorization", format!("Bearer {KEY}")),
    ]);
    let clock = Clock { unix_secs: 1_700_000_000, seq: 1 };
    let store = Store::default();
    let ctx = Ctx { clock, now_ns: 1_700_000_000_000_000_000, store: &store };
    let limited_headers = H(vec![
        (":method", "POST".into()),
        (":path", "/v1/chat/completions".into()),
        ("content-type", "application/json".into()),
        ("authorization", format!("Bearer {LIMITED_KEY}")),
    ]);
    for size in [1024usize, 10 * 1024] {
        let body = chat_body(size, "gpt-4o-mini", false);
        let label = format!("{}KB", size / 1024);
        bench(&format!("route role: headers+body ({label}, {} B)", body.len()), 20_000, || {
            let mut f = RouteFilter::new(cfg.clone());
            let d = f.on_request_headers(&headers, false);
            assert!(d.step == Step::NeedBody);
            black_box(f.on_request_body(black_box(&body), &ctx));
        });
        bench(&format!("request body check, api::json ({label})"), 200_000, || {
            black_box(switchyard::api::json::check(black_box(&body)).is_ok());
        });
        bench(&format!("chat parse, api::openai ({label})"), 200_000, || {
            black_box(switchyard::api::openai::parse_chat(black_box(&body)).is_ok());
        });
        bench(&format!("route role + limits: reserve and settle ({label})"), 20_000, || {
            let mut f = RouteFilter::new(cfg.clone());
            black_box(f.on_request_headers(&limited_headers, false));
            black_box(f.on_request_body(black_box(&body), &ctx));
            black_box(f.on_response_headers(
                200,
                Some("application/json"),
                Some(("openai", "gpt-4o-mini-2024-07-18")),
                true,
            ));
            black_box(f.on_response_body(
                br#"{"choices":[],"usage":{"prompt_tokens":250,"completion_tokens":40}}"#.to_vec(),
                true,
                1,
            ));
            black_box(f.on_done(&ctx, 1));
        });
        let up_headers = H(vec![
            (":method", "POST".into()),
            (":path", "/v1/chat/completions".into()),
            (":authority", "api.openai.com".into()),
            ("x-switchyard-model", "gpt-4o-mini".into()),
        ]);
        let meta = EndpointMeta { provider: Some("openai".into()), model: None };
        bench(&format!("upstream role: headers+body rewrite ({label})"), 20_000, || {
            let mut f = UpstreamFilter::new(cfg.clone());
            black_box(f.on_request_headers(&up_headers, &meta, None));
            black_box(f.on_request_body(black_box(&body), 1_700_000_000).ok());
        });
        let mock_body = chat_body(size, "echo", true);
        bench(&format!("mock provider: streamed answer ({label})"), 5_000, || {
            let mut f = RouteFilter::new(cfg.clone());
            black_box(f.on_request_headers(&headers, false));
            black_box(f.on_request_body(black_box(&mock_body), &ctx));
        });
    }
    // One whole request as Envoy drives the core: route role (key, limits, body), the upstream role's
    // header-only attempt, the answer and the request's record.
    let body = chat_body(1024, "gpt-4o-mini", false);
    let claude_body = chat_body(1024, "claude", false);
    let openai_answer = br#"{"id":"chatcmpl-b","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The city grew along its river."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":250,"completion_tokens":9,"total_tokens":259}}"#;
    let anthropic_answer = br#"{"id":"msg_b","type":"message","role":"assistant","model":"claude-haiku","content":[{"type":"text","text":"The city grew along its river."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":250,"output_tokens":9}}"#;
    let telemetry = Metrics::default();
    let mut ids = switchyard::observe::MetricIds::default();
    for (label, body, answer) in [
        ("OpenAI passthrough", &body, &openai_answer[..]),
        ("translated to Anthropic", &claude_body, &anthropic_answer[..]),
    ] {
        bench(&format!("whole request, {label} (1KB)"), 20_000, || {
            let mut f = RouteFilter::new(cfg.clone());
            black_box(f.on_request_headers(&limited_headers, false));
            let mut d = f.on_request_body(black_box(body), &ctx);
            let info = d.register.take();
            let mut up = UpstreamFilter::new(cfg.clone());
            if let Some(info) = &info {
                black_box(up.on_ready_request(&EndpointMeta::default(), info));
            }
            black_box(f.on_response_headers(200, Some("application/json"), None, true));
            black_box(f.on_response_body(black_box(answer).to_vec(), true, 1));
            if let Some(r) = f.on_done(&ctx, 1) {
                switchyard::observe::emit(&r, &mut ids, &telemetry);
            }
        });
    }
    // The response cache: one miss stores the answer, then every request is a hit answered in the route
    // role (key, limits, canonical form and SHA-256, the shared-data read, the rendering, the record).
    let cached = config_with(r#","cached":{"provider":"openai","model":"gpt-4o-mini","cache":{"ttl":3600}}"#);
    let cached_body = chat_body(1024, "cached", false);
    let mut whole = |cfg: &Rc<Config>| -> bool {
        let mut f = RouteFilter::new(cfg.clone());
        black_box(f.on_request_headers(&limited_headers, false));
        let d = f.on_request_body(black_box(&cached_body), &ctx);
        let hit = matches!(d.step, Step::Respond(_));
        if !hit {
            black_box(f.on_response_headers(200, Some("application/json"), None, true));
            black_box(f.on_response_body(openai_answer.to_vec(), true, 1));
        }
        if let Some(r) = f.on_done(&ctx, 1) {
            switchyard::observe::emit(&r, &mut ids, &telemetry);
        }
        hit
    };
    assert!(!whole(&cached), "the first request is a miss");
    assert!(whole(&cached), "the second is a hit");
    bench("whole request, cache hit (1KB)", 20_000, || {
        black_box(whole(&cached));
    });
    bench("cache key: canonical form + SHA-256 (1KB)", 200_000, || {
        let c =
            switchyard::cache::canonical(switchyard::api::openai::Operation::ChatCompletions, black_box(&cached_body));
        black_box(switchyard::cache::key("key:bench", "cached", &c.unwrap_or_default()));
    });
    bench("virtual key lookup (sha256 + map)", 200_000, || {
        black_box(cfg.key_index(black_box(KEY)));
    });
    let record = switchyard::observe::Record {
        key_id: Some("bench".into()),
        requested_model: Some("gpt-4o-mini".into()),
        served_model: Some("gpt-4o-mini-2024-07-18".into()),
        provider: Some("openai".into()),
        operation: "chat",
        status: 200,
        usage: Some(switchyard::providers::Usage { prompt_tokens: 250, completion_tokens: 40, cached_tokens: 0 }),
        cost_micros: 61,
        ttft_ms: Some(3),
        duration_ms: 3,
        attempts: 1,
        ..Default::default()
    };
    bench("request record: metrics + access-log record", 200_000, || {
        switchyard::observe::emit(black_box(&record), &mut ids, &telemetry);
    });
}

/// The host's side of the metrics: ids handed out by name, as Envoy does.
#[derive(Default)]
struct Metrics(RefCell<HashMap<String, u32>>);
impl switchyard::observe::Telemetry for Metrics {
    fn define(&self, _kind: switchyard::observe::Kind, name: &str) -> Option<u32> {
        let id = self.0.borrow().len() as u32;
        Some(*self.0.borrow_mut().entry(name.to_string()).or_insert(id))
    }
    fn add(&self, kind: switchyard::observe::Kind, id: u32, value: u64) {
        black_box((kind, id, value));
    }
    fn shift(&self, id: u32, delta: i64) {
        black_box((id, delta));
    }
    fn log_record(&self, record: &[u8]) {
        black_box(record);
    }
}
