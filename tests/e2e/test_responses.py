"""The OpenAI Responses API (`POST /v1/responses`), end to end: the official `openai` SDK, unmodified
(`client.responses.create` / `.stream`), against Envoy with the built switchyard.wasm, one model per provider
kind. `openai`, `azure_openai` (v1 and dated api-version) and an `openai_compatible` server with
`responses: native` get the Responses API natively; `openai_compatible` (default), Anthropic, Gemini, Vertex
and Bedrock are served through the chat pivot; the built-in `mock` answers itself. Every mock provider speaks
its own wire format exactly (openai_wire.py, provider_wire.py) and records what it got; every answer and
stream event the client gets is validated against openapi/switchyard.yaml by the harness."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import openai
import pytest

import harness
from harness import Envoy, MockUpstream, Reply, mock_url, module_stack, render, request, sha256_hex, shut
from openai_wire import chat_completion_full, chat_stream, error, response_events, response_object
from provider_wire import (
    anthropic_error,
    anthropic_message,
    anthropic_stream,
    bedrock_converse,
    bedrock_exception,
    bedrock_stream,
    gemini_error,
    gemini_response,
    gemini_stream,
    sigv4_check,
)

KEY = "sk-sy-responses-test-0001"
NARROW_KEY = "sk-sy-responses-narrow-0002"  # may use `gpt` only
OBS_KEY = "sk-sy-responses-obs-0003"  # used by the telemetry test only
LIMIT_KEYS = {(m, s): f"sk-sy-responses-tok-{m}-{int(s)}" for m in ("gpt", "claude") for s in (False, True)}
TOKEN_LIMIT = 1000

OPENAI_SECRET = "sk-openai-RESPONSES-PROVIDER-SECRET-1"
AZURE_SECRET = "azure-RESPONSES-PROVIDER-SECRET-2"
COMPAT_SECRET = "sk-compat-RESPONSES-PROVIDER-SECRET-3"
ANTHROPIC_SECRET = "sk-ant-RESPONSES-PROVIDER-SECRET-4"
GEMINI_SECRET = "AIza-RESPONSES-PROVIDER-SECRET-5"
VERTEX_TOKEN = "ya29.RESPONSES-PROVIDER-SECRET-6"
AWS_AK = "AKIDRESPONSESPROVIDER"
AWS_SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYRESPONSESSECRET"
AWS_TOKEN = "FwoGZXIvYXdzERESPONSES-SESSION-TOKEN"
BEDROCK_HOST = "bedrock-runtime.us-east-1.amazonaws.com"
BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
AZURE_DATED_VERSION = "2025-03-01-preview"
ENV = {"OPENAI_API_KEY": OPENAI_SECRET, "AZURE_API_KEY": AZURE_SECRET, "COMPAT_API_KEY": COMPAT_SECRET,
       "ANTHROPIC_API_KEY": ANTHROPIC_SECRET, "GEMINI_API_KEY": GEMINI_SECRET, "VERTEX_TOKEN": VERTEX_TOKEN,
       "AWS_ACCESS_KEY_ID": AWS_AK, "AWS_SECRET_ACCESS_KEY": AWS_SK, "AWS_SESSION_TOKEN": AWS_TOKEN}


@dataclass(frozen=True)
class Target:
    provider: str  # the provider's name in the gateway file, and its mock upstream's
    wire: str  # what the provider speaks: responses | chat | anthropic | gemini | bedrock
    model: str  # the provider's model name (Azure: the deployment)


MODELS = {
    "gpt": Target("openai", "responses", "gpt-4.1-mini"),
    "azure-v1": Target("azure", "responses", "dep-responses-v1"),
    "azure-dated": Target("azure-dated", "responses", "dep-responses-dated"),
    "compat-native": Target("compat-native", "responses", "qwen3-32b"),
    "compat": Target("compat", "chat", "mistral-large-latest"),
    "claude": Target("anthropic", "anthropic", "claude-sonnet-4-5"),
    "gemini": Target("gemini", "gemini", "gemini-2.5-flash"),
    "vertex": Target("vertex", "gemini", "gemini-2.5-flash"),
    "bedrock": Target("bedrock", "bedrock", BEDROCK_MODEL),
}
NATIVE = [m for m, t in MODELS.items() if t.wire == "responses"]
PIVOT = [m for m, t in MODELS.items() if t.wire != "responses"]
# The two targets of the model `ha` (fallback: OpenAI natively first, then Anthropic through the pivot).
FALLBACK = {"openai-fb": Target("openai-fb", "responses", "gpt-4o-mini"),
            "anthropic-fb": Target("anthropic-fb", "anthropic", "claude-haiku")}
UPSTREAMS = [t.provider for t in MODELS.values()] + list(FALLBACK)


def gateway(s: "Stack") -> dict:
    """The module's gateway file: one provider per mock upstream (credentials from the environment), one
    model per provider kind, the built-in mock, and a two-target fallback model."""
    url = lambda name: mock_url(s.up[name])  # noqa: E731
    key = lambda kid, secret, models=("*",), limits=None: {  # noqa: E731
        "id": kid, "sha256": sha256_hex(secret), "models": list(models), **({"limits": limits} if limits else {})}
    return {
        "providers": {
            "openai": {"kind": "openai", "api_key": {"env": "OPENAI_API_KEY"}, "url": url("openai")},
            "azure": {"kind": "azure_openai", "api_version": "v1", "api_key": {"env": "AZURE_API_KEY"}, "url": url("azure")},
            "azure-dated": {"kind": "azure_openai", "api_version": AZURE_DATED_VERSION, "api_key": {"env": "AZURE_API_KEY"},
                            "url": url("azure-dated")},
            "compat": {"kind": "openai_compatible", "api_key": {"env": "COMPAT_API_KEY"}, "url": url("compat")},
            "compat-native": {"kind": "openai_compatible", "api_key": {"env": "COMPAT_API_KEY"}, "base_path": "/api/v1",
                              "responses": "native", "url": url("compat-native")},
            "anthropic": {"kind": "anthropic", "api_key": {"env": "ANTHROPIC_API_KEY"}, "default_max_tokens": 1000,
                          "url": url("anthropic")},
            "gemini": {"kind": "gemini", "api_key": {"env": "GEMINI_API_KEY"}, "url": url("gemini")},
            "vertex": {"kind": "vertex", "project": "my-proj", "location": "us-central1", "api_key": {"env": "VERTEX_TOKEN"},
                       "url": url("vertex")},
            "bedrock": {"kind": "bedrock", "region": "us-east-1", "access_key_id": {"env": "AWS_ACCESS_KEY_ID"},
                        "secret_access_key": {"env": "AWS_SECRET_ACCESS_KEY"}, "session_token": {"env": "AWS_SESSION_TOKEN"},
                        "url": url("bedrock")},
            "local": {"kind": "mock"},
            "openai-fb": {"kind": "openai", "api_key": {"env": "OPENAI_API_KEY"}, "url": url("openai-fb")},
            "anthropic-fb": {"kind": "anthropic", "api_key": {"env": "ANTHROPIC_API_KEY"}, "url": url("anthropic-fb")},
        },
        "models": {
            **{m: {"provider": t.provider, "model": t.model} for m, t in MODELS.items()},
            "echo": {"provider": "local"},
            "ha": {"idle_timeout": "2s", "outlier_detection": False, "targets": [
                {"provider": "openai-fb", "model": "gpt-4o-mini"},
                {"provider": "anthropic-fb", "model": "claude-haiku"},
            ]},
        },
        "keys": [
            key("t", KEY),
            key("narrow", NARROW_KEY, ["gpt"]),
            key("obs", OBS_KEY),
            *[key(f"tok-{m}-{int(s)}", k, limits={"tokens": {"limit": TOKEN_LIMIT, "window_secs": 3600}})
              for (m, s), k in LIMIT_KEYS.items()],
        ],
    }


# ------------------------------------------------------------------------ what each mock provider says


@dataclass(frozen=True)
class Say:
    """What a provider answers, whatever its wire format."""
    text: str | None = None
    calls: tuple = ()  # (call_id, name, arguments as a dict); Gemini sends no ids
    finish: str = "stop"  # stop | length | filter (the provider's content filter stopped it)
    usage: tuple = (21, 7, 0)  # input tokens (cached included), output tokens, cached input tokens
    fail: str | None = None  # streams: after the text, the provider's own error event with this message
    cut: bool = False  # streams: the provider's stream ends after the text, without its last events


def pieces(s: str | None, n: int = 3) -> list[str]:
    if not s:
        return []
    k = max(1, -(-len(s) // n))
    return [s[i:i + k] for i in range(0, len(s), k)]


def is_stream(t: Target, rec) -> bool:
    if t.wire == "gemini":
        return ":streamGenerateContent" in rec.path
    if t.wire == "bedrock":
        return rec.path.endswith("/converse-stream")
    return rec.json().get("stream") is True


SSE = {"content-type": "text/event-stream"}
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}


def build(t: Target, say: Say, stream: bool, rec) -> Reply:
    """The provider's answer to `rec` in its own wire format."""
    inp, out, cached = say.usage
    length = say.finish == "length"
    filtered = say.finish == "filter"
    text_pieces = pieces(say.text)
    arg_pieces = [(cid, name, pieces(json.dumps(args), 2)) for cid, name, args in say.calls]
    if t.wire == "responses":
        model = rec.json().get("model", t.model)
        status, reason = ("incomplete", "max_output_tokens") if length else ("completed", None)
        if not stream:
            return Reply(body=json.dumps(response_object(model, say.text, say.calls, status, reason, (inp, out, cached, 0))).encode())
        return Reply(headers=SSE, chunks=response_events(model, text_pieces, arg_pieces, status, reason, (inp, out, cached, 0),
                                                         fail=say.fail, end=not say.cut))
    if t.wire == "chat":
        finish = "tool_calls" if say.calls else ("length" if length else "content_filter" if filtered else "stop")
        if not stream:
            return Reply(body=json.dumps(chat_completion_full(t.model, say.text, say.calls, finish, say.usage)).encode())
        include = bool((rec.json().get("stream_options") or {}).get("include_usage"))
        chunks = chat_stream(t.model, text_pieces, arg_pieces, finish, say.usage, include_usage=include)
        if say.fail or say.cut:
            chunks = chunks[:1 + len(text_pieces)]
        if say.fail:
            chunks += ["data: " + json.dumps({"error": {"message": say.fail, "type": "server_error", "param": None, "code": None}}) + "\n\n",
                       "data: [DONE]\n\n"]
        return Reply(headers=SSE, chunks=chunks)
    if t.wire == "anthropic":
        stop = "tool_use" if say.calls else ("max_tokens" if length else "refusal" if filtered else "end_turn")
        if not stream:
            return Reply(body=json.dumps(anthropic_message(t.model, say.text, say.calls, stop, (inp - cached, out, cached))).encode())
        events = anthropic_stream(t.model, text_pieces, arg_pieces, stop, (inp, out))
        if say.fail or say.cut:
            events = events[:3 + len(text_pieces)]  # message_start, ping, content_block_start, the deltas
        if say.fail:
            events.append("event: error\ndata: " + json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": say.fail}}) + "\n\n")
        return Reply(headers=SSE, chunks=events)
    if t.wire == "gemini":
        finish = "MAX_TOKENS" if length else "SAFETY" if filtered else "STOP"
        calls = [(name, args) for _, name, args in say.calls]
        if not stream:
            return Reply(body=json.dumps(gemini_response(say.text, calls, finish, (inp, out, cached))).encode())
        events = gemini_stream(text_pieces, calls, finish, (inp, out))
        if say.fail or say.cut:
            events = events[:len(text_pieces)]
        if say.fail:
            events.append("data: " + json.dumps({"error": {"code": 503, "message": say.fail, "status": "UNAVAILABLE"}}) + "\r\n\r\n")
        return Reply(headers=SSE, chunks=events)
    if t.wire == "bedrock":
        stop = "tool_use" if say.calls else ("max_tokens" if length else "content_filtered" if filtered else "end_turn")
        if not stream:
            return Reply(body=json.dumps(bedrock_converse(say.text, say.calls, stop, (inp, out))).encode())
        frames = bedrock_stream(text_pieces, arg_pieces, stop, (inp, out))
        if say.fail or say.cut:
            frames = frames[:1 + len(text_pieces)]  # messageStart, the deltas
        if say.fail:
            frames.append(bedrock_exception("throttlingException", say.fail))
        return Reply(headers=EVENTSTREAM, chunks=frames)
    raise AssertionError(t.wire)


def answer(t: Target, say: Say):
    """A responder: Bedrock's signature is checked first (a wrong one gets Bedrock's 403)."""

    def respond(rec):
        if t.wire == "bedrock":
            problem = sigv4_check(rec, AWS_AK, AWS_SK, "us-east-1", AWS_TOKEN)
            if problem:
                return Reply(status=403, body=json.dumps({"message": f"The request signature we calculated does not match: {problem}"}).encode())
        return build(t, say, is_stream(t, rec), rec)

    return respond


def provider_error(t: Target, status: int, message: str) -> Reply:
    """The provider's own error answer for 400, 429 or 500."""
    if t.wire in ("responses", "chat"):
        type_, code = {400: ("invalid_request_error", None), 429: ("requests", "rate_limit_exceeded"), 500: ("server_error", None)}[status]
        return error(status, message, type_, code)
    if t.wire == "anthropic":
        return anthropic_error(status, {400: "invalid_request_error", 429: "rate_limit_error", 500: "api_error"}[status], message)
    if t.wire == "gemini":
        return gemini_error(status, {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}[status], message)
    etype = {400: "ValidationException", 429: "ThrottlingException", 500: "InternalServerException"}[status]
    return Reply(status=status, headers={"content-type": "application/json",
                                         "x-amzn-errortype": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/"},
                 body=json.dumps({"message": message}).encode())


def call_ids(t: Target, n: int = 2) -> list[str | None]:
    """The tool call ids a provider of this wire format would send (Gemini sends none)."""
    prefix = {"responses": "call_Rx", "chat": "call_Cx", "anthropic": "toolu_01A", "gemini": None, "bedrock": "tooluse_B"}[t.wire]
    return [f"{prefix}{i}" if prefix else None for i in range(1, n + 1)]


# ------------------------------------------------------------------------------------------------ stack


class Stack:
    def __init__(self):
        self.up = {name: MockUpstream(lambda r: Reply(status=500, body=b'{"error":{"message":"unset"}}')) for name in UPSTREAMS}
        self.defaults = {}
        for m, t in {**MODELS, **FALLBACK}.items():
            self.defaults[t.provider] = answer(t, Say(text=f"{m} says hi"))
            self.up[t.provider].responder = self.defaults[t.provider]
        cfg = render(gateway(self))
        cfg["stats_flush_interval"] = "1s"  # not a gateway-file field: histograms and counters reach the admin sooner
        self.envoy = Envoy(cfg, env=ENV, access_log=True).wait_ready()

    def client(self, key: str = KEY) -> openai.OpenAI:
        return harness.openai_client(base_url=f"{self.envoy.base}/v1", api_key=key, max_retries=0, timeout=15)

    def close(self):
        shut(self.envoy, *self.up.values())


stack = module_stack(Stack)


@pytest.fixture
def respond(stack):
    """Sets what a model's provider (or a fallback target) answers for one test: a Say, or a responder."""

    def set_(name, what):
        t = MODELS.get(name) or FALLBACK[name]
        stack.up[t.provider].responder = answer(t, what) if isinstance(what, Say) else what

    yield set_
    for name, u in stack.up.items():
        u.responder = stack.defaults[name]


def upstream(stack, model):
    return stack.up[MODELS[model].provider]


# --------------------------------------------------------------------------------------- shared checks


def text_of(content) -> str:
    """The text of a chat/Anthropic content: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [])


def expected_path(model: str, stream: bool) -> str:
    t = MODELS[model]
    google = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return {
        "gpt": "/v1/responses",
        "azure-v1": "/openai/v1/responses",
        "azure-dated": f"/openai/responses?api-version={AZURE_DATED_VERSION}",
        "compat-native": "/api/v1/responses",
        "compat": "/v1/chat/completions",
        "claude": "/v1/messages",
        "gemini": f"/v1beta/models/{t.model}:{google}",
        "vertex": f"/v1/projects/my-proj/locations/us-central1/publishers/google/models/{t.model}:{google}",
        "bedrock": "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/" + ("converse-stream" if stream else "converse"),
    }[model]


def check_credential(model: str, rec) -> None:
    """The provider got the gateway's credential in its own header, and nothing of the client's key."""
    p, h = MODELS[model].provider, rec.headers
    if p == "openai":
        assert h["authorization"] == f"Bearer {OPENAI_SECRET}"
    elif p.startswith("azure"):
        assert h["api-key"] == AZURE_SECRET and "authorization" not in h
    elif p.startswith("compat"):
        assert h["authorization"] == f"Bearer {COMPAT_SECRET}"
    elif p == "anthropic":
        assert h["x-api-key"] == ANTHROPIC_SECRET and h["anthropic-version"] == "2023-06-01" and "authorization" not in h
    elif p == "gemini":
        assert h["x-goog-api-key"] == GEMINI_SECRET and "authorization" not in h
    elif p == "vertex":
        assert h["authorization"] == f"Bearer {VERTEX_TOKEN}"
    elif p == "bedrock":
        assert sigv4_check(rec, AWS_AK, AWS_SK, "us-east-1", AWS_TOKEN) is None
        assert h["host"] == BEDROCK_HOST
    blob = json.dumps(h) + rec.body.decode(errors="replace")
    assert KEY not in blob
    assert not any(k.startswith("x-switchyard-") for k in h)


def expected_usage(model: str, say: Say, stream: bool) -> tuple[int, int, int, int]:
    """(input, output, total, cached) as the client must see them. Bedrock's answers here carry no cache
    counts, nor do the Anthropic and Gemini stream builders."""
    inp, out, cached = say.usage
    wire = MODELS[model].wire
    if wire == "bedrock" or (stream and wire in ("anthropic", "gemini")):
        cached = 0
    return inp, out, inp + out, cached


def usage_of(r) -> tuple[int, int, int, int]:
    u = r.usage
    assert u is not None, "the Response carries its usage"
    return u.input_tokens, u.output_tokens, u.total_tokens, u.input_tokens_details.cached_tokens


def check_sequence(events) -> None:
    seq = [e.sequence_number for e in events]
    assert all(b > a for a, b in zip(seq, seq[1:])), f"sequence numbers must strictly increase: {seq}"


def provider_events(chunks) -> list[tuple[str, int]]:
    """(type, sequence_number) of the events a native provider sent."""
    out = []
    for c in chunks:
        data = json.loads(c.split("data: ", 1)[1])
        out.append((data["type"], data["sequence_number"]))
    return out


def native_body(params: dict, model: str, **extra) -> dict:
    """What a native provider must get: the client's body with only `model` replaced."""
    return {**params, **extra, "model": MODELS[model].model}


def check_sent_text_request(model: str, sent: dict, params: dict, stream: bool) -> None:
    """A plain text request (instructions, one user input, max_output_tokens, temperature) in the provider's
    own format."""
    t = MODELS[model]
    wire = t.wire
    if wire == "responses":
        assert sent == native_body(params, model, **({"stream": True} if stream else {})), "only `model` is replaced"
        return
    if wire == "chat":
        assert sent["model"] == t.model
        msgs = sent["messages"]
        assert [m["role"] for m in msgs] in (["system", "user"], ["developer", "user"]), msgs
        assert text_of(msgs[0]["content"]) == params["instructions"] and text_of(msgs[1]["content"]) == params["input"]
        assert (sent.get("max_completion_tokens") or sent.get("max_tokens")) == params["max_output_tokens"]
        assert sent["temperature"] == params["temperature"]
        if stream:
            assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
        else:
            assert not sent.get("stream")
    elif wire == "anthropic":
        assert sent["model"] == t.model and sent["max_tokens"] == params["max_output_tokens"]
        assert sent["system"] in (params["instructions"], [{"type": "text", "text": params["instructions"]}])
        assert [m["role"] for m in sent["messages"]] == ["user"] and text_of(sent["messages"][0]["content"]) == params["input"]
        assert sent["temperature"] == params["temperature"]
        assert sent.get("stream", False) is stream
    elif wire == "gemini":
        assert sent["systemInstruction"]["parts"][0]["text"] == params["instructions"]
        assert [c["role"] for c in sent["contents"]] == ["user"]
        assert sent["contents"][0]["parts"] == [{"text": params["input"]}]
        assert sent["generationConfig"]["maxOutputTokens"] == params["max_output_tokens"]
        assert sent["generationConfig"]["temperature"] == params["temperature"]
    elif wire == "bedrock":
        assert sent["system"] == [{"text": params["instructions"]}]
        assert sent["messages"] == [{"role": "user", "content": [{"text": params["input"]}]}]
        assert sent["inferenceConfig"]["maxTokens"] == params["max_output_tokens"]
        assert sent["inferenceConfig"]["temperature"] == params["temperature"]


TOOL_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}
TOOL = {"type": "function", "name": "get_weather", "description": "Current weather for a city", "parameters": TOOL_PARAMS,
        "strict": True}


def check_sent_tools(model: str, sent: dict) -> None:
    """The function tool in the provider's own format."""
    wire = MODELS[model].wire
    if wire == "chat":
        assert sent["tools"][0]["type"] == "function"
        f = sent["tools"][0]["function"]
        assert (f["name"], f["parameters"], f.get("description")) == ("get_weather", TOOL_PARAMS, TOOL["description"])
    elif wire == "anthropic":
        tool = sent["tools"][0]
        assert (tool["name"], tool["input_schema"], tool.get("description")) == ("get_weather", TOOL_PARAMS, TOOL["description"])
    elif wire == "gemini":
        decl = sent["tools"][0]["functionDeclarations"][0]
        assert (decl["name"], decl["parametersJsonSchema"]) == ("get_weather", TOOL_PARAMS)
    elif wire == "bedrock":
        spec = sent["toolConfig"]["tools"][0]["toolSpec"]
        assert (spec["name"], spec["inputSchema"]["json"]) == ("get_weather", TOOL_PARAMS)


def check_call_ids(model: str, got: list[str], said: list[str | None]) -> None:
    if MODELS[model].wire == "gemini":
        assert all(got) and len(set(got)) == len(got), f"Gemini sends no ids: the gateway makes distinct ones: {got}"
    else:
        assert got == said, "call_id is the provider's own tool call id"


# -------------------------------------------------------------------------------------------- plain text


@pytest.mark.parametrize("model", list(MODELS))
def test_plain_text(stack, respond, model):
    say = Say(text=f"{model} answers in plain text", usage=(21, 7, 4))
    respond(model, say)
    up = upstream(stack, model)
    n0 = len(up.requests)
    params = {"model": model, "input": "Say hi", "instructions": "Be brief.", "max_output_tokens": 64, "temperature": 0.5}
    raw = stack.client().responses.with_raw_response.create(**params)
    r = raw.parse()
    assert r.object == "response" and r.status == "completed" and r.id
    assert r.output_text == say.text
    assert [o.type for o in r.output] == ["message"] and r.output[0].role == "assistant"
    assert usage_of(r) == expected_usage(model, say, False)
    assert raw.headers["x-switchyard-provider"] == MODELS[model].provider
    assert len(up.requests) == n0 + 1
    rec = up.last()
    assert rec.path == expected_path(model, stream=False)
    check_credential(model, rec)
    check_sent_text_request(model, rec.json(), params, stream=False)


# ------------------------------------------------------------------------- input items and parameters

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


@pytest.mark.parametrize("model", PIVOT)
def test_input_items_of_every_role_through_the_pivot(stack, respond, model):
    """`input` as items: a developer message, a user message with input_text and input_image parts, an
    earlier assistant answer (output_text), and a user string: each in the provider's own turns."""
    t = MODELS[model]
    respond(model, Say(text="Still one pixel."))
    items = [
        {"role": "developer", "content": "Answer briefly."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}", "detail": "auto"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A single pixel.", "annotations": []}]},
        {"role": "user", "content": "Are you sure?"},
    ]
    r = stack.client().responses.create(model=model, input=items)
    assert r.output_text == "Still one pixel."
    sent = upstream(stack, model).last().json()
    if t.wire == "chat":
        msgs = sent["messages"]
        assert [m["role"] for m in msgs] in (["developer", "user", "assistant", "user"], ["system", "user", "assistant", "user"]), msgs
        assert text_of(msgs[0]["content"]) == "Answer briefly."
        parts = msgs[1]["content"]
        assert {"type": "text", "text": "What is this?"} in parts
        images = [p for p in parts if p["type"] == "image_url"]
        assert [p["image_url"]["url"] for p in images] == [f"data:image/png;base64,{PIXEL}"]
        assert text_of(msgs[2]["content"]) == "A single pixel." and text_of(msgs[3]["content"]) == "Are you sure?"
    elif t.wire == "anthropic":
        assert sent["system"] in ("Answer briefly.", [{"type": "text", "text": "Answer briefly."}])
        msgs = sent["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"], msgs
        assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}} in msgs[0]["content"]
        assert "What is this?" in text_of(msgs[0]["content"])
        assert text_of(msgs[1]["content"]) == "A single pixel." and text_of(msgs[2]["content"]) == "Are you sure?"
    elif t.wire == "gemini":
        assert sent["systemInstruction"]["parts"] == [{"text": "Answer briefly."}]
        contents = sent["contents"]
        assert [c["role"] for c in contents] == ["user", "model", "user"], contents
        assert {"inlineData": {"mimeType": "image/png", "data": PIXEL}} in contents[0]["parts"]
        assert {"text": "What is this?"} in contents[0]["parts"]
        assert contents[1]["parts"] == [{"text": "A single pixel."}] and contents[2]["parts"] == [{"text": "Are you sure?"}]
    elif t.wire == "bedrock":
        assert sent["system"] == [{"text": "Answer briefly."}]
        msgs = sent["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"], msgs
        assert {"text": "What is this?"} in msgs[0]["content"]
        images = [b["image"] for b in msgs[0]["content"] if "image" in b]
        assert images == [{"format": "png", "source": {"bytes": PIXEL}}]
        assert msgs[1]["content"] == [{"text": "A single pixel."}] and msgs[2]["content"] == [{"text": "Are you sure?"}]


@pytest.mark.parametrize("model", PIVOT)
def test_sampling_tool_choice_and_reasoning_reach_the_provider(stack, respond, model):
    """top_p, a named tool_choice, parallel_tool_calls false, reasoning.effort and user, each as the
    provider has it (dropped where it has no equivalent)."""
    t = MODELS[model]
    cid = call_ids(t, 1)[0]
    respond(model, Say(calls=((cid, "get_weather", {"city": "Oslo"}),)))
    params = {"model": model, "input": "Weather in Oslo?", "tools": [TOOL], "top_p": 0.9, "parallel_tool_calls": False,
              "tool_choice": {"type": "function", "name": "get_weather"}, "reasoning": {"effort": "low"}, "user": "user-42",
              "metadata": {"team": "a"}}
    r = stack.client().responses.create(**params)
    assert [(o.type, o.name) for o in r.output] == [("function_call", "get_weather")]
    sent = upstream(stack, model).last().json()
    if t.wire == "chat":
        assert sent["top_p"] == 0.9 and sent["parallel_tool_calls"] is False
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        assert sent["reasoning_effort"] == "low" and sent["user"] == "user-42"
    elif t.wire == "anthropic":
        assert sent["top_p"] == 0.9
        assert sent["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
        assert "thinking" not in sent, "reasoning.effort is not turned into extended thinking (README says why)"
        assert sent["metadata"] == {"user_id": sha256_hex("user-42")}, "Anthropic gets an opaque user id"
    elif t.wire == "gemini":
        assert sent["generationConfig"]["topP"] == 0.9
        assert sent["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1024, "reasoning.effort low"
        assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    elif t.wire == "bedrock":
        assert sent["inferenceConfig"]["topP"] == 0.9
        assert sent["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}


# ------------------------------------------------------------------------------------------------ streams


@pytest.mark.parametrize("model", list(MODELS))
def test_stream_text(stack, respond, model):
    say = Say(text=f"{model} streams its answer", usage=(19, 6, 0))
    respond(model, say)
    params = {"model": model, "input": "Say hi", "instructions": "Be brief.", "max_output_tokens": 64, "temperature": 0.5}
    with stack.client().responses.stream(**params) as s:
        events = list(s)
        final = s.get_final_response()
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    check_sequence(events)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == say.text
    assert [e.text for e in events if e.type == "response.output_text.done"] == [say.text]
    assert final.output_text == say.text and final.status == "completed"
    assert usage_of(final) == expected_usage(model, say, True)
    rec = upstream(stack, model).last()
    assert rec.path == expected_path(model, stream=True)
    check_credential(model, rec)
    check_sent_text_request(model, rec.json(), params, stream=True)
    if MODELS[model].wire == "responses":
        sent = build(MODELS[model], say, True, rec).chunks
        assert [(e.type, e.sequence_number) for e in events] == provider_events(sent), "a native stream passes unchanged"


@pytest.mark.parametrize("model", [*MODELS, "echo"])
def test_stream_wire_format(stack, model):
    """The raw stream: `event: TYPE` + `data: {"type": TYPE, "sequence_number": N, ...}` pairs, numbers
    increasing, no `[DONE]`, ended by `response.completed`."""
    status, headers, body = request("POST", f"{stack.envoy.base}/v1/responses",
                                    json.dumps({"model": model, "input": "Hello wire", "stream": True}),
                                    {"authorization": f"Bearer {KEY}", "content-type": "application/json"}, timeout=15)
    assert status == 200, body[:300]
    assert headers["content-type"].startswith("text/event-stream")
    text = body.decode()
    assert "[DONE]" not in text
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    seq = []
    for b in blocks:
        lines = b.split("\n")
        event = [ln[len("event:"):].strip() for ln in lines if ln.startswith("event:")]
        data = [ln[len("data:"):].strip() for ln in lines if ln.startswith("data:")]
        assert len(event) == 1 and len(data) == 1, b
        payload = json.loads(data[0])
        assert payload["type"] == event[0], b
        seq.append(payload["sequence_number"])
    assert all(b > a for a, b in zip(seq, seq[1:])), seq
    assert json.loads(blocks[0].split("data:", 1)[1])["type"] == "response.created"
    assert json.loads(blocks[-1].split("data:", 1)[1])["type"] == "response.completed"


def gated(t: Target, say: Say, gate: threading.Event):
    """A streaming responder whose stream holds after its first text piece until `gate` is set."""
    after = {"chat": 2, "anthropic": 4, "gemini": 1, "bedrock": 2}[t.wire]  # the events up to the first text piece
    plain = answer(t, say)

    def respond(rec):
        reply = plain(rec)
        if reply.chunks is not None:
            reply.chunks = [*reply.chunks[:after], gate, *reply.chunks[after:]]
        return reply

    return respond


@pytest.mark.parametrize("model", PIVOT)
def test_pivot_stream_is_converted_event_by_event(stack, respond, model):
    """The converted stream reaches the client as the provider sends it: the first text delta arrives
    while the provider still holds the rest of its stream."""
    t = MODELS[model]
    gate = threading.Event()
    say = Say(text="first then the rest", usage=(9, 5, 0))
    respond(model, gated(t, say, gate))
    up = upstream(stack, model)
    up.gate_results.clear()
    events = []
    it = iter(stack.client().responses.create(model=model, input="Say hi", stream=True))
    try:
        for e in it:
            events.append(e)
            if e.type == "response.output_text.delta":
                break
    finally:
        gate.set()
    events.extend(it)
    assert up.gate_results == [True], "no converted event reached the client before the provider finished"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == say.text
    assert events[-1].type == "response.completed"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", PIVOT)
def test_text_and_a_call_in_one_answer(stack, respond, model, stream):
    """Text, then a call, in one answer: a message item at output_index 0, the function_call at 1."""
    t = MODELS[model]
    cid = call_ids(t, 1)[0]
    respond(model, Say(text="Let me check.", calls=((cid, "get_weather", {"city": "Lima"}),), usage=(25, 14, 0)))
    params = {"model": model, "input": "Weather in Lima?", "tools": [TOOL]}
    if stream:
        with stack.client().responses.stream(**params) as s:
            events = list(s)
            r = s.get_final_response()
        added = [(e.output_index, e.item.type) for e in events if e.type == "response.output_item.added"]
        done = [(e.output_index, e.item.type) for e in events if e.type == "response.output_item.done"]
        assert added == done == [(0, "message"), (1, "function_call")], (added, done)
        assert {e.output_index for e in events if e.type == "response.output_text.delta"} == {0}
        assert {e.output_index for e in events if e.type.startswith("response.function_call_arguments.")} == {1}
    else:
        r = stack.client().responses.create(**params)
    assert [o.type for o in r.output] == ["message", "function_call"]
    assert r.output_text == "Let me check."
    assert json.loads(r.output[1].arguments) == {"city": "Lima"}


def split_bytes(chunks, size: int) -> list[bytes]:
    """The same stream cut into pieces of `size` bytes, whatever they cut (events, lines, UTF-8 characters)."""
    raw = b"".join(c.encode() if isinstance(c, str) else c for c in chunks)
    return [raw[i:i + size] for i in range(0, len(raw), size)]


@pytest.mark.parametrize("model", ["compat", "claude", "gpt"])
def test_stream_cut_anywhere_with_multibyte_text(stack, respond, model):
    """The provider's stream arrives in 7-byte pieces that split events, lines and UTF-8 characters; the
    client still gets every character once."""
    t = MODELS[model]
    text = "Grüße aus Zürich — 東京 🚆 ok"
    plain = answer(t, Say(text=text, usage=(8, 9, 0)))

    def respond_cut(rec):
        reply = plain(rec)
        reply.chunks = split_bytes(reply.chunks, 7)
        return reply

    respond(model, respond_cut)
    with stack.client().responses.stream(model=model, input="Greet me") as s:
        events = list(s)
        final = s.get_final_response()
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
    assert final.output_text == text
    check_sequence(events)


# ------------------------------------------------------------------------------------------------- tools


@pytest.mark.parametrize("model", list(MODELS))
def test_function_tool_round_trip(stack, respond, model):
    t = MODELS[model]
    cid = call_ids(t, 1)[0]
    respond(model, Say(calls=((cid, "get_weather", {"city": "Paris"}),), usage=(40, 9, 0)))
    question = "What is the weather in Paris?"
    params1 = {"model": model, "input": question, "tools": [TOOL], "tool_choice": "auto"}
    first = stack.client().responses.create(**params1)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    check_call_ids(model, [call.call_id], [cid])
    assert first.status == "completed"
    rec = upstream(stack, model).last()
    if t.wire == "responses":
        assert rec.json() == native_body(params1, model)
    else:
        check_sent_tools(model, rec.json())

    # The second turn: the call and its output go back as input items.
    result = '{"temp_c": 18, "sky": "sunny"}'
    respond(model, Say(text="It is 18C and sunny in Paris.", usage=(60, 11, 0)))
    item = call.model_dump(by_alias=True, exclude_none=True)
    params2 = {"model": model, "tools": [TOOL], "input": [
        {"role": "user", "content": question}, item, {"type": "function_call_output", "call_id": call.call_id, "output": result}]}
    second = stack.client().responses.create(**params2)
    assert second.output_text == "It is 18C and sunny in Paris."
    rec = upstream(stack, model).last()
    sent = rec.json()
    check_credential(model, rec)
    if t.wire == "responses":
        assert sent == native_body(params2, model), "input items pass unchanged"
    elif t.wire == "chat":
        msgs = sent["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool"], msgs
        tc = msgs[1]["tool_calls"]
        assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in tc] == [
            (call.call_id, "get_weather", {"city": "Paris"})]
        assert msgs[2]["tool_call_id"] == call.call_id and text_of(msgs[2]["content"]) == result
    elif t.wire == "anthropic":
        msgs = sent["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"], msgs
        uses = [b for b in msgs[1]["content"] if b["type"] == "tool_use"]
        assert [(b["id"], b["name"], b["input"]) for b in uses] == [(call.call_id, "get_weather", {"city": "Paris"})]
        results = [b for b in msgs[2]["content"] if b["type"] == "tool_result"]
        assert [(b["tool_use_id"], text_of(b["content"])) for b in results] == [(call.call_id, result)]
    elif t.wire == "gemini":
        contents = sent["contents"]
        assert [c["role"] for c in contents] == ["user", "model", "user"], contents
        fcs = [p["functionCall"] for p in contents[1]["parts"] if "functionCall" in p]
        assert [(f["name"], f["args"]) for f in fcs] == [("get_weather", {"city": "Paris"})]
        frs = [p["functionResponse"] for p in contents[2]["parts"] if "functionResponse" in p]
        assert [(f["name"], f["response"]) for f in frs] == [("get_weather", json.loads(result))]
    elif t.wire == "bedrock":
        msgs = sent["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"], msgs
        uses = [b["toolUse"] for b in msgs[1]["content"] if "toolUse" in b]
        assert [(u["toolUseId"], u["name"], u["input"]) for u in uses] == [(call.call_id, "get_weather", {"city": "Paris"})]
        results = [b["toolResult"] for b in msgs[2]["content"] if "toolResult" in b]
        assert [(r["toolUseId"], r["content"]) for r in results] == [(call.call_id, [{"text": result}])]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", list(MODELS))
def test_parallel_calls(stack, respond, model, stream):
    t = MODELS[model]
    ids = call_ids(t, 2)
    want = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    respond(model, Say(calls=tuple((i, n, a) for i, (n, a) in zip(ids, want)), usage=(30, 12, 0)))
    params = {"model": model, "input": "Weather in Paris and in Rome?", "tools": [TOOL], "parallel_tool_calls": True}
    if stream:
        with stack.client().responses.stream(**params) as s:
            events = list(s)
            r = s.get_final_response()
        check_sequence(events)
        done = [e for e in events if e.type == "response.function_call_arguments.done"]
        assert [json.loads(e.arguments) for e in done] == [a for _, a in want]
        added = [e for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"]
        assert len(added) == 2 and len({e.output_index for e in added}) == 2
        assert [e.item.name for e in added] == ["get_weather", "get_weather"]
    else:
        r = stack.client().responses.create(**params)
    calls = [o for o in r.output if o.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == want
    check_call_ids(model, [c.call_id for c in calls], ids)
    assert r.status == "completed"
    assert usage_of(r)[:2] == (30, 12)
    rec = upstream(stack, model).last()
    if t.wire == "responses":
        assert rec.json() == native_body(params, model, **({"stream": True} if stream else {}))
    else:
        check_sent_tools(model, rec.json())


# ------------------------------------------------------------------------------------ structured output

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
                  "required": ["city", "temp_c"], "additionalProperties": False}


@pytest.mark.parametrize("model", list(MODELS))
def test_json_schema_output(stack, respond, model):
    t = MODELS[model]
    answer_obj = {"city": "Paris", "temp_c": 18}
    respond(model, Say(text=json.dumps(answer_obj), usage=(33, 10, 0)))
    text = {"format": {"type": "json_schema", "name": "weather", "schema": WEATHER_SCHEMA, "strict": True}}
    params = {"model": model, "input": "Weather in Paris as JSON", "text": text}
    r = stack.client().responses.create(**params)
    assert json.loads(r.output_text) == answer_obj
    sent = upstream(stack, model).last().json()
    if t.wire == "responses":
        assert sent == native_body(params, model)
    elif t.wire == "chat":
        rf = sent["response_format"]
        assert rf["type"] == "json_schema"
        assert (rf["json_schema"]["name"], rf["json_schema"]["schema"], rf["json_schema"].get("strict")) == ("weather", WEATHER_SCHEMA, True)
    elif t.wire == "anthropic":
        assert sent["output_config"]["format"] == {"type": "json_schema", "schema": WEATHER_SCHEMA}
    elif t.wire == "gemini":
        g = sent["generationConfig"]
        assert g["responseMimeType"] == "application/json" and g["responseJsonSchema"] == WEATHER_SCHEMA
    elif t.wire == "bedrock":
        tf = sent["outputConfig"]["textFormat"]
        assert tf["type"] == "json_schema"
        assert tf["structure"]["jsonSchema"]["name"] == "weather"
        assert json.loads(tf["structure"]["jsonSchema"]["schema"]) == WEATHER_SCHEMA


# ---------------------------------------------------------------------------------- length-truncated


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", list(MODELS))
def test_length_truncated_is_incomplete(stack, respond, model, stream):
    say = Say(text="The weather in Paris is", finish="length", usage=(15, 16, 0))
    respond(model, say)
    params = {"model": model, "input": "Describe the weather in Paris at length", "max_output_tokens": 16}
    if not stream:
        r = stack.client().responses.create(**params)
    else:
        with stack.client().responses.stream(**params) as s:
            events = list(s)
        types = [e.type for e in events]
        assert types[0] == "response.created" and types[-1] == "response.incomplete", types
        assert "response.completed" not in types
        check_sequence(events)
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == say.text
        r = events[-1].response
    assert r.status == "incomplete"
    assert r.incomplete_details is not None and r.incomplete_details.reason == "max_output_tokens"
    texts = [c.text for o in r.output if o.type == "message" for c in o.content if c.type == "output_text"]
    assert "".join(texts) == say.text
    assert usage_of(r)[:2] == (15, 16)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", PIVOT)
def test_content_filter_is_incomplete(stack, respond, model, stream):
    """The provider's content filter stopped the answer (finish_reason content_filter, Anthropic's
    refusal, Gemini's SAFETY, Bedrock's content_filtered): incomplete, reason content_filter."""
    say = Say(text="I can", finish="filter", usage=(11, 2, 0))
    respond(model, say)
    params = {"model": model, "input": "Something the filter stops"}
    if not stream:
        r = stack.client().responses.create(**params)
    else:
        with stack.client().responses.stream(**params) as s:
            events = list(s)
        assert events[-1].type == "response.incomplete", [e.type for e in events]
        r = events[-1].response
    assert r.status == "incomplete"
    assert r.incomplete_details is not None and r.incomplete_details.reason == "content_filter"


@pytest.mark.parametrize("model", ["compat", "gemini"])
def test_reasoning_tokens_are_reported(stack, respond, model):
    """Reasoning tokens the provider counts (chat's completion_tokens_details, Gemini's thoughts) reach
    usage.output_tokens_details.reasoning_tokens; they are output tokens."""
    t = MODELS[model]
    if t.wire == "chat":
        body = chat_completion_full(t.model, "42", usage=(20, 30, 0))
        body["usage"]["completion_tokens_details"]["reasoning_tokens"] = 25
    else:
        body = gemini_response("42", usage=(20, 5, 0))
        body["usageMetadata"].update({"thoughtsTokenCount": 25, "totalTokenCount": 50})
    respond(model, lambda r: Reply(body=json.dumps(body).encode()))
    r = stack.client().responses.create(model=model, input="Think, then answer")
    assert r.output_text == "42"
    u = r.usage
    assert (u.input_tokens, u.output_tokens, u.total_tokens, u.output_tokens_details.reasoning_tokens) == (20, 30, 50, 25)


# ------------------------------------------------------------------------------------------------ errors

ERRORS = {400: openai.BadRequestError, 429: openai.RateLimitError, 500: openai.InternalServerError}


@pytest.mark.parametrize("status", list(ERRORS))
@pytest.mark.parametrize("model", list(MODELS))
def test_provider_error_before_the_answer(stack, respond, model, status):
    t = MODELS[model]
    message = f"{t.provider} refused this with {status}"
    respond(model, lambda r: provider_error(t, status, message))
    up = upstream(stack, model)
    n0 = len(up.requests)
    with pytest.raises(ERRORS[status]) as e:
        stack.client().responses.create(model=model, input="Say hi")
    # OpenAI-format providers' errors pass as they are; translated providers' 5xx become 502.
    want = 500 if status == 500 and t.wire in ("responses", "chat") else (502 if status == 500 else status)
    assert e.value.status_code == want
    body = e.value.body
    assert {"message", "type", "param", "code"} <= set(body), body
    assert message in body["message"]
    assert len(up.requests) == n0 + 1, "a one-target model asks its provider once"


@pytest.mark.parametrize("model", list(MODELS))
def test_provider_error_before_the_stream(stack, respond, model):
    t = MODELS[model]
    message = f"{t.provider} is rate limiting this stream"
    respond(model, lambda r: provider_error(t, 429, message))
    with pytest.raises(openai.RateLimitError) as e:
        stack.client().responses.create(model=model, input="Say hi", stream=True)
    assert e.value.status_code == 429 and message in e.value.body["message"]


@pytest.mark.parametrize("model", list(MODELS))
def test_provider_error_during_the_stream(stack, respond, model):
    failure = "The model crashed mid-answer"
    respond(model, Say(text="Hello there", fail=failure))
    start = time.time()
    events = list(stack.client().responses.create(model=model, input="Say hi", stream=True))
    assert time.time() - start < 10, "the stream ended (no hang)"
    types = [e.type for e in events]
    assert types and types[0] == "response.created", types
    assert "response.completed" not in types
    check_sequence(events)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello there"
    last = events[-1]
    assert last.type in ("error", "response.failed"), types
    message = last.message if last.type == "error" else last.response.error.message
    assert failure in message
    if last.type == "response.failed":
        assert last.response.status == "failed"


@pytest.mark.parametrize("model", PIVOT)
def test_provider_stream_breaking_off(stack, respond, model):
    """The provider's stream ends after some text, before its last events (Anthropic: no message_stop;
    chat: no finish_reason nor [DONE]; Gemini: no finishReason; Bedrock: no messageStop nor metadata): the
    client is told the answer failed, never that it completed."""
    respond(model, Say(text="Hello there", cut=True))
    start = time.time()
    events = list(stack.client().responses.create(model=model, input="Say hi", stream=True))
    assert time.time() - start < 10
    types = [e.type for e in events]
    assert types and types[0] == "response.created", types
    assert "response.completed" not in types
    assert types[-1] in ("error", "response.failed"), types
    check_sequence(events)


# ----------------------------------------------------------- what only OpenAI's own endpoint can do

REFUSED = {
    "hosted-tool": ({"tools": [TOOL, {"type": "web_search"}]}, "tools[1]"),
    "previous_response_id": ({"previous_response_id": "resp_0123456789abcdef"}, "previous_response_id"),
    "store": ({"store": True}, "store"),
    "background": ({"background": True}, "background"),
    "conversation": ({"conversation": "conv_0123456789abcdef"}, "conversation"),
    "prompt": ({"prompt": {"id": "pmpt_0123456789abcdef", "version": "2"}}, "prompt"),
}


@pytest.mark.parametrize("field", list(REFUSED))
@pytest.mark.parametrize("model", PIVOT)
def test_pivot_targets_refuse_openai_only_fields(stack, model, field):
    extra, param = REFUSED[field]
    up = upstream(stack, model)
    n0 = len(up.requests)
    with pytest.raises(openai.BadRequestError) as e:
        stack.client().responses.create(model=model, input="Say hi", **extra)
    body = e.value.body
    assert e.value.status_code == 400
    # The field itself, or for a hosted tool the tool's entry or its `type` (both name tools[i]).
    assert body["param"] in (param, f"{param}.type" if param.startswith("tools[") else param), body
    assert body["type"] == "invalid_request_error"
    assert MODELS[model].provider in body["message"], "the message names the provider"
    assert len(up.requests) == n0, "nothing reached the provider"


def test_pivot_refusal_of_a_stream_is_a_400_too(stack):
    with pytest.raises(openai.BadRequestError) as e:
        stack.client().responses.create(model="claude", input="Say hi", stream=True, tools=[{"type": "web_search"}])
    assert e.value.body["param"] in ("tools[0]", "tools[0].type"), e.value.body
    assert "anthropic" in e.value.body["message"]


def test_pivot_accepts_store_false(stack):
    r = stack.client().responses.create(model="claude", input="Say hi", store=False)
    assert r.output_text == "claude says hi"


@pytest.mark.parametrize("model", NATIVE)
def test_native_targets_take_hosted_tools_and_stored_state(stack, model):
    params = {"model": model, "input": "Latest news about Paris?", "tools": [TOOL, {"type": "web_search"}],
              "previous_response_id": "resp_0123456789abcdef", "store": True, "include": ["web_search_call.action.sources"],
              "reasoning": {"effort": "low"}, "metadata": {"team": "a"}}
    r = stack.client().responses.create(**params)
    assert r.output_text == f"{model} says hi"
    assert upstream(stack, model).last().json() == native_body(params, model), "passed as sent, but for the model"


# --------------------------------------------------------------------------- fallback across kinds


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_fallback_from_native_openai_to_anthropic(stack, respond, stream):
    respond("openai-fb", lambda r: error(500, "primary is down", "server_error", None))
    p, s = stack.up["openai-fb"], stack.up["anthropic-fb"]
    p0, s0 = len(p.requests), len(s.requests)
    params = {"model": "ha", "input": "Say hi", "instructions": "Be brief."}
    if stream:
        with stack.client().responses.stream(**params) as st:
            events = list(st)
            r = st.get_final_response()
        check_sequence(events)
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
    else:
        raw = stack.client().responses.with_raw_response.create(**params)
        r = raw.parse()
        assert raw.headers["x-switchyard-provider"] == "anthropic-fb"
    assert r.output_text == "anthropic-fb says hi"
    assert (len(p.requests) - p0, len(s.requests) - s0) == (1, 1)
    first, second = p.last(), s.last()
    assert first.path == "/v1/responses" and first.headers["authorization"] == f"Bearer {OPENAI_SECRET}"
    assert first.json() == {**params, **({"stream": True} if stream else {}), "model": "gpt-4o-mini"}
    assert second.path == "/v1/messages" and second.headers["x-api-key"] == ANTHROPIC_SECRET
    body = second.json()
    assert body["model"] == "claude-haiku" and body.get("stream", False) is stream
    assert body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert text_of(body["messages"][0]["content"]) == "Say hi"


def test_fallback_primary_serves_natively_when_healthy(stack):
    raw = stack.client().responses.with_raw_response.create(model="ha", input="Say hi")
    assert raw.parse().output_text == "openai-fb says hi"
    assert raw.headers["x-switchyard-provider"] == "openai-fb"


# ------------------------------------------------------------------------- keys, limits, telemetry


def test_key_auth_model_access_and_bad_requests(stack):
    with pytest.raises(openai.AuthenticationError):
        stack.client("sk-sy-not-a-key").responses.create(model="gpt", input="Say hi")
    with pytest.raises(openai.PermissionDeniedError) as e:
        stack.client(NARROW_KEY).responses.create(model="claude", input="Say hi")
    assert e.value.code == "model_not_allowed"
    assert stack.client(NARROW_KEY).responses.create(model="gpt", input="Say hi").output_text == "gpt says hi"
    with pytest.raises(openai.NotFoundError) as e:
        stack.client().responses.create(model="no-such-model", input="Say hi")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        stack.client().responses.create(model="claude", input=42)
    assert e.value.body["param"] == "input"
    status, _, body = request("POST", f"{stack.envoy.base}/v1/responses", json.dumps({"input": "Say hi"}),
                              {"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    assert status == 400 and json.loads(body)["error"]["param"] == "model"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_token_limit_settles_from_the_responses_usage(stack, respond, model, stream):
    """Each request reserves its body bytes / 4 + max_output_tokens and settles to the 300 tokens the
    provider reports (natively, or through the pivot): 300, 600, 900 fit under 1000, the fourth
    reservation does not. Had the usage not been read, each would be charged about its reservation."""
    respond(model, Say(text="ok", usage=(250, 50, 0)))
    client = stack.client(LIMIT_KEYS[(model, stream)])
    used, admitted = 0, 0
    for i in range(5):
        try:
            raw = client.responses.with_raw_response.create(model=model, input="hi", max_output_tokens=100, stream=stream)
        except openai.RateLimitError as e:
            assert e.code == "rate_limit_exceeded" and e.body["type"] == "tokens"
            assert e.response.headers["x-ratelimit-limit-tokens"] == str(TOKEN_LIMIT)
            break
        reserved = len(raw.http_request.content) // 4 + 100
        remaining = int(raw.headers["x-ratelimit-remaining-tokens"])
        assert abs(remaining - (TOKEN_LIMIT - used - reserved)) <= 10, (i, remaining, used, reserved)
        if stream:
            events = list(raw.parse())
            assert events[-1].type == "response.completed"
            r = events[-1].response
        else:
            r = raw.parse()
        assert usage_of(r)[:3] == (250, 50, 300)
        used += 300
        admitted += 1
    assert admitted == 3


def test_stats_and_access_log_say_responses(stack, respond):
    respond("gpt", Say(text="ok", usage=(250, 50, 20)))
    respond("claude", Say(text="ok", usage=(12, 5, 0)))
    stack.client(OBS_KEY).responses.create(model="gpt", input="Say hi")
    with stack.client(OBS_KEY).responses.stream(model="claude", input="Say hi") as s:
        s.until_done()
    gpt = 'model="gpt",provider="openai",key="obs"'
    claude = 'model="claude",provider="anthropic",key="obs"'
    want = {f'switchyard_requests{{{gpt},outcome="ok"}}': 1, f"switchyard_input_tokens{{{gpt}}}": 250,
            f"switchyard_output_tokens{{{gpt}}}": 50, f"switchyard_cached_tokens{{{gpt}}}": 20,
            f'switchyard_requests{{{claude},outcome="ok"}}': 1, f"switchyard_input_tokens{{{claude}}}": 12,
            f"switchyard_output_tokens{{{claude}}}": 5}
    deadline = time.time() + 5
    while True:
        p = harness.prom_samples(stack.envoy.admin("/stats/prometheus"))
        got = {k: p.get(k) for k in want}
        if got == want or time.time() > deadline:
            break
        time.sleep(0.2)
    assert got == want
    deadline = time.time() + 5
    while True:
        lines = [json.loads(ln) for ln in stack.envoy.access_log().splitlines() if ln.startswith("{")]
        # Envoy's own fields (status, ...) beside the filter's record.
        records = [{**r, **r["switchyard"]["value"]} for r in lines
                   if (r.get("switchyard") or {}).get("value", {}).get("key_id") == "obs"]
        if len(records) >= 2 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert len(records) == 2, records
    plain, streamed = records
    assert plain["gen_ai.operation.name"] == "responses" and streamed["gen_ai.operation.name"] == "responses"
    assert (plain["gen_ai.request.model"], plain["gen_ai.provider.name"], plain["stream"], plain["status"]) == ("gpt", "openai", False, 200)
    assert (plain["gen_ai.usage.input_tokens"], plain["gen_ai.usage.output_tokens"], plain["gen_ai.usage.cache_read.input_tokens"]) == (250, 50, 20)
    assert plain["usage_estimated"] is False
    assert (streamed["gen_ai.request.model"], streamed["gen_ai.provider.name"], streamed["stream"]) == ("claude", "anthropic", True)
    assert (streamed["gen_ai.usage.input_tokens"], streamed["gen_ai.usage.output_tokens"]) == (12, 5)
    assert streamed["usage_estimated"] is False


# ------------------------------------------------------------------------------------- the mock provider


def test_mock_provider_plain_and_stream(stack):
    r = stack.client().responses.create(model="echo", input="Hello from the Responses API")
    assert r.status == "completed" and r.output_text == "Hello from the Responses API"
    assert r.usage is not None and r.usage.output_tokens > 0
    with stack.client().responses.stream(model="echo", input="Hello streamed mock") as s:
        events = list(s)
        final = s.get_final_response()
    check_sequence(events)
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello streamed mock"
    assert final.output_text == "Hello streamed mock"
