//! Each provider's response translation of a whole (non-stream) body, success or error status: the
//! client always gets JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::api::openai::Operation;
use switchyard::providers::{prepare, BodyMode};
use switchyard_fuzz::{assert_json, attempt, chat_request, config, control, messages_request};

thread_local! {
    static CFG: std::rc::Rc<switchyard::config::Config> = config();
}

const STATUSES: [u16; 8] = [200, 400, 401, 404, 429, 500, 503, 529];

fuzz_target!(|data: &[u8]| {
    let ([which, how], body) = control::<2>(data);
    let op = if how & 0x80 != 0 { Operation::Messages } else { Operation::ChatCompletions };
    let request = if op == Operation::Messages { messages_request(false) } else { chat_request(false) };
    let status = STATUSES[usize::from(how & 7)];
    let content_type = if how & 8 != 0 { Some("text/html") } else { Some("application/json") };
    CFG.with(|cfg| {
        let a = attempt(cfg, which, op);
        let Ok(out) = prepare(&a, &request) else { return };
        let Some(mut t) = out.response else { return };
        let (_, mode) = t.on_headers(status, content_type);
        if mode == BodyMode::Buffer {
            let client = t.on_body(body);
            if !(client.is_empty() && status == 200 && body.is_empty() && op == Operation::ChatCompletions) {
                assert_json(&client, "translated response");
            }
        }
        let _ = t.usage();
    });
});
