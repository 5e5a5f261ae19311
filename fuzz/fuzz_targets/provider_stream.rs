//! Each translated provider's stream translation: the provider's bytes fed whole and cut at points the
//! fuzzer picks must give the same client stream and the same usage.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::api::openai::Operation;
use switchyard::providers::{prepare, BodyMode, ResponseTranslator};
use switchyard_fuzz::{assert_same, attempt, chat_request, config, control, feed, messages_request, pieces};

thread_local! {
    static CFG: std::rc::Rc<switchyard::config::Config> = config();
}

fuzz_target!(|data: &[u8]| {
    let ([which, how, s1, s2, s3, s4], payload) = control::<6>(data);
    let op = if how & 0x80 != 0 { Operation::Messages } else { Operation::ChatCompletions };
    let request = if op == Operation::Messages { messages_request(true) } else { chat_request(true) };
    let status = if how & 1 != 0 { 500 } else { 200 };
    CFG.with(|cfg| {
        let a = attempt(cfg, which, op);
        let fresh = || -> Option<Box<dyn ResponseTranslator>> { prepare(&a, &request).ok()?.response };
        let run = |parts: &[&[u8]], end_apart: bool| -> Option<(Vec<u8>, Option<switchyard::providers::Usage>)> {
            let mut t = fresh()?;
            if t.on_headers(status, Some("text/event-stream")).1 != BodyMode::Stream {
                return None;
            }
            let out = feed(parts, end_apart, |bytes, end, out| t.on_stream(bytes, end, out));
            Some((out, t.usage()))
        };
        let Some((whole, usage)) = run(&[payload], false) else { return };
        let cut = pieces(payload, &[s1, s2, s3, s4]);
        let Some((split, split_usage)) = run(&cut, how & 2 != 0) else { return };
        assert_same(&split, &whole, "provider stream");
        assert_eq!(split_usage, usage, "usage depends on the split");
    });
});
