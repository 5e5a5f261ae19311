//! The Responses API on the gateway (`POST /v1/responses`): a provider that answers the Responses API
//! itself (`openai`, `azure_openai`, an `openai_compatible` server with `responses: native`) gets the
//! request as it is (model name and credential replaced, its own path); every other provider is served
//! through the chat pivot, after a refusal of what only OpenAI's own endpoint can do (hosted tools, stored
//! state), and its answer, error or stream is converted back.

use super::{check_pivot, parse, response_from_openai, to_openai, Echo, StreamToResponses};
use crate::api::error::ApiError;
use crate::api::openai::Operation;
use crate::api::pivot::{ClientFormat, ToClient};
use crate::providers::{self, openai, Attempt, Outgoing};

/// Prepares one attempt of a `/v1/responses` request.
pub fn prepare(a: &Attempt, body: &[u8]) -> Result<Outgoing, ApiError> {
    let req = parse(body)?;
    if a.provider.kind.answers_responses() {
        let call = providers::plan(a.provider, Operation::Responses, a.model)?;
        return Ok(Outgoing {
            path: call.path,
            headers: call.auth.into_iter().collect(),
            body: Some(openai::replace_model(body, a.model)?),
            response: None,
        });
    }
    check_pivot(&req, &a.provider.name)?;
    let pivot = to_openai(body)?;
    let chat = Attempt { op: Operation::ChatCompletions, chat: None, ..*a };
    let mut out = providers::prepare(&chat, &pivot)?;
    if out.body.is_none() {
        out.body = Some(pivot);
    }
    // The answer names the provider's model, as the other translated answers do; ids of our own are made
    // from the attempt's clock.
    let mut echo = Echo::new(body, a.now_unix);
    echo.model = a.model.to_string();
    let stream = req.stream.then(|| StreamToResponses::new(echo.clone(), a.now_ns));
    let format = Responses { echo, id_seed: a.now_ns, stream };
    out.response = Some(Box::new(ToClient::new(out.response.take(), req.stream, &a.provider.name, format)));
    Ok(out)
}

/// Responses answers and streams, written from the pivot's; errors keep the OpenAI shape.
struct Responses {
    echo: Echo,
    id_seed: u64,
    /// A streaming request's converter (a provider may still answer it whole).
    stream: Option<StreamToResponses>,
}

impl ClientFormat for Responses {
    fn answer(&mut self, openai_body: &[u8]) -> Result<Vec<u8>, &'static str> {
        response_from_openai(openai_body, &self.echo, self.id_seed)
    }

    fn error(&self, _status: u16, openai_body: &[u8]) -> Vec<u8> {
        openai_body.to_vec()
    }

    fn stream(&mut self, openai_sse: &[u8], end: bool, out: &mut Vec<u8>) {
        if let Some(s) = self.stream.as_mut() {
            s.push(openai_sse, end, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Provider, ProviderKind, Secret};
    use crate::providers::BodyMode;
    use serde_json::{json, Value};

    fn provider(kind: ProviderKind) -> Provider {
        Provider { name: "p".into(), kind, cluster: "c".into(), credential: Some(Secret::for_tests("sk-prov")) }
    }

    fn attempt(p: &Provider) -> Attempt<'_> {
        Attempt {
            op: Operation::Responses,
            provider: p,
            model: "provider-model",
            alias: "alias",
            now_unix: 1_700_000_000,
            now_ns: 1_700_000_000_000_000_000,
            usage_chunk: true,
            chat: None,
        }
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn native_kinds_get_the_request_as_sent_but_the_model() {
        let req = json!({"model": "alias", "input": "hi", "tools": [{"type": "web_search"}], "previous_response_id": "resp_1", "store": true});
        let compat_native = ProviderKind::OpenAiCompatible { base_path: "/v1".into(), native_responses: true };
        let table = [
            (ProviderKind::OpenAi, "/v1/responses", ("authorization", "Bearer sk-prov")),
            (ProviderKind::AzureOpenAi { api_version: "v1".into() }, "/openai/v1/responses", ("api-key", "sk-prov")),
            (
                ProviderKind::AzureOpenAi { api_version: "2025-04-01-preview".into() },
                "/openai/responses?api-version=2025-04-01-preview",
                ("api-key", "sk-prov"),
            ),
            (compat_native, "/v1/responses", ("authorization", "Bearer sk-prov")),
        ];
        for (kind, path, (header, value)) in table {
            let p = provider(kind);
            let out = prepare(&attempt(&p), &body(req.clone())).unwrap();
            assert_eq!(out.path, path);
            assert_eq!(out.headers, vec![(header, value.to_string())]);
            assert!(out.response.is_none(), "{path}: passes through");
            let mut want = req.clone();
            want["model"] = json!("provider-model");
            let got: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
            assert_eq!(got, want, "{path}: hosted tools and state pass to the provider's own endpoint");
        }
    }

    #[test]
    fn other_kinds_go_through_the_pivot_and_back() {
        let p = provider(ProviderKind::Anthropic { version: "2023-06-01".into(), default_max_tokens: 100 });
        let req = body(json!({"model": "alias", "instructions": "be brief", "input": "hi", "max_output_tokens": 50}));
        let mut out = prepare(&attempt(&p), &req).unwrap();
        assert_eq!(out.path, "/v1/messages");
        let sent: Value = serde_json::from_slice(out.body.as_ref().unwrap()).unwrap();
        assert_eq!((sent["system"].clone(), sent["max_tokens"].clone()), (json!("be brief"), json!(50)));
        let t = out.response.as_mut().unwrap();
        assert_eq!(t.on_headers(200, Some("application/json")), (200, BodyMode::Buffer));
        let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "provider-model",
            "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 1}});
        let got: Value = serde_json::from_slice(&t.on_body(&body(answer))).unwrap();
        assert_eq!(got["object"], "response");
        assert_eq!(got["model"], "provider-model");
        assert_eq!(got["output"][0]["content"][0]["text"], "hello");
        assert_eq!(got["usage"]["input_tokens"], 3);
        assert_eq!(t.content_type(), "application/json");
        // The provider's error keeps the OpenAI shape.
        let mut out = prepare(&attempt(&p), &req).unwrap();
        let t = out.response.as_mut().unwrap();
        assert_eq!(t.on_headers(429, Some("application/json")).0, 429);
        let e = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}});
        let got: Value = serde_json::from_slice(&t.on_body(&body(e))).unwrap();
        assert_eq!(got["error"]["type"], "rate_limit_error");
        assert!(got["error"]["message"].as_str().unwrap().contains("slow down"), "{got}");
    }

    #[test]
    fn a_chat_server_gets_a_chat_request_and_its_stream_comes_back_typed() {
        let p = provider(ProviderKind::OpenAiCompatible { base_path: "/v1".into(), native_responses: false });
        let req = body(json!({"model": "alias", "input": "hi", "stream": true}));
        let mut out = prepare(&attempt(&p), &req).unwrap();
        assert_eq!(out.path, "/v1/chat/completions");
        let sent: Value = serde_json::from_slice(out.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["model"], "provider-model");
        assert_eq!(sent["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(sent["stream_options"]["include_usage"], true);
        let t = out.response.as_mut().unwrap();
        assert_eq!(t.on_headers(200, Some("text/event-stream")), (200, BodyMode::Stream));
        let sse = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"yo\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1,\"total_tokens\":3}}\n\ndata: [DONE]\n\n";
        let mut client = Vec::new();
        t.on_stream(sse.as_bytes(), true, &mut client);
        let text = String::from_utf8(client).unwrap();
        assert!(text.starts_with("event: response.created\n"), "{text}");
        assert!(text.contains("\"delta\":\"yo\""), "{text}");
        assert!(text.contains("event: response.completed\n") && !text.contains("[DONE]"), "{text}");
        assert_eq!(t.content_type(), "text/event-stream");
    }

    #[test]
    fn what_needs_openai_is_refused_elsewhere_naming_it() {
        let p = provider(ProviderKind::Gemini { api_version: "v1beta".into() });
        for (req, param) in [
            (
                json!({"model": "a", "input": "hi", "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}),
                "tools[1].type",
            ),
            (json!({"model": "a", "input": "hi", "previous_response_id": "resp_1"}), "previous_response_id"),
            (json!({"model": "a", "input": "hi", "store": true}), "store"),
        ] {
            let e = prepare(&attempt(&p), &body(req)).err().unwrap();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)));
            assert!(e.message.contains("'p'"), "names the provider: {}", e.message);
        }
        // `store: false` (or none) is fine.
        assert!(prepare(&attempt(&p), &body(json!({"model": "a", "input": "hi", "store": false}))).is_ok());
    }
}
