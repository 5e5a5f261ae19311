"""Issue 18, item 4: openapi/switchyard.yaml is a valid OpenAPI 3.1 document of the API the README names, and
real answers of the demo gateway match it (validated by openapi-core through the harness, as every answer of
the e2e suite is: see harness.OpenApiCheck and conftest.py). The validator is shown to reject a wrong answer.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

import harness
from harness import DEMO_GATEWAY, OPENAPI, OPENAPI_DOC, ROOT, Envoy, free_port, module_stack, render, request, sha256_hex

DEMO_KEY = "sk-switchyard-demo"
LIMITED_KEY = "sk-sy-openapi-limited-0001"
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hello openapi"}]}


class Stack:
    """The demo gateway file, plus a key with request and token limits (for the x-ratelimit-* headers and a
    429) and a model whose provider listens nowhere (for a 502)."""

    def __init__(self):
        doc = yaml.safe_load(DEMO_GATEWAY.read_text())
        doc["providers"]["nowhere"] = {"kind": "openai_compatible", "url": f"http://127.0.0.1:{free_port()}"}
        doc["models"]["down"] = {"provider": "nowhere", "model": "down"}
        doc["keys"].append({
            "id": "limited", "sha256": sha256_hex(LIMITED_KEY), "models": ["echo"],
            "limits": {"requests": {"limit": 3, "window_secs": 3600}, "tokens": {"limit": 100000, "window_secs": 60}},
        })
        self.envoy = Envoy(render(doc)).wait_ready()

    def close(self):
        self.envoy.stop()


stack = module_stack(Stack)


def post(stack, path: str, body, key: str = DEMO_KEY, **headers):
    h = {"content-type": "application/json", "authorization": f"Bearer {key}", **headers}
    return request("POST", f"{stack.envoy.base}{path}", json.dumps(body) if not isinstance(body, (str, bytes)) else body, h)


def counted(fn):
    """Runs fn and returns how many responses the harness validated meanwhile."""
    before = OPENAPI.counts["responses"]
    fn()
    return OPENAPI.counts["responses"] - before


# --- the document itself -----------------------------------------------------------------------------

def test_the_document_is_valid_openapi_3_1():
    spec = yaml.safe_load(OPENAPI_DOC.read_text())
    assert spec["openapi"].startswith("3.1.")
    validate(spec)  # openapi-spec-validator: raises on an invalid document


def test_every_path_of_the_readme_api_section_is_documented():
    readme = (ROOT / "README.md").read_text()
    api = readme.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(?:GET|POST) (/v1/[^`]*)`", api))
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/models/{id}", "/v1/messages", "/v1/responses"} <= named
    spec = yaml.safe_load(OPENAPI_DOC.read_text())
    assert named <= set(spec["paths"]), named - set(spec["paths"])
    assert "openapi/switchyard.yaml" in api, "the API section links the document"
    # Every documented operation is implemented, so every one is validated (none is left as planned).
    assert not [p for p, item in spec["paths"].items() for op in item.values() if isinstance(op, dict) and "x-switchyard-status" in op]
    assert OPENAPI.template("/v1/responses") == "/v1/responses"
    stream = spec["paths"]["/v1/responses"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    assert stream["x-event-data"] == {"$ref": "#/components/schemas/ResponseStreamEvent"}


def test_the_validator_rejects_answers_that_break_the_document():
    ok_chat = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "echo", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}).encode()
    req = json.dumps(CHAT).encode()
    headers = {"authorization": f"Bearer {DEMO_KEY}", "content-type": "application/json"}
    json_ct = {"content-type": "application/json"}
    assert OPENAPI.check("POST", "/v1/chat/completions", headers, req, 200, json_ct, ok_chat) == []
    wrong = {
        "a chat answer without choices": ("POST", "/v1/chat/completions", 200, json_ct, {"id": "c", "object": "chat.completion", "created": 1, "model": "echo"}),
        "an error without message": ("POST", "/v1/chat/completions", 400, json_ct, {"error": {"type": "invalid_request_error"}}),
        "an OpenAI error on /v1/messages": ("POST", "/v1/messages", 404, json_ct, {"error": {"message": "x", "type": "t"}}),
        "a model with an extra field": ("GET", "/v1/models/echo", 200, json_ct, {"id": "echo", "object": "model", "created": 0, "owned_by": "local", "x": 1}),
        "a 405 without allow": ("GET", "/v1/chat/completions", 405, json_ct, {"error": {"message": "x", "type": "t", "param": None, "code": "method_not_allowed"}}),
        "a malformed x-ratelimit-reset": ("POST", "/v1/chat/completions", 200, {**json_ct, "x-ratelimit-reset-requests": "soon"}, json.loads(ok_chat)),
        "an Anthropic delta without its index": ("POST", "/v1/messages", 200, {"content-type": "text/event-stream"}, 'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}\n\n'),
        "a stream chunk of the wrong object": ("POST", "/v1/chat/completions", 200, {"content-type": "text/event-stream"}, 'data: {"id":"c","object":"chat.completion","created":1,"model":"m","choices":[]}\n\ndata: [DONE]\n\n'),
    }
    ok_response = {"id": "resp_1", "object": "response", "created_at": 1, "model": "echo", "status": "completed",
                   "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "output": [
                       {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "hi", "annotations": []}]}],
                   "usage": {"input_tokens": 1, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 1,
                             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2}}
    responses_req = json.dumps({"model": "echo", "input": "hi"}).encode()
    assert OPENAPI.check("POST", "/v1/responses", headers, responses_req, 200, json_ct, json.dumps(ok_response).encode()) == []
    ok_event = {"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1", "output_index": 0,
                "content_index": 0, "delta": "hi", "logprobs": []}
    sse_ct = {"content-type": "text/event-stream"}
    assert OPENAPI.check("POST", "/v1/responses", headers, responses_req, 200, sse_ct,
                         f"event: response.output_text.delta\ndata: {json.dumps(ok_event)}\n\n".encode()) == []
    responses_wrong = {
        "a response without output": {k: v for k, v in ok_response.items() if k != "output"},
        "a response whose usage lacks its details": {**ok_response, "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}},
        "a function call without call_id": {**ok_response, "output": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
        "an unknown status": {**ok_response, "status": "done"},
        "a stream event without its sequence_number": ("sse", {k: v for k, v in ok_event.items() if k != "sequence_number"}),
        "a text delta without logprobs": ("sse", {k: v for k, v in ok_event.items() if k != "logprobs"}),
        "a chat-style error event": ("sse", {"error": {"message": "x", "type": "t", "param": None, "code": None}}),
    }
    for what, body in responses_wrong.items():
        if isinstance(body, tuple):
            raw = f"event: x\ndata: {json.dumps(body[1])}\n\n".encode()
            assert OPENAPI.check("POST", "/v1/responses", headers, responses_req, 200, sse_ct, raw), f"{what} must be rejected"
        else:
            raw = json.dumps(body).encode()
            assert OPENAPI.check("POST", "/v1/responses", headers, responses_req, 200, json_ct, raw), f"{what} must be rejected"
    for what, (method, path, status, h, body) in wrong.items():
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        assert OPENAPI.check(method, path, headers, req, status, h, raw), f"{what} must be rejected"
    # A request the document does not allow is rejected too (checked when the answer is 2xx).
    bad_request = json.dumps({"model": "echo", "messages": []}).encode()
    assert OPENAPI.check("POST", "/v1/chat/completions", headers, bad_request, 200, json_ct, ok_chat)


def test_the_spec_validator_rejects_an_invalid_document():
    spec = yaml.safe_load(OPENAPI_DOC.read_text())
    spec["paths"]["/v1/models"]["get"]["responses"]["200"] = {"content": {}}  # a response needs a description
    with pytest.raises(OpenAPIValidationError):
        validate(spec)


# --- real answers of the demo gateway, validated by the harness -----------------------------------------

def test_chat_plain_and_streamed(stack):
    def calls():
        status, headers, body = post(stack, "/v1/chat/completions", CHAT)
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "hello openapi"
        status, headers, body = post(stack, "/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
        assert status == 200 and headers["content-type"].startswith("text/event-stream") and b"[DONE]" in body
    assert counted(calls) == 2


def test_sdk_answers_plain_and_streamed(stack):
    oa = harness.openai_client(base_url=f"{stack.envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
    an = harness.anthropic_client(base_url=stack.envoy.base, api_key=DEMO_KEY, max_retries=0, timeout=10)
    events_before = OPENAPI.counts["events"]

    def calls():
        assert oa.chat.completions.create(**CHAT).choices[0].message.content == "hello openapi"
        text = "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(**CHAT, stream=True) if c.choices)
        assert text == "hello openapi"
        emb = oa.embeddings.create(model="echo", input=["a", "b"])
        assert len(emb.data) == 2
        assert "echo" in [m.id for m in oa.models.list()]
        assert oa.models.retrieve("echo").id == "echo"
        m = an.messages.create(model="echo", max_tokens=50, messages=CHAT["messages"])
        assert m.content[0].text == "hello openapi"
        with an.messages.stream(model="echo", max_tokens=50, messages=CHAT["messages"]) as s:
            assert s.get_final_text() == "hello openapi"
    assert counted(calls) == 7
    assert OPENAPI.counts["events"] - events_before >= 6, "the events of both streams were validated"


def test_responses_plain_and_streamed(stack):
    oa = harness.openai_client(base_url=f"{stack.envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
    events_before = OPENAPI.counts["events"]

    def calls():
        assert oa.responses.create(model="echo", input="hello openapi").output_text == "hello openapi"
        with oa.responses.stream(model="echo", input="hello openapi") as s:
            assert s.get_final_response().output_text == "hello openapi"
        status, headers, body = post(stack, "/v1/responses", {"model": "echo", "input": 42})
        assert status == 400 and json.loads(body)["error"]["param"] == "input"
    assert counted(calls) == 3
    assert OPENAPI.counts["events"] - events_before >= 5, "the stream's events were validated"


def test_embeddings_float_and_base64(stack):
    def calls():
        for fmt in ("float", "base64"):
            status, _, body = post(stack, "/v1/embeddings", {"model": "echo", "input": "x", "encoding_format": fmt})
            assert status == 200, body
    assert counted(calls) == 2


def test_models_list_and_retrieve(stack):
    def calls():
        h = {"authorization": f"Bearer {DEMO_KEY}"}
        assert request("GET", f"{stack.envoy.base}/v1/models", headers=h)[0] == 200
        assert request("GET", f"{stack.envoy.base}/v1/models/echo", headers=h)[0] == 200
        assert request("GET", f"{stack.envoy.base}/v1/models/nope", headers=h)[0] == 404
    assert counted(calls) == 3


def test_messages_plain_and_streamed(stack):
    body = {"model": "echo", "max_tokens": 50, "messages": CHAT["messages"]}

    def calls():
        status, _, raw = post(stack, "/v1/messages", body, **{"anthropic-version": "2023-06-01"})
        assert status == 200 and json.loads(raw)["type"] == "message"
        status, headers, raw = request("POST", f"{stack.envoy.base}/v1/messages", json.dumps({**body, "stream": True}),
                                       {"content-type": "application/json", "x-api-key": DEMO_KEY})
        assert status == 200 and b"message_stop" in raw
    assert counted(calls) == 2


def test_errors_of_every_class(stack):
    base = stack.envoy.base

    def calls():
        answers = [
            post(stack, "/v1/chat/completions", "{not json"),
            post(stack, "/v1/chat/completions", {"model": "echo"}),
            post(stack, "/v1/chat/completions", CHAT, key="sk-unknown"),
            request("POST", f"{base}/v1/chat/completions", json.dumps(CHAT), {"content-type": "application/json"}),
            post(stack, "/v1/chat/completions", {**CHAT, "model": "no-such-model"}),
            request("GET", f"{base}/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEY}"}),
            post(stack, "/v1/chat/completions", CHAT, **{"content-type": "text/plain"}),
            post(stack, "/v1/chat/completions", {**CHAT, "model": "down"}),
            post(stack, "/v1/messages", {"model": "echo", "messages": CHAT["messages"]}),
            post(stack, "/v1/messages", {"model": "echo", "max_tokens": 5, "messages": CHAT["messages"]}, key="sk-unknown"),
            request("GET", f"{base}/v1/messages", headers={"x-api-key": DEMO_KEY}),
            post(stack, "/v1/messages", {"model": "down", "max_tokens": 5, "messages": CHAT["messages"]}),
        ]
        assert [a[0] for a in answers] == [400, 400, 401, 401, 404, 405, 415, 502, 400, 401, 405, 502], [a[2][:200] for a in answers]
        assert json.loads(answers[-1][2])["type"] == "error"
    assert counted(calls) == 12


def test_rate_limit_headers_and_429(stack):
    def calls():
        statuses = []
        for _ in range(4):
            status, headers, body = post(stack, "/v1/chat/completions", CHAT, key=LIMITED_KEY)
            statuses.append(status)
            assert "x-ratelimit-remaining-requests" in headers
            if status == 200:
                assert "x-ratelimit-reset-tokens" in headers
        assert statuses == [200, 200, 200, 429]
        assert headers["retry-after"].isdigit()
        status, headers, body = post(stack, "/v1/messages", {"model": "echo", "max_tokens": 5, "messages": CHAT["messages"]}, key=LIMITED_KEY)
        assert status == 429 and json.loads(body)["error"]["type"] == "rate_limit_error"
    assert counted(calls) == 5
