"""Issue 3, end to end: the openai SDK (and the anthropic SDK on /v1/messages) against Envoy with the built
switchyard.wasm, served by mock providers that speak Anthropic, Gemini (and Vertex) and Bedrock exactly."""

from __future__ import annotations

import json
import threading

import anthropic
import openai
import pytest

import harness
from harness import Envoy, MockUpstream, Reply, free_port, mock_url, module_stack, render, sha256_hex, shut
from openai_wire import chat_completion, chunk
from provider_wire import (
    anthropic_error,
    anthropic_message,
    anthropic_stream,
    bedrock_converse,
    bedrock_exception,
    bedrock_event,
    bedrock_stream,
    gemini_error,
    gemini_response,
    gemini_stream,
    sigv4_check,
)

KEY = "sk-sy-translate-test-1"
ANTHROPIC_SECRET = "sk-ant-PROVIDER-SECRET-1111"
GEMINI_SECRET = "AIza-PROVIDER-SECRET-2222"
VERTEX_TOKEN = "ya29.PROVIDER-SECRET-3333"
AWS_AK = "AKIDEXAMPLEPROVIDER1"
AWS_SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYPROVIDERSECRET"
AWS_TOKEN = "FwoGZXIvYXdzEPROVIDER-SESSION-TOKEN"
BEDROCK_HOST = "bedrock-runtime.us-east-1.amazonaws.com"
BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def gateway(s: "Stack") -> dict:
    """The module's gateway file: one provider per mock upstream, credentials from the environment."""
    return {
        "providers": {
            "anthropic": {"kind": "anthropic", "api_key": {"env": "ANTHROPIC_API_KEY"}, "default_max_tokens": 1000,
                          "url": mock_url(s.up["anthropic"])},
            "gemini": {"kind": "gemini", "api_key": {"env": "GEMINI_API_KEY"}, "url": mock_url(s.up["gemini"])},
            "vertex": {"kind": "vertex", "project": "my-proj", "location": "us-central1", "api_key": {"env": "VERTEX_TOKEN"},
                       "url": mock_url(s.up["vertex"])},
            "bedrock": {
                "kind": "bedrock", "region": "us-east-1",
                "access_key_id": {"env": "AWS_ACCESS_KEY_ID"}, "secret_access_key": {"env": "AWS_SECRET_ACCESS_KEY"},
                "session_token": {"env": "AWS_SESSION_TOKEN"}, "url": mock_url(s.up["bedrock"]),
            },
            "compat": {"kind": "openai_compatible", "base_path": "/v1", "url": mock_url(s.up["compat"])},
            # Listens nowhere: every answer for its model is Envoy's own.
            "anthropic-down": {"kind": "anthropic", "api_key": {"env": "ANTHROPIC_API_KEY"},
                               "url": f"http://127.0.0.1:{free_port()}"},
        },
        "models": {
            "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
            "gemini-flash": {"provider": "gemini", "model": "gemini-2.0-flash"},
            "vertex-flash": {"provider": "vertex", "model": "gemini-2.0-flash"},
            "bedrock-claude": {"provider": "bedrock", "model": BEDROCK_MODEL},
            "mistral": {"provider": "compat", "model": "mistral-large-latest"},
            "claude-down": {"provider": "anthropic-down", "model": "claude-sonnet-4-5"},
        },
        "keys": [{"id": "t", "sha256": sha256_hex(KEY), "models": ["*"]}],
    }


def bedrock_responder(rec):
    problem = sigv4_check(rec, AWS_AK, AWS_SK, "us-east-1", AWS_TOKEN)
    if problem:
        return Reply(status=403, body=json.dumps({"message": f"The request signature we calculated does not match: {problem}"}).encode())
    return Reply(body=json.dumps(bedrock_converse("bedrock says hi")).encode())


class Stack:
    def __init__(self):
        self.up = {
            "anthropic": MockUpstream(lambda r: Reply(body=json.dumps(anthropic_message("claude-sonnet-4-5", "claude says hi")).encode())),
            "gemini": MockUpstream(lambda r: Reply(body=json.dumps(gemini_response("gemini says hi")).encode())),
            "vertex": MockUpstream(lambda r: Reply(body=json.dumps(gemini_response("vertex says hi")).encode())),
            "bedrock": MockUpstream(bedrock_responder),
            "compat": MockUpstream(lambda r: Reply(body=json.dumps(chat_completion("mistral-large-latest", "mistral says hi")).encode())),
        }
        cfg = render(gateway(self))
        env = {"ANTHROPIC_API_KEY": ANTHROPIC_SECRET, "GEMINI_API_KEY": GEMINI_SECRET, "VERTEX_TOKEN": VERTEX_TOKEN,
               "AWS_ACCESS_KEY_ID": AWS_AK, "AWS_SECRET_ACCESS_KEY": AWS_SK, "AWS_SESSION_TOKEN": AWS_TOKEN}
        self.envoy = Envoy(cfg, env=env).wait_ready()

    def oai(self) -> openai.OpenAI:
        return harness.openai_client(base_url=f"{self.envoy.base}/v1", api_key=KEY, max_retries=0, timeout=15)

    def ant(self, header: str = "x-api-key") -> anthropic.Anthropic:
        if header == "bearer":
            return harness.anthropic_client(base_url=self.envoy.base, auth_token=KEY, api_key=None, max_retries=0, timeout=15)
        return harness.anthropic_client(base_url=self.envoy.base, api_key=KEY, max_retries=0, timeout=15)

    def close(self):
        shut(self.envoy, *self.up.values())


stack = module_stack(Stack)


@pytest.fixture
def respond(stack):
    """Sets a provider's responder for one test, restoring the default after."""
    saved = {n: u.responder for n, u in stack.up.items()}

    def set_(name, fn):
        stack.up[name].responder = fn

    yield set_
    for n, u in stack.up.items():
        u.responder = saved[n]


def no_client_key(rec):
    blob = json.dumps(rec.headers) + rec.body.decode(errors="replace")
    assert KEY not in blob
    assert not any(h.startswith("x-switchyard-") for h in rec.headers)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]

# --------------------------------------------------------------------------------------- plain, per kind


def test_anthropic_plain(stack):
    raw = stack.oai().chat.completions.with_raw_response.create(model="claude", messages=MESSAGES, temperature=0.5)
    r = raw.parse()
    # The translated answer goes to the client with its own length, not chunked.
    assert raw.headers.get("content-length") == str(len(raw.content)) and "transfer-encoding" not in raw.headers
    assert r.choices[0].message.content == "claude says hi"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (12, 5, 17)
    rec = stack.up["anthropic"].last()
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == ANTHROPIC_SECRET and "authorization" not in rec.headers
    assert rec.headers["anthropic-version"] == "2023-06-01"
    body = rec.json()
    assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] == 1000
    assert body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert body["messages"][0]["role"] == "user" and body["temperature"] == 0.5
    assert rec.headers.get("content-length") == str(len(rec.body)) and "transfer-encoding" not in rec.headers
    no_client_key(rec)


def test_gemini_plain(stack):
    r = stack.oai().chat.completions.create(model="gemini-flash", messages=MESSAGES, max_tokens=50)
    assert r.choices[0].message.content == "gemini says hi"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (10, 4)
    rec = stack.up["gemini"].last()
    assert rec.path.startswith("/v1beta/models/gemini-2.0-flash:generateContent")
    assert rec.headers["x-goog-api-key"] == GEMINI_SECRET and "authorization" not in rec.headers
    body = rec.json()
    assert body["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert body["contents"][0]["role"] == "user"
    assert body["generationConfig"]["maxOutputTokens"] == 50
    no_client_key(rec)


def test_vertex_plain(stack):
    r = stack.oai().chat.completions.create(model="vertex-flash", messages=MESSAGES)
    assert r.choices[0].message.content == "vertex says hi"
    rec = stack.up["vertex"].last()
    assert rec.path.startswith("/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent")
    assert rec.headers["authorization"] == f"Bearer {VERTEX_TOKEN}"
    no_client_key(rec)


def test_bedrock_plain_signed(stack):
    r = stack.oai().chat.completions.create(model="bedrock-claude", messages=MESSAGES, max_tokens=64)
    assert r.choices[0].message.content == "bedrock says hi", "the mock refuses a bad SigV4 signature with 403"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (11, 6)
    rec = stack.up["bedrock"].last()
    assert rec.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    # Sent to the mock's 127.0.0.1 url, the request still carries the regional host it was signed for.
    assert rec.headers["host"] == BEDROCK_HOST
    body = rec.json()
    assert body["system"] == [{"text": "Be brief."}]
    assert body["inferenceConfig"]["maxTokens"] == 64
    no_client_key(rec)


# ------------------------------------------------------------------------------------------------ streams

STREAMS = {
    "claude": ("anthropic", lambda gate: [*anthropic_stream("claude-sonnet-4-5", ["Hel"])[:4], gate,
                                          *anthropic_stream("claude-sonnet-4-5", ["Hel", "lo"])[4:]]),
    "gemini-flash": ("gemini", lambda gate: [gemini_stream(["Hel", "lo"])[0], gate, *gemini_stream(["Hel", "lo"])[1:]]),
    "vertex-flash": ("vertex", lambda gate: [gemini_stream(["Hel", "lo"])[0], gate, *gemini_stream(["Hel", "lo"])[1:]]),
    "bedrock-claude": ("bedrock", lambda gate: [*bedrock_stream(["Hel", "lo"])[:2], gate, *bedrock_stream(["Hel", "lo"])[2:]]),
}


@pytest.mark.parametrize("alias", list(STREAMS))
def test_streams_translate_chunk_by_chunk(stack, respond, alias):
    name, make = STREAMS[alias]
    gate = threading.Event()
    ctype = "application/vnd.amazon.eventstream" if name == "bedrock" else "text/event-stream"
    respond(name, lambda r: Reply(headers={"content-type": ctype}, chunks=make(gate)))
    stack.up[name].gate_results.clear()
    stream = stack.oai().chat.completions.create(model=alias, messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    it = iter(stream)
    seen = []
    for c in it:
        seen.append(c)
        if any(ch.delta.content for ch in c.choices):
            break
    gate.set()
    seen.extend(it)
    assert stack.up[name].gate_results == [True], "no translated chunk reached the client before the upstream finished"
    assert "".join(ch.delta.content or "" for c in seen for ch in c.choices) == "Hello"
    finishes = [ch.finish_reason for c in seen for ch in c.choices if ch.finish_reason]
    assert finishes == ["stop"]
    assert seen[-1].choices == [] and seen[-1].usage is not None and seen[-1].usage.completion_tokens > 0


# -------------------------------------------------------------------------------------------------- tools

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_anthropic_tool_call_and_result_turn(stack, respond):
    respond("anthropic", lambda r: Reply(body=json.dumps(anthropic_message(
        "claude-sonnet-4-5", None, [("toolu_01", "get_weather", {"city": "Paris"}), ("toolu_02", "get_weather", {"city": "Rome"})],
        stop_reason="tool_use")).encode()))
    r = stack.oai().chat.completions.create(model="claude", messages=MESSAGES, tools=TOOLS, tool_choice="required")
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_01", "get_weather", {"city": "Paris"}), ("toolu_02", "get_weather", {"city": "Rome"})]
    sent = stack.up["anthropic"].last().json()
    assert sent["tools"][0]["name"] == "get_weather" and sent["tools"][0]["input_schema"]["required"] == ["city"]
    assert sent["tool_choice"]["type"] == "any"
    # The follow-up turn with both tool results.
    respond("anthropic", lambda r: Reply(body=json.dumps(anthropic_message("claude-sonnet-4-5", "Sunny in both")).encode()))
    follow = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "18C sunny"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "24C sunny"},
    ]
    r2 = stack.oai().chat.completions.create(model="claude", messages=follow, tools=TOOLS)
    assert r2.choices[0].message.content == "Sunny in both"
    sent = stack.up["anthropic"].last().json()
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    results = [b for b in sent["messages"][2]["content"] if b["type"] == "tool_result"]
    assert [b["tool_use_id"] for b in results] == ["toolu_01", "toolu_02"]
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["tool_use", "tool_use"]


@pytest.mark.parametrize("alias,name,make", [
    ("claude", "anthropic", lambda: anthropic_stream("claude-sonnet-4-5", [], [("toolu_9", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'])], "tool_use")),
    ("bedrock-claude", "bedrock", lambda: bedrock_stream([], [("tooluse_9", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'])], "tool_use")),
    ("gemini-flash", "gemini", lambda: gemini_stream([], [("get_weather", {"city": "Paris"})], "STOP")),
    ("vertex-flash", "vertex", lambda: gemini_stream([], [("get_weather", {"city": "Paris"})], "STOP")),
])
def test_streamed_tool_call(stack, respond, alias, name, make):
    ctype = "application/vnd.amazon.eventstream" if name == "bedrock" else "text/event-stream"
    respond(name, lambda r: Reply(headers={"content-type": ctype}, chunks=make()))
    chunks = list(stack.oai().chat.completions.create(model=alias, messages=MESSAGES, tools=TOOLS, stream=True))
    deltas = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert deltas and all(d.index == 0 for d in deltas)
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    args = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(args) == {"city": "Paris"}
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["tool_calls"]
    # The gateway had the translator end the stream with usage; the client did not ask, so it never sees it.
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)


def test_vertex_stream_path(stack, respond):
    respond("vertex", lambda r: Reply(headers={"content-type": "text/event-stream"}, chunks=gemini_stream(["ok"])))
    list(stack.oai().chat.completions.create(model="vertex-flash", messages=MESSAGES, stream=True))
    assert stack.up["vertex"].last().path == (
        "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse")


def test_image_data_url_becomes_inline_bytes(stack):
    img = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": img}}]
    stack.oai().chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    blocks = stack.up["anthropic"].last().json()["messages"][0]["content"]
    assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": img.split(",", 1)[1]}} in blocks
    stack.oai().chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": content}])
    parts = stack.up["gemini"].last().json()["contents"][0]["parts"]
    assert {"inlineData": {"mimeType": "image/png", "data": img.split(",", 1)[1]}} in parts
    with pytest.raises(openai.BadRequestError):
        stack.oai().chat.completions.create(model="bedrock-claude", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])


def test_gemini_embeddings(stack, respond):
    respond("gemini", lambda r: Reply(body=json.dumps({"embeddings": [{"values": [0.5, -0.25]}, {"values": [0.125, 1.0]}]}).encode()))
    r = stack.oai().embeddings.create(model="gemini-flash", input=["a", "b"], dimensions=2)
    assert [d.embedding for d in r.data] == [[0.5, -0.25], [0.125, 1.0]], "base64 by default in the SDK, decoded"
    rec = stack.up["gemini"].last()
    assert rec.path.startswith("/v1beta/models/gemini-2.0-flash:batchEmbedContents")
    sent = rec.json()
    assert [q["content"]["parts"][0]["text"] for q in sent["requests"]] == ["a", "b"]
    assert sent["requests"][0]["outputDimensionality"] == 2
    assert rec.headers["x-goog-api-key"] == GEMINI_SECRET


def test_gemini_embeddings_take_at_most_2048_inputs(stack):
    # Each input becomes a ~60-byte request of its own in batchEmbedContents: an array of empty strings
    # would grow ~20x on the way; beyond OpenAI's own 2048 inputs it is a 400 naming `input`.
    before = len(stack.up["gemini"].requests)
    with pytest.raises(openai.BadRequestError) as e:
        stack.oai().embeddings.create(model="gemini-flash", input=[""] * 2049)
    assert e.value.status_code == 400 and e.value.body["param"] == "input", e.value.body
    assert "2048" in e.value.body["message"]
    assert len(stack.up["gemini"].requests) == before, "nothing reached the provider"


# ------------------------------------------------------------------------------------------------- errors


def test_provider_errors_map_to_openai_shape(stack, respond):
    respond("anthropic", lambda r: anthropic_error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"))
    with pytest.raises(openai.RateLimitError) as e:
        stack.oai().chat.completions.create(model="claude", messages=MESSAGES)
    assert "per-minute rate limit" in e.value.body["message"]
    respond("anthropic", lambda r: anthropic_error(529, "overloaded_error", "Overloaded"))
    with pytest.raises(openai.InternalServerError) as e:
        stack.oai().chat.completions.create(model="claude", messages=MESSAGES)
    assert e.value.status_code == 503 and "Overloaded" in e.value.body["message"]
    respond("gemini", lambda r: gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
    with pytest.raises(openai.BadRequestError) as e:
        stack.oai().chat.completions.create(model="gemini-flash", messages=MESSAGES)
    assert "Invalid JSON payload" in e.value.body["message"]


def test_envoy_errors_are_not_taken_for_the_providers(stack):
    # A model's only target is translated for by the route-level filter, which also translates the answer;
    # an answer Envoy made itself (provider unreachable) is not the provider's and passes as Envoy's
    # local-reply config shaped it, for both client APIs.
    with pytest.raises(openai.APIStatusError) as e:
        stack.oai().chat.completions.create(model="claude-down", messages=MESSAGES)
    assert e.value.status_code == 502
    assert e.value.body["code"] == "upstream_unavailable", e.value.body
    assert e.value.response.headers["x-switchyard-provider"] == "anthropic-down"
    with pytest.raises(anthropic.APIStatusError) as e:
        stack.ant().messages.create(model="claude-down", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502 and "could not be reached" in str(e.value.body)


def test_error_mid_stream_is_a_well_formed_event(stack, respond):
    frames = bedrock_stream(["Hel"])[:2] + [bedrock_exception("throttlingException", "Too many tokens, please wait")]
    respond("bedrock", lambda r: Reply(headers={"content-type": "application/vnd.amazon.eventstream"}, chunks=frames))
    with pytest.raises(openai.APIError) as e:
        list(stack.oai().chat.completions.create(model="bedrock-claude", messages=MESSAGES, stream=True))
    assert "Too many tokens" in str(e.value)


# ------------------------------------------------------------------------------ Anthropic-format input


@pytest.mark.parametrize("auth", ["x-api-key", "bearer"])
def test_anthropic_sdk_to_openai_compatible(stack, auth):
    msg = stack.ant(auth).messages.create(model="mistral", max_tokens=100, system="Be brief.",
                                          messages=[{"role": "user", "content": "Say hi"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "mistral says hi"
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 4
    sent = stack.up["compat"].last().json()
    assert sent["model"] == "mistral-large-latest" and sent["max_tokens"] == 100
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


def test_anthropic_sdk_stream_from_gemini(stack, respond):
    respond("gemini", lambda r: Reply(headers={"content-type": "text/event-stream"}, chunks=gemini_stream(["Hel", "lo"])))
    with stack.ant().messages.stream(model="gemini-flash", max_tokens=50, messages=[{"role": "user", "content": "Say hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4


def test_anthropic_sdk_passthrough_to_anthropic(stack):
    msg = stack.ant().messages.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": "Say hi"}])
    assert msg.content[0].text == "claude says hi"
    rec = stack.up["anthropic"].last()
    assert rec.path == "/v1/messages" and rec.headers["x-api-key"] == ANTHROPIC_SECRET
    assert rec.json()["model"] == "claude-sonnet-4-5"
    no_client_key(rec)


def test_anthropic_sdk_errors(stack):
    with pytest.raises(anthropic.AuthenticationError):
        harness.anthropic_client(base_url=stack.envoy.base, api_key="sk-wrong", max_retries=0).messages.create(
            model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError):
        stack.ant().messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
