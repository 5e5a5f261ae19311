//! Percent-encoding (RFC 3986) as the gateway writes it into upstream paths, and as SigV4 wants it in
//! canonical requests: every byte but the unreserved set `A-Z a-z 0-9 - . _ ~` becomes `%XX`, hex digits
//! upper-case. One rule serves all callers (Azure deployment and Gemini model path segments, Bedrock model
//! ids, the SigV4 canonical path and query); SigV4's double encoding of the path is the caller's second
//! pass over already-encoded text, not a different set.

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether a byte passes unencoded (RFC 3986 unreserved).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes every byte but the unreserved set `A-Z a-z 0-9 - . _ ~` (`/` included, so the result
/// is one path segment).
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if unreserved(b) {
            s.push(char::from(b));
        } else {
            s.push('%');
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    s
}

/// Decodes `%XX` escapes (either case); a `%` not followed by two hex digits is kept as it is.
pub fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unreserved_and_escapes_the_rest_upper_case() {
        assert_eq!(encode(b"AZaz09-._~"), "AZaz09-._~");
        assert_eq!(encode(b"a b/c:d?e#f%g+h=i&j"), "a%20b%2Fc%3Ad%3Fe%23f%25g%2Bh%3Di%26j");
        assert_eq!(encode("ä".as_bytes()), "%C3%A4");
        assert_eq!(encode(&[0x00, 0x7f, 0xff]), "%00%7F%FF");
        assert_eq!(encode(b""), "");
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let e = encode(&all);
        assert!(e.bytes().all(|b| unreserved(b) || b == b'%'), "{e}");
        assert_eq!(decode(&e), all);
    }

    #[test]
    fn decode_keeps_stray_percents() {
        assert_eq!(decode("%3a%3A"), b"::");
        assert_eq!(decode("100%"), b"100%");
        assert_eq!(decode("%zz%4"), b"%zz%4");
        assert_eq!(decode("%%41"), b"%A");
    }

    #[test]
    fn encoding_twice_escapes_the_escapes() {
        // SigV4's canonical path: the path as sent is encoded once more.
        assert_eq!(encode(encode(b"v1:0").as_bytes()), "v1%253A0");
    }
}
