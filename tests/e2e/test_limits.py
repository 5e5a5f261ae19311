"""Issue 4, end to end: per-key limits enforced by the filter in Envoy with two worker threads
(--concurrency 2), counters in Envoy's shared data. The Envoy config is rendered from the module's gateway
file by `switchyard render`."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

import harness
from harness import Envoy, MockUpstream, Reply, mock_url, module_stack, render, request, sha256_hex, shut
from openai_wire import chat_completion, chunk

KEYS = {name: f"sk-sy-limits-{name}-0001" for name in ["req", "tok", "tokstream", "budget", "conc", "model", "free", "rel", "ant", "one"]}
PROMPT, COMPLETION = 250, 50  # the usage the mock provider reports for every answer


def usage_responder(rec):
    """An OpenAI-format provider: usage on every answer; in streams only when asked (as OpenAI does)."""
    body = rec.json()
    model = body["model"]
    usage = {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION, "total_tokens": PROMPT + COMPLETION}
    if "slow" in json.dumps(body["messages"]):
        time.sleep(1.0)
    if "hold" in json.dumps(body["messages"]):
        # A stream that starts, then stalls (until its gate times out): the client will walk away.
        return Reply(headers={"content-type": "text/event-stream"}, gate_timeout=3.0,
                     chunks=[chunk(model, {"role": "assistant", "content": ""}), threading.Event(), "data: [DONE]\n\n"])
    if body.get("stream"):
        chunks = [chunk(model, {"role": "assistant", "content": ""}), chunk(model, {"content": "ok"}), chunk(model, {}, finish="stop")]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(chunk(model, {}, usage=usage, choices=False))
        chunks.append("data: [DONE]\n\n")
        return Reply(headers={"content-type": "text/event-stream"}, chunks=chunks)
    r = chat_completion(model, "ok", PROMPT, COMPLETION)
    # A provider header of its own, with a byte that is not UTF-8 (the mock writes headers as Latin-1).
    return Reply(body=json.dumps(r).encode(), headers={"content-type": "application/json", "x-provider-trace": "caf\u00e9-1"})


def gateway(up: MockUpstream) -> dict:
    """The module's gateway file: one OpenAI-format provider (the mock upstream) and the built-in mock."""
    k = lambda name, limits: {"id": name, "sha256": sha256_hex(KEYS[name]), "models": ["*"], "limits": limits}
    return {
        "default_max_output_tokens": 200,
        "providers": {"openai": {"kind": "openai", "api_key": "sk-upstream-limits", "url": mock_url(up)}, "local": {"kind": "mock"}},
        "models": {
            "gpt": {"provider": "openai", "model": "gpt-4o-mini", "price": {"input": 1000, "output": 2000}},
            "other": {"provider": "openai", "model": "gpt-4o"},
            "echo": {"provider": "local"},
        },
        "keys": [
            k("req", {"requests": {"limit": 5, "window_secs": 3600}}),
            k("tok", {"tokens": {"limit": 1000, "window_secs": 3600}}),
            k("tokstream", {"tokens": {"limit": 1000, "window_secs": 3600}}),
            # Each answer costs 250*1000 + 50*2000 micro-dollars = $0.35.
            k("budget", {"budget": {"usd": 1.0, "period": "day"}}),
            k("conc", {"concurrent": 2}),
            k("model", {"models": {"gpt": {"requests": {"limit": 2, "window_secs": 3600}}}}),
            k("rel", {"tokens": {"limit": 400, "window_secs": 3600}}),
            k("ant", {"tokens": {"limit": 400, "window_secs": 3600}}),
            k("one", {"concurrent": 1}),
            {"id": "free", "sha256": sha256_hex(KEYS["free"]), "models": ["*"]},
        ],
    }


class Stack:
    def __init__(self):
        self.up = MockUpstream(usage_responder)
        cfg = render(gateway(self.up))
        self.envoy = Envoy(cfg, concurrency=2).wait_ready()

    def client(self, name) -> openai.OpenAI:
        return harness.openai_client(base_url=f"{self.envoy.base}/v1", api_key=KEYS[name], max_retries=0, timeout=20)

    def raw(self, name, model="gpt", content="hi", **extra):
        body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 100, **extra}
        return request("POST", f"{self.envoy.base}/v1/chat/completions", json.dumps(body),
                       {"authorization": f"Bearer {KEYS[name]}", "content-type": "application/json"}, timeout=20)

    def close(self):
        shut(self.envoy, self.up)


stack = module_stack(Stack)


def test_requests_limit_is_exact_across_workers(stack):
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: stack.raw("req"), range(20)))
    statuses = [r[0] for r in results]
    assert statuses.count(200) == 5, statuses
    assert statuses.count(429) == 15
    for status, headers, body in results:
        assert headers["x-ratelimit-limit-requests"] == "5"
        assert "x-ratelimit-remaining-requests" in headers and "x-ratelimit-reset-requests" in headers
        if status == 200:
            # The filter adds its headers to the provider's, which reach the client byte for byte.
            assert headers["x-provider-trace"] == "caf\u00e9-1" and headers["content-type"] == "application/json"
        if status == 429:
            err = json.loads(body)["error"]
            assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests"
            assert int(headers["retry-after"]) >= 1
            assert headers["x-ratelimit-remaining-requests"] == "0"
    remaining = sorted(int(h["x-ratelimit-remaining-requests"]) for s, h, _ in results if s == 200)
    # Each admitted request reports what was left after it (rounded down: two requests decided within
    # microseconds of each other on two workers may both report the lower count).
    assert remaining[0] == 0 and remaining[-1] == 4 and all(0 <= r <= 4 for r in remaining), remaining


def test_sdk_sees_rate_limit_error_with_retry_after(stack):
    with pytest.raises(openai.RateLimitError) as e:
        stack.client("req").chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert e.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize("name,stream", [("tok", False), ("tokstream", True)])
def test_tokens_reserve_then_settle(stack, name, stream):
    """Each request reserves about 40 (prompt bytes / 4) + 100 (max_tokens) tokens and settles to the 300
    the provider reports: 300, 600, 900 fit under 1000; the fourth reservation does not."""
    admitted = 0
    for i in range(6):
        status, headers, body = stack.raw(name, stream=stream) if stream else stack.raw(name)
        if status == 429:
            err = json.loads(body)["error"]
            assert err["type"] == "tokens" and err["code"] == "rate_limit_exceeded"
            assert headers["x-ratelimit-limit-tokens"] == "1000"
            break
        assert status == 200
        admitted += 1
        if stream:
            text = body.decode()
            assert "data: [DONE]" in text
            assert '"prompt_tokens"' not in text, "the usage chunk the client did not ask for is dropped"
        used_before = admitted * 300 - 300
        remaining = int(headers["x-ratelimit-remaining-tokens"])
        assert abs(remaining - (1000 - used_before - 140)) <= 20, (i, remaining)
    assert admitted == 3
    sent = stack.up.last().json()
    if stream:
        assert sent["stream_options"] == {"include_usage": True}, "the gateway asks the provider for usage"


def test_anthropic_format_requests_are_limited_too(stack):
    """/v1/messages on a limited key: the same reservation, and usage read from the Anthropic-format answer."""
    import anthropic

    client = harness.anthropic_client(base_url=stack.envoy.base, api_key=KEYS["ant"], max_retries=0, timeout=20)
    raw = client.messages.with_raw_response.create(model="gpt", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    msg = raw.parse()
    assert msg.usage.input_tokens + msg.usage.output_tokens == PROMPT + COMPLETION
    assert raw.headers["x-ratelimit-limit-tokens"] == "400"
    with client.messages.stream(model="gpt", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        s.until_done()
    # 300 + 300 charged: a third reservation (~70) no longer fits a 400-token limit.
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="gpt", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["error"]["type"] == "rate_limit_error"


def test_stream_keeps_usage_chunk_when_asked(stack):
    status, headers, body = stack.raw("free", stream=True, stream_options={"include_usage": True})
    assert status == 200
    events = [json.loads(l[6:]) for l in body.decode().splitlines() if l.startswith("data: {")]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] == 300


def test_budget_exhausted_by_cost(stack):
    statuses = []
    for _ in range(5):
        status, headers, body = stack.raw("budget")
        statuses.append(status)
        if status == 429:
            err = json.loads(body)["error"]
            assert err["code"] == "insufficient_quota" and err["type"] == "insufficient_quota"
            assert 0 < int(headers["retry-after"]) <= 86400
    # Reservation: ~40 prompt tokens + 100 output → $0.24; real cost $0.35 each. 0.35, 0.70 admitted,
    # then 0.70 + 0.24 = 0.94 fits too (ending at 1.05, one request's excess past the budget), then none.
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429], statuses


def test_concurrency_cap(stack):
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: stack.raw("conc", content="slow please"), range(6)))
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 200, 429, 429, 429, 429], statuses
    # Slots are released when the answers end.
    assert stack.raw("conc")[0] == 200


def test_client_leaving_mid_stream_frees_its_slot(stack):
    import http.client

    body = json.dumps({"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "hold"}]})
    conn = http.client.HTTPConnection("127.0.0.1", stack.envoy.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"authorization": f"Bearer {KEYS['one']}", "content-type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    # While the first stream holds the only slot, a second request is refused...
    assert stack.raw("one")[0] == 429
    # ...and once its client walks away the slot comes back, without waiting for the upstream.
    conn.sock.close()
    conn.close()
    deadline = time.time() + 2
    while time.time() < deadline and stack.raw("one")[0] == 429:
        time.sleep(0.1)
    assert stack.raw("one")[0] == 200


def test_per_model_limit(stack):
    assert [stack.raw("model")[0] for _ in range(3)] == [200, 200, 429]
    assert stack.raw("model", model="other")[0] == 200, "the limit is on the key with model 'gpt' only"


def test_failed_requests_release_their_tokens(stack):
    """An upstream error gives the reserved tokens back: ten failures reserving ~140 each would exhaust a
    400-token limit if they were kept."""
    stack.up.responder = lambda r: Reply(status=500, body=b'{"error":{"message":"boom","type":"server_error","param":null,"code":null}}')
    try:
        statuses = [stack.raw("rel")[0] for _ in range(10)]
    finally:
        stack.up.responder = usage_responder
    assert statuses == [502] * 10 or statuses == [500] * 10, statuses
    status, headers, _ = stack.raw("rel")
    assert status == 200
    assert int(headers["x-ratelimit-remaining-tokens"]) >= 400 - 140 - 20
