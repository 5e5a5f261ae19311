//! The usage sniffer of the response path: fed a body whole or cut at fuzzer-picked points, it passes
//! the same bytes on (dropping the same usage chunks) and reads the same usage.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::pipeline::usage::{Format, Sniffer};
use switchyard_fuzz::{assert_same, control, pieces};

fn run(format: Format, strip: bool, parts: &[&[u8]]) -> (Vec<u8>, Option<switchyard::providers::Usage>) {
    let mut s = Sniffer::new(format, strip);
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        match s.on_chunk(p, i + 1 == parts.len()) {
            Some(changed) => out.extend_from_slice(&changed),
            None => out.extend_from_slice(p),
        }
    }
    (out, s.usage())
}

fuzz_target!(|data: &[u8]| {
    let ([how, s1, s2, s3, s4], payload) = control::<5>(data);
    const FORMATS: [Format; 6] = [
        Format::OpenAiJson,
        Format::OpenAiSse,
        Format::AnthropicJson,
        Format::AnthropicSse,
        Format::ResponsesJson,
        Format::ResponsesSse,
    ];
    let format = FORMATS[usize::from(how & 7) % FORMATS.len()];
    let strip = how & 8 != 0;
    let (whole, usage) = run(format, strip, &[payload]);
    let (split, split_usage) = run(format, strip, &pieces(payload, &[s1, s2, s3, s4]));
    assert_same(&split, &whole, "usage sniffer");
    assert_eq!(split_usage, usage, "usage depends on the split");
});
