use super::*;
use serde_json::value::RawValue;
use std::borrow::Cow;

#[test]
fn parses_chat() {
    let body = br#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stream":true,"stream_options":{"include_usage":true},"temperature":0.2}"#;
    let r = parse_chat(body).unwrap();
    assert_eq!(r.model, "m");
    assert!(r.is_stream() && r.include_usage());
    assert_eq!(content_text(r.messages[1].content), "a\nb");
    assert_eq!(content_text(r.messages[0].content), "s");
    assert_eq!(r.temperature.map(RawValue::get), Some("0.2"));
}

/// `plain` says whether the fields read are all there is; keys with escapes are still known;
/// duplicates are refused as serde's derived parsers refuse them.
#[test]
fn chat_plainness_and_keys() {
    let table: &[(&str, Option<bool>)] = &[
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, Some(true)),
        (
            r#"{"model":"m","messages":[{"role":"user","content":null}],"max_tokens":null,"temperature":1,"top_p":null,"stream":null,"stream_options":null,"max_completion_tokens":3}"#,
            Some(true),
        ),
        (r#"{"mod\u0065l":"m","messages":[{"r\u006fle":"user","content":"x"}]}"#, Some(true)),
        (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":"y"}"#, Some(false)),
        (r#"{"model":"m","messages":[{"role":"user","content":"x","name":"bob"}]}"#, Some(false)),
        (r#"{"model":"m","model":"n","messages":[{"role":"user"}]}"#, None),
        (r#"{"model":"m","messages":[{"role":"user","role":"user"}]}"#, None),
        (r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}"#, None),
    ];
    for (body, plain) in table {
        assert_eq!(parse_chat(body.as_bytes()).ok().map(|r| r.plain), *plain, "{body}");
    }
    let r = parse_chat(table[1].0.as_bytes()).unwrap();
    assert!(r.messages[0].content.is_none() && r.stream_options_raw.is_some() && r.top_p.is_none());
    assert_eq!(r.max_completion_tokens, Some(3));
}

#[test]
fn chat_errors_name_the_param() {
    let table: &[(&str, u16, Option<&str>, &str)] = &[
        ("{", 400, None, "not valid JSON"),
        ("[1]", 400, None, "must be a JSON object"),
        // Serde's derived parsers took a struct as a sequence; a chat request is an object only.
        (r#"["m",[{"role":"user","content":"x"}]]"#, 400, None, "must be a JSON object"),
        (r#"{"messages":[]}"#, 400, Some("model"), "provide a 'model'"),
        (r#"{"model":7,"messages":[]}"#, 400, Some("model"), "must be a string"),
        (r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#, 400, Some("model"), "must not be empty"),
        (r#"{"model":"m"}"#, 400, Some("messages"), "required"),
        (r#"{"model":"m","messages":"hi"}"#, 400, Some("messages"), "must be an array"),
        (r#"{"model":"m","messages":[]}"#, 400, Some("messages"), "at least one"),
        (r#"{"model":"m","messages":[3]}"#, 400, Some("messages[0]"), "must be an object"),
        (r#"{"model":"m","messages":[{"content":"x"}]}"#, 400, Some("messages[0].role"), "required"),
        (
            r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
            400,
            Some("messages[0].role"),
            "Invalid role",
        ),
        (r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#, 400, Some("stream"), "boolean"),
        (
            r#"{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":1}}"#,
            400,
            Some("stream_options.include_usage"),
            "boolean",
        ),
    ];
    for (body, status, param, msg) in table {
        let e = parse_chat(body.as_bytes()).unwrap_err();
        assert_eq!(e.status, *status, "{body}");
        assert_eq!(e.param.as_deref(), *param, "{body}: {}", e.message);
        assert!(e.message.contains(msg), "{body}: {}", e.message);
    }
}

#[test]
fn model_names_are_decoded_and_their_position_kept() {
    let body = br#"{"messages":[{"role":"user"}], "model" : "gpt\u002d4o"}"#;
    let r = parse_chat(body).unwrap();
    assert_eq!(r.model, "gpt-4o");
    assert_eq!(r.model_raw.get(), r#""gpt\u002d4o""#);
    let r = parse_chat(br#"{"model":"plain","messages":[{"role":"user"}],"stream_options":null}"#).unwrap();
    assert_eq!(r.model, "plain");
    assert!(matches!(r.model, Cow::Borrowed(_)));
    assert_eq!(r.stream_options_raw.map(|v| v.get()), Some("null"));
    assert!(!r.include_usage());
}

#[test]
fn duplicate_model_key_is_rejected() {
    assert_eq!(parse_chat(br#"{"model":"a","model":"b","messages":[{"role":"user"}]}"#).unwrap_err().status, 400);
}

/// Found by fuzzing: invalid UTF-8 in a field the parse skips was accepted and sent on to the provider.
#[test]
fn invalid_utf8_is_invalid_json() {
    let chat = b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"x\":\"\x9e\"}";
    let embeddings = b"{\"model\":\"d\",\"input\":\"\",\"\":\"\x9e\"}";
    for e in [parse_chat(chat).unwrap_err(), parse_embeddings(embeddings).unwrap_err()] {
        assert_eq!((e.status, e.code), (400, Some("invalid_json")));
        assert!(e.message.contains("invalid UTF-8 at byte"), "{}", e.message);
    }
}

#[test]
fn embeddings() {
    let r = parse_embeddings(br#"{"model":"e","input":["a","b"],"dimensions":4}"#).unwrap();
    assert_eq!(r.dimensions, Some(4));
    for (body, param) in [
        (r#"{"model":"e"}"#, "input"),
        (r#"{"model":"e","input":5}"#, "input"),
        (r#"{"model":"e","input":"x","dimensions":-2}"#, "dimensions"),
    ] {
        assert_eq!(parse_embeddings(body.as_bytes()).unwrap_err().param.as_deref(), Some(param), "{body}");
    }
}

#[test]
fn token_estimate() {
    assert_eq!(estimate_tokens(0), 0);
    assert_eq!(estimate_tokens(1), 1);
    assert_eq!(estimate_tokens(8), 2);
    assert_eq!(estimate_tokens(9), 3);
}
