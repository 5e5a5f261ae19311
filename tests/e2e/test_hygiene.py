"""Issue 15, items 5, 6, 7 and 9, end to end through the real Envoy: tool schemas every provider takes,
no client `accept-encoding` to providers, a header allow-list with per-provider `forward_headers`, and
one JSON validation whatever path the model takes."""

from __future__ import annotations

import gzip
import json

import openai
import pytest

import harness
from harness import Envoy, MockUpstream, Reply, cli, free_port, gateway_file, mock_url, module_stack, plugin_configs, render, request, sha256_hex, shut
from openai_wire import chat_completion
from provider_wire import anthropic_message, bedrock_converse, gemini_response, sigv4_check

KEY = "sk-sy-hygiene-0001"
AWS_AK = "AKIDEXAMPLEHYGIENE01"
AWS_SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYHYGIENE"
MESSAGES = [{"role": "user", "content": "hi"}]


def gzipped_if_asked(body: dict):
    """A provider that compresses its answer when the request accepts gzip, as real providers do."""

    def responder(rec):
        data = json.dumps(body).encode()
        if "gzip" in rec.headers.get("accept-encoding", ""):
            return Reply(headers={"content-type": "application/json", "content-encoding": "gzip"}, body=gzip.compress(data))
        return Reply(body=data)

    return responder


def bedrock_responder(rec):
    problem = sigv4_check(rec, AWS_AK, AWS_SK, "us-east-1")
    if problem:
        return Reply(status=403, body=json.dumps({"message": f"signature mismatch: {problem}"}).encode())
    return Reply(body=json.dumps(bedrock_converse("bedrock says hi")).encode())


def unavailable(rec):
    return Reply(status=503, body=b'{"error":{"message":"unavailable","type":"server_error","param":null,"code":null}}')


def gateway(s: "Stack") -> dict:
    """The module's gateway file: one provider per mock upstream (named after it)."""
    openai_ = {"kind": "openai", "api_key": "sk-openai-hygiene", "forward_headers": ["openai-organization"]}
    anthropic_ = {"kind": "anthropic", "api_key": "sk-ant-hygiene", "forward_headers": ["anthropic-beta"]}
    url = lambda n: mock_url(s.up[n])  # noqa: E731
    return {
        "providers": {
            "openai": {**openai_, "url": url("openai")},
            "anthropic": {**anthropic_, "url": url("anthropic")},
            "gemini": {"kind": "gemini", "api_key": "gk-hygiene", "url": url("gemini")},
            "bedrock": {"kind": "bedrock", "region": "us-east-1", "access_key_id": AWS_AK, "secret_access_key": AWS_SK,
                        "url": url("bedrock")},
            # The same two kinds (and the headers each forwards) behind failing and healthy mocks.
            "openai-down": {**openai_, "url": url("openai-down")},
            "anthropic-down": {**anthropic_, "url": url("anthropic-down")},
            "openai-ok": {**openai_, "url": url("openai-ok")},
            "anthropic-ok": {**anthropic_, "url": url("anthropic-ok")},
        },
        "models": {
            "gpt": {"provider": "openai", "model": "gpt-4o-mini"},
            "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
            "gemini-flash": {"provider": "gemini", "model": "gemini-2.5-flash"},
            "nova": {"provider": "bedrock", "model": "us.amazon.nova-lite-v1:0"},
            # Fallback both ways between two providers that forward different headers.
            "openai-first": {"targets": [
                {"provider": "openai-down", "model": "gpt-4o-mini"}, {"provider": "anthropic-ok", "model": "claude-sonnet-4-5"}]},
            "anthropic-first": {"targets": [
                {"provider": "anthropic-down", "model": "claude-sonnet-4-5"}, {"provider": "openai-ok", "model": "gpt-4o-mini"}]},
        },
        "keys": [{"id": "t", "sha256": sha256_hex(KEY), "models": ["*"]}],
    }


class Stack:
    def __init__(self):
        self.up = {
            "openai": MockUpstream(gzipped_if_asked(chat_completion("gpt-4o-mini", "openai says hi"))),
            "anthropic": MockUpstream(gzipped_if_asked(anthropic_message("claude-sonnet-4-5", "claude says hi"))),
            "gemini": MockUpstream(gzipped_if_asked(gemini_response("gemini says hi"))),
            "bedrock": MockUpstream(bedrock_responder),
            "openai-down": MockUpstream(unavailable),
            "anthropic-down": MockUpstream(unavailable),
        }
        self.up["openai-ok"] = MockUpstream(gzipped_if_asked(chat_completion("gpt-4o-mini", "openai says hi")))
        self.up["anthropic-ok"] = MockUpstream(gzipped_if_asked(anthropic_message("claude-sonnet-4-5", "claude says hi")))
        cfg = render(gateway(self))
        self.envoy = Envoy(cfg).wait_ready()

    def post(self, path: str, body, headers: dict | None = None):
        h = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
        h.update(headers or {})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return request("POST", f"{self.envoy.base}{path}", data, h)

    def counts(self) -> dict:
        return {n: len(u.requests) for n, u in self.up.items()}

    def close(self):
        shut(self.envoy, *self.up.values())


stack = module_stack(Stack)


# ---------------------------------------------------------------------------------- item 5: tool schemas

TOOLS = [
    {"type": "function", "function": {"name": "now", "parameters": {}}},
    {"type": "function", "function": {"name": "find", "parameters": {"properties": {"q": {"type": "string"}}, "required": ["q"]}}},
]


def test_empty_and_typeless_tool_schemas_are_object_schemas(stack):
    chat = {"messages": MESSAGES, "tools": TOOLS}
    empty = {"type": "object", "properties": {}}
    typed = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    status, _, _ = stack.post("/v1/chat/completions", {"model": "claude", **chat})
    assert status == 200
    tools = stack.up["anthropic"].last().json()["tools"]
    assert [t["input_schema"] for t in tools] == [empty, typed]

    status, _, _ = stack.post("/v1/chat/completions", {"model": "nova", **chat})
    assert status == 200
    specs = stack.up["bedrock"].last().json()["toolConfig"]["tools"]
    assert [s["toolSpec"]["inputSchema"]["json"] for s in specs] == [empty, typed]

    status, _, _ = stack.post("/v1/chat/completions", {"model": "gemini-flash", **chat})
    assert status == 200
    decls = stack.up["gemini"].last().json()["tools"][0]["functionDeclarations"]
    assert decls[0] == {"name": "now"}, "an empty schema is a function without parameters"
    assert decls[1]["parametersJsonSchema"] == typed

    # The same through the Anthropic Messages API to Bedrock (an empty input_schema).
    msgs = {"model": "nova", "max_tokens": 50, "messages": MESSAGES, "tools": [{"name": "now", "input_schema": {}}]}
    status, _, _ = stack.post("/v1/messages", msgs)
    assert status == 200
    assert stack.up["bedrock"].last().json()["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"] == empty


# ------------------------------------------------------------------------------ item 6: accept-encoding


@pytest.mark.parametrize("path,model,upstream,read", [
    ("/v1/chat/completions", "claude", "anthropic", lambda v: v["choices"][0]["message"]["content"]),
    ("/v1/chat/completions", "gemini-flash", "gemini", lambda v: v["choices"][0]["message"]["content"]),
    ("/v1/chat/completions", "gpt", "openai", lambda v: v["choices"][0]["message"]["content"]),
    ("/v1/messages", "gpt", "openai", lambda v: v["content"][0]["text"]),
    ("/v1/messages", "claude", "anthropic", lambda v: v["content"][0]["text"]),
], ids=["anthropic", "gemini", "openai-passthrough", "messages-to-openai", "messages-to-anthropic"])
def test_client_accept_encoding_never_reaches_the_provider(stack, path, model, upstream, read):
    body = {"model": model, "messages": MESSAGES, "max_tokens": 20}
    status, headers, raw = stack.post(path, body, {"accept-encoding": "gzip, deflate"})
    assert "accept-encoding" not in stack.up[upstream].last().headers
    assert status == 200, raw[:300]
    assert headers.get("content-encoding") is None
    assert read(json.loads(raw)).endswith("says hi")


def test_sdk_clients_get_answers_they_can_read(stack):
    # httpx (under both SDKs) accepts gzip by default.
    c = harness.openai_client(base_url=f"{stack.envoy.base}/v1", api_key=KEY, max_retries=0, timeout=10)
    assert c.chat.completions.create(model="claude", messages=MESSAGES).choices[0].message.content == "claude says hi"
    a = harness.anthropic_client(base_url=stack.envoy.base, api_key=KEY, max_retries=0, timeout=10)
    m = a.messages.create(model="gpt", max_tokens=20, messages=MESSAGES)
    assert m.content[0].text == "openai says hi"
    assert "accept-encoding" not in stack.up["openai"].last().headers


# ------------------------------------------------------------------------------ item 7: header allow-list

CLIENT_HEADERS = {
    "openai-organization": "org-caller",
    "openai-project": "proj-caller",
    "anthropic-beta": "some-beta-2025",
    "openai-beta": "assistants=v2",
    "x-stainless-os": "Linux",
    "cookie": "session=abc",
    "x-forwarded-for": "203.0.113.7",
    "x-envoy-retry-on": "5xx",
    "x-switchyard-provider": "forged",
    "x-custom-thing": "1",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "user-agent": "hygiene-test/1.0",
    "accept": "application/json",
}
ALWAYS_DROPPED = ["openai-project", "openai-beta", "x-stainless-os", "cookie", "x-forwarded-for", "x-envoy-retry-on",
                  "x-switchyard-provider", "x-custom-thing"]
ALWAYS_KEPT = {"traceparent": CLIENT_HEADERS["traceparent"], "x-b3-traceid": CLIENT_HEADERS["x-b3-traceid"],
               "user-agent": "hygiene-test/1.0", "accept": "application/json"}


def assert_forwarded(rec, kept: dict, dropped: list):
    for name in ALWAYS_DROPPED + dropped:
        assert name not in rec.headers, f"{name} reached the provider"
    for name, value in {**ALWAYS_KEPT, **kept}.items():
        assert rec.headers.get(name) == value, f"{name}: {rec.headers.get(name)!r}"
    assert "x-request-id" in rec.headers
    # Bedrock's translator asks for `identity` itself; nobody gets the client's value.
    assert rec.headers.get("accept-encoding") in (None, "identity")


@pytest.mark.parametrize("model,upstream,kept,dropped", [
    ("gpt", "openai", {"openai-organization": "org-caller"}, ["anthropic-beta"]),
    ("claude", "anthropic", {"anthropic-beta": "some-beta-2025"}, ["openai-organization"]),
    ("gemini-flash", "gemini", {}, ["openai-organization", "anthropic-beta"]),
    ("nova", "bedrock", {}, ["openai-organization", "anthropic-beta"]),
])
def test_only_allowed_headers_reach_the_provider(stack, model, upstream, kept, dropped):
    status, _, raw = stack.post("/v1/chat/completions", {"model": model, "messages": MESSAGES},
                                {**CLIENT_HEADERS, "accept-encoding": "gzip"})
    assert status == 200, raw[:300]
    assert_forwarded(stack.up[upstream].last(), kept, dropped)


@pytest.mark.parametrize("model,first,second,kept,dropped", [
    ("openai-first", "openai-down", "anthropic-ok", {"anthropic-beta": "some-beta-2025"}, ["openai-organization"]),
    ("anthropic-first", "anthropic-down", "openai-ok", {"openai-organization": "org-caller"}, ["anthropic-beta"]),
])
def test_each_attempt_gets_the_headers_its_provider_forwards(stack, model, first, second, kept, dropped):
    before = stack.counts()
    status, headers, raw = stack.post("/v1/chat/completions", {"model": model, "messages": MESSAGES}, CLIENT_HEADERS)
    assert status == 200, raw[:300]
    assert stack.counts()[first] == before[first] + 1 and stack.counts()[second] == before[second] + 1
    first_kept = {"openai-organization": "org-caller"} if first == "openai-down" else {"anthropic-beta": "some-beta-2025"}
    assert_forwarded(stack.up[first].last(), first_kept, list(kept))
    # The retry went to another provider: the header the first attempt's provider took is gone, and the
    # one the first attempt removed is back.
    assert_forwarded(stack.up[second].last(), kept, dropped)


def test_sdk_headers_are_not_forwarded(stack):
    c = harness.openai_client(base_url=f"{stack.envoy.base}/v1", api_key=KEY, max_retries=0, timeout=10,
                      organization="org-sdk", project="proj-sdk")
    c.chat.completions.create(model="gpt", messages=MESSAGES)
    rec = stack.up["openai"].last()
    assert rec.headers.get("openai-organization") == "org-sdk", "forward_headers lets it through to openai"
    assert "openai-project" not in rec.headers
    assert not [h for h in rec.headers if h.startswith("x-stainless-")]
    assert rec.headers["authorization"] == "Bearer sk-openai-hygiene"


BAD_FORWARD = [
    ("credential", ["authorization"], "providers.openai.forward_headers[0]", "carries a credential"),
    ("upper case", ["openai-beta", "OpenAI-Organization"], "providers.openai.forward_headers[1]", "lower-case header name"),
    ("accept-encoding", ["accept-encoding"], "providers.openai.forward_headers[0]", "must not be compressed"),
    ("not a list", "openai-organization", "providers.openai.forward_headers", "must be an array"),
]


def forward_gateway(value=None) -> dict:
    """A one-provider gateway file whose provider forwards `value` (no forward_headers when None)."""
    openai_ = {"kind": "openai", "api_key": "sk-x", "url": f"http://127.0.0.1:{free_port()}"}
    if value is not None:
        openai_["forward_headers"] = value
    return {"providers": {"openai": openai_}, "models": {"gpt": {"provider": "openai", "model": "gpt-4o-mini"}},
            "keys": [{"id": "t", "sha256": sha256_hex(KEY), "models": ["*"]}]}


@pytest.mark.parametrize("name,value,field,reason", BAD_FORWARD, ids=[b[0] for b in BAD_FORWARD])
def test_envoy_refuses_bad_forward_headers(name, value, field, reason):
    # The compiler refuses the file, naming the field with the filter's own message...
    out = cli("check", str(gateway_file(forward_gateway(value))))
    assert out.returncode == 1, out.stdout
    assert f"invalid switchyard config at '{field}'" in out.stderr and reason in out.stderr, out.stderr
    # ...so no rendered config has such a value. Envoy must refuse a hand-written one all the same: the
    # file without it rendered, then the bad value written into the plugin configuration by hand.
    cfg = render(forward_gateway())
    for pc in plugin_configs(cfg):
        p = json.loads(pc["configuration"]["value"])
        p["providers"]["openai"]["forward_headers"] = value
        pc["configuration"]["value"] = json.dumps(p)
    envoy = Envoy(cfg)
    try:
        code = envoy.wait_exit(timeout=30)
    finally:
        envoy.stop()
    assert code != 0, "envoy started with a bad forward_headers"
    log = envoy.log()
    assert f"invalid switchyard config at '{field}'" in log, log[-3000:]
    assert reason in log


# ------------------------------------------------------------------------ item 9: one JSON validation

# The fault comes before the model name, so that its byte offset (in the message) is the same whatever
# model the body names.
BAD_BODIES = {
    "not-utf8": (b'{"user":"\xff\xfe","messages":[{"role":"user","content":"hi"}],"model":"MODEL"}', "not UTF-8"),
    "lone-surrogate": (b'{"metadata":{"k":"\\ud800"},"messages":[{"role":"user","content":"hi"}],"model":"MODEL"}', "lone surrogate"),
    "lone-surrogate-in-content": (b'{"messages":[{"role":"user","content":"hi \\udc00"}],"model":"MODEL"}', "lone surrogate"),
    "huge-number": (b'{"temperature":1e400,"messages":[{"role":"user","content":"hi"}],"model":"MODEL"}', "64-bit float"),
    "too-deep": (b'{"metadata":' + b'[' * 70 + b']' * 70 + b',"messages":[{"role":"user","content":"hi"}],"model":"MODEL"}', "deeper than 64"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_one_validation_for_every_path(stack, case):
    template, what = BAD_BODIES[case]
    before = stack.counts()
    answers = []
    # Passed through, translated in the route role, translated per attempt (Bedrock; several targets).
    for model in ["gpt", "claude", "gemini-flash", "nova", "openai-first"]:
        status, _, raw = stack.post("/v1/chat/completions", template.replace(b"MODEL", model.encode()))
        assert status == 400, (model, raw[:300])
        answers.append(json.loads(raw))
    assert all(a == answers[0] for a in answers), answers
    err = answers[0]["error"]
    assert err["code"] == "invalid_json" and err["param"] is None and err["type"] == "invalid_request_error"
    assert what in err["message"]
    # The Messages API answers the same error in its shape.
    msgs = template.replace(b'"MODEL"', b'"gpt","max_tokens":10')
    status, _, raw = stack.post("/v1/messages", msgs)
    assert status == 400
    v = json.loads(raw)
    assert v["type"] == "error" and v["error"]["message"] == err["message"]
    assert stack.counts() == before, "no provider saw the request"
