//! Native micro-benchmark of the filter's hot paths (no Envoy in the loop), so regressions show quickly.
//! Run with `make bench-native` (or `cargo bench --bench hot_paths`). Prints ns per operation.

use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;
use switchyard::config::{Config, Env};
use switchyard::http::{Headers, Step};
use switchyard::providers::mock::Clock;
use switchyard::route::RouteFilter;
use switchyard::upstream::{EndpointMeta, UpstreamFilter};

struct NoEnv;
impl Env for NoEnv {
    fn var(&self, name: &str) -> Option<String> {
        (name == "OPENAI_API_KEY").then(|| "sk-bench".to_string())
    }
}

struct H(Vec<(&'static str, String)>);
impl Headers for H {
    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }
}

const KEY: &str = "sk-bench-key";

fn config() -> Rc<Config> {
    let digest = switchyard::sha256::to_hex(&switchyard::sha256::digest(KEY.as_bytes()));
    let cfg = format!(
        r#"{{"providers":{{"openai":{{"kind":"openai","api_key":{{"env":"OPENAI_API_KEY"}}}},"local":{{"kind":"mock"}}}},
            "models":{{"gpt-4o-mini":{{"provider":"openai","model":"gpt-4o-mini-2024-07-18"}},"echo":{{"provider":"local"}}}},
            "keys":[{{"id":"bench","sha256":"{digest}","models":["*"]}}]}}"#
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

fn bench(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    println!("{name:<48} {ns:>10.0} ns/op");
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
    for size in [1024usize, 10 * 1024] {
        let body = chat_body(size, "gpt-4o-mini", false);
        let label = format!("{}KB", size / 1024);
        bench(&format!("route role: headers+body ({label}, {} B)", body.len()), 20_000, || {
            let mut f = RouteFilter::new(cfg.clone());
            let d = f.on_request_headers(&headers, false);
            assert!(d.step == Step::NeedBody);
            black_box(f.on_request_body(black_box(&body), clock));
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
            black_box(f.on_request_headers(&up_headers, &meta));
            black_box(f.on_request_body(black_box(&body), 1_700_000_000).ok());
        });
        let mock_body = chat_body(size, "echo", true);
        bench(&format!("mock provider: streamed answer ({label})"), 5_000, || {
            let mut f = RouteFilter::new(cfg.clone());
            black_box(f.on_request_headers(&headers, false));
            black_box(f.on_request_body(black_box(&mock_body), clock));
        });
    }
    bench("virtual key lookup (sha256 + map)", 200_000, || {
        black_box(cfg.key_index(black_box(KEY)));
    });
}
