//! The OpenAI stream turned into an Anthropic Messages stream (`/v1/messages` clients): whole and cut
//! at fuzzer-picked points give the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::api::anthropic::StreamToAnthropic;
use switchyard_fuzz::{assert_same, control, feed, pieces};

fn run(parts: &[&[u8]], end_apart: bool) -> Vec<u8> {
    let mut s = StreamToAnthropic::new("claude-fuzz");
    feed(parts, end_apart, |bytes, end, out| s.push(bytes, end, out))
}

fuzz_target!(|data: &[u8]| {
    let ([how, s1, s2, s3, s4], payload) = control::<5>(data);
    let whole = run(&[payload], false);
    let split = run(&pieces(payload, &[s1, s2, s3, s4]), how & 1 != 0);
    assert_same(&split, &whole, "anthropic stream");
});
