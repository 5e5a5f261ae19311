use super::stream::MAX_TOOL_CALLS;
use super::*;
use crate::codec::sse;
use crate::providers::fixtures::{self, assert_json, assert_stream};
use crate::providers::mock::Clock;
use serde_json::{json, Value};

pub(crate) mod invariants;

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// Events as (name, parsed data).
fn events(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    sse::decode_all(bytes).into_iter().map(|e| (e.event, json(e.data.as_bytes()))).collect()
}

fn convert_stream(req: &[u8], pieces: &[&[u8]]) -> Vec<u8> {
    let mut s = StreamToResponses::new(Echo::new(req, 1_700_000_000), 7);
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        s.push(p, i + 1 == pieces.len(), &mut out);
    }
    if pieces.is_empty() {
        s.push(&[], true, &mut out);
    }
    out
}

#[test]
fn fixtures() {
    fixtures::run("responses", 12, |case| {
        let name = &case.name;
        let req = case.bytes("client_request.json");
        let parsed = parse(&req).unwrap_or_else(|e| panic!("{name}: {}", e.body()));
        check_pivot(&parsed, "groq").unwrap_or_else(|e| panic!("{name}: {}", e.body()));
        let pivot = to_openai(&req).unwrap_or_else(|e| panic!("{name}: {}", e.body()));
        assert_json(&json(&pivot), &case.json("pivot_request.json"), &format!("{name}: pivot"));
        crate::api::openai::parse_chat(&pivot).unwrap_or_else(|e| panic!("{name}: pivot: {}", e.body()));

        if let Some(stream) = case.read("chat_stream.txt") {
            assert!(parsed.stream, "{name}: stream flag");
            let whole = fixtures::replay(&stream, name, |pieces| convert_stream(&req, pieces));
            invariants::check(&whole, name);
            assert_stream(&whole, &case.bytes("response_stream.txt"), &|v| v, &format!("{name}: stream"));
            return;
        }
        assert!(!parsed.stream, "{name}: stream flag");
        let echo = Echo::new(&req, 1_700_000_000);
        let got = response_from_openai(&case.bytes("chat_response.json"), &echo, 7).unwrap();
        assert_json(&json(&got), &case.json("response.json"), &format!("{name}: response"));
    });
}

/// The non-streamed answer and the final event of the same answer streamed hold the same response.
#[test]
fn stream_and_plain_agree() {
    let req = br#"{"model":"m","input":"x","stream":true,"tools":[{"type":"function","name":"f"}]}"#;
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id":"chatcmpl-1","created":5,"choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
        )
    };
    let usage = json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5});
    for (text, finish) in [("Hi", "stop"), ("Hi", "length"), ("", "stop")] {
        let mut sse = chunk(json!({"role":"assistant","content":text}), Value::Null);
        sse +=
            &chunk(json!({"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{}"}}]}), Value::Null);
        sse += &chunk(json!({}), json!(finish));
        sse += &format!("data: {}\n\ndata: [DONE]\n\n", json!({"id":"chatcmpl-1","choices":[],"usage":usage}));
        let streamed = convert_stream(req, &[sse.as_bytes()]);
        let last = events(&streamed).pop().unwrap().1;
        let mut message = json!({"role":"assistant","content":text,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]});
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        let plain = json!({"id":"chatcmpl-1","created":5,"choices":[{"index":0,"message":message,"finish_reason":finish}],"usage":usage});
        let got = response_from_openai(plain.to_string().as_bytes(), &Echo::new(req, 0), 7).unwrap();
        assert_json(&last["response"], &json(&got), &format!("{text:?} {finish}"));
    }
}

#[test]
fn input_items_convert() {
    let table: &[(Value, Value)] = &[
        (json!("hi"), json!([{"role":"user","content":"hi"}])),
        (json!([{"role":"user","content":"a"}]), json!([{"role":"user","content":"a"}])),
        (json!([{"type":"message","role":"developer","content":"d"}]), json!([{"role":"system","content":"d"}])),
        (
            json!([{"role":"system","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},{"role":"user","content":"u"}]),
            json!([{"role":"system","content":"a\nb"},{"role":"user","content":"u"}]),
        ),
        (
            json!([{"role":"user","content":"u"},{"role":"assistant","content":[{"type":"output_text","text":"a","annotations":[]},{"type":"refusal","refusal":"r"}]}]),
            json!([{"role":"user","content":"u"},{"role":"assistant","content":"ar"}]),
        ),
        (
            json!([{"role":"user","content":"u"},{"role":"assistant","content":""}]),
            json!([{"role":"user","content":"u"}]),
        ),
        (
            json!([{"role":"user","content":[{"type":"input_image","image_url":"https://x/y.png","detail":"original"}]}]),
            json!([{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]),
        ),
        (
            json!([{"role":"user","content":[{"type":"input_file","file_data":"data:application/pdf;base64,AA"}]}]),
            json!([{"role":"user","content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,AA"}}]}]),
        ),
        (
            json!([{"role":"user","content":"u"},{"type":"reasoning","id":"rs","summary":[]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]),
            json!([{"role":"user","content":"u"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]),
        ),
        (
            json!([{"type":"function_call_output","call_id":"c","output":[]}]),
            json!([{"role":"tool","tool_call_id":"c","content":""}]),
        ),
    ];
    for (input, want) in table {
        let body = json!({"model":"m","input":input}).to_string();
        let got = json(&to_openai(body.as_bytes()).unwrap_or_else(|e| panic!("{input}: {}", e.body())));
        assert_eq!(&got["messages"], want, "{input}");
    }
}

#[test]
fn invalid_requests_name_the_param() {
    let table: &[(Value, &str)] = &[
        (json!({"input":"x"}), "model"),
        (json!({"model":"","input":"x"}), "model"),
        (json!({"model":3,"input":"x"}), "model"),
        (json!({"model":"m","input":5}), "input"),
        (json!({"model":"m","input":[5]}), "input[0]"),
        (json!({"model":"m","input":[{"content":"x"}]}), "input[0].role"),
        (json!({"model":"m","input":[{"role":"tool","content":"x"}]}), "input[0].role"),
        (json!({"model":"m","input":[{"role":"user"}]}), "input[0].content"),
        (json!({"model":"m","input":[{"role":"user","content":3}]}), "input[0].content"),
        (json!({"model":"m","input":[{"role":"user","content":[{"text":"a"}]}]}), "input[0].content[0].type"),
        (json!({"model":"m","input":[{"role":"user","content":["a"]}]}), "input[0].content[0]"),
        (json!({"model":"m","input":[{"type":7}]}), "input[0].type"),
        (json!({"model":"m","input":"x","stream":"yes"}), "stream"),
        (json!({"model":"m","input":"x","max_output_tokens":-1}), "max_output_tokens"),
        (json!({"model":"m","input":"x","store":"no"}), "store"),
        (json!({"model":"m","input":"x","background":1}), "background"),
        (json!({"model":"m","input":"x","previous_response_id":1}), "previous_response_id"),
        (json!({"model":"m","input":"x","tools":{}}), "tools"),
        (json!({"model":"m","input":"x","tools":[1]}), "tools[0]"),
        (json!({"model":"m","input":"x","tools":[{"name":"f"}]}), "tools[0].type"),
    ];
    for (body, param) in table {
        let bytes = body.to_string();
        let e = parse(bytes.as_bytes()).unwrap_err();
        assert_eq!(
            (e.status, e.kind, e.param.as_deref()),
            (400, "invalid_request_error", Some(*param)),
            "{body}: {}",
            e.message
        );
        let e2 = to_openai(bytes.as_bytes()).unwrap_err();
        assert_eq!(e2.param, e.param, "{body}");
    }
    assert_eq!(parse(b"{").unwrap_err().code, Some("invalid_json"));
    assert_eq!(parse(b"[]").unwrap_err().status, 400);
    assert!(parse(br#"{"model":"m"}"#).is_ok(), "input is optional for the native API");
}

#[test]
fn unsupported_content_names_the_param() {
    let user = |parts: Value| json!({"model":"m","input":[{"role":"user","content":parts}]});
    let table: &[(Value, &str)] = &[
        (json!({"model":"m"}), "input"),
        (json!({"model":"m","input":[]}), "input"),
        (json!({"model":"m","input":[{"type":"reasoning","summary":[]}]}), "input"),
        (json!({"model":"m","input":"x","instructions":5}), "instructions"),
        (user(json!([])), "input[0].content"),
        (user(json!([{"type":"input_text"}])), "input[0].content[0].text"),
        (user(json!([{"type":"input_image","file_id":"file-1","detail":"auto"}])), "input[0].content[0].file_id"),
        (user(json!([{"type":"input_image","detail":"auto"}])), "input[0].content[0].image_url"),
        (user(json!([{"type":"input_file","file_id":"file-1"}])), "input[0].content[0].file_id"),
        (user(json!([{"type":"input_file","file_url":"https://x/a.pdf"}])), "input[0].content[0].file_url"),
        (user(json!([{"type":"input_file","filename":"a.pdf"}])), "input[0].content[0].file_data"),
        (user(json!([{"type":"input_audio","input_audio":{}}])), "input[0].content[0].type"),
        (user(json!([{"type":"output_text","text":"a"}])), "input[0].content[0].type"),
        (
            json!({"model":"m","input":[{"role":"developer","content":[{"type":"input_image","image_url":"u"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model":"m","input":[{"role":"assistant","content":[{"type":"input_image","image_url":"u"}]}]}),
            "input[0].content[0].type",
        ),
        (json!({"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}), "input[0].type"),
        (json!({"model":"m","input":[{"type":"web_search_call","id":"ws"}]}), "input[0].type"),
        (json!({"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}), "input[0].call_id"),
        (json!({"model":"m","input":[{"type":"function_call","call_id":"c","arguments":"{}"}]}), "input[0].name"),
        (
            json!({"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":{}}]}),
            "input[0].arguments",
        ),
        (json!({"model":"m","input":[{"type":"function_call_output","output":"x"}]}), "input[0].call_id"),
        (json!({"model":"m","input":[{"type":"function_call_output","call_id":"c"}]}), "input[0].output"),
        (
            json!({"model":"m","input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"u"}]}]}),
            "input[0].output[0].type",
        ),
        (json!({"model":"m","input":"x","temperature":"hot"}), "temperature"),
        (json!({"model":"m","input":"x","user":5}), "user"),
        (json!({"model":"m","input":"x","tools":[{"type":"function"}]}), "tools[0].name"),
        (
            json!({"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":"{}"}]}),
            "tools[0].parameters",
        ),
        (json!({"model":"m","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":"any"}), "tool_choice"),
        (
            json!({"model":"m","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"file_search"}}),
            "tool_choice.type",
        ),
        (
            json!({"model":"m","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function"}}),
            "tool_choice.name",
        ),
        (
            json!({"model":"m","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[{"type":"mcp","server_label":"s"}]}}),
            "tool_choice.tools[0].type",
        ),
        (
            json!({"model":"m","input":"x","tools":[{"type":"function","name":"f"}],"parallel_tool_calls":"no"}),
            "parallel_tool_calls",
        ),
        (json!({"model":"m","input":"x","text":{"format":{"type":"xml"}}}), "text.format.type"),
        (json!({"model":"m","input":"x","text":{"format":{"type":"json_schema","schema":{}}}}), "text.format.name"),
        (json!({"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"n"}}}), "text.format.schema"),
        (json!({"model":"m","input":"x","text":"json"}), "text"),
        (
            json!({"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"n","schema":{},"strict":"yes"}}}),
            "text.format.strict",
        ),
        (json!({"model":"m","input":"x","tools":[{"type":"function","name":"f","strict":1}]}), "tools[0].strict"),
        (
            json!({"model":"m","input":"x","tools":[{"type":"function","name":"f","description":[]}]}),
            "tools[0].description",
        ),
        (json!({"model":"m","input":"x","reasoning":{"effort":1}}), "reasoning.effort"),
    ];
    for (body, param) in table {
        let bytes = body.to_string();
        assert!(parse(bytes.as_bytes()).is_ok(), "{body}");
        let e = to_openai(bytes.as_bytes()).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some(*param)), "{body}: {}", e.message);
    }
}

#[test]
fn pivot_refuses_what_needs_openai() {
    let table: &[(Value, &str)] = &[
        (json!({"previous_response_id":"resp_1"}), "previous_response_id"),
        (json!({"conversation":"conv_1"}), "conversation"),
        (json!({"conversation":{"id":"conv_1"}}), "conversation"),
        (json!({"prompt":{"id":"pmpt_1"}}), "prompt"),
        (json!({"store":true}), "store"),
        (json!({"background":true}), "background"),
        (json!({"tools":[{"type":"function","name":"f"},{"type":"web_search"}]}), "tools[1].type"),
        (json!({"tools":[{"type":"web_search_preview"}]}), "tools[0].type"),
        (json!({"tools":[{"type":"file_search","vector_store_ids":["v"]}]}), "tools[0].type"),
        (json!({"tools":[{"type":"computer_use_preview"}]}), "tools[0].type"),
        (json!({"tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}), "tools[0].type"),
        (json!({"tools":[{"type":"image_generation"}]}), "tools[0].type"),
        (json!({"tools":[{"type":"mcp","server_label":"s"}]}), "tools[0].type"),
        (json!({"tools":[{"type":"local_shell"}]}), "tools[0].type"),
        (json!({"tools":[{"type":"custom","name":"c"}]}), "tools[0].type"),
    ];
    for (extra, param) in table {
        let mut body = json!({"model":"m","input":"x"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let bytes = body.to_string();
        let req = parse(bytes.as_bytes()).unwrap_or_else(|e| panic!("{body}: {}", e.body()));
        let e = check_pivot(&req, "groq").unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref(), e.code),
            (400, Some(*param), Some("unsupported_parameter")),
            "{body}"
        );
        assert!(e.message.contains("'groq'"), "{}", e.message);
        let e2 = to_openai(bytes.as_bytes()).unwrap_err();
        assert_eq!((e2.status, e2.param.as_deref()), (400, Some(*param)), "{body}");
    }
    let ok =
        parse(br#"{"model":"m","input":"x","store":false,"background":false,"previous_response_id":null}"#).unwrap();
    assert_eq!(check_pivot(&ok, "groq"), Ok(()));
    let tools =
        parse(br#"{"model":"m","tools":[{"type":"function","name":"f"},{"type":"mcp"},{"type":"custom"}]}"#).unwrap();
    assert_eq!(tools.hosted_tools, vec![(1, "mcp".to_string()), (2, "custom".to_string())]);
}

#[test]
fn parse_reads_the_routing_fields() {
    let r = parse(br#"{"model":"m","input":"x","stream":true,"max_output_tokens":9,"store":false,"previous_response_id":"resp_1"}"#)
        .unwrap();
    assert_eq!(
        r,
        ResponsesRequest {
            model: "m".into(),
            stream: true,
            max_output_tokens: Some(9),
            store: Some(false),
            previous_response_id: Some("resp_1".into()),
            ..Default::default()
        }
    );
}

#[test]
fn allowed_tools_cut_the_tool_list() {
    let body = json!({"model":"m","input":"x","tools":[{"type":"function","name":"a"},{"type":"function","name":"b"}],
        "tool_choice":{"type":"allowed_tools","mode":"required","tools":[{"type":"function","name":"b"}]}});
    let v = json(&to_openai(body.to_string().as_bytes()).unwrap());
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(v["tools"], json!([{"type":"function","function":{"name":"b"}}]));
    let no_tools = json!({"model":"m","input":"x","tool_choice":"required","parallel_tool_calls":false,"tools":[]});
    let v = json(&to_openai(no_tools.to_string().as_bytes()).unwrap());
    assert!(v.get("tool_choice").is_none() && v.get("tools").is_none() && v.get("parallel_tool_calls").is_none());
}

#[test]
fn echo_defaults_and_request_fields() {
    let r = json(
        &response_from_openai(
            br#"{"id":"chatcmpl-1","choices":[{"message":{"content":"x"}}]}"#,
            &Echo::new(b"{}", 9),
            1,
        )
        .unwrap(),
    );
    assert_eq!(r["created_at"], 9);
    assert_eq!(r["tools"], json!([]));
    assert_eq!(r["tool_choice"], "auto");
    assert_eq!(r["parallel_tool_calls"], true);
    assert_eq!(r["text"], json!({"format":{"type":"text"}}));
    assert_eq!(r["store"], false);
    assert_eq!(r["usage"], Value::Null);
    assert_eq!(r["metadata"], json!({}));
    let body = br#"{"model":"m","instructions":"i","metadata":{"k":"v"},"tool_choice":"none","temperature":0.5,"input":[{"role":"user","content":"long input skipped"}]}"#;
    let e = Echo::new(body, 0);
    assert_eq!(e.model, "m");
    let r = json(&response_from_openai(br#"{"choices":[{"message":{"content":"x"}}]}"#, &e, 255).unwrap());
    assert_eq!(
        (r["id"].as_str(), r["output"][0]["id"].as_str()),
        (Some("resp_00000000000000ff"), Some("msg_00000000000000ff"))
    );
    assert_eq!(
        (&r["instructions"], &r["metadata"], &r["tool_choice"], &r["temperature"]),
        (&json!("i"), &json!({"k":"v"}), &json!("none"), &json!(0.5))
    );
}

#[test]
fn unreadable_answers_are_errors() {
    let e = Echo::new(b"{}", 0);
    assert!(response_from_openai(b"nope", &e, 0).is_err());
    assert!(response_from_openai(br#"{"choices":[]}"#, &e, 0).is_err());
    assert!(response_from_openai(br#"{"error":{"message":"x"}}"#, &e, 0).is_err());
}

#[test]
fn duplicate_or_missing_call_ids_are_made_unique() {
    let chat = br#"{"id":"chatcmpl-d","choices":[{"finish_reason":"tool_calls","message":{"content":null,"tool_calls":[
        {"id":"c","function":{"name":"f","arguments":"{}"}},{"id":"c","function":{"name":"f","arguments":"{}"}},{"function":{"name":"g"}}]}}]}"#;
    let r = json(&response_from_openai(chat, &Echo::new(b"{}", 0), 0).unwrap());
    let ids: Vec<&str> = r["output"].as_array().unwrap().iter().map(|i| i["call_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c", "call_d_1", "call_d_2"]);
    assert_eq!(r["output"][2]["arguments"], "");
}

#[test]
fn tool_calls_are_capped() {
    let mut sse = String::new();
    for i in 0..MAX_TOOL_CALLS + 5 {
        let c = json!({"id":"chatcmpl-cap","choices":[{"index":0,"delta":{"tool_calls":[{"index":i,"id":format!("c{i}"),"function":{"name":"f","arguments":"{}"}}]}}]});
        sse += &format!("data: {c}\n\n");
    }
    sse += "data: {\"id\":\"chatcmpl-cap\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n";
    let out = convert_stream(b"{}", &[sse.as_bytes()]);
    invariants::check(&out, "cap");
    let last = events(&out).pop().unwrap().1;
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["output"].as_array().unwrap().len(), MAX_TOOL_CALLS);
}

#[test]
fn stream_edge_cases_stay_well_formed() {
    let table: &[(&str, &[&str])] = &[
        ("", &["response.created", "response.in_progress", "error", "response.failed"]),
        (
            "data: [DONE]\n\n",
            &[
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ],
        ),
        ("data: {\"error\":\"boom\"}\n\n", &["response.created", "response.in_progress", "error", "response.failed"]),
        ("data: not json\n\n: comment\n\n", &["response.created", "response.in_progress", "error", "response.failed"]),
    ];
    for (input, want) in table {
        let out = convert_stream(b"{}", &[input.as_bytes()]);
        invariants::check(&out, input);
        let names: Vec<String> = events(&out).into_iter().map(|(e, _)| e.unwrap()).collect();
        assert_eq!(names, *want, "{input:?}");
    }
    // Text after the finish chunk, and events after the end, are ignored.
    let sse = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"}}]}\n\n";
    let out = convert_stream(b"{}", &[sse.as_bytes()]);
    let last = events(&out).pop().unwrap().1;
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "a");
}

#[test]
fn mock_answers_in_both_forms() {
    let clock = Clock { unix_secs: 1_700_000_000, seq: 3 };
    let r = mock_answer(br#"{"model":"demo","instructions":"be brief","input":"hello mock world"}"#, "demo", clock);
    assert_eq!(r.status, 200);
    let v = json(&r.body);
    assert_eq!(
        (v["object"].as_str(), v["status"].as_str(), v["model"].as_str()),
        (Some("response"), Some("completed"), Some("demo"))
    );
    assert_eq!(v["output"][0]["content"][0]["text"], "hello mock world");
    assert_eq!(v["instructions"], "be brief");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let r = mock_answer(br#"{"model":"demo","input":"hello mock world","stream":true}"#, "demo", clock);
    assert_eq!(r.status, 200);
    invariants::check(&r.body, "mock stream");
    let last = events(&r.body).pop().unwrap().1;
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "hello mock world");

    let r = mock_answer(br#"{"model":"demo","input":"x","previous_response_id":"resp_1"}"#, "demo", clock);
    assert_eq!(r.status, 400);
    assert_eq!(json(&r.body)["error"]["param"], "previous_response_id");
}

#[test]
fn the_usage_stage_reads_what_the_converters_write() {
    // The route role's usage sniffer reads the usage of every Responses answer the client gets: the ones
    // converted here (stream and whole) as well as a provider's own.
    use crate::pipeline::usage::{Format, Sniffer};
    let clock = Clock { unix_secs: 1_700_000_000, seq: 3 };
    let stream = mock_answer(br#"{"model":"demo","input":"hello","stream":true}"#, "demo", clock);
    let whole = mock_answer(br#"{"model":"demo","input":"hello"}"#, "demo", clock);
    for (format, body) in [(Format::ResponsesSse, &stream.body), (Format::ResponsesJson, &whole.body)] {
        let mut s = Sniffer::new(format, false);
        for piece in body.chunks(7) {
            s.on_chunk(piece, false);
        }
        s.on_chunk(b"", true);
        let got = s.usage().expect("usage read");
        let last = match format {
            Format::ResponsesSse => events(body).pop().unwrap().1["response"]["usage"].clone(),
            _ => json(body)["usage"].clone(),
        };
        assert_eq!(got.prompt_tokens, last["input_tokens"].as_u64().unwrap(), "{format:?}");
        assert_eq!(got.completion_tokens, last["output_tokens"].as_u64().unwrap(), "{format:?}");
        assert!(got.completion_tokens > 0, "{format:?}");
    }
}
