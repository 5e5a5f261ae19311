//! What every Responses event stream the gateway writes must satisfy (what the SDK's
//! `client.responses.stream(...)` accumulator relies on).

use super::events;
use serde_json::{json, Value};

#[derive(Default)]
struct Item {
    added: Value,
    id: String,
    /// (part type, text so far, done).
    parts: Vec<(String, String, bool)>,
    arguments: String,
    arguments_done: bool,
    done: Option<Value>,
}

fn num(v: &Value, k: &str, what: &str) -> usize {
    v[k].as_u64().unwrap_or_else(|| panic!("{what}: no {k}: {v}")) as usize
}

/// Panics with `what` unless the stream holds: sequence numbers 0, 1, 2, …; `response.created` then
/// `response.in_progress` first; items added at consecutive output indexes; every content part, delta
/// and done naming an added, still open item (and part) by `item_id`, `output_index`, `content_index`;
/// done texts and arguments equal to their deltas; every added item done; one final event, last, whose
/// response (same id) has exactly the done items as output and a status that fits its type.
pub(crate) fn check(stream: &[u8], what: &str) {
    let evs = events(stream);
    assert!(evs.len() >= 3, "{what}: too few events");
    let mut items: Vec<Item> = Vec::new();
    let mut call_ids = Vec::new();
    let mut id = String::new();
    for (n, (name, v)) in evs.iter().enumerate() {
        let kind = v["type"].as_str().unwrap_or_else(|| panic!("{what}: event {n} has no type"));
        assert_eq!(name.as_deref(), Some(kind), "{what}: event {n} name");
        assert_eq!(v["sequence_number"], json!(n), "{what}: event {n} sequence_number");
        let at = format!("{what}: event {n} ({kind})");
        let terminal = matches!(kind, "response.completed" | "response.incomplete" | "response.failed");
        assert_eq!(terminal, n + 1 == evs.len(), "{at}: terminal events end the stream, once");
        match (n, kind) {
            (0, "response.created") => {
                id = v["response"]["id"].as_str().unwrap().to_string();
                assert!(id.starts_with("resp_"), "{at}: id {id}");
                assert_eq!(v["response"]["status"], "in_progress", "{at}");
            }
            (0, _) => panic!("{at}: the stream must start with response.created"),
            (1, k) => assert_eq!(k, "response.in_progress", "{at}"),
            _ => {}
        }
        let item_at = |items: &mut Vec<Item>| -> usize {
            let i = num(v, "output_index", &at);
            let item = items.get(i).unwrap_or_else(|| panic!("{at}: output_index {i} not added"));
            assert!(item.done.is_none(), "{at}: item {i} already done");
            if let Some(item_id) = v.get("item_id") {
                assert_eq!(item_id.as_str(), Some(item.id.as_str()), "{at}: item_id");
            }
            i
        };
        match kind {
            "response.output_item.added" => {
                assert_eq!(num(v, "output_index", &at), items.len(), "{at}: output indexes are consecutive");
                let item = &v["item"];
                assert_eq!(item["status"], "in_progress", "{at}");
                if item["type"] == "function_call" {
                    assert_eq!(item["arguments"], "", "{at}");
                    let call_id = item["call_id"].as_str().unwrap().to_string();
                    assert!(!call_ids.contains(&call_id), "{at}: call_id {call_id} twice");
                    call_ids.push(call_id);
                } else {
                    assert_eq!(item["content"], json!([]), "{at}");
                }
                items.push(Item {
                    added: item.clone(),
                    id: item["id"].as_str().unwrap().to_string(),
                    ..Default::default()
                });
            }
            "response.content_part.added" => {
                let i = item_at(&mut items);
                let item = &mut items[i];
                assert_eq!(item.added["type"], "message", "{at}");
                assert_eq!(num(v, "content_index", &at), item.parts.len(), "{at}: content indexes are consecutive");
                let t = v["part"]["type"].as_str().unwrap().to_string();
                let empty = if t == "refusal" { &v["part"]["refusal"] } else { &v["part"]["text"] };
                assert_eq!(empty, "", "{at}");
                item.parts.push((t, String::new(), false));
            }
            "response.output_text.delta"
            | "response.refusal.delta"
            | "response.output_text.done"
            | "response.refusal.done" => {
                let i = item_at(&mut items);
                let ci = num(v, "content_index", &at);
                let part = items[i].parts.get_mut(ci).unwrap_or_else(|| panic!("{at}: content_index {ci} not added"));
                let want = if kind.contains("refusal") { "refusal" } else { "output_text" };
                assert_eq!(part.0, want, "{at}: part type");
                assert!(!part.2, "{at}: part already done");
                if kind.ends_with(".delta") {
                    part.1.push_str(v["delta"].as_str().unwrap());
                } else {
                    let key = if want == "refusal" { "refusal" } else { "text" };
                    assert_eq!(v[key].as_str(), Some(part.1.as_str()), "{at}: done text = deltas");
                }
            }
            "response.content_part.done" => {
                let i = item_at(&mut items);
                let ci = num(v, "content_index", &at);
                let part = items[i].parts.get_mut(ci).unwrap_or_else(|| panic!("{at}: content_index {ci} not added"));
                assert!(!part.2, "{at}: part done twice");
                let key = if part.0 == "refusal" { "refusal" } else { "text" };
                assert_eq!(
                    (v["part"]["type"].as_str(), v["part"][key].as_str()),
                    (Some(part.0.as_str()), Some(part.1.as_str())),
                    "{at}"
                );
                part.2 = true;
            }
            "response.function_call_arguments.delta" | "response.function_call_arguments.done" => {
                let i = item_at(&mut items);
                let item = &mut items[i];
                assert_eq!(item.added["type"], "function_call", "{at}");
                assert!(!item.arguments_done, "{at}: arguments already done");
                if kind.ends_with(".delta") {
                    item.arguments.push_str(v["delta"].as_str().unwrap());
                } else {
                    assert_eq!(v["arguments"].as_str(), Some(item.arguments.as_str()), "{at}: done = deltas");
                    item.arguments_done = true;
                }
            }
            "response.output_item.done" => {
                let i = item_at(&mut items);
                let item = &mut items[i];
                let done = &v["item"];
                assert_eq!((&done["id"], &done["type"]), (&item.added["id"], &item.added["type"]), "{at}: identity");
                assert_ne!(done["status"], "in_progress", "{at}");
                if done["type"] == "function_call" {
                    assert!(item.arguments_done, "{at}: arguments not done");
                    assert_eq!(done["call_id"], item.added["call_id"], "{at}: call_id");
                    assert_eq!(done["arguments"].as_str(), Some(item.arguments.as_str()), "{at}");
                } else {
                    let content = done["content"].as_array().unwrap();
                    assert_eq!(content.len(), item.parts.len(), "{at}: parts");
                    for (c, (t, text, part_done)) in content.iter().zip(&item.parts) {
                        assert!(part_done, "{at}: part not done");
                        let key = if t == "refusal" { "refusal" } else { "text" };
                        assert_eq!(
                            (c["type"].as_str(), c[key].as_str()),
                            (Some(t.as_str()), Some(text.as_str())),
                            "{at}"
                        );
                    }
                }
                item.done = Some(done.clone());
            }
            "error" => {
                assert!(v["message"].is_string(), "{at}");
                assert!(items.iter().all(|i| i.done.is_some()), "{at}: items left open");
            }
            "response.created" | "response.in_progress" => {}
            _ if terminal => {
                let r = &v["response"];
                assert_eq!(r["id"].as_str(), Some(id.as_str()), "{at}: response id");
                let status = kind.trim_start_matches("response.");
                assert_eq!(r["status"], status, "{at}: status");
                assert_eq!(r["error"].is_null(), kind != "response.failed", "{at}: error");
                assert_eq!(
                    r["incomplete_details"].is_null(),
                    kind != "response.incomplete",
                    "{at}: incomplete_details"
                );
                let done: Vec<Value> = items
                    .iter()
                    .map(|i| i.done.clone().unwrap_or_else(|| panic!("{at}: item {} not done", i.id)))
                    .collect();
                assert_eq!(r["output"], Value::Array(done), "{at}: output = the done items");
                if kind == "response.failed" {
                    assert_eq!(evs[n - 1].1["type"], "error", "{at}: an error event comes first");
                }
            }
            other => panic!("{at}: unexpected event {other}"),
        }
    }
}
