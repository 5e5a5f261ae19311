//! The OpenAI request parsers (chat and embeddings) on any bytes: an error or a request, never a panic;
//! what they accept is JSON (malformed bodies get a 400 here, not from the provider).
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::api::openai::{content_text, parse_chat, parse_embeddings};
use switchyard_fuzz::assert_json;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_chat(data) {
        assert_json(data, "accepted chat request");
        let _ = (req.is_stream(), req.include_usage());
        for m in &req.messages {
            let _ = content_text(m.content);
        }
    }
    if parse_embeddings(data).is_ok() {
        assert_json(data, "accepted embeddings request");
    }
});
