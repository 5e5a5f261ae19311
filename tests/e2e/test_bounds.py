"""Issue 15 item 1, end to end: no request can make the filter do work far beyond its size, and the shipped
config reloads a failed Wasm VM. Runs envoy/envoy.yaml as shipped (the demo key, the mock model `echo`)."""

from __future__ import annotations

import json
import time

import pytest

from harness import Envoy, demo_config, plugin_configs, request, shut

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
