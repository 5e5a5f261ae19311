//! The metadata decoder on bytes captured from Envoy 1.40's `jwt_authn` (tests/fixtures/jwt_metadata/:
//! `get_property(["metadata"])` in a Wasm filter behind `jwt_authn`, tokens minted with PyJWT), on
//! corrupt and oversized input, and users made from claims.

use super::metadata::{read, Claim, Claims, Corrupt, Failure, Jwt, MAX_LIST_ITEMS, MAX_METADATA_BYTES, NAMESPACE};
use super::*;
use crate::codec::protobuf::Writer;
use crate::config::identity_tests::with_identity;
use crate::config::tests::MapEnv;

pub(crate) fn golden(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/jwt_metadata/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let hex = text.trim();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn claims(bytes: &[u8]) -> Claims<'_> {
    match read(bytes).unwrap() {
        Jwt::Verified(c) => c,
        other => panic!("not verified: {other:?}"),
    }
}

fn strings<'a>(c: &Claims<'a>, path: &str) -> Vec<&'a str> {
    c.get(path).unwrap().unwrap().strings().unwrap()
}

#[test]
fn a_verified_rs256_token_with_groups_and_nested_claims() {
    // {"iss":"https://idp.test","aud":"switchyard","sub":"alice@example.com","groups":["ds","eng"],
    //  "exp":...,"iat":...,"n":1.5,"nested":{"a":[1,"x"]}}
    for name in ["good", "good_es"] {
        let bytes = golden(name);
        let c = claims(&bytes);
        assert_eq!(c.get("sub").unwrap(), Some(Claim::Str("alice@example.com")), "{name}");
        assert_eq!(c.get("iss").unwrap(), Some(Claim::Str("https://idp.test")));
        assert_eq!(c.get("aud").unwrap(), Some(Claim::Str("switchyard")));
        assert_eq!(c.get("n").unwrap(), Some(Claim::Number(1.5)));
        assert!(matches!(c.get("exp").unwrap(), Some(Claim::Number(n)) if n > 1.7e9));
        assert_eq!(strings(&c, "groups"), vec!["ds", "eng"]);
        let Some(Claim::List(a)) = c.get("nested.a").unwrap() else { panic!("nested.a") };
        assert_eq!(a.items().unwrap(), vec![Claim::Number(1.0), Claim::Str("x")]);
        assert_eq!(strings(&c, "nested.a"), vec!["x"], "only the strings of a list");
        assert!(matches!(c.get("nested").unwrap(), Some(Claim::Struct(_))));
        assert_eq!(c.get("nested.b").unwrap(), None);
        assert_eq!(c.get("sub.x").unwrap(), None, "a path through a string");
        assert_eq!(c.get("email").unwrap(), None);
    }
}

#[test]
fn keycloak_roles_booleans_nulls_and_a_string_of_groups() {
    let bytes = golden("rich");
    let c = claims(&bytes);
    assert_eq!(strings(&c, "realm_access.roles"), vec!["ds", "grp-8a7d"]);
    assert_eq!(c.get("email_verified").unwrap(), Some(Claim::Bool(true)));
    assert_eq!(c.get("nothing").unwrap(), Some(Claim::Null));
    assert_eq!(strings(&c, "sub"), vec!["alice@example.com"]);
    let bytes = golden("strgroups");
    let c = claims(&bytes);
    assert_eq!(c.get("groups").unwrap(), Some(Claim::Str("ds")));
    assert_eq!(strings(&c, "groups"), vec!["ds"]);
    assert_eq!(Claim::Str(" ds, eng\tops,,").strings().unwrap(), vec!["ds", "eng", "ops"]);
    assert!(Claim::Number(3.0).strings().unwrap().is_empty());
}

#[test]
fn failures_carry_envoys_code_and_message() {
    for (name, code, message) in [
        ("missing", 1, "Jwt is missing"),
        ("expired", 3, "Jwt is expired"),
        ("skkey", 4, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
        ("badsig", 26, "Jwt verification fails"),
    ] {
        let bytes = golden(name);
        assert_eq!(read(&bytes).unwrap(), Jwt::Failed(Failure { code, message: message.into() }), "{name}");
    }
}

/// Metadata with one namespace holding `fields` (already-encoded Struct entries).
fn metadata(namespace: &str, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.message(1, |e| {
        e.bytes(1, namespace.as_bytes()).bytes(2, body);
    });
    w.buf
}

/// A Struct field `name` whose Value is `value` (an encoded Value).
fn field(name: &str, value: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.message(1, |e| {
        e.bytes(1, name.as_bytes()).bytes(2, value);
    });
    w.buf
}

fn string_value(s: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(3, s.as_bytes());
    w.buf
}

fn struct_value(fields: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(5, fields);
    w.buf
}

#[test]
fn absent_unless_jwt_authn_wrote() {
    assert_eq!(read(b"").unwrap(), Jwt::Absent);
    let other = metadata("envoy.lb", &field("x", &string_value("y")));
    assert_eq!(read(&other).unwrap(), Jwt::Absent);
    assert_eq!(read(&metadata(NAMESPACE, b"")).unwrap(), Jwt::Absent);
    // typed_filter_metadata (field 2) is skipped.
    let mut w = Writer::new();
    w.bytes(2, b"\x0a\x01a");
    assert_eq!(read(&w.buf).unwrap(), Jwt::Absent);
    // A payload wins over a failure; the last of a repeated key wins.
    let payload = field("payload", &struct_value(&field("sub", &string_value("bob"))));
    let failure = field("failure", &struct_value(&field("message", &string_value("no"))));
    let mut both = failure.clone();
    both.extend_from_slice(&payload);
    let md = metadata(NAMESPACE, &both);
    assert_eq!(claims(&md).get("sub").unwrap(), Some(Claim::Str("bob")));
    let mut twice = field("sub", &string_value("first"));
    twice.extend(field("sub", &string_value("second")));
    let md = metadata(NAMESPACE, &field("payload", &struct_value(&twice)));
    assert_eq!(claims(&md).get("sub").unwrap(), Some(Claim::Str("second")));
    // A failure without code or message.
    let md = metadata(NAMESPACE, &field("failure", &struct_value(b"")));
    assert_eq!(read(&md).unwrap(), Jwt::Failed(Failure { code: 0, message: String::new() }));
}

#[test]
fn dotted_claim_names_win_over_nesting() {
    let roles = field("https://example.com/roles", &string_value("admin"));
    let mut top = roles.clone();
    top.extend(field("https://example", &struct_value(&field("com/roles", &string_value("nested")))));
    let md = metadata(NAMESPACE, &field("payload", &struct_value(&top)));
    let c = claims(&md);
    assert_eq!(c.get("https://example.com/roles").unwrap(), Some(Claim::Str("admin")));
    // Deep nesting is walked one level per path segment, without recursion.
    let mut inner = field("leaf", &string_value("deep"));
    for _ in 0..500 {
        inner = field("x", &struct_value(&inner));
    }
    let md = metadata(NAMESPACE, &field("payload", &struct_value(&inner)));
    let path = format!("{}leaf", "x.".repeat(500));
    assert_eq!(claims(&md).get(&path).unwrap(), Some(Claim::Str("deep")));
}

#[test]
fn bounds_and_corrupt_input_never_panic() {
    let good = golden("rich");
    // Every truncation and every single-byte change either reads or fails; never a panic.
    for n in 0..good.len() {
        if let Ok(Jwt::Verified(c)) = read(&good[..n]) {
            let _ = c.get("realm_access.roles").map(|r| r.map(|r| r.strings()));
        }
    }
    for i in 0..good.len() {
        for b in [0x00, 0x7f, 0x80, 0xff, good[i] ^ 0x01] {
            let mut bad = good.clone();
            bad[i] = b;
            if let Ok(Jwt::Verified(c)) = read(&bad) {
                for path in ["sub", "realm_access.roles", "nested.a", "groups"] {
                    let _ = c.get(path).map(|r| r.map(|r| r.strings()));
                }
            }
        }
    }
    assert!(read(&vec![0u8; MAX_METADATA_BYTES + 1]).is_err(), "oversized");
    assert!(read(b"\x0a\x05abc").is_err(), "a length past the end");
    assert_eq!(
        read(&metadata(NAMESPACE, &field("payload", &string_value("x")))),
        Err(Corrupt("the jwt_authn payload is not a Struct"))
    );
    // A key that is not UTF-8, a string that is not UTF-8.
    assert!(read(&metadata(NAMESPACE, &field("\u{0}", b""))).is_ok());
    let mut w = Writer::new();
    w.message(1, |e| {
        e.bytes(1, b"\xff\xfe").bytes(2, b"");
    });
    assert!(read(&w.buf).is_err());
    let md = metadata(
        NAMESPACE,
        &field(
            "payload",
            &struct_value(&field("sub", &{
                let mut w = Writer::new();
                w.bytes(3, b"\xc3\x28");
                w.buf
            })),
        ),
    );
    assert!(claims(&md).get("sub").is_err());
    // A wrong wire type where a Value's field is expected.
    let md = metadata(NAMESPACE, &field("payload", &struct_value(&field("n", b"\x10\x01"))));
    assert!(claims(&md).get("n").is_err());
    // A list of 10,000 groups: the first MAX_LIST_ITEMS are read.
    let mut list = Writer::new();
    for i in 0..10_000 {
        list.bytes(1, &string_value(&format!("g{i}")));
    }
    let mut lv = Writer::new();
    lv.bytes(6, &list.buf);
    let md = metadata(NAMESPACE, &field("payload", &struct_value(&field("groups", &lv.buf))));
    let got = strings(&claims(&md), "groups");
    assert_eq!((got.len(), got[0], got[MAX_LIST_ITEMS - 1]), (MAX_LIST_ITEMS, "g0", "g255"));
    let many = "a ".repeat(10_000);
    assert_eq!(Claim::Str(&many).strings().unwrap().len(), MAX_LIST_ITEMS);
}

/// Metadata as `jwt_authn` writes it for a verified token with claims `sub` and `groups`.
pub(crate) fn verified(sub: &str, groups: &[&str]) -> Vec<u8> {
    let mut list = Writer::new();
    for g in groups {
        list.bytes(1, &string_value(g));
    }
    let mut lv = Writer::new();
    lv.bytes(6, &list.buf);
    let mut claims = field("sub", &string_value(sub));
    claims.extend(field("groups", &lv.buf));
    metadata(NAMESPACE, &field("payload", &struct_value(&claims)))
}

fn cfg(mutate: impl Fn(&mut serde_json::Value)) -> Config {
    let mut v = with_identity();
    mutate(&mut v);
    Config::parse(v.to_string().as_bytes(), &MapEnv(vec![("OPENAI_API_KEY", "k")])).unwrap()
}

#[test]
fn users_from_claims() {
    let c = cfg(|_| {});
    let i = c.identity.clone().unwrap();
    let bytes = golden("rich");
    let u = User::from_claims(&c, &i, &claims(&bytes)).unwrap();
    assert_eq!(u.id, "alice@example.com");
    // roles ds, grp-8a7d: data-science (by both) and ops (by ds), each once, by name.
    let ids: Vec<&str> = u.teams.iter().map(|t| c.team(*t).unwrap().name.as_str()).collect();
    assert_eq!(ids, vec!["data-science", "ops"]);
    assert!(u.may_use(&c, "llama") && u.may_use(&c, "qwen"), "the union of both teams' grants");
    assert_eq!(u.for_log(LogUser::Plain).as_deref(), Some("alice@example.com"));
    let hashed = u.for_log(LogUser::Hashed).unwrap();
    assert_eq!(hashed, sha256::to_hex(&sha256::digest(b"alice@example.com"))[..16]);
    assert_eq!(u.for_log(LogUser::Off), None);
    // groups (ds, eng) under another claim; a nested user claim; no teams claim.
    let c = cfg(|v| {
        v["identity"]["teams_claim"] = "groups".into();
        v["identity"]["user_claim"] = "nested.a".into();
    });
    let e = User::from_claims(&c, c.identity.as_ref().unwrap(), &claims(&bytes)).unwrap_err();
    assert_eq!((e.status, e.code), (401, Some("invalid_token")));
    assert!(e.message.contains("no claim 'nested.a'"), "{}", e.message);
    assert!(e.headers.contains(&("www-authenticate", "Bearer error=\"invalid_token\"".into())));
    let c = cfg(|v| v["identity"]["teams_claim"] = "groups".into());
    let u = User::from_claims(&c, c.identity.as_ref().unwrap(), &claims(&bytes)).unwrap();
    assert_eq!(u.teams, vec![c.team_id("data-science").unwrap(), c.team_id("ops").unwrap()]);
    let c = cfg(|v| v["identity"]["teams_claim"] = "email_verified".into());
    assert!(User::from_claims(&c, c.identity.as_ref().unwrap(), &claims(&bytes)).unwrap().teams.is_empty());
    // Not a string, empty, too long.
    for value in [struct_value(b""), string_value(""), string_value(&"u".repeat(MAX_USER_ID + 1))] {
        let md = metadata(NAMESPACE, &field("payload", &struct_value(&field("sub", &value))));
        let c = cfg(|_| {});
        let e = User::from_claims(&c, c.identity.as_ref().unwrap(), &claims(&md)).unwrap_err();
        assert_eq!(e.code, Some("invalid_token"), "{}", e.message);
    }
}

#[test]
fn attribution_and_model_lists() {
    let c = cfg(|_| {});
    let (ds, ops, research) =
        (c.team_id("data-science").unwrap(), c.team_id("ops").unwrap(), c.team_id("research").unwrap());
    let u = User { id: "u".into(), teams: vec![ds, ops] };
    assert_eq!(u.attribute(&c, "gpt-4o-mini", None), Ok(ds), "the first team by name that grants it");
    assert_eq!(u.attribute(&c, "demo", None), Ok(ops));
    assert_eq!(u.attribute(&c, "gpt-4o-mini", Some("ops")), Ok(ops));
    let e = u.attribute(&c, "demo", Some("data-science")).unwrap_err();
    assert_eq!((e.status, e.code), (403, Some("model_not_allowed")));
    assert!(e.message.contains("'demo'") && e.message.contains("'data-science'"), "{}", e.message);
    let e = u.attribute(&c, "demo", Some("research")).unwrap_err();
    assert_eq!((e.status, e.code), (403, Some("team_not_allowed")));
    assert_eq!(u.attribute(&c, "demo", Some("nope")).unwrap_err().code, Some("team_not_allowed"));
    let lonely = User { id: "v".into(), teams: vec![] };
    let e = lonely.attribute(&c, "demo", None).unwrap_err();
    assert_eq!((e.status, e.code, e.param.as_deref()), (403, Some("model_not_allowed"), Some("model")));
    assert!(e.message.contains("'demo'"));
    let v: serde_json::Value =
        serde_json::from_str(&User { id: "w".into(), teams: vec![ds, research] }.models_json(&c)).unwrap();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["demo", "gpt-4o", "gpt-4o-mini", "gpt-prod"], "the union, each once, served only");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&lonely.models_json(&c)).unwrap()["data"],
        serde_json::json!([])
    );
    assert!(looks_like_jwt("a.b.c") && !looks_like_jwt("sk-abc") && !looks_like_jwt("a.b"));
}
