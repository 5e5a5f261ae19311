"""Issue 15 item 1, end to end: no request can make the filter do work far beyond its size, and the shipped
config reloads a failed Wasm VM. Runs envoy/envoy.yaml as shipped (the demo key, the mock model `echo`)."""

from __future__ import annotations

import json
import re
import time

import pytest

from harness import FAULT_WASM, Envoy, demo_config, plugin_configs, request, shut

DEMO_KEY = "sk-switchyard-demo"
AUTH = {"authorization": f"Bearer {DEMO_KEY}", "content-type": "application/json"}


@pytest.fixture(scope="module")
def envoy():
    e = Envoy(demo_config()).wait_ready()
    yield e
    shut(e)


def test_shipped_configs_reload_a_failed_vm():
    cfgs = list(plugin_configs(demo_config()))
    assert len(cfgs) >= 2, "both roles"
    for pc in cfgs:
        assert pc.get("failure_policy") == "FAIL_RELOAD", pc.get("name")
        assert "fail_open" not in pc


def test_embeddings_that_would_take_hundreds_of_mb_get_a_400_and_the_worker_keeps_serving(envoy):
    body = json.dumps({"model": "echo", "input": [""] * 4000, "dimensions": 4096})
    assert len(body) < 20_000
    t0 = time.monotonic()
    status, headers, raw = request("POST", f"{envoy.base}/v1/embeddings", body, AUTH)
    assert time.monotonic() - t0 < 2.0
    assert status == 400, raw[:300]
    err = json.loads(raw)["error"]
    assert err["type"] == "invalid_request_error" and err["param"] in ("input", "dimensions"), err
    # The same worker answers the next request.
    ok = json.dumps({"model": "echo", "input": ["a", "b"], "dimensions": 8})
    status, _, raw = request("POST", f"{envoy.base}/v1/embeddings", ok, AUTH)
    assert status == 200 and len(json.loads(raw)["data"]) == 2


def test_a_2mb_streaming_echo_is_answered_in_bounded_size_and_time(envoy):
    text = "a " * (1024 * 1024)
    body = json.dumps({"model": "echo", "stream": True, "messages": [{"role": "user", "content": text}]})
    t0 = time.monotonic()
    status, headers, raw = request("POST", f"{envoy.base}/v1/chat/completions", body, AUTH, timeout=20)
    took = time.monotonic() - t0
    assert status == 200, raw[:300]
    assert took < 5.0, took
    assert len(raw) < 2 * len(body), f"{len(raw)} bytes answered for a {len(body)} byte request"
    content = ""
    for event in raw.decode().split("\n\n"):
        data = event.removeprefix("data: ")
        if event.startswith("data: ") and data != "[DONE]":
            delta = json.loads(data)["choices"]
            if delta:
                content += delta[0]["delta"].get("content") or ""
    assert content == text, "the echo is whole"
    status, _, _ = request("POST", f"{envoy.base}/v1/chat/completions",
                           json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}), AUTH)
    assert status == 200


def test_a_failed_vm_is_reloaded_under_the_shipped_policy(tmp_path):
    """The shipped config with a module whose VM traps on every request (test_errors.trap_module): each
    failure is followed by a reload of the VM (with `fail_open: false`, the old policy, vm_reload_success
    stays 0 and the worker's VM stays dead until Envoy restarts)."""
    from test_errors import trap_module

    wasm = tmp_path / "trap.wasm"
    wasm.write_bytes(trap_module())
    e = Envoy(demo_config(), wasm=wasm).wait_ready()
    try:
        for _ in range(3):
            status, _, raw = request("POST", e.base + "/v1/chat/completions", "{}", {"content-type": "application/json"})
            assert status == 503 and json.loads(raw)["error"]["code"] == "gateway_unavailable"
            time.sleep(1.3)  # past the 1 s reload backoff
        stats = dict(line.split(": ", 1) for line in e.admin("/stats").splitlines() if ": " in line)
        assert int(stats["wasm.switchyard.vm_reload_success"]) >= 1, {k: v for k, v in stats.items() if "reload" in k}
    finally:
        e.stop()


HELLO = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "Hello"}]})


def stat(envoy: Envoy, name: str) -> int:
    m = re.search(rf"^{re.escape(name)}: (\d+)$", envoy.admin("/stats"), re.M)
    assert m, f"no stat {name}"
    return int(m.group(1))


def hello(envoy: Envoy) -> tuple[int, bytes]:
    status, _, body = request("POST", f"{envoy.base}/v1/chat/completions", HELLO, AUTH)
    return status, body


def assert_serves(envoy: Envoy):
    status, body = hello(envoy)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == "Hello"


def test_a_long_embeddings_input_is_hashed_once(envoy):
    # One 4 MB input at 4096 dimensions: hashing the whole text for each block of 16 numbers was 1 GB of
    # SHA-256 in the VM, seconds of one worker; the text is hashed once now.
    body = json.dumps({"model": "echo", "input": "w" * (4 << 20), "dimensions": 4096})
    t0 = time.monotonic()
    status, _, raw = request("POST", f"{envoy.base}/v1/embeddings", body, AUTH, timeout=60)
    took = time.monotonic() - t0
    assert status == 200, raw[:300]
    assert len(json.loads(raw)["data"][0]["embedding"]) == 4096
    assert took < 2.0, took
    assert_serves(envoy)


def test_a_2mb_streaming_echo_on_v1_messages_is_bounded(envoy):
    # The same echo through the Anthropic Messages API: the OpenAI stream is converted event by event.
    text = "a " * (1024 * 1024)
    body = json.dumps({"model": "echo", "max_tokens": 16, "stream": True,
                       "messages": [{"role": "user", "content": text}]})
    t0 = time.monotonic()
    status, headers, raw = request("POST", f"{envoy.base}/v1/messages", body, AUTH, timeout=30)
    took = time.monotonic() - t0
    assert status == 200 and headers["content-type"].startswith("text/event-stream"), raw[:300]
    assert took < 5.0, took
    assert len(raw) < 2 * len(body), f"{len(raw)} bytes answered for a {len(body)} byte request"
    events = [json.loads(line[6:]) for line in raw.decode().split("\n") if line.startswith("data: {")]
    assert "".join(e["delta"]["text"] for e in events if e.get("type") == "content_block_delta") == text
    assert len(events) < 300
    assert_serves(envoy)
    assert stat(envoy, "wasm.switchyard.vm_reload") == 0, "no VM failed"


def test_the_real_filter_serves_again_after_its_vm_failed():
    """The shipped config with the test-only `fault-injection` build of the filter (`make build-fault`),
    whose route role aborts its VM on `x-switchyard-test-fault: abort`: the worker answers 503 while the
    VM is down, then Envoy reloads it (after the 1 s backoff) and the same worker serves the mock again."""
    assert FAULT_WASM.exists(), f"{FAULT_WASM} is missing: `make build-fault` (make e2e builds it)"
    e = Envoy(demo_config(), concurrency=1, wasm=FAULT_WASM).wait_ready()
    try:
        assert_serves(e)
        assert stat(e, "wasm.switchyard.vm_reload_success") == 0
        status, _, raw = request("POST", f"{e.base}/v1/chat/completions", HELLO,
                                 {**AUTH, "x-switchyard-test-fault": "abort"})
        assert status == 503, raw
        assert "Uncaught RuntimeError: unreachable" in e.log()
        answers = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, raw = hello(e)
            answers.append(status)
            if status == 200:
                break
            time.sleep(0.2)
        assert answers[0] == 503, f"the fault did not take the worker's VM down: {answers}"
        assert answers[-1] == 200, f"the worker never served again: {answers}"
        assert json.loads(raw)["choices"][0]["message"]["content"] == "Hello"
        assert stat(e, "wasm.switchyard.vm_reload_success") >= 1
        for _ in range(5):
            assert_serves(e)
        # A second failure is reloaded too.
        request("POST", f"{e.base}/v1/chat/completions", HELLO, {**AUTH, "x-switchyard-test-fault": "abort"})
        time.sleep(1.3)
        deadline = time.monotonic() + 10
        while hello(e)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert_serves(e)
        assert stat(e, "wasm.switchyard.vm_reload_success") >= 2
    finally:
        e.stop()
