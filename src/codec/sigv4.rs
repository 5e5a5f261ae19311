//! AWS Signature Version 4 for request headers (the `Authorization` form), as a pure function of the
//! request, the credentials and the time.
//!
//! The canonical URI follows the rule for every service but S3: each path segment of the request path,
//! which is already percent-encoded as sent, is URI-encoded once more (`%3A` becomes `%253A`). The payload
//! is always hashed into the canonical request; no `x-amz-content-sha256` header is added.

use crate::codec::{percent, sha256};

/// Long-term or temporary AWS credentials. Never logged.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

/// The parts of a request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (already percent-encoded), without the query.
    pub path: &'a str,
    /// The query string without `?`, as sent (may be empty).
    pub query: &'a str,
    /// Headers to sign besides `x-amz-date` and `x-amz-security-token`, which the signer adds. Must
    /// include `host`.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Signs a request; returns the headers to set on it: `authorization`, `x-amz-date` and, for temporary
/// credentials, `x-amz-security-token`.
pub fn sign(
    req: &Request,
    creds: &Credentials,
    region: &str,
    service: &str,
    now_unix: u64,
) -> Vec<(&'static str, String)> {
    let amz_date = amz_date(now_unix);
    let day = amz_date.get(..8).unwrap_or("");
    let (signed_headers, canonical) = canonical_request(req, &amz_date, creds.session_token);
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign =
        format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256::to_hex(&sha256::digest(canonical.as_bytes())));
    let key = signing_key(creds.secret_access_key, day, region, service);
    let signature = sha256::to_hex(&hmac(&key, to_sign.as_bytes()));
    let mut out = vec![
        (
            "authorization",
            format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                creds.access_key_id
            ),
        ),
        ("x-amz-date", amz_date),
    ];
    if let Some(t) = creds.session_token {
        out.push(("x-amz-security-token", t.to_string()));
    }
    out
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
pub fn amz_date(now_unix: u64) -> String {
    let days = now_unix / 86_400;
    let secs = now_unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm, unsigned form).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Returns the signed-headers list and the canonical request.
fn canonical_request(req: &Request, amz_date: &str, token: Option<&str>) -> (String, String) {
    let mut headers: Vec<(String, String)> =
        req.headers.iter().map(|(k, v)| (k.trim().to_ascii_lowercase(), normalize_value(v))).collect();
    headers.push(("x-amz-date".to_string(), amz_date.to_string()));
    if let Some(t) = token {
        headers.push(("x-amz-security-token".to_string(), normalize_value(t)));
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    // Repeated names become one line, values joined by commas in their original order.
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (k, v) in headers {
        match merged.last_mut() {
            Some((lk, lv)) if *lk == k => {
                lv.push(',');
                lv.push_str(&v);
            }
            _ => merged.push((k, v)),
        }
    }
    let signed = merged.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let mut canonical = String::new();
    canonical.push_str(req.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(req.path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(req.query));
    canonical.push('\n');
    for (k, v) in &merged {
        canonical.push_str(k);
        canonical.push(':');
        canonical.push_str(v);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(&sha256::to_hex(&sha256::digest(req.payload)));
    (signed, canonical)
}

/// Trims and collapses runs of spaces, as the canonical header form requires.
fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    path.split('/').map(|seg| percent::encode(seg.as_bytes())).collect::<Vec<_>>().join("/")
}

/// Each name and value decoded, then encoded exactly once; pairs sorted by name, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent::encode(&percent::decode(k)), percent::encode(&percent::decode(v)))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    let hashed;
    let key = if key.len() > 64 {
        hashed = sha256::digest(key);
        &hashed[..]
    } else {
        key
    };
    for (b, k) in block.iter_mut().zip(key) {
        *b = *k;
    }
    let mut inner = Vec::with_capacity(64 + msg.len());
    inner.extend(block.iter().map(|b| b ^ 0x36));
    inner.extend_from_slice(msg);
    let inner_hash = sha256::digest(&inner);
    let mut outer = Vec::with_capacity(96);
    outer.extend(block.iter().map(|b| b ^ 0x5c));
    outer.extend_from_slice(&inner_hash);
    sha256::digest(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE_AKID: &str = "AKIDEXAMPLE";
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 2015-08-30T12:36:00Z, the test suite's time.
    const SUITE_TIME: u64 = 1_440_938_160;

    fn suite_creds(token: Option<&'static str>) -> Credentials<'static> {
        Credentials { access_key_id: SUITE_AKID, secret_access_key: SUITE_SECRET, session_token: token }
    }

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn hmac_rfc4231() {
        // Test cases 1, 2 and 6 (key longer than a block).
        assert_eq!(
            sha256::to_hex(&hmac(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            sha256::to_hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sha256::to_hex(&hmac(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(SUITE_TIME), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
        assert_eq!(amz_date(4_102_444_800), "21000101T000000Z");
    }

    const SUITE_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    struct SuiteCase {
        name: &'static str,
        method: &'static str,
        query: &'static str,
        headers: &'static [(&'static str, &'static str)],
        token: Option<&'static str>,
        payload: &'static [u8],
        signed: &'static str,
        signature: &'static str,
    }

    /// Vectors of the AWS SigV4 test suite (aws-sig-v4-test-suite): region us-east-1, service `service`.
    #[test]
    fn aws_test_suite() {
        let plain = SuiteCase {
            name: "get-vanilla",
            method: "GET",
            query: "",
            headers: &[],
            token: None,
            payload: b"",
            signed: "host;x-amz-date",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        };
        let table = [
            SuiteCase {
                name: "get-vanilla-query-order-key-case",
                query: "Param2=value2&Param1=value1",
                signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
                ..plain
            },
            SuiteCase {
                name: "post-vanilla",
                method: "POST",
                signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
                ..plain
            },
            SuiteCase {
                name: "post-vanilla-query",
                method: "POST",
                query: "Param1=value1",
                signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
                ..plain
            },
            SuiteCase {
                name: "post-header-value-case",
                method: "POST",
                headers: &[("My-Header1", "VALUE1")],
                signed: "host;my-header1;x-amz-date",
                signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
                ..plain
            },
            SuiteCase {
                name: "get-header-value-trim",
                headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
                signed: "host;my-header1;my-header2;x-amz-date",
                signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
                ..plain
            },
            SuiteCase {
                name: "post-sts-header-before",
                method: "POST",
                token: Some(SUITE_TOKEN),
                signed: "host;x-amz-date;x-amz-security-token",
                signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
                ..plain
            },
            SuiteCase {
                name: "post-x-www-form-urlencoded",
                method: "POST",
                headers: &[("Content-Type", "application/x-www-form-urlencoded")],
                payload: b"Param1=value1",
                signed: "content-type;host;x-amz-date",
                signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
                ..plain
            },
            plain,
        ];
        for c in &table {
            let mut headers = vec![("Host", "example.amazonaws.com")];
            headers.extend_from_slice(c.headers);
            let req = Request { method: c.method, path: "/", query: c.query, headers: &headers, payload: c.payload };
            let out = sign(&req, &suite_creds(c.token), "us-east-1", "service", SUITE_TIME);
            let want = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={}, Signature={}",
                c.signed, c.signature
            );
            assert_eq!(header(&out, "authorization"), Some(want.as_str()), "{}", c.name);
            assert_eq!(header(&out, "x-amz-date"), Some("20150830T123600Z"));
            assert_eq!(header(&out, "x-amz-security-token"), c.token);
        }
    }

    #[test]
    fn suite_canonical_request() {
        let headers = [("host", "example.amazonaws.com")];
        let req =
            Request { method: "GET", path: "/", query: "Param2=value2&Param1=value1", headers: &headers, payload: b"" };
        let (_, c) = canonical_request(&req, "20150830T123600Z", None);
        assert_eq!(
            c,
            "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn path_segments_are_encoded_again() {
        assert_eq!(canonical_uri("/model/a.b-v1%3A0/converse"), "/model/a.b-v1%253A0/converse");
        assert_eq!(canonical_uri("/model/arn%3Aaws%2Fx/converse-stream"), "/model/arn%253Aaws%252Fx/converse-stream");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_query("b=2&a=%7e&a=1&c"), "a=1&a=~&b=2&c=");
    }

    // Expected values computed with botocore 1.44 (`botocore.auth.SigV4Auth`, service `bedrock`) for
    // POST requests to bedrock-runtime with the same credentials, body and a frozen clock.
    const BOTO_AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const BOTO_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const BOTO_TOKEN: &str = "FQoGZXIvYXdzEXAMPLE//token+with/odd=chars";
    /// 2024-06-20T15:30:45Z.
    const BOTO_TIME: u64 = 1_718_897_445;
    const BOTO_BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}"#;

    fn bedrock_sign(path: &str, token: Option<&str>) -> Vec<(&'static str, String)> {
        let headers = [("content-type", "application/json"), ("host", "bedrock-runtime.us-east-1.amazonaws.com")];
        let req = Request { method: "POST", path, query: "", headers: &headers, payload: BOTO_BODY };
        let creds = Credentials { access_key_id: BOTO_AKID, secret_access_key: BOTO_SECRET, session_token: token };
        sign(&req, &creds, "us-east-1", "bedrock", BOTO_TIME)
    }

    #[test]
    fn matches_botocore_for_bedrock() {
        let table: &[(&str, Option<&str>, &str, &str)] = &[
            (
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
                None,
                "content-type;host;x-amz-date",
                "4475dded0b40c3382624cbf1a6c892b49ae539203e69a3e543b81990b6f58ec1",
            ),
            (
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
                Some(BOTO_TOKEN),
                "content-type;host;x-amz-date;x-amz-security-token",
                "31bca2d5d05b08b1a4bcb53b06c0069bb873f403d64342d6e606859e3887774e",
            ),
            (
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123/converse",
                None,
                "content-type;host;x-amz-date",
                "2cad15cee4bdc9cff9c6dd5f3479b070498d06b1bf4c65f32916037f2a99cf30",
            ),
        ];
        for (path, token, signed, sig) in table {
            let out = bedrock_sign(path, *token);
            let want = format!(
                "AWS4-HMAC-SHA256 Credential={BOTO_AKID}/20240620/us-east-1/bedrock/aws4_request, \
                 SignedHeaders={signed}, Signature={sig}"
            );
            assert_eq!(header(&out, "authorization"), Some(want.as_str()), "{path}");
            assert_eq!(header(&out, "x-amz-date"), Some("20240620T153045Z"));
            assert_eq!(header(&out, "x-amz-security-token"), *token);
        }
    }
}
