//! The route role as Envoy drives it: request headers (method, path, key, content type picked by the
//! control bytes), the body as it streams in (cut where the fuzzer says), the stages over the whole body,
//! then an answer (status, content type, body from the input) through the response stages, and the end.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::collections::HashMap;
use switchyard::http::{Headers, Step};
use switchyard::limits::SharedStore;
use switchyard::pipeline::{Ctx, Pipeline};
use switchyard::providers::mock::Clock;
use switchyard_fuzz::{config, control, pieces, KEY};

thread_local! {
    static CFG: std::rc::Rc<switchyard::config::Config> = config();
}

struct H(Vec<(&'static str, String)>);
impl Headers for H {
    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }
}

/// Shared data with CAS counters, as Envoy keeps it.
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

const PATHS: [&str; 9] = [
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/models",
    "/v1/models/gpt",
    "/v1/models/a%2Fb",
    "/v1/chat/completions?x=1",
    "/nope",
    "/v1/responses",
];
const STATUSES: [u16; 8] = [200, 200, 200, 400, 429, 500, 503, 504];
const TYPES: [Option<&str>; 4] =
    [Some("application/json"), Some("text/event-stream"), None, Some("application/json; charset=utf-8")];

fuzz_target!(|data: &[u8]| {
    let ([m, p, k, r, cut, s1, s2], payload) = control::<7>(data);
    let at = payload.len() * usize::from(cut) / 256;
    let (body, answer) = payload.split_at(at);
    let mut headers = vec![
        (":method", if m & 1 == 0 { "POST" } else { "GET" }.to_string()),
        (":path", PATHS[usize::from(p) % PATHS.len()].to_string()),
    ];
    match k & 3 {
        0 => headers.push(("authorization", format!("Bearer {KEY}"))),
        1 => headers.push(("x-api-key", KEY.to_string())),
        2 => headers.push(("authorization", "Bearer sk-wrong".to_string())),
        _ => {}
    }
    if m & 2 != 0 {
        headers.push(("content-type", if m & 4 != 0 { "text/plain" } else { "application/json" }.to_string()));
    }
    if m & 8 != 0 {
        headers.push(("content-length", body.len().to_string()));
    }
    let store = Store::default();
    let ctx =
        Ctx { clock: Clock { unix_secs: 1_700_000_000, seq: 1 }, now_ns: 1_700_000_000_000_000_000, store: &store };
    CFG.with(|cfg| {
        let mut f = Pipeline::new(cfg.clone());
        f.set_start(ctx.now_ns);
        let mut d = f.on_request_headers(&H(headers), body.is_empty());
        if d.step == Step::NeedBody {
            // The body streams in; the host reports the size buffered (or each dropped piece).
            let parts = pieces(body, &[s1, s2]);
            let mut buffered = 0;
            let mut outcome = None;
            for (i, part) in parts.iter().enumerate() {
                let draining = f.is_draining();
                buffered = if draining { part.len() } else { buffered + part.len() };
                match f.on_body_progress(buffered, i + 1 == parts.len()) {
                    Some(next) if next.step == Step::NeedBody => {}
                    Some(next) => {
                        outcome = Some(next);
                        break;
                    }
                    None => {
                        outcome = Some(f.on_request_body(body, &ctx));
                        break;
                    }
                }
            }
            match outcome {
                Some(next) => d = next,
                None => panic!("the body ended and the pipeline still waits for it"),
            }
        }
        if matches!(d.step, Step::Continue) {
            let ct = TYPES[usize::from(r >> 4 & 3)];
            let status = STATUSES[usize::from(r & 7)];
            let (_, _framing) = f.response_head(status, ct, None, r & 8 != 0, false, answer.is_empty());
            if f.watches_body() {
                let parts = pieces(answer, &[s1 ^ s2]);
                for (i, part) in parts.iter().enumerate() {
                    let _ = f.on_response_body(part.to_vec(), i + 1 == parts.len(), ctx.now_ns + 1);
                }
            } else {
                f.count_response_bytes(answer.len(), ctx.now_ns + 1);
            }
        }
        let _ = f.on_done(&ctx, 1);
        // Once done, a request keeps nothing: a second end changes nothing.
        assert!(f.on_done(&ctx, 1).is_none());
        assert!(!f.is_draining());
    });
});
