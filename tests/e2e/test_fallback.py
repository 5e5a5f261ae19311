"""Issue 5, end to end: cross-provider fallback and weighted splits riding on Envoy's retries. The model's
cluster holds endpoints of different provider kinds (priority levels for fallback, weights for splits);
the upstream filter translates each attempt for the endpoint Envoy picked. Issue 16: the config is
rendered from a gateway file, whose retry policy moves a 429 only to another target, never back onto the
same provider, and tries no target twice."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

import harness
from harness import Envoy, MockUpstream, Reply, mock_url, module_stack, render, request, sha256_hex, shut
from openai_wire import chat_completion, chunk, echo_responder
from provider_wire import anthropic_error, anthropic_message, anthropic_stream

KEY = "sk-sy-fallback-0001"
BUDGET_KEY = "sk-sy-fallback-budget-0001"
MESSAGES = [{"role": "user", "content": "Say hi"}]


def openai_ok(rec):
    body = rec.json()
    if body.get("stream"):
        m = body["model"]
        return Reply(headers={"content-type": "text/event-stream"}, chunks=[
            chunk(m, {"role": "assistant", "content": ""}), chunk(m, {"content": "primary says hi"}), chunk(m, {}, finish="stop"),
            "data: [DONE]\n\n"])
    return Reply(body=json.dumps(chat_completion(body["model"], "primary says hi")).encode())


def anthropic_ok(rec):
    body = rec.json()
    if body.get("stream"):
        return Reply(headers={"content-type": "text/event-stream"}, chunks=anthropic_stream("claude-haiku", ["secondary ", "says hi"]))
    return Reply(body=json.dumps(anthropic_message("claude-haiku", "secondary says hi")).encode())


FAILURES = {
    "500": lambda r: Reply(status=500, body=b'{"error":{"message":"boom","type":"server_error","param":null,"code":null}}'),
    "503": lambda r: Reply(status=503, body=b'{"error":{"message":"unavailable","type":"server_error","param":null,"code":null}}'),
    "429": lambda r: Reply(status=429, body=b'{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}'),
    "reset": lambda r: Reply(reset=True),
    "timeout": lambda r: Reply(body=b"{}", delay=3.0),
}


def gateway(s: "Stack") -> dict:
    """The module's gateway file: one provider per mock upstream."""
    return {
        "providers": {
            "openai": {"kind": "openai", "api_key": "sk-openai-fallback-test", "url": mock_url(s.primary)},
            "anthropic": {"kind": "anthropic", "api_key": "sk-ant-fallback-test", "url": mock_url(s.secondary)},
            "openai-stable": {"kind": "openai", "api_key": "sk-openai-fallback-test", "url": mock_url(s.stable)},
            "compat": {"kind": "openai_compatible", "url": mock_url(s.canary)},
            "openai-broken": {"kind": "openai", "api_key": "sk-openai-fallback-test", "url": mock_url(s.broken)},
            "anthropic-backup": {"kind": "anthropic", "api_key": "sk-ant-fallback-test", "url": mock_url(s.backup)},
            "openai-limited": {"kind": "openai", "api_key": "sk-openai-fallback-test", "url": mock_url(s.limited)},
        },
        "models": {
            # The tests below fail its primary again and again: no ejection here (see "ejecting").
            "ha": {"idle_timeout": "1s", "outlier_detection": False, "targets": [
                {"provider": "openai", "model": "gpt-4o-mini", "price": {"input": 0.01, "output": 0.01}},
                {"provider": "anthropic", "model": "claude-haiku", "price": {"input": 2000, "output": 4000}},
            ]},
            "ejecting": {"idle_timeout": "1s", "targets": [
                {"provider": "openai-broken", "model": "gpt-4o-mini"},
                {"provider": "anthropic-backup", "model": "claude-haiku"},
            ]},
            # Single targets with a cluster of their own, whose endpoints are then hand-edited (below).
            "solo-pinned": {"cluster": "solo-pinned", "targets": [{"provider": "openai", "model": "gpt-4o-mini"}]},
            "solo-stray": {"cluster": "solo-stray", "targets": [{"provider": "openai", "model": "gpt-4o-mini"}]},
            "solo-claude": {"cluster": "solo-claude", "targets": [{"provider": "anthropic", "model": "claude-haiku"}]},
            "canary": {"strategy": "split", "targets": [
                {"provider": "openai-stable", "model": "gpt-stable", "weight": 90},
                {"provider": "compat", "model": "gpt-canary", "weight": 10},
            ]},
            # One target with retries: 5xx are tried again on it, a 429 never is.
            "limited": {"provider": "openai-limited", "model": "gpt-4o-mini", "retries": 2},
        },
        "keys": [
            {"id": "t", "sha256": sha256_hex(KEY), "models": ["*"]},
            {"id": "b", "sha256": sha256_hex(BUDGET_KEY), "models": ["*"], "limits": {"budget": {"usd": 0.5, "period": "day"}}},
        ],
    }


def repoint(cfg: dict, cluster: str, upstream: MockUpstream, meta: dict) -> None:
    """Hand-written endpoint metadata a gateway file never produces (an endpoint pinning another model name,
    or naming a provider that is no target of the model): the filter must still do the right thing."""
    c = next(c for c in cfg["static_resources"]["clusters"] if c["name"] == cluster)
    ep = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    ep["endpoint"]["address"]["socket_address"]["port_value"] = upstream.port
    ep["metadata"]["filter_metadata"]["switchyard"] = meta


class Stack:
    def __init__(self):
        self.primary = MockUpstream(openai_ok)
        self.secondary = MockUpstream(anthropic_ok)
        self.stable = MockUpstream(echo_responder)
        self.canary = MockUpstream(echo_responder)
        self.broken = MockUpstream(FAILURES["503"])
        self.backup = MockUpstream(anthropic_ok)
        self.pinned = MockUpstream(echo_responder)
        self.stray = MockUpstream(echo_responder)
        self.claude_pinned = MockUpstream(anthropic_ok)
        self.limited = MockUpstream(echo_responder)
        cfg = render(gateway(self))
        repoint(cfg, "solo-pinned", self.pinned, {"provider": "openai", "model": "gpt-4o-pinned"})
        repoint(cfg, "solo-stray", self.stray, {"provider": "anthropic"})
        repoint(cfg, "solo-claude", self.claude_pinned, {"provider": "anthropic", "model": "claude-pinned"})
        self.envoy = Envoy(cfg, concurrency=2).wait_ready()

    def client(self, key=KEY) -> openai.OpenAI:
        return harness.openai_client(base_url=f"{self.envoy.base}/v1", api_key=key, max_retries=0, timeout=20)

    def close(self):
        shut(self.envoy, self.primary, self.secondary, self.stable, self.canary, self.broken, self.backup, self.pinned,
             self.stray, self.claude_pinned, self.limited)


stack = module_stack(Stack)


@pytest.fixture
def failing_primary(stack):
    def set_(mode):
        stack.primary.responder = FAILURES[mode]

    yield set_
    stack.primary.responder = openai_ok
    stack.secondary.responder = anthropic_ok


@pytest.mark.parametrize("mode", list(FAILURES))
def test_fallback_to_another_provider_kind(stack, failing_primary, mode):
    failing_primary(mode)
    p0, s0 = len(stack.primary.requests), len(stack.secondary.requests)
    raw = stack.client().chat.completions.with_raw_response.create(model="ha", messages=MESSAGES)
    r = raw.parse()
    assert r.choices[0].message.content == "secondary says hi"
    assert raw.headers["x-switchyard-provider"] == "anthropic"
    assert raw.headers["x-switchyard-model"] == "claude-haiku"
    assert r.model == "claude-haiku", "the body names the model that served"
    assert len(stack.primary.requests) == p0 + 1, "the primary was tried first"
    assert len(stack.secondary.requests) == s0 + 1
    sent = stack.secondary.last()
    assert sent.path == "/v1/messages" and sent.json()["model"] == "claude-haiku"
    assert sent.headers["x-api-key"] == "sk-ant-fallback-test"
    assert stack.primary.last().json()["model"] == "gpt-4o-mini"


@pytest.mark.parametrize("mode", list(FAILURES))
def test_streaming_fallback(stack, failing_primary, mode):
    failing_primary(mode)
    chunks = list(stack.client().chat.completions.create(model="ha", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "secondary says hi"
    assert stack.secondary.last().json()["stream"] is True


def test_primary_serves_when_healthy(stack):
    raw = stack.client().chat.completions.with_raw_response.create(model="ha", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "primary says hi"
    assert raw.headers["x-switchyard-provider"] == "openai"


def test_all_targets_fail_cleanly(stack, failing_primary):
    failing_primary("503")
    stack.secondary.responder = lambda r: anthropic_error(529, "overloaded_error", "Overloaded")
    p0, s0 = len(stack.primary.requests), len(stack.secondary.requests)
    start = time.time()
    with pytest.raises(openai.InternalServerError) as e:
        stack.client().chat.completions.create(model="ha", messages=MESSAGES)
    assert time.time() - start < 5
    assert e.value.status_code == 503
    tried = (len(stack.primary.requests) - p0, len(stack.secondary.requests) - s0)
    assert tried == (1, 1), f"each target once (retries = targets - 1), none tried twice: {tried}"
    # The last attempt's error (the secondary's), in the OpenAI shape.
    assert set(e.value.body) == {"message", "type", "param", "code"}
    assert "Overloaded" in e.value.body["message"]


def test_no_retry_after_the_stream_started(stack):
    """A primary that fails mid-stream is not retried: the client already has bytes of its answer."""
    m = "gpt-4o-mini"
    stack.primary.responder = lambda r: Reply(headers={"content-type": "text/event-stream"},
                                              chunks=[chunk(m, {"role": "assistant", "content": ""}), chunk(m, {"content": "partial"})])
    s0 = len(stack.secondary.requests)
    try:
        got = []
        with pytest.raises(Exception):
            for c in stack.client().chat.completions.create(model="ha", messages=MESSAGES, stream=True):
                got.append(c)
            raise RuntimeError("stream ended")
    finally:
        stack.primary.responder = openai_ok
    assert len(stack.secondary.requests) == s0


def test_outlier_detection_ejects_a_failing_target(stack):
    for _ in range(3):
        r = stack.client().chat.completions.create(model="ejecting", messages=MESSAGES)
        assert r.choices[0].message.content == "secondary says hi"
    assert len(stack.broken.requests) == 3
    # Three consecutive 5xx: the primary is ejected (the main thread tells the workers; give it a moment),
    # so the next requests go straight to the backup.
    time.sleep(0.5)
    for _ in range(5):
        assert stack.client().chat.completions.create(model="ejecting", messages=MESSAGES).choices[0].message.content == "secondary says hi"
    assert len(stack.broken.requests) == 3, "an ejected endpoint is not tried"
    assert len(stack.backup.requests) == 8


def test_single_target_endpoint_metadata_still_counts(stack):
    # The route filter wrote the body for the only target, but this endpoint pins another model name: the
    # upstream filter leaves its header-only path and rewrites the body for the endpoint.
    raw = stack.client().chat.completions.with_raw_response.create(model="solo-pinned", messages=MESSAGES)
    assert raw.parse().choices[0].message.content
    rec = stack.pinned.last()
    assert rec.json()["model"] == "gpt-4o-pinned" and rec.headers["authorization"] == "Bearer sk-openai-fallback-test"
    assert raw.headers["x-switchyard-provider"] == "openai" and raw.headers["x-switchyard-model"] == "gpt-4o-pinned"
    # An endpoint of a provider the model does not use never gets the request (nor the credential).
    with pytest.raises(openai.APIStatusError) as e:
        stack.client().chat.completions.create(model="solo-stray", messages=MESSAGES)
    assert e.value.status_code == 502
    assert "not a target of model 'solo-stray'" in e.value.message
    assert stack.stray.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_single_translated_target_behind_a_pinning_endpoint(stack, stream):
    # The route filter translated the body for claude-haiku; this endpoint pins claude-pinned, so the
    # attempt is prepared again from the client's body (not from the translation) and its answer is
    # translated once.
    kw = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    messages = [{"role": "system", "content": "Be brief."}, *MESSAGES]
    raw = stack.client().chat.completions.with_raw_response.create(model="solo-claude", messages=messages, stop=["END"], **kw)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content
    assert text == "secondary says hi"
    rec = stack.claude_pinned.last()
    body = rec.json()
    assert rec.path == "/v1/messages" and body["model"] == "claude-pinned" and body["messages"][0]["role"] == "user"
    assert body.get("stream", False) == stream
    assert body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}]) and body["stop_sequences"] == ["END"]
    assert rec.headers["x-api-key"] == "sk-ant-fallback-test" and "authorization" not in rec.headers
    assert raw.headers["x-switchyard-provider"] == "anthropic" and raw.headers["x-switchyard-model"] == "claude-pinned"


def test_weighted_split_90_10(stack):
    n = 2000
    a0, b0 = len(stack.stable.requests), len(stack.canary.requests)
    body = json.dumps({"model": "canary", "messages": MESSAGES})
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}

    def one(_):
        status, h, _b = request("POST", f"{stack.envoy.base}/v1/chat/completions", body, headers)
        return status, h.get("x-switchyard-provider")

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(n)))
    assert all(s == 200 for s, _ in results)
    stable = len(stack.stable.requests) - a0
    canary = len(stack.canary.requests) - b0
    assert stable + canary == n
    assert abs(stable / n - 0.9) <= 0.03, (stable, canary)
    assert sum(1 for _, p in results if p == "compat") == canary, "the served-by header matches the upstream"


def test_limits_charge_the_target_that_served(stack, failing_primary):
    """Budget $0.50. The secondary costs $0.044 per answer (12 in x $2000/M + 5 out x $4000/M) and a
    reservation assumes the dearest target; served by the cheap primary, nothing would run out."""
    ok = [stack.client(BUDGET_KEY).chat.completions.with_raw_response.create(model="ha", messages=MESSAGES, max_tokens=20)
          for _ in range(3)]
    assert all(r.headers["x-switchyard-provider"] == "openai" for r in ok)
    failing_primary("503")
    statuses = []
    for _ in range(15):
        try:
            stack.client(BUDGET_KEY).chat.completions.create(model="ha", messages=MESSAGES, max_tokens=20)
            statuses.append(200)
        except openai.RateLimitError as e:
            assert e.code == "insufficient_quota"
            statuses.append(429)
    assert 429 in statuses and statuses.index(429) >= 5, statuses


def test_a_429_moves_to_the_other_target_after_its_retry_after(stack, failing_primary):
    """The primary's 429 says Retry-After: 1; the route's rate-limited back-off waits for it (capped by
    max_retry_wait) before the attempt on the other target."""
    stack.primary.responder = lambda r: Reply(status=429, headers={"content-type": "application/json", "retry-after": "1"},
                                              body=b'{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}')
    p0, s0 = len(stack.primary.requests), len(stack.secondary.requests)
    start = time.time()
    raw = stack.client().chat.completions.with_raw_response.create(model="ha", messages=MESSAGES)
    took = time.time() - start
    assert raw.headers["x-switchyard-provider"] == "anthropic"
    assert (len(stack.primary.requests) - p0, len(stack.secondary.requests) - s0) == (1, 1)
    assert 0.8 <= took < 4, f"waited for Retry-After: 1 before the fallback ({took:.2f} s)"


def test_a_one_target_model_never_retries_a_429_and_the_client_gets_retry_after(stack):
    stack.limited.responder = lambda r: Reply(status=429, headers={"content-type": "application/json", "retry-after": "7"},
                                              body=b'{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}')
    try:
        n0 = len(stack.limited.requests)
        status, headers, body = request("POST", f"{stack.envoy.base}/v1/chat/completions",
                                        json.dumps({"model": "limited", "messages": MESSAGES}),
                                        {"authorization": f"Bearer {KEY}", "content-type": "application/json"})
        assert status == 429
        assert len(stack.limited.requests) == n0 + 1, "a rate-limited provider is asked exactly once"
        assert headers.get("retry-after") == "7", headers
        assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
        # The same model's retries do apply to a 5xx: 1 try + retries 2.
        stack.limited.responder = FAILURES["503"]
        n0 = len(stack.limited.requests)
        with pytest.raises(openai.InternalServerError):
            stack.client().chat.completions.create(model="limited", messages=MESSAGES)
        assert len(stack.limited.requests) == n0 + 3
    finally:
        stack.limited.responder = echo_responder
