"""Issue 17, end to end: fleet-wide limits and budgets. Two Envoy processes (`--concurrency 2` each) with the
real .wasm share one real `switchyard-limits` service, whose state is in a real redis-server; the filter
calls it over gRPC through an Envoy cluster (Envoy's rate-limit protocol), reserves before forwarding and
settles to the real usage after the answer."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest

from fleet import LimitsService, RedisServer
import harness
from harness import Envoy, MockUpstream, Reply, mock_url, render, request, sha256_hex
from openai_wire import chat_completion, chunk
from provider_wire import anthropic_message, anthropic_stream

N = 10  # the requests limit
KEY_REQ = "sk-fleet-requests-0001"
KEY_TOK = "sk-fleet-tokens-0001"
KEY_BUD = "sk-fleet-budget-0001"
KEY_FREE = "sk-fleet-unlimited-0001"
# A window so long that nothing refills during the test (31 days): remaining counts are exact.
LONG = 2_678_400
TOKENS = 5_000
BUDGET_USD = 2.0
# OpenAI-format usage and the Anthropic mock's (translated) usage.
OPENAI_USAGE = (9, 4)
ANTHROPIC_USAGE = (12, 5)


def openai_answer(rec):
    body = rec.json()
    m = body["model"]
    if body.get("stream"):
        usage = {"prompt_tokens": OPENAI_USAGE[0], "completion_tokens": OPENAI_USAGE[1], "total_tokens": sum(OPENAI_USAGE)}
        return Reply(headers={"content-type": "text/event-stream"}, chunks=[
            chunk(m, {"role": "assistant", "content": ""}), chunk(m, {"content": "hi"}), chunk(m, {}, finish="stop"),
            chunk(m, {}, choices=False, usage=usage), "data: [DONE]\n\n"])
    return Reply(body=json.dumps(chat_completion(m, "hi", *OPENAI_USAGE)).encode())


def anthropic_answer(rec):
    body = rec.json()
    if body.get("stream"):
        return Reply(headers={"content-type": "text/event-stream"},
                     chunks=anthropic_stream("claude-haiku", ["h", "i"], usage=ANTHROPIC_USAGE))
    return Reply(body=json.dumps(anthropic_message("claude-haiku", "hi", usage=(*ANTHROPIC_USAGE, 0))).encode())


def gateway(openai_up: MockUpstream, anthropic_up: MockUpstream, grpc_port: int, mode: str, timeout_ms: int) -> dict:
    return {
        "services": {"ratelimit": {"url": f"http://127.0.0.1:{grpc_port}", "protocol": "grpc", "connect_timeout": "250ms"}},
        "fleet_limits": {"cluster": "ratelimit", "failure_mode": mode, "timeout_ms": timeout_ms},
        "providers": {
            "openai": {"kind": "openai", "api_key": "sk-openai-fleet-test", "url": mock_url(openai_up)},
            "anthropic": {"kind": "anthropic", "api_key": "sk-ant-fleet-test", "url": mock_url(anthropic_up)},
        },
        "models": {
            "gpt": {"provider": "openai", "model": "gpt-4o-mini", "price": {"input": 1000, "output": 1000}},
            "claude": {"provider": "anthropic", "model": "claude-haiku", "price": {"input": 1000, "output": 1000}},
        },
        "keys": [
            {"id": "req", "sha256": sha256_hex(KEY_REQ), "models": ["*"],
             "limits": {"fleet": {"requests": {"limit": N, "window_secs": LONG}}}},
            {"id": "tok", "sha256": sha256_hex(KEY_TOK), "models": ["*"],
             "limits": {"fleet": {"tokens": {"limit": TOKENS, "window_secs": LONG}}}},
            {"id": "bud", "sha256": sha256_hex(KEY_BUD), "models": ["*"],
             "limits": {"fleet": {"budget": {"usd": BUDGET_USD, "period": "month"}}}},
            {"id": "free", "sha256": sha256_hex(KEY_FREE), "models": ["*"]},
        ],
    }


class Stack:
    def __init__(self):
        self.redis = RedisServer().start()
        self.service = LimitsService(self.redis.url).start()
        self.openai = MockUpstream(openai_answer)
        self.anthropic = MockUpstream(anthropic_answer)
        self.cfg = render(gateway(self.openai, self.anthropic, self.service.grpc_port, "closed", 500))
        self.open_cfg = render(gateway(self.openai, self.anthropic, self.service.grpc_port, "open", 500))
        self.envoys = [Envoy(self.cfg, concurrency=2).wait_ready() for _ in range(2)]

    def restart_envoys(self):
        for e in self.envoys:
            e.stop()
        self.envoys = [Envoy(self.cfg, concurrency=2).wait_ready() for _ in range(2)]

    def close(self):
        for e in self.envoys:
            e.stop()
        self.service.stop()
        self.redis.stop()
        self.openai.close()
        self.anthropic.close()


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    yield s
    s.close()


def chat(envoy: Envoy, key: str, model: str = "gpt", max_tokens: int = 10, stream: bool = False, timeout: float = 10):
    """A raw chat request (so that its size, hence its reservation, is known): (status, headers, body, bytes sent)."""
    body = json.dumps({"model": model, "max_tokens": max_tokens, "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    status, headers, out = request("POST", f"{envoy.base}/v1/chat/completions", body,
                                   {"authorization": f"Bearer {key}", "content-type": "application/json"}, timeout=timeout)
    return status, headers, out, len(body)


def reservation(body_len: int, max_tokens: int) -> int:
    """What the filter reserves: the prompt estimate (body bytes / 4, rounded up) plus max_tokens."""
    return -(-body_len // 4) + max_tokens


def body_len(model: str, max_tokens: int, stream: bool = False) -> int:
    return len(json.dumps({"model": model, "max_tokens": max_tokens, "stream": stream,
                           "messages": [{"role": "user", "content": "hi"}]}).encode())


def settled(stack: Stack):
    """Settlements go out on the VMs' 100 ms tick."""
    time.sleep(0.6)


def counter(envoy: Envoy, name: str) -> int:
    """A counter the filter defined (Envoy prefixes them with `wasmcustom.`)."""
    name = "wasmcustom." + name
    for line in envoy.admin("/stats?filter=" + name).splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":")[1])
    return 0


# ------------------------------------------------------------------------------------ one truth for all


def test_requests_limit_holds_across_two_envoys(stack):
    # 3N parallel requests spread over both Envoys (two workers each): exactly N are admitted.
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda i: chat(stack.envoys[i % 2], KEY_REQ), range(3 * N)))
    statuses = [r[0] for r in results]
    assert statuses.count(200) == N, statuses
    assert statuses.count(429) == 2 * N, statuses
    refused = next(r for r in results if r[0] == 429)
    err = json.loads(refused[2])["error"]
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests", err
    assert "Fleet-wide" in err["message"] and str(N) in err["message"]
    assert int(refused[1]["retry-after"]) >= 1
    # Both Envoys admitted some (the spread was real) and both now refuse.
    for e in stack.envoys:
        assert counter(e, "switchyard.fleet_limits.outcome.ok") >= 1
        assert chat(e, KEY_REQ)[0] == 429
    # The SDK sees a RateLimitError.
    c = harness.openai_client(base_url=f"{stack.envoys[1].base}/v1", api_key=KEY_REQ, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=10)


def test_tokens_are_settled_to_real_usage_and_the_same_from_either_envoy(stack):
    e1, e2 = stack.envoys
    used = 0
    # Plain and streaming, OpenAI-format and translated (Anthropic), on both Envoys, through the SDKs.
    oa1 = harness.openai_client(base_url=f"{e1.base}/v1", api_key=KEY_TOK, max_retries=0)
    r = oa1.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=50)
    assert r.usage.total_tokens == sum(OPENAI_USAGE)
    used += sum(OPENAI_USAGE)
    oa2 = harness.openai_client(base_url=f"{e2.base}/v1", api_key=KEY_TOK, max_retries=0)
    s = oa2.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=50,
                                    stream=True, stream_options={"include_usage": True})
    assert [c for c in s][-1].usage.total_tokens == sum(OPENAI_USAGE)
    used += sum(OPENAI_USAGE)
    an = harness.anthropic_client(base_url=e2.base, api_key=KEY_TOK, max_retries=0)
    m = an.messages.create(model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert (m.usage.input_tokens, m.usage.output_tokens) == ANTHROPIC_USAGE
    used += sum(ANTHROPIC_USAGE)
    with an.messages.stream(model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as st:
        final = st.get_final_message()
    assert final.usage.output_tokens == ANTHROPIC_USAGE[1]
    used += sum(ANTHROPIC_USAGE)
    settled(stack)
    # What is left is exactly TOKENS - used, from either Envoy: a request reserving one more than that is
    # refused by both, one reserving exactly that is admitted (and settles to its small real usage).
    left = TOKENS - used
    prompt = -(-body_len("gpt", 0) // 4)
    too_much = left + 1 - prompt
    # max_tokens changes the body's length by its digits: find the max_tokens whose reservation is left+1.
    while reservation(body_len("gpt", too_much), too_much) > left + 1:
        too_much -= 1
    while reservation(body_len("gpt", too_much), too_much) < left + 1:
        too_much += 1
    assert reservation(body_len("gpt", too_much), too_much) == left + 1
    for e in (e1, e2):
        status, _, out, _ = chat(e, KEY_TOK, max_tokens=too_much)
        assert status == 429, out
        assert json.loads(out)["error"]["type"] == "tokens"
    fits = too_much - 1
    assert reservation(body_len("gpt", fits), fits) == left
    status, _, out, _ = chat(e2, KEY_TOK, max_tokens=fits)
    assert status == 200, out


def spend(stack: Stack, key_id: str) -> dict:
    return stack.service.spend(key_id)


def test_budget_spent_on_one_envoy_is_seen_by_the_other_and_survives_restarts(stack):
    e1, _ = stack.envoys
    # Priced at $1000 per million tokens: a token costs 1000 micro-dollars.
    assert chat(e1, KEY_BUD, max_tokens=20)[0] == 200
    settled(stack)
    micros = sum(OPENAI_USAGE) * 1000
    s = spend(stack, "bud")
    assert [b["spent_micros"] for b in s["budgets"]] == [micros], s
    assert s["budgets"][0]["max_micros"] == BUDGET_USD * 1_000_000

    def refused_everywhere():
        # A request whose reserved cost is one token more than what is left is refused by either Envoy;
        # exactly what is left would still be admitted on a fresh budget of the same size.
        left_tokens = int(BUDGET_USD * 1000) - sum(OPENAI_USAGE)
        mt = left_tokens + 1 - -(-body_len("gpt", left_tokens) // 4)
        assert reservation(body_len("gpt", mt), mt) == left_tokens + 1
        for e in stack.envoys:
            status, _, out, _ = chat(e, KEY_BUD, max_tokens=mt)
            assert status == 429, out
            assert json.loads(out)["error"]["code"] == "insufficient_quota"
        assert spend(stack, "bud")["budgets"][0]["spent_micros"] == micros

    refused_everywhere()
    stack.restart_envoys()
    refused_everywhere()
    stack.service.restart()
    refused_everywhere()


# ------------------------------------------------------------------------------------------- failures


def test_service_down_closed_refuses_open_admits_and_both_recover(stack):
    e_closed = stack.envoys[0]
    e_open = Envoy(stack.open_cfg, concurrency=2).wait_ready()
    try:
        assert chat(e_closed, KEY_TOK, max_tokens=5)[0] == 200
        stack.service.stop()
        t0 = time.time()
        status, _, out, _ = chat(e_closed, KEY_TOK, max_tokens=5)
        assert time.time() - t0 < 3
        assert status == 503, out
        err = json.loads(out)["error"]
        assert err["code"] == "limits_unavailable" and err["type"] == "server_error"
        assert chat(e_open, KEY_TOK, max_tokens=5)[0] == 200, "open: admitted on the local tier"
        # Keys without fleet limits never ask.
        assert chat(e_closed, KEY_FREE)[0] == 200
        for e in (e_closed, e_open):
            assert counter(e, "switchyard.fleet_limits.outcome.unavailable") >= 1
        # One log line for the episode, however many requests.
        for _ in range(3):
            chat(e_closed, KEY_TOK, max_tokens=5)
        time.sleep(0.3)
        episodes = e_closed.log().count("the rate-limit service failed")
        assert 1 <= episodes <= 2, episodes  # one line per worker VM that saw the episode, not per request
        stack.service.start()
        deadline = time.time() + 10
        while chat(e_closed, KEY_TOK, max_tokens=5)[0] != 200:
            assert time.time() < deadline, "no recovery"
            time.sleep(0.2)
        assert "answers again" in e_closed.log()
    finally:
        e_open.stop()


def test_redis_down_is_a_failure_too(stack):
    e = stack.envoys[1]
    assert chat(e, KEY_TOK, max_tokens=5)[0] == 200
    stack.redis.stop()
    try:
        t0 = time.time()
        status, _, out, _ = chat(e, KEY_TOK, max_tokens=5)
        assert time.time() - t0 < 3
        assert status == 503, out
    finally:
        stack.redis.start()
    deadline = time.time() + 15
    while chat(e, KEY_TOK, max_tokens=5)[0] != 200:
        assert time.time() < deadline, "no recovery after Redis came back"
        time.sleep(0.3)


def test_a_slow_service_is_cut_at_the_timeout(stack):
    # A service that takes the call and never answers (stopped): the request is decided at the configured
    # timeout (500 ms here), not left hanging.
    e = stack.envoys[0]
    stack.service.pause()
    try:
        t0 = time.time()
        status, _, out, _ = chat(e, KEY_TOK, max_tokens=5)
        took = time.time() - t0
        assert status == 503, out
        assert 0.4 < took < 3, took
    finally:
        stack.service.resume()
    deadline = time.time() + 10
    while chat(e, KEY_TOK, max_tokens=5)[0] != 200:
        assert time.time() < deadline
        time.sleep(0.2)


def test_the_shipped_fleet_demo_shares_its_limit_across_two_envoys(stack):
    """envoy/fleet/gateway.yaml (what `make run-fleet` serves), pointed at this test's service: the demo key's
    20 requests a minute hold across two Envoys, and its budget is charged; its cached model's answer, stored
    through the first Envoy, is a hit on the second (the response cache's fleet tier)."""
    import yaml

    from harness import ROOT

    doc = yaml.safe_load((ROOT / "envoy" / "fleet" / "gateway.yaml").read_text())
    doc["services"]["ratelimit"]["url"] = f"http://127.0.0.1:{stack.service.grpc_port}"
    cfg = render(doc)
    envoys = [Envoy(cfg, concurrency=2).wait_ready() for _ in range(2)]
    try:
        body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
        headers = {"authorization": "Bearer sk-switchyard-demo", "content-type": "application/json"}
        answers = []
        for i in range(22):
            answers.append(request("POST", f"{envoys[i % 2].base}/v1/chat/completions", body, headers))
            if i == 0:
                time.sleep(0.5)  # the first answer's fleet put goes out on the root context's 100 ms tick
        statuses = [a[0] for a in answers]
        assert statuses.count(200) == 20 and statuses[-2:] == [429, 429], statuses
        # A hit counts as a request too; the first Envoy's miss is the second one's (fleet) hit.
        outcomes = [a[1].get("x-switchyard-cache") for a in answers[:20]]
        assert outcomes == ["miss"] + ["hit"] * 19, outcomes
        assert counter(envoys[1], "switchyard.cache_fleet.outcome.hit") == 1
        settled(stack)
        budgets = spend(stack, "demo")["budgets"]
        assert len(budgets) == 1 and 0 < budgets[0]["spent_micros"] < budgets[0]["max_micros"], budgets
    finally:
        for e in envoys:
            e.stop()
