"""Issue 19, end to end: the fleet tier of the response cache. Two Envoy processes (`--concurrency 2` each) with
the real .wasm share one real `switchyard-limits` service, whose cache service keeps entries in a real
redis-server: an answer stored through one Envoy is served by the other (and then by its own process tier);
the fleet tier down, frozen, or holding a corrupt entry is a miss, never an error. The mock provider counts
what reaches it and answers differently each time, so a second identical answer can only come from a cache."""

from __future__ import annotations

import json
import threading
import time

import pytest

import harness
from fleet import LimitsService, RedisServer
from harness import Envoy, MockUpstream, Reply, mock_url, render, sha256_hex
from openai_wire import chat_completion

KEY = "sk-sy-fleet-cache-key-1"
TIMEOUT_MS = 300
TTL = 120
SHORT_TTL = 45


class Counting:
    """An OpenAI provider answering every request with a new text ("answer N to ...") and counting them."""

    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, rec) -> Reply:
        with self.lock:
            self.n += 1
            n = self.n
        body = rec.json()
        text = f"answer {n} to {body['messages'][-1]['content']}"
        return Reply(body=json.dumps(chat_completion(body["model"], text, prompt_tokens=11, completion_tokens=7)).encode())


def gateway(up: MockUpstream, grpc_port: int) -> dict:
    return {
        "services": {"ratelimit": {"url": f"http://127.0.0.1:{grpc_port}", "protocol": "grpc", "connect_timeout": "250ms"}},
        # closed: the limits would refuse without the service; the cache never does.
        "fleet_limits": {"cluster": "ratelimit", "timeout_ms": TIMEOUT_MS, "failure_mode": "closed"},
        "cache": {"fleet": True},
        "providers": {"openai": {"kind": "openai", "api_key": "sk-upstream-fleet-cache", "url": mock_url(up)}},
        "models": {
            "c-gpt": {"provider": "openai", "model": "gpt-4o-mini", "cache": {"ttl": TTL}},
            "c-short": {"provider": "openai", "model": "gpt-4o-mini", "cache": {"ttl": f"{SHORT_TTL}s"}},
        },
        "keys": [{"id": "one", "sha256": sha256_hex(KEY), "models": ["*"]}],
    }


class Stack:
    def __init__(self):
        self.redis = RedisServer().start()
        self.service = LimitsService(self.redis.url).start()
        self.provider = Counting()
        self.up = MockUpstream(self.provider)
        cfg = render(gateway(self.up, self.service.grpc_port))
        cfg["stats_flush_interval"] = "1s"
        self.a = Envoy(cfg, concurrency=2, access_log=True).wait_ready()
        self.b = Envoy(cfg, concurrency=2, access_log=True).wait_ready()

    def close(self):
        for e in (self.a, self.b):
            e.stop()
        self.service.stop()
        self.redis.stop()
        self.up.close()


stack = harness.module_stack(Stack)

_seq = iter(range(1_000_000))


def question() -> str:
    return f"fleet question {next(_seq)} at {time.time_ns()}"


def post(envoy: Envoy, body: dict, timeout: float = 10, **headers):
    h = {"authorization": f"Bearer {KEY}", "content-type": "application/json", **headers}
    return harness.request("POST", envoy.base + "/v1/chat/completions", json.dumps(body), h, timeout=timeout)


def chat(model: str, q: str, stream: bool = False, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": q}], **extra}
    if stream:
        body["stream"] = True
    return body


def content(body: bytes) -> str:
    return json.loads(body)["choices"][0]["message"]["content"]


def stream_text(body: bytes) -> str:
    chunks = [json.loads(d) for d in harness.sse_data(body.decode()) if d != "[DONE]"]
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))


def counter(envoy: Envoy, name: str) -> int:
    """A counter the filter defined (Envoy prefixes them with `wasmcustom.`)."""
    name = "wasmcustom." + name
    for line in envoy.admin("/stats?filter=" + name.replace(".", r"\.") + "$").splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":")[1])
    return 0


def entry_keys(stack: Stack) -> set[str]:
    """The fleet tier's entries in Redis (`sy:{c:<hex>}`)."""
    out = stack.redis.command("--scan", "--pattern", "sy:{c:*")
    return set(out.split()) if out else set()


def new_entry(stack: Stack, before: set[str], timeout: float = 3) -> str:
    """The Redis key of the entry a request just stored (puts go out on the root context's 100 ms tick)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = entry_keys(stack) - before
        if new:
            assert len(new) == 1, new
            return new.pop()
        time.sleep(0.05)
    raise AssertionError("no fleet entry appeared in Redis")


def stored_on_a(stack: Stack, q: str, model: str = "c-gpt") -> str:
    """A miss on Envoy A for `q`: the Redis key of the entry it stored."""
    before = entry_keys(stack)
    s, h, _ = post(stack.a, chat(model, q))
    assert (s, h["x-switchyard-cache"]) == (200, "miss")
    return new_entry(stack, before)


def access_records(envoy: Envoy) -> list[dict]:
    raw = [json.loads(line) for line in envoy.access_log().splitlines() if line.startswith("{")]
    return [r["switchyard"]["value"] for r in raw if isinstance(r.get("switchyard"), dict)]


# ----------------------------------------------------------------------------------- one answer, two Envoys


def test_a_miss_on_one_envoy_is_a_hit_on_the_other_across_formats(stack):
    q = question()
    before_calls, before_keys = stack.provider.n, entry_keys(stack)
    fleet_hits = counter(stack.b, "switchyard.cache_fleet.outcome.hit")
    # Envoy A: a plain chat completion, a miss in both tiers, stored in both.
    s, h, b = post(stack.a, chat("c-gpt", q, max_tokens=100))
    assert (s, h["x-switchyard-cache"]) == (200, "miss")
    text = content(b)
    assert text.startswith(f"answer {before_calls + 1} ")
    new_entry(stack, before_keys)
    time.sleep(1.2)  # so that the hit's Age counts from A's store, not from B's fill
    # Envoy B: an Anthropic stream through the official SDK, served from the fleet tier.
    ant = harness.anthropic_client(base_url=stack.b.base, api_key=KEY, max_retries=0, timeout=15)
    raw = ant.messages.with_raw_response.create(model="c-gpt", max_tokens=100, stream=True,
                                                messages=[{"role": "user", "content": q}])
    assert raw.headers["x-switchyard-cache"] == "hit"
    assert int(raw.headers["age"]) >= 1, "Age from the time A stored it"
    events = list(raw.parse())
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == text
    assert events[-1].type == "message_stop"
    assert stack.provider.n == before_calls + 1, "the provider saw one request"
    assert counter(stack.b, "switchyard.cache_fleet.outcome.hit") == fleet_hits + 1
    # B's hit filled B's process tier: with Redis gone, B still hits (a chat stream now), from its own tier.
    stack.redis.stop()
    try:
        s, h, b = post(stack.b, chat("c-gpt", q, stream=True, max_tokens=100))
        assert (s, h["x-switchyard-cache"]) == (200, "hit")
        assert stream_text(b) == text
        assert stack.provider.n == before_calls + 1
    finally:
        stack.redis.start()
    time.sleep(1.2)  # the access log's flush, and the stats' (1 s here)
    b_stats = harness.prom_samples(stack.b.admin("/stats/prometheus"))
    assert b_stats['switchyard_cache_fleet{outcome="hit"}'] >= 1, b_stats
    a_stats = harness.prom_samples(stack.a.admin("/stats/prometheus"))
    assert a_stats['switchyard_cache_fleet{outcome="miss"}'] >= 1, a_stats
    assert a_stats['switchyard_cache_fleet_put{outcome="ok"}'] >= 1, a_stats
    mine = [r for r in access_records(stack.b) if r.get("cache") == "hit"]
    assert [r.get("cache_tier") for r in mine[-2:]] == ["fleet", "process"], mine[-2:]
    assert mine[-2].get("cache_fleet") == "hit" and "cache_fleet" not in mine[-1]


def test_the_redis_entry_lives_as_long_as_the_models_ttl(stack):
    for model, ttl in (("c-gpt", TTL), ("c-short", SHORT_TTL)):
        key = stored_on_a(stack, question(), model)
        left = int(stack.redis.command("TTL", key))
        assert ttl - 5 <= left <= ttl, (model, left)
        assert int(stack.redis.command("STRLEN", key)) > 49, "the answer and its trailer"


# ---------------------------------------------------------------------------------------------- failures


def test_a_corrupt_entry_is_a_miss(stack):
    q = question()
    key = stored_on_a(stack, q)
    stack.redis.command("SET", key, "not an entry", "KEEPTTL")
    corrupt = counter(stack.b, "switchyard.cache_fleet.outcome.corrupt")
    calls = stack.provider.n
    s, h, b = post(stack.b, chat("c-gpt", q))
    assert (s, h["x-switchyard-cache"]) == (200, "miss")
    assert q in content(b)
    assert stack.provider.n == calls + 1, "served by the provider"
    assert counter(stack.b, "switchyard.cache_fleet.outcome.corrupt") == corrupt + 1
    # B's fresh answer replaced the bad entry.
    deadline = time.time() + 3
    while int(stack.redis.command("STRLEN", key)) == len("not an entry"):
        assert time.time() < deadline, "B's put replaced the corrupt entry"
        time.sleep(0.05)


def test_a_well_formed_entry_under_another_key_is_not_served(stack):
    q1, q2 = question(), question()
    k1, k2 = stored_on_a(stack, q1), stored_on_a(stack, q2)
    # q1's real entry copied over q2's: its trailer names q1's key, so B must not answer q2 with it.
    assert stack.redis.command("COPY", k1, k2, "REPLACE") == "1"
    corrupt = counter(stack.b, "switchyard.cache_fleet.outcome.corrupt")
    s, h, b = post(stack.b, chat("c-gpt", q2))
    assert (s, h["x-switchyard-cache"]) == (200, "miss")
    assert q2 in content(b)
    assert counter(stack.b, "switchyard.cache_fleet.outcome.corrupt") == corrupt + 1
    # q1's own entry still serves q1 on B.
    s, h, b = post(stack.b, chat("c-gpt", q1))
    assert h["x-switchyard-cache"] == "hit" and q1 in content(b)


def wait_count(envoy: Envoy, text: str, at_least: int, timeout: float = 5) -> int:
    """How often `text` is in the Envoy's log, once it is there at least `at_least` times (Envoy writes its
    log as it goes: a line may lag a little)."""
    deadline = time.time() + timeout
    while (n := envoy.log().count(text)) < at_least:
        assert time.time() < deadline, f"{text!r} {n} times, not {at_least}"
        time.sleep(0.1)
    return n


def test_redis_down_is_a_quick_miss_counted_and_logged_once(stack):
    e = stack.b
    unavailable = counter(e, "switchyard.cache_fleet.outcome.unavailable")
    put_failed = counter(e, "switchyard.cache_fleet.put.outcome.failed")
    failed_before = e.log().count("the fleet tier failed")
    back_before = e.log().count("the fleet tier answers again")
    stack.redis.stop()
    try:
        calls = stack.provider.n
        for _ in range(6):
            t0 = time.time()
            s, h, b = post(e, chat("c-gpt", question()))
            assert (s, h["x-switchyard-cache"]) == (200, "miss"), b
            assert time.time() - t0 < TIMEOUT_MS / 1000 + 1.5, time.time() - t0
        assert stack.provider.n == calls + 6
        assert counter(e, "switchyard.cache_fleet.outcome.unavailable") == unavailable + 6
        deadline = time.time() + 3
        while counter(e, "switchyard.cache_fleet.put.outcome.failed") < put_failed + 6:
            assert time.time() < deadline, "failed puts are counted"
            time.sleep(0.1)
        # One line per worker VM that saw the episode (two workers here), not one per request.
        wait_count(e, "the fleet tier failed", failed_before + 1)
        time.sleep(0.3)  # the other worker's line, if it saw the episode too
        episodes = e.log().count("the fleet tier failed") - failed_before
        assert 1 <= episodes <= 2, episodes
    finally:
        stack.redis.start()
    # Back: a miss on A is a hit on B again.
    deadline = time.time() + 10
    while True:
        q = question()
        before = entry_keys(stack)
        post(stack.a, chat("c-gpt", q))
        try:
            new_entry(stack, before, timeout=1)
            break
        except AssertionError:
            assert time.time() < deadline, "no recovery after Redis came back"
    assert post(e, chat("c-gpt", q))[1]["x-switchyard-cache"] == "hit"
    # Each worker that logged the failure logs the recovery at its next lookup (requests land on either).
    deadline = time.time() + 10
    while e.log().count("the fleet tier answers again") - back_before < episodes:
        assert time.time() < deadline, "the recovery is logged"
        post(e, chat("c-gpt", question()))
        time.sleep(0.1)


def test_a_frozen_service_is_cut_at_the_timeout(stack):
    # The service takes the call and never answers (SIGSTOP): the lookup gives up at fleet_limits.timeout_ms.
    e = stack.b
    unavailable = counter(e, "switchyard.cache_fleet.outcome.unavailable")
    stack.service.pause()
    try:
        t0 = time.time()
        s, h, _ = post(e, chat("c-gpt", question()))
        took = time.time() - t0
        assert (s, h["x-switchyard-cache"]) == (200, "miss")
        assert TIMEOUT_MS / 1000 * 0.8 < took < TIMEOUT_MS / 1000 + 1.5, took
        assert counter(e, "switchyard.cache_fleet.outcome.unavailable") == unavailable + 1
    finally:
        stack.service.resume()
