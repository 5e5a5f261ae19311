//! The one check every request body passes in the route role, before the client API's parse and before
//! any path decision (pass-through, translated in the route role, translated per attempt): so a body a
//! provider could not take as JSON gets the same 400 whichever provider the model goes to.
//!
//! The typed parses read only the fields the gateway needs and skip the rest without looking inside it
//! (serde's `IgnoredAny` checks syntax only), and the translators that parse the whole body reject less
//! or more depending on where a value stands. This pass rejects, anywhere in the body:
//! - bytes that are not UTF-8;
//! - `\u` escapes that are lone surrogates (a high one not followed by a low one, or a low one alone);
//! - numbers out of the range of a 64-bit float (they would read as infinity);
//! - arrays and objects nested deeper than [`MAX_DEPTH`].
//!
//! Syntax errors are left to the parse that follows (which names the field when it can). One pass over
//! the bytes with no allocation: string contents are skipped eight bytes at a time.

use super::error::ApiError;

/// The deepest nesting of arrays and objects a request body may have (the body itself counts as one
/// level). Below serde_json's own limit (128), so every path parses what passes here.
pub const MAX_DEPTH: usize = 64;

/// Checks `body` as described in the module comment; the error is a 400 `invalid_json`.
pub fn check(body: &[u8]) -> Result<(), ApiError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(refuse("it holds bytes that are not UTF-8", e.valid_up_to()));
    }
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => {
                i = string_end(body, i + 1)?;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(refuse(&format!("arrays and objects nest deeper than {MAX_DEPTH} levels"), i));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                while body.get(i).is_some_and(|c| matches!(c, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')) {
                    i += 1;
                }
                check_number(body.get(start..i).unwrap_or_default(), start)?;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn refuse(what: &str, at: usize) -> ApiError {
    ApiError::invalid_json(&format!("{what} (at byte {at})"))
}

/// The index after the closing quote of the string whose content starts at `i` (or the end of the
/// body when it is unterminated: the parse reports that).
fn string_end(body: &[u8], mut i: usize) -> Result<usize, ApiError> {
    loop {
        let Some(at) = quote_or_backslash(body, i) else { return Ok(body.len()) };
        i = at;
        if body.get(i) == Some(&b'"') {
            return Ok(i + 1);
        }
        // A backslash: the escape it starts.
        match body.get(i + 1) {
            Some(b'u') => i = unicode_escape(body, i)?,
            Some(_) => i += 2,
            None => return Ok(body.len()),
        }
    }
}

/// The position of the first `"` or `\\` at or after `from`. Eight bytes at a time (a `u64`, native in
/// wasm too, where `usize` has four): a byte equal to the one looked for turns to zero after the xor,
/// and the lowest zero byte of a word is found exactly by the borrow trick below.
fn quote_or_backslash(body: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let rest = body.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut at = from;
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([b'"'; 8]));
        let hits = zero_bytes(w ^ (ONES * b'"' as u64)) | zero_bytes(w ^ (ONES * b'\\' as u64));
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&c| c == b'"' || c == b'\\').map(|i| at + i)
}

/// The four hex digits after `\u` at `at`, when they are hex.
fn hex4(body: &[u8], at: usize) -> Option<u16> {
    let digits = body.get(at + 2..at + 6)?;
    let text = std::str::from_utf8(digits).ok()?;
    u16::from_str_radix(text, 16).ok().filter(|_| digits.iter().all(u8::is_ascii_hexdigit))
}

/// Checks the `\u` escape at `at` (and the low surrogate a high one needs); returns the index after it.
fn unicode_escape(body: &[u8], at: usize) -> Result<usize, ApiError> {
    let Some(unit) = hex4(body, at) else { return Ok(at + 2) };
    match unit {
        0xD800..=0xDBFF => {
            let next_is_low = body.get(at + 6..at + 8) == Some(b"\\u".as_slice())
                && hex4(body, at + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low));
            if next_is_low {
                Ok(at + 12)
            } else {
                Err(refuse(&format!("a string holds a lone surrogate escape \\u{unit:04x}"), at))
            }
        }
        0xDC00..=0xDFFF => Err(refuse(&format!("a string holds a lone surrogate escape \\u{unit:04x}"), at)),
        _ => Ok(at + 6),
    }
}

/// A number token is refused when it reads as infinity. Only one with an exponent or more than 308
/// characters can (309 digits are needed to pass f64's largest value); the rest are not parsed.
fn check_number(token: &[u8], at: usize) -> Result<(), ApiError> {
    if token.len() <= 308 && !token.iter().any(|c| matches!(c, b'e' | b'E')) {
        return Ok(());
    }
    let Ok(text) = std::str::from_utf8(token) else { return Ok(()) };
    match text.parse::<f64>() {
        Ok(v) if !v.is_finite() => Err(refuse("a number is out of the range of a 64-bit float", at)),
        // Malformed numbers are the parse's to report.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &[u8]) -> String {
        let e = check(body).expect_err(&String::from_utf8_lossy(body));
        assert_eq!((e.status, e.code, e.param.as_deref()), (400, Some("invalid_json"), None));
        e.message
    }

    #[test]
    fn accepts_what_every_path_parses() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        for ok in [
            &br#"{"model":"m","messages":[{"role":"user","content":"h\u00e9llo \ud83d\ude00 \\ud800 \"q\""}]}"#[..],
            br#"{"a":[1,-2.5,3e10,1E-400,1.7976931348623157e308,-0,12345678901234567890123]}"#,
            "{\"text\":\"caf\u{e9} \u{1F600}\"}".as_bytes(),
            deep.as_bytes(),
            br#"{"k":"[[[[{{{{ not nesting inside a string"}"#,
            b"",
            // Syntax errors are the parse's to report, not this check's.
            b"{nope",
            br#"{"a":"unterminated"#,
            br#"{"a":"\u12"}"#,
            br#"{"a":1e}"#,
        ] {
            assert!(check(ok).is_ok(), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn refuses_what_a_provider_cannot_take() {
        assert!(refused(b"{\"a\":\"\xff\"}").contains("not UTF-8 (at byte 6)"));
        assert!(refused(b"{\"a\":\"\xc3\"}").contains("not UTF-8"));
        assert!(refused(br#"{"a":"x\ud800"}"#).contains("lone surrogate escape \\ud800 (at byte 7)"));
        assert!(refused(br#"{"a":"\ud800x"}"#).contains("\\ud800"));
        assert!(refused(br#"{"a":"\ud800\u0041"}"#).contains("\\ud800"));
        assert!(refused(br#"{"a":"\udc00"}"#).contains("\\udc00"));
        assert!(refused(br#"{"a":"\uDFFF"}"#).contains("\\udfff"));
        assert!(refused(br#"{"\ud800":1}"#).contains("lone surrogate"));
        assert!(refused(br#"{"a":1e400}"#).contains("out of the range of a 64-bit float (at byte 5)"));
        assert!(refused(br#"{"a":[-1.5E+309]}"#).contains("64-bit float"));
        let digits = format!("{{\"a\":{}}}", "9".repeat(400));
        assert!(refused(digits.as_bytes()).contains("64-bit float"));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(refused(deep.as_bytes()).contains("deeper than 64 levels (at byte 64)"));
        let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        assert!(refused(deep_obj.as_bytes()).contains("deeper than 64"));
    }

    #[test]
    fn escapes_and_quotes_at_every_alignment() {
        for pad in 0..20 {
            let text = "a".repeat(pad);
            // An escaped quote, an escaped backslash and a surrogate pair.
            let ok = format!("{{\"k\":\"{text}\\\"\\\\\\ud83d\\ude00\",\"n\":[1e3]}}");
            assert!(ok.contains(r#"\"\\\ud83d\ude00""#), "{ok}");
            assert!(check(ok.as_bytes()).is_ok(), "{ok}");
            let lone = format!("{{\"k\":\"{text}\\\"\\ud800\",\"n\":1}}");
            assert!(refused(lone.as_bytes()).contains("\\ud800"), "{lone}");
            // An escaped quote does not end the string: the brackets after it are string content.
            let quoted = format!("{{\"k\":\"{text}\\\"{}\",\"n\":1e999}}", "[".repeat(70));
            assert!(refused(quoted.as_bytes()).contains("64-bit float"), "{quoted}");
        }
    }

    #[test]
    fn the_limit_stays_below_serde_json() {
        // Every body that passes is one serde_json can parse whole (its recursion limit is 128).
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_ok());
    }
}
