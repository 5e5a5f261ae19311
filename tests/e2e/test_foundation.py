"""Issue 2, end to end: the real Envoy with the built switchyard.wasm in both roles, mock providers that
record what they receive, and the official openai SDK as the client. The Envoy config is rendered from the
module's gateway file by `switchyard render`."""

from __future__ import annotations

import base64
import json
import struct
import threading

import openai
import pytest

import harness
from harness import Envoy, MockUpstream, Reply, free_port, mock_url, module_stack, render, request, sha256_hex, shut
from openai_wire import chat_completion, chunk, echo_responder, error

KEY_ALL = "sk-sy-test-all-0123456789"
KEY_LIMITED = "sk-sy-test-limited-987654"
OPENAI_SECRET = "sk-openai-PROVIDER-SECRET-aaaa1111"
AZURE_SECRET = "azure-PROVIDER-SECRET-bbbb2222"
COMPAT_SECRET = "sk-compat-PROVIDER-SECRET-cccc3333"
SECRETS = [OPENAI_SECRET, AZURE_SECRET, COMPAT_SECRET, KEY_ALL, KEY_LIMITED]
MAX_BODY = 65536


def gateway(s: "Stack") -> dict:
    """The module's gateway file: a provider per mock upstream, and one at a port nobody listens on."""
    dead = f"http://127.0.0.1:{s.dead_port}"
    return {
        "max_body_bytes": MAX_BODY,
        "providers": {
            "local": {"kind": "mock"},
            "openai": {"kind": "openai", "api_key": {"env": "OPENAI_API_KEY"}, "url": mock_url(s.up["openai"])},
            "azure": {"kind": "azure_openai", "api_version": "2024-10-21", "api_key": {"env": "AZURE_OPENAI_API_KEY"},
                      "url": mock_url(s.up["azure"])},
            "compat": {"kind": "openai_compatible", "base_path": "/custom/api/v1", "api_key": COMPAT_SECRET,
                       "url": mock_url(s.up["compat"])},
            "ollama": {"kind": "openai_compatible", "url": mock_url(s.up["ollama"])},
            "down": {"kind": "openai", "api_key": "sk-down-unused", "url": dead},
            "slow": {"kind": "openai", "api_key": "sk-slow-unused", "url": mock_url(s.up["slow"])},
            # Off (its variable is set nowhere); its url keeps the rendered cluster off the public API's DNS.
            "absent": {"kind": "openai", "api_key": {"env": "NOT_SET_ANYWHERE", "optional": True}, "url": dead},
        },
        "models": {
            "echo": {"provider": "local"},
            "gpt-4o-mini": {"provider": "openai", "model": "gpt-4o-mini-2024-07-18"},
            "text-embedding-3-small": {"provider": "openai"},
            "azure-gpt": {"provider": "azure", "model": "my-deployment"},
            "mistral-large": {"provider": "compat", "model": "mistral-large-latest"},
            "qwen": {"provider": "ollama", "model": "qwen2.5:7b"},
            "broken": {"provider": "down"},
            # A model's own route settings: the slow provider answers after 3 s, this model waits 1 s.
            "sleepy": {"provider": "slow", "timeout": "1s"},
            "ghost": {"provider": "absent"},
        },
        "keys": [
            {"id": "team-all", "sha256": sha256_hex(KEY_ALL), "models": ["*"]},
            {"id": "team-limited", "sha256": sha256_hex(KEY_LIMITED), "models": ["echo", "gpt-4o-mini"]},
        ],
    }


class Stack:
    def __init__(self):
        self.up = {name: MockUpstream(echo_responder) for name in ["openai", "azure", "compat", "ollama", "slow"]}
        self.up["slow"].responder = lambda r: Reply(body=b"{}", delay=3)
        self.dead_port = free_port()
        cfg = render(gateway(self))
        self.env = {"OPENAI_API_KEY": OPENAI_SECRET, "AZURE_OPENAI_API_KEY": AZURE_SECRET}
        self.envoy = Envoy(cfg, env=self.env, log_level="debug").wait_ready()

    def client(self, key: str = KEY_ALL, **kw) -> openai.OpenAI:
        return harness.openai_client(base_url=f"{self.envoy.base}/v1", api_key=key, max_retries=0, timeout=15, **kw)

    def close(self):
        shut(self.envoy, *self.up.values())


stack = module_stack(Stack)


def assert_clean_upstream_request(rec, credential_header: str, credential: str):
    """What every provider must (not) see: its own credential only, no client key, no internal headers."""
    assert rec.headers.get(credential_header) == credential
    blob = json.dumps(rec.headers) + rec.body.decode(errors="replace")
    for s in [KEY_ALL, KEY_LIMITED]:
        assert s not in blob, "the client's key reached the provider"
    for h in rec.headers:
        assert not h.startswith("x-switchyard-"), h
        assert not h.startswith("x-envoy-"), h
    if credential_header != "authorization":
        assert "authorization" not in rec.headers
    assert "x-api-key" not in rec.headers


# ------------------------------------------------------------------------------------------ mock provider


def test_mock_chat_with_sdk(stack):
    r = stack.client().chat.completions.create(model="echo", messages=[{"role": "user", "content": "Hello, gateway!"}])
    assert r.choices[0].message.content == "Hello, gateway!"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "echo" and r.object == "chat.completion"
    assert r.usage.completion_tokens == 4 and r.usage.total_tokens == r.usage.prompt_tokens + 4


def test_mock_stream_with_sdk(stack):
    stream = stack.client().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "one two three"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


def test_mock_embeddings_with_sdk(stack):
    # The SDK asks for base64 by default and decodes it.
    r = stack.client().embeddings.create(model="echo", input=["a", "b"], dimensions=6)
    assert [len(d.embedding) for d in r.data] == [6, 6]
    assert r.data[0].embedding != r.data[1].embedding
    assert abs(sum(x * x for x in r.data[0].embedding) - 1.0) < 1e-3


def test_models_list_follows_the_key(stack):
    all_ids = sorted(m.id for m in stack.client().models.list())
    assert all_ids == sorted(["echo", "gpt-4o-mini", "text-embedding-3-small", "azure-gpt", "mistral-large", "qwen", "broken", "sleepy"])
    assert "ghost" not in all_ids, "a model whose optional credential is missing is not served"
    limited = sorted(m.id for m in stack.client(KEY_LIMITED).models.list())
    assert limited == ["echo", "gpt-4o-mini"]
    assert stack.client(KEY_LIMITED).models.retrieve("echo").id == "echo"
    with pytest.raises(openai.NotFoundError):
        stack.client(KEY_LIMITED).models.retrieve("azure-gpt")


# ------------------------------------------------------------------------------------------ real providers


def test_openai_chat_both_sides(stack):
    up = stack.up["openai"]
    raw = stack.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], temperature=0.3, extra_headers={"x-api-key": KEY_ALL}
    )
    r = raw.parse()
    assert r.choices[0].message.content == "served by gpt-4o-mini-2024-07-18"
    assert raw.headers["x-switchyard-provider"] == "openai"
    assert raw.headers["x-switchyard-model"] == "gpt-4o-mini-2024-07-18"
    rec = up.last()
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    body = rec.json()
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["temperature"] == 0.3 and body["messages"] == [{"role": "user", "content": "hi"}]
    assert_clean_upstream_request(rec, "authorization", f"Bearer {OPENAI_SECRET}")
    # The body the filter wrote goes with its own length, not chunked.
    assert rec.headers.get("content-length") == str(len(rec.body)) and "transfer-encoding" not in rec.headers


@pytest.mark.parametrize("alias,upstream,served", [
    ("gpt-4o-mini", "openai", "gpt-4o-mini-2024-07-18"),
    ("azure-gpt", "azure", "my-deployment"),
    ("mistral-large", "compat", "mistral-large-latest"),
])
def test_stream_passes_chunk_by_chunk(stack, alias, upstream, served):
    up = stack.up[upstream]
    gate = threading.Event()
    up.gate_results.clear()
    up.responder = lambda r: Reply(
        headers={"content-type": "text/event-stream"},
        chunks=[
            chunk(served, {"role": "assistant", "content": ""}),
            chunk(served, {"content": "Hel"}),
            gate,
            chunk(served, {"content": "lo"}),
            chunk(served, {}, finish="stop"),
            chunk(served, {}, usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}, choices=False),
            "data: [DONE]\n\n",
        ],
    )
    try:
        stream = stack.client().chat.completions.create(
            model=alias, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
        )
        it = iter(stream)
        first = next(it)
        assert first.choices[0].delta.role == "assistant"
        second = next(it)
        assert second.choices[0].delta.content == "Hel"
        gate.set()  # only now may the upstream finish
        rest = list(it)
    finally:
        up.responder = echo_responder
    assert up.gate_results == [True], "the client saw no chunk before the upstream finished: the stream was buffered"
    assert "".join(c.choices[0].delta.content or "" for c in rest if c.choices) == "lo"
    assert rest[-1].usage.total_tokens == 7
    rec = up.last()
    assert rec.json()["stream"] is True and rec.json()["model"] == served


def test_usage_chunk_dropped_from_a_fixed_length_stream(stack):
    """An upstream that sends its whole SSE answer with a content-length: the route filter drops the usage
    chunk the client did not ask for, so the length must go too (found by the benchmark)."""
    m = "gpt-4o-mini-2024-07-18"
    up = stack.up["openai"]

    def fixed(rec):
        body = chunk(m, {"role": "assistant", "content": ""}) + chunk(m, {"content": "fixed"}) + chunk(m, {}, finish="stop")
        if (rec.json().get("stream_options") or {}).get("include_usage"):
            body += chunk(m, {}, usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}, choices=False)
        return Reply(headers={"content-type": "text/event-stream"}, body=(body + "data: [DONE]\n\n").encode())

    up.responder = fixed
    try:
        chunks = list(stack.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True))
    finally:
        up.responder = echo_responder
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "fixed"
    assert all(c.usage is None for c in chunks), "the client did not ask for usage"
    assert up.last().json()["stream_options"] == {"include_usage": True}


def test_openai_embeddings(stack):
    r = stack.client().embeddings.create(model="text-embedding-3-small", input=["x", "y"], encoding_format="float")
    assert [d.embedding for d in r.data] == [[0.1, -0.2, 0.3], [0.2, -0.2, 0.3]]
    rec = stack.up["openai"].last()
    assert rec.path == "/v1/embeddings" and rec.json()["model"] == "text-embedding-3-small"
    assert_clean_upstream_request(rec, "authorization", f"Bearer {OPENAI_SECRET}")


def test_azure_deployment_path_and_api_key(stack):
    r = stack.client().chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "served by my-deployment"
    rec = stack.up["azure"].last()
    assert rec.path == "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    assert_clean_upstream_request(rec, "api-key", AZURE_SECRET)
    stack.client().embeddings.create(model="azure-gpt", input="x")
    assert stack.up["azure"].last().path == "/openai/deployments/my-deployment/embeddings?api-version=2024-10-21"


def azure_stream(rec):
    """Azure's stream as it comes: a first chunk with no choices (prompt_filter_results), content chunks
    with content_filter_results, a content-filter-only chunk with no choices, then the usage chunk."""
    body = rec.json()
    filters = {"hate": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
    first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
             "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}]}

    def chunk(choices, usage=None):
        c = {"id": "chatcmpl-az1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
             "system_fingerprint": "fp_az", "choices": choices}
        if usage is not None:
            c["usage"] = usage
        return "data: " + json.dumps(c) + "\n\n"

    words = ["Hello", " from", " Azure"]
    chunks = ["data: " + json.dumps(first) + "\n\n"]
    chunks += [chunk([{"index": 0, "delta": {"content": w}, "finish_reason": None, "content_filter_results": filters}]) for w in words]
    chunks.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop", "content_filter_results": {}}]))
    chunks.append("data: " + json.dumps({"choices": [], "id": "chatcmpl-az1", "content_filter_results": filters}) + "\n\n")
    if body.get("stream_options", {}).get("include_usage"):
        chunks.append(chunk([], usage={"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}))
    chunks.append("data: [DONE]\n\n")
    return Reply(headers={"content-type": "text/event-stream"}, chunks=chunks)


@pytest.mark.parametrize("include_usage", [False, True])
def test_azure_stream_chunks_without_choices_never_reach_a_chat_client(stack, include_usage):
    """Issue 18 item 3: the ubiquitous `chunk.choices[0].delta.content` loop works for an Azure model as for
    an OpenAI one; the only chunk without choices is the usage chunk the client asked for."""
    stack.up["azure"].responder = azure_stream
    try:
        kw = {"stream_options": {"include_usage": True}} if include_usage else {}
        stream = stack.client().chat.completions.create(
            model="azure-gpt", messages=[{"role": "user", "content": "hi"}], stream=True, **kw)
        text, usage_chunks = "", []
        for chunk in stream:
            if chunk.usage is not None:
                usage_chunks.append(chunk)
                continue
            text += chunk.choices[0].delta.content or ""
        assert text == "Hello from Azure"
        if include_usage:
            assert [(c.usage.prompt_tokens, c.usage.completion_tokens, c.choices) for c in usage_chunks] == [(8, 3, [])]
        else:
            assert usage_chunks == []
        assert stack.up["azure"].last().json()["stream_options"] == {"include_usage": True}, "usage is always asked for"
    finally:
        stack.up["azure"].responder = echo_responder


def test_openai_compatible_base_path(stack):
    r = stack.client().chat.completions.create(model="mistral-large", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "served by mistral-large-latest"
    rec = stack.up["compat"].last()
    assert rec.path == "/custom/api/v1/chat/completions"
    assert_clean_upstream_request(rec, "authorization", f"Bearer {COMPAT_SECRET}")


def test_openai_compatible_without_key_sends_no_credential(stack):
    stack.client().chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}])
    rec = stack.up["ollama"].last()
    assert rec.path == "/v1/chat/completions" and rec.json()["model"] == "qwen2.5:7b"
    assert "authorization" not in rec.headers
    assert_clean_upstream_request(rec, "authorization", None)


def test_provider_errors_pass_through(stack):
    up = stack.up["openai"]
    up.responder = lambda r: error(429, "Rate limit reached for gpt-4o-mini", "requests", "rate_limit_exceeded")
    try:
        with pytest.raises(openai.RateLimitError) as e:
            stack.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    finally:
        up.responder = echo_responder
    assert e.value.body["code"] == "rate_limit_exceeded"


# ------------------------------------------------------------------------------------------------ errors


def post(stack, path="/v1/chat/completions", body=None, headers=None):
    h = {"content-type": "application/json", "authorization": f"Bearer {KEY_ALL}"}
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None}
    return request("POST", stack.envoy.base + path, body, h)


OK_BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})

ERROR_CASES = [
    # name, method, path, body, headers, status, code, param
    ("no key", "POST", "/v1/chat/completions", OK_BODY, {"authorization": None}, 401, "missing_api_key", None),
    ("unknown key", "POST", "/v1/chat/completions", OK_BODY, {"authorization": "Bearer sk-nope"}, 401, "invalid_api_key", None),
    ("x-api-key unknown", "POST", "/v1/chat/completions", OK_BODY, {"authorization": None, "x-api-key": "sk-nope"}, 401, "invalid_api_key", None),
    ("model not allowed", "POST", "/v1/chat/completions", json.dumps({"model": "azure-gpt", "messages": [{"role": "user", "content": "x"}]}),
     {"authorization": f"Bearer {KEY_LIMITED}"}, 403, "model_not_allowed", "model"),
    ("unknown model", "POST", "/v1/chat/completions", json.dumps({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}), {}, 404, "model_not_found", "model"),
    ("disabled model", "POST", "/v1/chat/completions", json.dumps({"model": "ghost", "messages": [{"role": "user", "content": "x"}]}), {}, 404, "model_not_found", "model"),
    ("malformed json", "POST", "/v1/chat/completions", '{"model": "gpt-4o-mini", "messages": [', {}, 400, "invalid_json", None),
    ("not an object", "POST", "/v1/chat/completions", "[1,2]", {}, 400, None, None),
    # Fields in order as an array (a struct as a sequence) is not a chat request either.
    ("struct as array", "POST", "/v1/chat/completions", json.dumps(["gpt-4o-mini", [{"role": "user", "content": "x"}]]), {}, 400, None, None),
    ("missing model", "POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "x"}]}), {}, 400, None, "model"),
    ("model wrong type", "POST", "/v1/chat/completions", json.dumps({"model": 42, "messages": []}), {}, 400, None, "model"),
    ("messages missing", "POST", "/v1/chat/completions", json.dumps({"model": "gpt-4o-mini"}), {}, 400, None, "messages"),
    ("messages wrong type", "POST", "/v1/chat/completions", json.dumps({"model": "gpt-4o-mini", "messages": "hi"}), {}, 400, None, "messages"),
    ("bad role", "POST", "/v1/chat/completions", json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "wizard"}]}), {}, 400, None, "messages[0].role"),
    ("stream wrong type", "POST", "/v1/chat/completions", json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user"}], "stream": "yes"}), {}, 400, None, "stream"),
    ("embeddings input missing", "POST", "/v1/embeddings", json.dumps({"model": "text-embedding-3-small"}), {}, 400, None, "input"),
    ("empty body", "POST", "/v1/chat/completions", None, {}, 400, None, None),
    ("wrong content type", "POST", "/v1/chat/completions", OK_BODY, {"content-type": "text/plain"}, 415, "unsupported_media_type", None),
    ("form content type", "POST", "/v1/chat/completions", OK_BODY, {"content-type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", None),
    ("body too large", "POST", "/v1/chat/completions",
     json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (MAX_BODY + 10)}]}), {}, 413, "request_too_large", None),
    ("unknown path", "POST", "/v1/completions", OK_BODY, {}, 404, "unknown_url", None),
    ("root path", "GET", "/", None, {}, 404, "unknown_url", None),
    ("wrong method", "GET", "/v1/chat/completions", None, {}, 405, "method_not_allowed", None),
    ("wrong method on models", "POST", "/v1/models", "{}", {}, 405, "method_not_allowed", None),
]


@pytest.mark.parametrize("name,method,path,body,headers,status,code,param", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_cases(stack, name, method, path, body, headers, status, code, param):
    before = {n: len(u.requests) for n, u in stack.up.items()}
    h = {"content-type": "application/json", "authorization": f"Bearer {KEY_ALL}"}
    h.update(headers)
    h = {k: v for k, v in h.items() if v is not None}
    got_status, got_headers, got_body = request(method, stack.envoy.base + path, body, h)
    assert got_status == status, got_body
    assert got_headers["content-type"] == "application/json"
    err = json.loads(got_body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    assert err["code"] == code
    assert err["param"] == param
    if status == 405:
        assert got_headers.get("allow") in ("GET", "POST")
    after = {n: len(u.requests) for n, u in stack.up.items()}
    assert after == before, "a refused request reached a provider"
    # Envoy keeps serving after every bad request.
    assert stack.client().chat.completions.create(model="echo", messages=[{"role": "user", "content": "still up"}]).choices[0].message.content == "still up"


def test_disabled_model_says_why(stack):
    status, _, body = post(stack, body=json.dumps({"model": "ghost", "messages": [{"role": "user", "content": "x"}]}))
    assert status == 404
    assert "provider 'absent' has no credential" in json.loads(body)["error"]["message"]


def test_sdk_exception_types(stack):
    with pytest.raises(openai.AuthenticationError):
        stack.client("sk-wrong").chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.PermissionDeniedError):
        stack.client(KEY_LIMITED).chat.completions.create(model="qwen", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError) as e:
        stack.client().chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        stack.client().chat.completions.create(model="echo", messages=[])


def test_http2_clients(stack):
    """HTTP/2 (prior knowledge, as gRPC-style clients and curl use it) through the same listener."""
    import shutil
    import subprocess

    curl = shutil.which("curl")
    assert curl, "curl (with nghttp2) ships with the machine image"
    for stream in (False, True):
        body = json.dumps({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "h2"}]})
        out = subprocess.run(
            [curl, "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", f"{stack.envoy.base}/v1/chat/completions",
             "-H", f"authorization: Bearer {KEY_ALL}", "-H", "content-type: application/json", "-d", body],
            capture_output=True, text=True, timeout=20,
        ).stdout
        payload, status = out.rsplit("\n", 1)
        assert status == "2 200", out
        assert "served by gpt-4o-mini-2024-07-18" in payload, payload


@pytest.mark.parametrize("status,code,method,headers", [
    (401, "invalid_api_key", "POST", {"authorization": "Bearer sk-nope"}),
    (405, "method_not_allowed", "PUT", {"authorization": f"Bearer {KEY_ALL}"}),
    (413, "request_too_large", "POST", {"authorization": f"Bearer {KEY_ALL}"}),
])
def test_http2_early_answers_reach_the_client(stack, tmp_path, status, code, method, headers):
    """HTTP/2: an answer decided before the body is in (key, method, declared size) reaches a client that
    is still uploading. Envoy resets a stream whose answer ends before its request (RST_STREAM NO_ERROR)
    and curl then drops the answer (0-4 of 20 arrived before the filter held its answer until the body's end)."""
    import shutil
    import subprocess

    curl = shutil.which("curl")
    assert curl, "curl (with nghttp2) ships with the machine image"
    # Over max_body_bytes (413), within the filter's drain limit (4 x max_body_bytes).
    body = tmp_path / "body.json"
    body.write_bytes(b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"x" * (3 * MAX_BODY) + b'"}]}')
    args = [curl, "-sS", "--http2-prior-knowledge", "-X", method, "-w", "\n%{http_version} %{http_code}",
            f"{stack.envoy.base}/v1/chat/completions", "-H", "content-type: application/json", "--data-binary", f"@{body}"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    tries, received, failures = 20, 0, []
    for _ in range(tries):
        p = subprocess.run(args, capture_output=True, text=True, timeout=20)
        payload, _, line = p.stdout.rpartition("\n")
        if p.returncode == 0 and line == f"2 {status}" and json.loads(payload)["error"]["code"] == code:
            received += 1
        else:
            failures.append((p.returncode, p.stderr.strip(), p.stdout[-40:]))
    assert received == tries, failures[:3]


def test_chunked_body_in_pieces_is_read_whole(stack):
    """A body sent in many small chunks (no content-length) is held until its end, then routed."""
    import http.client

    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "pieces " * 200}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", stack.envoy.port, timeout=10)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("authorization", f"Bearer {KEY_ALL}")
    conn.putheader("content-type", "application/json")
    conn.putheader("transfer-encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(body), 97):
        piece = body[i:i + 97]
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    assert json.loads(resp.read())["choices"][0]["message"]["content"] == "served by gpt-4o-mini-2024-07-18"
    conn.close()
    rec = stack.up["openai"].last()
    sent = rec.json()
    assert sent["messages"][0]["content"] == "pieces " * 200 and sent["model"] == "gpt-4o-mini-2024-07-18"
    assert rec.headers.get("content-length") == str(len(rec.body)) and "transfer-encoding" not in rec.headers


def test_chunked_body_over_limit_is_413(stack):
    """No content-length: the filter counts the body as it streams in."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", stack.envoy.port, timeout=10)
    piece = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + b"x" * 8192
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("authorization", f"Bearer {KEY_ALL}")
    conn.putheader("content-type", "application/json")
    conn.putheader("transfer-encoding", "chunked")
    conn.endheaders()
    try:
        for _ in range(MAX_BODY // 8192 + 2):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # Envoy may answer and close before the whole body is sent
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["error"]["code"] == "request_too_large"
    conn.close()


def test_unreachable_provider_is_502(stack):
    status, headers, body = post(stack, body=json.dumps({"model": "broken", "messages": [{"role": "user", "content": "x"}]}))
    assert status == 502, body
    err = json.loads(body)["error"]
    assert err["type"] == "upstream_error" and err["code"] == "upstream_unavailable"


def test_provider_timeout_is_504(stack):
    status, headers, body = post(stack, body=json.dumps({"model": "sleepy", "messages": [{"role": "user", "content": "x"}]}))
    assert status == 504, body
    assert json.loads(body)["error"]["code"] == "upstream_timeout"


def test_client_cannot_pick_the_cluster(stack):
    """A client-sent routing header is replaced by the filter's own choice (the cluster, and the model route
    whose header the rendered routes match)."""
    before = len(stack.up["azure"].requests)
    status, headers, body = post(stack, body=OK_BODY, headers={"x-switchyard-cluster": "azure", "x-switchyard-model": "azure-gpt",
                                                               "x-switchyard-route": "azure-gpt"})
    assert status == 200, body
    assert len(stack.up["azure"].requests) == before
    assert stack.up["openai"].last().json()["model"] == "gpt-4o-mini-2024-07-18"


def test_no_secret_in_logs_or_responses(stack):
    stack.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    post(stack, body=OK_BODY, headers={"authorization": "Bearer sk-wrong-but-logged?"})
    log = stack.envoy.log()
    assert "switchyard" in log and "wasm log" in log, "expected the filter's own log lines"
    # Provider keys from the environment appear nowhere in Envoy's debug log. (Envoy's own debug lines print
    # the client's request headers, its virtual key included, before any filter runs: that is Envoy's.)
    for s in [OPENAI_SECRET, AZURE_SECRET]:
        assert s not in log, "a provider key appears in Envoy's log"
    # An inline key is part of the config, which Envoy itself dumps at debug level (the README says to use
    # environment variables for that reason); the filter's own lines never carry it.
    for line in log.splitlines():
        if "wasm log" in line:
            for s in [COMPAT_SECRET, KEY_ALL, "sk-wrong-but-logged"]:
                assert s not in line, line


# ------------------------------------------------------------------------ Anthropic Messages API input


def ant(stack, key=KEY_ALL, bearer=False):
    import anthropic

    if bearer:
        return harness.anthropic_client(base_url=stack.envoy.base, auth_token=key, api_key=None, max_retries=0, timeout=15)
    return harness.anthropic_client(base_url=stack.envoy.base, api_key=key, max_retries=0, timeout=15)


@pytest.mark.parametrize("bearer", [False, True], ids=["x-api-key", "bearer"])
def test_anthropic_sdk_on_the_mock(stack, bearer):
    msg = ant(stack, bearer=bearer).messages.create(model="echo", max_tokens=50, messages=[{"role": "user", "content": "Hello, Claude"}])
    assert msg.type == "message" and msg.content[0].text == "Hello, Claude"
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 4
    with ant(stack).messages.stream(model="echo", max_tokens=50, messages=[{"role": "user", "content": "one two three"}]) as s:
        assert "".join(s.text_stream) == "one two three"
        assert s.get_final_message().usage.output_tokens == 4


def test_anthropic_sdk_to_an_openai_provider(stack):
    msg = ant(stack).messages.create(model="gpt-4o-mini", max_tokens=77, system="Be brief.", messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "served by gpt-4o-mini-2024-07-18"
    assert msg.usage.output_tokens == 4
    rec = stack.up["openai"].last()
    assert rec.path == "/v1/chat/completions"
    body = rec.json()
    assert body["model"] == "gpt-4o-mini-2024-07-18" and body["max_tokens"] == 77
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert_clean_upstream_request(rec, "authorization", f"Bearer {OPENAI_SECRET}")


def test_anthropic_sdk_errors(stack):
    import anthropic

    with pytest.raises(anthropic.AuthenticationError) as e:
        ant(stack, key="sk-wrong").messages.create(model="echo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError):
        ant(stack).messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.PermissionDeniedError):
        ant(stack, key=KEY_LIMITED).messages.create(model="qwen", max_tokens=5, messages=[{"role": "user", "content": "x"}])
