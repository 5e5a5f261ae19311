//! The Responses API input: parse, the pivot's refusals, and the conversion to the chat pivot, whose output
//! must be JSON that the chat parser takes (every provider translator starts from it).
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::api::{openai, responses};
use switchyard_fuzz::assert_json;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = responses::parse(data) {
        let _ = responses::check_pivot(&req, "fuzz");
    }
    if let Ok(pivot) = responses::to_openai(data) {
        assert_json(&pivot, "to_openai");
        if let Err(e) = openai::parse_chat(&pivot) {
            panic!("the pivot of a Responses request is refused by the chat parser: {}", e.message);
        }
    }
});
