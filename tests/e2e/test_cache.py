"""Issue 19, end to end: exact-match response caching in the process tier, through the real Envoy with the
built switchyard.wasm. Mock providers count what reaches them and answer differently each time, so a
second identical answer can only come from the cache. The official `openai` and `anthropic` SDKs, and raw
HTTP for headers and streams."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

import harness
from harness import Envoy, MockUpstream, Reply, mock_url, module_stack, render, sha256_hex, shut
from openai_wire import chat_completion, chat_stream, response_events, response_object
from provider_wire import anthropic_message, anthropic_stream

KEY1 = "sk-sy-cache-key-one-1"
KEY2 = "sk-sy-cache-key-two-2"
KEY_TOK = "sk-sy-cache-tokens-3"
KEY_TEAM_A = "sk-sy-cache-team-a-4"
KEY_TEAM_B = "sk-sy-cache-team-b-5"
MAX_BYTES = 256 * 1024
MAX_ENTRIES = 64


class Counting:
    """A provider that answers every request with a new text ("answer N") and counts them."""

    def __init__(self, kind: str):
        self.kind = kind
        self.n = 0
        self.lock = threading.Lock()
        self.fail: Reply | None = None
        self.cut = False

    def __call__(self, rec) -> Reply:
        with self.lock:
            self.n += 1
            n = self.n
        if self.fail is not None:
            return self.fail
        body = rec.json()
        text = f"answer {n} to {last_words(body)}"
        stream = body.get("stream") is True
        if self.kind == "anthropic":
            if stream:
                pieces = [text[:6], text[6:]]
                chunks = anthropic_stream(body["model"], pieces, usage=(21, 8))
                return Reply(headers={"content-type": "text/event-stream"}, chunks=chunks[:3] if self.cut else chunks)
            return Reply(body=json.dumps(anthropic_message(body["model"], text, usage=(21, 8, 0))).encode())
        if rec.path.endswith("/responses"):
            if stream:
                return Reply(headers={"content-type": "text/event-stream"},
                             chunks=response_events(body["model"], [text[:6], text[6:]], usage=(31, 9, 0, 0)))
            return Reply(body=json.dumps(response_object(body["model"], text, usage=(31, 9, 0, 0))).encode())
        if stream:
            usage = (body.get("stream_options") or {}).get("include_usage") is True
            chunks = chat_stream(body["model"], [text[:6], text[6:]], usage=(11, 7, 0), include_usage=usage)
            if self.cut:
                chunks = chunks[:2]
            return Reply(headers={"content-type": "text/event-stream"}, chunks=chunks)
        return Reply(body=json.dumps(chat_completion(body["model"], text, prompt_tokens=11, completion_tokens=7)).encode())


def last_words(body: dict) -> str:
    """The client's question, whichever API it came in."""
    if "input" in body:
        return str(body["input"])
    msgs = body.get("messages") or body.get("contents") or []
    c = msgs[-1].get("content") if msgs else ""
    return c if isinstance(c, str) else json.dumps(c)


def gateway(s: "Stack") -> dict:
    cache = {"ttl": 60}
    k = lambda kid, secret, **extra: {"id": kid, "sha256": sha256_hex(secret), "models": ["*"], **extra}
    return {
        "cache": {"max_bytes": MAX_BYTES, "max_entries": MAX_ENTRIES},
        "providers": {
            "openai": {"kind": "openai", "api_key": "sk-upstream-cache", "url": mock_url(s.up["openai"])},
            "anthropic": {"kind": "anthropic", "api_key": "sk-ant-upstream-cache", "url": mock_url(s.up["anthropic"])},
        },
        "models": {
            "c-gpt": {"provider": "openai", "model": "gpt-4o-mini", "cache": cache,
                      "price": {"input": 1000, "output": 2000}},
            "c-claude": {"provider": "anthropic", "model": "claude-sonnet-4-5", "cache": cache},
            "c-shared": {"provider": "openai", "model": "gpt-4o-mini", "cache": {**cache, "scope": "shared"}},
            "c-team": {"provider": "openai", "model": "gpt-4o-mini", "cache": {**cache, "scope": "team"}},
            "c-short": {"provider": "openai", "model": "gpt-4o-mini", "cache": {"ttl": "1s"}},
            "c-charge": {"provider": "openai", "model": "gpt-4o-mini", "cache": {**cache, "charge": True}},
            "c-small": {"provider": "openai", "model": "gpt-4o-mini", "cache": {**cache, "max_entry_bytes": 600}},
            "plain": {"provider": "openai", "model": "gpt-4o-mini"},
        },
        "keys": [
            k("one", KEY1),
            k("two", KEY2),
            k("tok", KEY_TOK, limits={"tokens": {"limit": 1000, "window_secs": 3600},
                                      "requests": {"limit": 1000, "window_secs": 3600}}),
            k("team-a1", KEY_TEAM_A, team="red"),
            k("team-a2", KEY_TEAM_B, team="red"),
        ],
    }


class Stack:
    def __init__(self):
        self.providers = {"openai": Counting("openai"), "anthropic": Counting("anthropic")}
        self.up = {name: MockUpstream(p) for name, p in self.providers.items()}
        cfg = render(gateway(self))
        cfg["stats_flush_interval"] = "1s"
        self.envoy = Envoy(cfg, access_log=True).wait_ready()

    def oai(self, key: str = KEY1):
        return harness.openai_client(base_url=f"{self.envoy.base}/v1", api_key=key, max_retries=0, timeout=15)

    def ant(self, key: str = KEY1):
        return harness.anthropic_client(base_url=self.envoy.base, api_key=key, max_retries=0, timeout=15)

    def post(self, path: str, body: dict, key: str = KEY1, **headers):
        h = {"authorization": f"Bearer {key}", "content-type": "application/json", **headers}
        return harness.request("POST", self.envoy.base + path, json.dumps(body), h)

    def calls(self, name: str) -> int:
        return self.providers[name].n

    def close(self):
        shut(self.envoy, *self.up.values())


stack = module_stack(Stack)

_seq = iter(range(1_000_000))


def question() -> str:
    """A question no other test asks (each test's entries are its own)."""
    return f"question {next(_seq)} at {time.time_ns()}"


def chat(model: str, q: str, stream: bool = False, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": q}], **extra}
    if stream:
        body["stream"] = True
    return body


def sse_json(body: bytes) -> list[dict]:
    return [json.loads(d) for d in harness.sse_data(body.decode()) if d != "[DONE]"]


def chat_stream_text(body: bytes) -> str:
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in sse_json(body) if c.get("choices"))


# ------------------------------------------------------------------------------------------ miss, then hit


@pytest.mark.parametrize("first_stream,second_stream", [(False, False), (True, True), (False, True), (True, False)],
                         ids=["plain-plain", "stream-stream", "plain-stream", "stream-plain"])
def test_chat_miss_then_hit(stack, first_stream, second_stream):
    q = question()
    before = stack.calls("openai")
    s1, h1, b1 = stack.post("/v1/chat/completions", chat("c-gpt", q, first_stream))
    s2, h2, b2 = stack.post("/v1/chat/completions", chat("c-gpt", q, second_stream))
    assert (s1, s2) == (200, 200)
    assert stack.calls("openai") == before + 1, "the provider saw one request"
    assert h1["x-switchyard-cache"] == "miss" and h2["x-switchyard-cache"] == "hit"
    assert "age" in h2 and int(h2["age"]) >= 0
    text1 = chat_stream_text(b1) if first_stream else json.loads(b1)["choices"][0]["message"]["content"]
    text2 = chat_stream_text(b2) if second_stream else json.loads(b2)["choices"][0]["message"]["content"]
    assert text1 == text2 and text1.startswith(f"answer {before + 1} ")
    if second_stream:
        assert h2["content-type"].startswith("text/event-stream")
        assert b2.decode().rstrip().endswith("data: [DONE]")
        assert not any("usage" in c and c["usage"] for c in sse_json(b2)), "no usage chunk unless asked"
    else:
        assert json.loads(b2)["usage"]["completion_tokens"] == 7, "the stored usage is shown"


def test_chat_stream_hit_with_usage_asked(stack):
    q = question()
    stack.post("/v1/chat/completions", chat("c-gpt", q))
    s, h, b = stack.post("/v1/chat/completions", chat("c-gpt", q, True, stream_options={"include_usage": True}))
    assert s == 200 and h["x-switchyard-cache"] == "hit"
    chunks = sse_json(b)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 11
    assert [c["choices"][0]["delta"]["role"] for c in chunks[:1]] == ["assistant"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_sdk_clients_of_every_format_get_well_formed_hits(stack):
    """One stored answer serves the Chat, Anthropic and Responses clients, plain and streamed."""
    q = question()
    before = stack.calls("anthropic")
    oai, ant = stack.oai(), stack.ant()
    first = oai.chat.completions.create(model="c-claude", messages=[{"role": "user", "content": q}], max_tokens=100)
    text = first.choices[0].message.content
    assert text.startswith("answer ")
    # The same pivot from the other client APIs: the Anthropic request with the same max_tokens, the
    # Responses request with max_output_tokens.
    msg = ant.messages.create(model="c-claude", max_tokens=100, messages=[{"role": "user", "content": q}])
    assert msg.content[0].text == text and msg.stop_reason == "end_turn"
    with ant.messages.stream(model="c-claude", max_tokens=100, messages=[{"role": "user", "content": q}]) as s:
        assert "".join(s.text_stream) == text
        assert s.get_final_message().usage.output_tokens == 8
    r = oai.responses.create(model="c-claude", input=[{"role": "user", "content": q}], max_output_tokens=100)
    assert r.output_text == text and r.status == "completed"
    with oai.responses.stream(model="c-claude", input=[{"role": "user", "content": q}], max_output_tokens=100) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == text and final.output_text == text and final.usage.output_tokens == 8
    stream = oai.chat.completions.create(model="c-claude", messages=[{"role": "user", "content": q}], max_tokens=100,
                                         stream=True)
    assert "".join((c.choices[0].delta.content or "") for c in stream if c.choices) == text
    assert stack.calls("anthropic") == before + 1, "six answers, one provider call"


def test_native_responses_are_cached_only_without_stored_state(stack):
    q = question()
    before = stack.calls("openai")
    body = {"model": "c-gpt", "input": q, "store": False}
    s1, h1, b1 = stack.post("/v1/responses", body)
    s2, h2, b2 = stack.post("/v1/responses", body)
    assert (s1, s2, h1["x-switchyard-cache"], h2["x-switchyard-cache"]) == (200, 200, "miss", "hit")
    assert json.loads(b1)["output"][0]["content"][0]["text"] == json.loads(b2)["output"][0]["content"][0]["text"]
    assert stack.calls("openai") == before + 1
    # Without store: false, OpenAI keeps the answer under its id: never served from the cache.
    for _ in range(2):
        s, h, _ = stack.post("/v1/responses", {"model": "c-gpt", "input": q})
        assert (s, h["x-switchyard-cache"]) == (200, "bypass")
    s, h, _ = stack.post("/v1/responses", {"model": "c-gpt", "input": q, "store": False, "previous_response_id": "resp_x"})
    assert (s, h["x-switchyard-cache"]) == (200, "bypass")
    assert stack.calls("openai") == before + 4


# ---------------------------------------------------------------------------------- what the key holds


def test_fields_that_do_not_change_the_answer_share_an_entry(stack):
    q = question()
    before = stack.calls("openai")
    a = stack.post("/v1/chat/completions", chat("c-gpt", q, temperature=0.5, user="alice"))
    spaced = json.dumps(chat("c-gpt", q, temperature=0.50, user="bob", metadata={"x": "y"}), indent=3)
    b = harness.request("POST", stack.envoy.base + "/v1/chat/completions", spaced,
                        {"authorization": f"Bearer {KEY1}", "content-type": "application/json"})
    assert (a[1]["x-switchyard-cache"], b[1]["x-switchyard-cache"]) == ("miss", "hit")
    c = stack.post("/v1/chat/completions", chat("c-gpt", q, temperature=0.7))
    assert c[1]["x-switchyard-cache"] == "miss", "a field that changes the answer is another entry"
    assert stack.calls("openai") == before + 2


def test_scope_key_never_shares_and_shared_does(stack):
    q = question()
    before = stack.calls("openai")
    assert stack.post("/v1/chat/completions", chat("c-gpt", q), KEY1)[1]["x-switchyard-cache"] == "miss"
    assert stack.post("/v1/chat/completions", chat("c-gpt", q), KEY2)[1]["x-switchyard-cache"] == "miss"
    assert stack.calls("openai") == before + 2, "two keys, two entries"
    assert stack.post("/v1/chat/completions", chat("c-shared", q), KEY1)[1]["x-switchyard-cache"] == "miss"
    s, h, b = stack.post("/v1/chat/completions", chat("c-shared", q), KEY2)
    assert h["x-switchyard-cache"] == "hit"
    assert stack.calls("openai") == before + 3


def test_scope_team_shares_within_the_team_only(stack):
    q = question()
    before = stack.calls("openai")
    assert stack.post("/v1/chat/completions", chat("c-team", q), KEY_TEAM_A)[1]["x-switchyard-cache"] == "miss"
    assert stack.post("/v1/chat/completions", chat("c-team", q), KEY_TEAM_B)[1]["x-switchyard-cache"] == "hit"
    # A key without a team keeps its own entries.
    assert stack.post("/v1/chat/completions", chat("c-team", q), KEY1)[1]["x-switchyard-cache"] == "miss"
    assert stack.calls("openai") == before + 2


def test_models_without_cache_say_nothing(stack):
    q = question()
    s, h, _ = stack.post("/v1/chat/completions", chat("plain", q))
    assert s == 200 and "x-switchyard-cache" not in h


# ------------------------------------------------------------------------------------ when not to store


def test_ttl_expires(stack):
    q = question()
    before = stack.calls("openai")
    assert stack.post("/v1/chat/completions", chat("c-short", q))[1]["x-switchyard-cache"] == "miss"
    assert stack.post("/v1/chat/completions", chat("c-short", q))[1]["x-switchyard-cache"] == "hit"
    time.sleep(1.3)
    assert stack.post("/v1/chat/completions", chat("c-short", q))[1]["x-switchyard-cache"] == "miss"
    assert stack.calls("openai") == before + 2


def test_no_store_and_no_cache(stack):
    q = question()
    before = stack.calls("openai")
    h = stack.post("/v1/chat/completions", chat("c-gpt", q), **{"cache-control": "no-store"})[1]
    assert h["x-switchyard-cache"] == "bypass"
    assert stack.post("/v1/chat/completions", chat("c-gpt", q))[1]["x-switchyard-cache"] == "miss", "no-store kept nothing"
    assert stack.post("/v1/chat/completions", chat("c-gpt", q))[1]["x-switchyard-cache"] == "hit"
    # no-cache: no lookup, but the fresh answer replaces the entry.
    s, h, b = stack.post("/v1/chat/completions", chat("c-gpt", q), **{"cache-control": "max-age=0, no-cache"})
    assert h["x-switchyard-cache"] == "bypass"
    fresh = json.loads(b)["choices"][0]["message"]["content"]
    s, h, b = stack.post("/v1/chat/completions", chat("c-gpt", q))
    assert h["x-switchyard-cache"] == "hit" and json.loads(b)["choices"][0]["message"]["content"] == fresh
    assert stack.calls("openai") == before + 3


def test_an_error_answer_is_not_cached(stack):
    q = question()
    p = stack.providers["openai"]
    p.fail = Reply(status=500, body=json.dumps({"error": {"message": "boom", "type": "server_error", "param": None,
                                                          "code": None}}).encode())
    try:
        s, h, _ = stack.post("/v1/chat/completions", chat("c-gpt", q))
        assert s == 500 and h["x-switchyard-cache"] == "miss"
    finally:
        p.fail = None
    s, h, _ = stack.post("/v1/chat/completions", chat("c-gpt", q))
    assert (s, h["x-switchyard-cache"]) == (200, "miss"), "the error was not stored"


@pytest.mark.parametrize("model,provider", [("c-gpt", "openai"), ("c-claude", "anthropic")])
def test_a_stream_cut_midway_is_not_cached(stack, model, provider):
    q = question()
    p = stack.providers[provider]
    p.cut = True
    try:
        s, h, b = stack.post("/v1/chat/completions", chat(model, q, True))
        assert s == 200 and h["x-switchyard-cache"] == "miss"
    finally:
        p.cut = False
    s, h, _ = stack.post("/v1/chat/completions", chat(model, q, True))
    assert (s, h["x-switchyard-cache"]) == (200, "miss"), "the cut stream was not stored"
    assert stack.post("/v1/chat/completions", chat(model, q, True))[1]["x-switchyard-cache"] == "hit"


def test_an_answer_over_max_entry_bytes_is_not_stored(stack):
    q = question() + " " + "padding " * 100  # the answer echoes part of it: over 600 bytes with the envelope
    before = stack.calls("openai")
    for _ in range(2):
        assert stack.post("/v1/chat/completions", chat("c-small", q))[1]["x-switchyard-cache"] == "miss"
    assert stack.calls("openai") == before + 2


# ------------------------------------------------------------------------------------- limits and money


def test_a_hit_counts_as_a_request_and_charges_no_tokens(stack):
    q = question()
    s, h1, _ = stack.post("/v1/chat/completions", chat("c-gpt", q, max_tokens=50), KEY_TOK)
    s, h2, _ = stack.post("/v1/chat/completions", chat("c-gpt", q, max_tokens=50), KEY_TOK)
    s, h3, _ = stack.post("/v1/chat/completions", chat("c-gpt", q, max_tokens=50), KEY_TOK)
    assert [h["x-switchyard-cache"] for h in (h1, h2, h3)] == ["miss", "hit", "hit"]
    # Each answer's headers show the window after its own reservation (the estimate), settled when the
    # answer ends: a miss charges 11 + 7 tokens, a hit none, so the two hits see the same room (give or take
    # the one token the window refills in a few seconds); a charged hit would leave 18 fewer.
    s, h4, _ = stack.post("/v1/chat/completions", chat("c-gpt", question(), max_tokens=50), KEY_TOK)
    tokens = [int(h["x-ratelimit-remaining-tokens"]) for h in (h2, h3)]
    assert abs(tokens[0] - tokens[1]) <= 1, tokens
    requests = [int(h["x-ratelimit-remaining-requests"]) for h in (h1, h2, h3, h4)]
    assert requests == sorted(requests, reverse=True) and len(set(requests)) == 4, "every hit counts as a request"


def stats(stack) -> dict:
    return harness.prom_samples(stack.envoy.admin("/stats/prometheus"))


def test_stats_and_access_log(stack):
    q = question()
    stack.post("/v1/chat/completions", chat("c-charge", q))
    stack.post("/v1/chat/completions", chat("c-charge", q))
    stack.post("/v1/chat/completions", chat("c-gpt", q), KEY2)
    stack.post("/v1/chat/completions", chat("c-gpt", q), KEY2)
    time.sleep(1.5)
    p = stats(stack)
    hits = {k: v for k, v in p.items() if k.startswith("switchyard_cache{") and 'outcome="hit"' in k}
    assert any('model="c-gpt"' in k and 'key="two"' in k for k in hits), p
    assert p['switchyard_cache_saved_tokens{model="c-gpt",provider="openai",key="two"}'] >= 18
    # c-gpt has a price: the hit saved 11 x 1000 + 7 x 2000 micro-dollars.
    assert p['switchyard_cache_saved_cost_micro_usd{model="c-gpt",provider="openai",key="two"}'] >= 25000
    # charge: true: the hit is charged as if served, and saves nothing.
    assert 'switchyard_cache_saved_tokens{model="c-charge",provider="openai",key="one"}' not in p or \
        p['switchyard_cache_saved_tokens{model="c-charge",provider="openai",key="one"}'] == 0
    assert p['switchyard_input_tokens{model="c-charge",provider="openai",key="one"}'] >= 22
    assert p["switchyard_cache_bytes{}"] > 0
    raw = [json.loads(l) for l in stack.envoy.access_log().splitlines() if l.startswith("{")]
    log = [{**r, **r["switchyard"]["value"]} for r in raw if isinstance(r.get("switchyard"), dict)]
    mine = [l for l in log if l.get("gen_ai.request.model") in ("c-gpt", "c-charge")]
    assert {"hit", "miss"} <= {l.get("cache") for l in mine}
    assert all(l.get("cache") is None for l in log if l.get("gen_ai.request.model") == "plain")


def test_eviction_under_the_byte_cap_keeps_the_bounds(stack):
    """Last in the module: it fills the whole process tier."""
    first = question()
    stack.post("/v1/chat/completions", chat("c-gpt", first))
    assert stack.post("/v1/chat/completions", chat("c-gpt", first))[1]["x-switchyard-cache"] == "hit"
    filler = "x" * 3000
    for i in range(3 * MAX_ENTRIES):
        s, h, _ = stack.post("/v1/chat/completions", chat("c-gpt", f"{question()} {filler}"))
        assert s == 200 and h["x-switchyard-cache"] == "miss"
    time.sleep(1.5)
    p = stats(stack)
    assert p["switchyard_cache_evictions{}"] > 0
    assert 0 < p["switchyard_cache_bytes{}"] <= MAX_BYTES
    # The oldest entry of its set went first.
    assert stack.post("/v1/chat/completions", chat("c-gpt", first))[1]["x-switchyard-cache"] == "miss"
