//! Each provider's request translation (`providers::prepare`) on any body, for chat, embeddings, the
//! Anthropic Messages input and the Responses input, as the upstream role (body parsed there) and the route role (parsed once,
//! handed over) call it. A body written for the provider from a JSON body must be JSON (the upstream
//! role only sees bodies the route role parsed).
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::api::openai::{parse_chat, Operation};
use switchyard::providers::prepare;
use switchyard_fuzz::{assert_json, attempt, config, control};

thread_local! {
    static CFG: std::rc::Rc<switchyard::config::Config> = config();
}

fuzz_target!(|data: &[u8]| {
    let ([which, how], body) = control::<2>(data);
    let op = match how % 4 {
        0 => Operation::ChatCompletions,
        1 => Operation::Embeddings,
        2 => Operation::Messages,
        _ => Operation::Responses,
    };
    CFG.with(|cfg| {
        let mut a = attempt(cfg, which, op);
        let parsed = if op == Operation::ChatCompletions && how & 0x80 != 0 { parse_chat(body).ok() } else { None };
        a.chat = parsed.as_ref();
        if let Ok(out) = prepare(&a, body) {
            if let Some(b) = out.body.as_ref().filter(|_| serde_json::from_slice::<serde_json::Value>(body).is_ok()) {
                assert_json(b, "prepared body");
            }
            assert!(out.path.starts_with('/'), "path {}", out.path);
        }
    });
});
