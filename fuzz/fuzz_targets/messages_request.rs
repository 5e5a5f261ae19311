//! The Anthropic Messages input: parse, and the conversion to the OpenAI pivot, whose output must be JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::api::anthropic;
use switchyard_fuzz::assert_json;

fuzz_target!(|data: &[u8]| {
    let _ = anthropic::parse(data);
    if let Ok(pivot) = anthropic::to_openai(data) {
        assert_json(&pivot, "to_openai");
    }
});
