//! Percent-encoding and SigV4 signing: encoding is decodable back and only uses the unreserved set and
//! `%XX`; decoding takes any text; signing any path, query, header and payload gives the same headers
//! twice.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard::codec::{percent, sigv4};
use switchyard_fuzz::control;

fuzz_target!(|data: &[u8]| {
    let ([a, b, t], rest) = control::<3>(data);
    let enc = percent::encode(rest);
    assert!(
        enc.bytes().all(|c| c.is_ascii_alphanumeric() || b"-._~%".contains(&c)),
        "encoded text outside the set: {enc}"
    );
    assert_eq!(percent::decode(&enc), rest, "decode(encode(x)) != x");
    let text = String::from_utf8_lossy(rest);
    let _ = percent::decode(&text);
    // Path, query and a header value cut from the text at the control bytes' places.
    let cut = |x: u8| text.char_indices().map(|(i, _)| i).nth(usize::from(x)).unwrap_or(text.len());
    let (p, q) = (cut(a).min(cut(b)), cut(a).max(cut(b)));
    let (path, query, value) = (&text[..p], &text[p..q], &text[q..]);
    let headers =
        [("host", "bedrock-runtime.us-east-1.amazonaws.com"), ("content-type", "application/json"), ("x-fuzz", value)];
    let req = sigv4::Request { method: "POST", path, query, headers: &headers, payload: rest };
    let creds = sigv4::Credentials {
        access_key_id: "AKID",
        secret_access_key: "secret",
        session_token: (t & 1 != 0).then_some("tok"),
    };
    let now = u64::from(t) * 86_400 * 397;
    let one = sigv4::sign(&req, &creds, "us-east-1", "bedrock", now);
    let two = sigv4::sign(&req, &creds, "us-east-1", "bedrock", now);
    assert_eq!(one, two);
});
