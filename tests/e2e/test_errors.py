"""Issue 15, items 2, 3, 4 and 8, end to end: every error a client sees is in its API's shape (OpenAI's, or
Anthropic's on /v1/messages) with the right status, and is counted as an error; that includes the answers
Envoy makes itself (its local_reply_config), answers the filter cannot read, providers refusing the
gateway's credential, error pages, and translated answers over Envoy's buffer."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import uuid
from pathlib import Path

import anthropic
import openai
import pytest

import harness
from harness import Envoy, MockUpstream, Reply, demo_config, mock_url, module_stack, render, request, sha256_hex, shut
from openai_wire import chat_completion
from provider_wire import anthropic_message, bedrock_converse

KEY = "sk-sy-errors-test-1"
ANTHROPIC_SECRET = "sk-ant-PROVIDER-SECRET-errors"
OPENAI_SECRET = "sk-openai-PROVIDER-SECRET-errors"
SECRETS = [KEY, ANTHROPIC_SECRET, OPENAI_SECRET, "AKIDERRORSTEST", "errors-secret-key"]
# Over the listener's per_connection_buffer_limit_bytes (32 MiB) that `switchyard render` writes.
BIG = 33 * 1024 * 1024 + 17


def gateway(s: "Stack") -> dict:
    """The module's gateway file: one provider per mock upstream, and two providers (of two kinds) on the raw
    socket server."""
    return {
        "providers": {
            "anthropic": {"kind": "anthropic", "api_key": {"env": "ANTHROPIC_API_KEY"}, "url": mock_url(s.up["anthropic"])},
            "bedrock": {"kind": "bedrock", "region": "us-east-1", "access_key_id": "AKIDERRORSTEST",
                        "secret_access_key": "errors-secret-key", "url": mock_url(s.up["bedrock"])},
            "openai": {"kind": "openai", "api_key": {"env": "OPENAI_API_KEY"}, "url": mock_url(s.up["openai"])},
            # Served by a raw socket server that breaks HTTP in the middle of an answer.
            "anthropic-raw": {"kind": "anthropic", "api_key": {"env": "ANTHROPIC_API_KEY"}, "url": mock_url(s.raw)},
            "openai-raw": {"kind": "openai", "api_key": {"env": "OPENAI_API_KEY"}, "url": mock_url(s.raw)},
        },
        "models": {
            "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
            "nova": {"provider": "bedrock", "model": "us.amazon.nova-lite-v1:0"},
            "gpt": {"provider": "openai", "model": "gpt-4o-mini"},
            "claude-raw": {"provider": "anthropic-raw", "model": "claude-sonnet-4-5"},
            "gpt-raw": {"provider": "openai-raw", "model": "gpt-4o-mini"},
        },
        "keys": [{"id": "errors", "sha256": sha256_hex(KEY), "models": ["*"]}],
    }


class RawUpstream:
    """Answers every request with fixed raw bytes, then closes the connection (no HTTP framing help)."""

    def __init__(self):
        self.answer = b""
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                rest += chunk
            conn.sendall(self.answer)
            time.sleep(0.2)

    def close(self):
        self.sock.close()


class Stack:
    def __init__(self):
        self.up = {name: MockUpstream(lambda r: Reply()) for name in ["anthropic", "bedrock", "openai"]}
        self.raw = RawUpstream()
        cfg = render(gateway(self))
        env = {"ANTHROPIC_API_KEY": ANTHROPIC_SECRET, "OPENAI_API_KEY": OPENAI_SECRET}
        self.envoy = Envoy(cfg, env=env, access_log=True).wait_ready()

    def oai(self) -> openai.OpenAI:
        return harness.openai_client(base_url=f"{self.envoy.base}/v1", api_key=KEY, max_retries=0, timeout=30)

    def ant(self) -> anthropic.Anthropic:
        return harness.anthropic_client(base_url=self.envoy.base, api_key=KEY, max_retries=0, timeout=30)

    def respond(self, name, reply: Reply):
        self.up[name].responder = lambda r: reply

    def record(self, request_id: str, timeout: float = 5.0) -> dict:
        """The access-log line of a request (Envoy's fields and the filter's record)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.envoy.access_log().splitlines():
                if request_id in line:
                    raw = json.loads(line)
                    return {**raw, **((raw.get("switchyard") or {}).get("value") or {})}
            time.sleep(0.1)
        raise AssertionError(f"no access-log line for {request_id}")

    def close(self):
        shut(self.envoy, *self.up.values())
        self.raw.close()


stack = module_stack(Stack)

MESSAGES = [{"role": "user", "content": "Say hi"}]


def rid() -> str:
    return str(uuid.uuid4())


def chat(stack, model: str, request_id: str, path: str = "/v1/chat/completions"):
    """A raw chat (or Messages) request: (status, headers, parsed JSON body)."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": 20}
    status, headers, raw = request("POST", stack.envoy.base + path, json.dumps(body),
                                   {"authorization": f"Bearer {KEY}", "content-type": "application/json",
                                    "x-request-id": request_id}, timeout=60)
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, raw[:300])
    return status, headers, json.loads(raw)


def openai_error(body: dict) -> dict:
    assert set(body) == {"error"}, body
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    return body["error"]


def anthropic_error(body: dict) -> dict:
    assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
    return body["error"]


def no_secrets(*texts):
    for t in texts:
        for s in SECRETS:
            assert s not in t


# ----------------------------------------------------------------------------------------------- item 2


def test_upstream_protocol_error_mid_body_is_shaped_and_counted(stack):
    # The provider announces 100 bytes, sends 5, and closes: Envoy's own 502 (flag UPE) for an answer the
    # route role was holding to translate.
    stack.raw.answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\""
    r = rid()
    status, _, body = chat(stack, "claude-raw", r)
    assert status == 502
    e = openai_error(body)
    assert e["code"] == "upstream_unavailable" and "protocol_error" in e["message"], e
    rec = stack.record(r)
    assert rec["status"] == 502 and "UPE" in rec["response_flags"]
    assert rec["outcome"] == "upstream_error", rec
    # A /v1/messages client gets Anthropic's shape for the same failure (its :path was rewritten for the
    # provider; the filter's mark tells Envoy which client it is).
    with pytest.raises(anthropic.APIStatusError) as exc:
        stack.ant().messages.create(model="gpt-raw", max_tokens=20, messages=MESSAGES)
    assert exc.value.status_code == 502
    assert anthropic_error(exc.value.body)["type"] == "api_error"
    assert exc.value.body["error"]["code"] == "upstream_unavailable"


def test_an_answer_that_breaks_off_after_it_started_counts_as_an_error(stack):
    # A passthrough answer already on its way when the provider breaks HTTP: the client sees a cut body,
    # and the record says upstream_error, not ok.
    stack.raw.answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\""
    r = rid()
    with pytest.raises(Exception):
        request("POST", stack.envoy.base + "/v1/chat/completions", json.dumps({"model": "gpt-raw", "messages": MESSAGES}),
                {"authorization": f"Bearer {KEY}", "content-type": "application/json", "x-request-id": r})
    rec = stack.record(r)
    assert rec["status"] == 200 and "UPE" in rec["response_flags"]
    assert rec["outcome"] == "upstream_error", rec


def raw_exchange(port: int, data: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("label,data,want_status", [
    ("malformed request line", b"GARBAGE\r\n\r\n", 400),
    ("header name with a space", b"GET /v1/models HTTP/1.1\r\nhost: x\r\nbad header: v\r\n\r\n", 400),
    ("headers over 60 KiB", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ("HTTP/1.0", b"GET /v1/models HTTP/1.0\r\n\r\n", 426),
    ("content-length with chunked", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n", 400),
    ("websocket upgrade", b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n", 403),
], ids=lambda v: v if isinstance(v, str) else "")
def test_what_envoy_refuses_before_the_filter_is_openai_shaped(stack, label, data, want_status):
    status, headers, body = raw_exchange(stack.envoy.port, data)
    assert status == want_status, label
    assert headers["content-type"] == "application/json", (label, headers, body)
    e = openai_error(json.loads(body))
    assert e["code"] == "request_rejected" and e["type"] == "invalid_request_error", e


def test_the_filters_own_errors_keep_their_shape(stack):
    # The catch-all mappers must not touch what the filter answers itself.
    status, _, body = chat(stack, "no-such-model", rid())
    assert status == 404 and openai_error(body)["code"] == "model_not_found"
    s, _, raw = request("POST", stack.envoy.base + "/v1/chat/completions", "{}", {"authorization": "Bearer nope"})
    assert s == 401 and json.loads(raw)["error"]["code"] == "invalid_api_key"


def trap_module() -> bytes:
    """A minimal proxy-wasm module (ABI 0.2.1) whose VM traps when Envoy creates a stream context: the
    way a filter crash leaves a worker's VM."""
    def leb(n):
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def vec(items):
        return leb(len(items)) + b"".join(items)

    def section(sid, payload):
        return bytes([sid]) + leb(len(payload)) + payload

    i32 = 0x7F
    functype = lambda params, results: b"\x60" + vec([bytes([p]) for p in params]) + vec([bytes([r]) for r in results])
    types = [functype([i32], [i32]), functype([], []), functype([i32, i32], []), functype([i32, i32], [i32]),
             functype([i32, i32, i32], [i32])]
    bodies = [
        b"\x00\x41" + leb(1024) + b"\x0b",   # proxy_on_memory_allocate -> 1024
        b"\x00\x0b",                          # proxy_abi_version_0_2_1
        b"\x00\x20\x01\x04\x40\x00\x0b\x0b",  # proxy_on_context_create: unreachable when it has a parent
        b"\x00\x41\x01\x0b",                  # proxy_on_vm_start -> true
        b"\x00\x41\x01\x0b",                  # proxy_on_configure -> true
        b"\x00\x41\x00\x0b",                  # proxy_on_request_headers -> continue
    ]
    exports = [("memory", 2, 0), ("proxy_on_memory_allocate", 0, 0), ("proxy_abi_version_0_2_1", 0, 1),
               ("proxy_on_context_create", 0, 2), ("proxy_on_vm_start", 0, 3), ("proxy_on_configure", 0, 4),
               ("proxy_on_request_headers", 0, 5)]
    return (b"\x00asm\x01\x00\x00\x00"
            + section(1, vec(types))
            + section(3, vec([leb(t) for t in [0, 1, 2, 3, 3, 4]]))
            + section(5, vec([b"\x00" + leb(2)]))
            + section(7, vec([leb(len(n)) + n.encode() + bytes([k]) + leb(i) for n, k, i in exports]))
            + section(10, vec([leb(len(b)) + b for b in bodies])))


def test_the_503_after_a_vm_failure_is_shaped(tmp_path: Path):
    wasm = tmp_path / "trap.wasm"
    wasm.write_bytes(trap_module())
    envoy = Envoy(demo_config(), wasm=wasm).wait_ready()
    try:
        for _ in range(2):  # the VM fails on the first request; later ones find it failed
            status, headers, raw = request("POST", envoy.base + "/v1/chat/completions", "{}", {"content-type": "application/json"})
            assert status == 503 and headers["content-type"] == "application/json", raw
            assert openai_error(json.loads(raw))["code"] == "gateway_unavailable"
        status, _, raw = request("POST", envoy.base + "/v1/messages", "{}", {"content-type": "application/json"})
        assert status == 503
        e = anthropic_error(json.loads(raw))
        assert e["type"] == "overloaded_error" and e["code"] == "gateway_unavailable"
        assert "proxy_on_context_create failed" in envoy.log(), "the VM did fail"
    finally:
        envoy.stop()


# ----------------------------------------------------------------------------------------------- item 3


GOOD_CLAUDE = json.dumps(anthropic_message("claude-sonnet-4-5", "hi")).encode()


@pytest.mark.parametrize("label,model,reply", [
    ("Anthropic, not JSON", "claude", Reply(body=b"<html>oops</html>")),
    ("Anthropic, not JSON, chunked", "claude", Reply(chunks=[b"<html>", b"oops</html>"])),
    ("Anthropic, gzip", "claude", Reply(headers={"content-type": "application/json", "content-encoding": "gzip"}, body=gzip.compress(GOOD_CLAUDE))),
    ("Anthropic, no content nor stop_reason", "claude", Reply(body=b'{"id":"msg_1","type":"message","usage":{"input_tokens":3}}')),
    ("Bedrock (upstream role), not JSON", "nova", Reply(body=b"<html>oops</html>")),
    ("Bedrock (upstream role), no output", "nova", Reply(body=b'{"usage":{"inputTokens":1,"outputTokens":1}}')),
    ("OpenAI format, 2xx HTML", "gpt", Reply(headers={"content-type": "text/html"}, body=b"<html>maintenance</html>")),
], ids=lambda v: v if isinstance(v, str) and " " in v else "")
def test_an_unreadable_2xx_is_a_502(stack, label, model, reply):
    name = {"claude": "anthropic", "nova": "bedrock", "gpt": "openai"}[model]
    stack.respond(name, reply)
    r = rid()
    status, headers, body = chat(stack, model, r)
    assert status == 502, (label, body)
    e = openai_error(body)
    assert e["code"] == "provider_error" and e["message"].startswith(f"{name} (502): "), (label, e)
    rec = stack.record(r)
    assert rec["status"] == 502 and rec["outcome"] == "upstream_error", (label, rec)
    assert "gen_ai.usage.output_tokens" not in rec, "an error charges no usage"


def test_an_unreadable_2xx_is_a_502_for_messages_clients_too(stack):
    stack.respond("openai", Reply(headers={"content-type": "text/html"}, body=b"<html>maintenance</html>"))
    with pytest.raises(anthropic.InternalServerError) as exc:
        stack.ant().messages.create(model="gpt", max_tokens=20, messages=MESSAGES)
    assert exc.value.status_code == 502 and anthropic_error(exc.value.body)["type"] == "api_error"
    stack.respond("anthropic", Reply(headers={"content-type": "text/plain"}, body=b"upstream is busy"))
    with pytest.raises(anthropic.InternalServerError) as exc:
        stack.ant().messages.create(model="claude", max_tokens=20, messages=MESSAGES)
    assert exc.value.status_code == 502 and "not JSON" in anthropic_error(exc.value.body)["message"]


def test_readable_answers_still_pass(stack):
    stack.respond("anthropic", Reply(body=GOOD_CLAUDE))
    assert stack.oai().chat.completions.create(model="claude", messages=MESSAGES).choices[0].message.content == "hi"
    stack.respond("anthropic", Reply(chunks=[GOOD_CLAUDE[:10], GOOD_CLAUDE[10:]]))
    raw = stack.oai().chat.completions.with_raw_response.create(model="claude", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "hi"
    assert raw.headers.get("content-length") == str(len(raw.content)), "a chunked answer translated whole gets its length"
    stack.respond("bedrock", Reply(body=json.dumps(bedrock_converse("nova says hi")).encode()))
    assert stack.oai().chat.completions.create(model="nova", messages=MESSAGES).choices[0].message.content == "nova says hi"
    stack.respond("openai", Reply(body=json.dumps(chat_completion("gpt-4o-mini", "gpt says hi")).encode()))
    assert stack.oai().chat.completions.create(model="gpt", messages=MESSAGES).choices[0].message.content == "gpt says hi"


# ----------------------------------------------------------------------------------------------- item 4


OPENAI_401 = Reply(status=401, body=json.dumps({"error": {
    "message": "Incorrect API key provided: sk-opena****rors. You can find your API key at https://platform.openai.com/account/api-keys.",
    "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}).encode())


@pytest.mark.parametrize("provider_status", [401, 403])
def test_a_provider_refusing_the_gateways_credential_is_a_502(stack, provider_status):
    stack.respond("openai", Reply(status=provider_status, body=OPENAI_401.body))
    r = rid()
    with pytest.raises(openai.APIStatusError) as exc:
        stack.oai().chat.completions.create(model="gpt", messages=MESSAGES, extra_headers={"x-request-id": r})
    assert not isinstance(exc.value, (openai.AuthenticationError, openai.PermissionDeniedError)), "the caller's key is fine"
    assert exc.value.status_code == 502
    assert exc.value.body["code"] == "provider_auth_error" and exc.value.body["type"] == "upstream_error"
    assert exc.value.body["message"].startswith(f"openai ({provider_status}): ")
    assert "sk-opena" not in json.dumps(exc.value.body), "the provider's message quoting the key is not passed on"
    rec = stack.record(r)
    assert rec["status"] == 502 and rec["outcome"] == "upstream_error"


def test_the_same_answer_for_every_provider_kind(stack):
    # Translated (Anthropic, chat API), and Messages clients of an OpenAI-format and an Anthropic provider.
    stack.respond("anthropic", Reply(status=401, body=b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}'))
    with pytest.raises(openai.APIStatusError) as exc:
        stack.oai().chat.completions.create(model="claude", messages=MESSAGES)
    assert (exc.value.status_code, exc.value.body["code"]) == (502, "provider_auth_error")
    with pytest.raises(anthropic.APIStatusError) as exc:
        stack.ant().messages.create(model="claude", max_tokens=20, messages=MESSAGES)
    assert not isinstance(exc.value, anthropic.AuthenticationError)
    assert exc.value.status_code == 502 and anthropic_error(exc.value.body)["type"] == "api_error"
    stack.respond("openai", OPENAI_401)
    with pytest.raises(anthropic.APIStatusError) as exc:
        stack.ant().messages.create(model="gpt", max_tokens=20, messages=MESSAGES)
    assert not isinstance(exc.value, anthropic.AuthenticationError)
    assert exc.value.status_code == 502 and anthropic_error(exc.value.body)["type"] == "api_error"
    assert "sk-opena" not in json.dumps(exc.value.body)


@pytest.mark.parametrize("page_status,client_status", [(502, 502), (503, 503), (500, 502), (404, 404)])
def test_an_error_page_becomes_the_clients_error_shape(stack, page_status, client_status):
    page = b"<html><head><title>Bad Gateway</title></head><body><h1>nginx says no</h1></body></html>"
    stack.respond("openai", Reply(status=page_status, headers={"content-type": "text/html"}, body=page))
    status, _, body = chat(stack, "gpt", rid())
    assert status == client_status
    e = openai_error(body)
    assert e["message"].startswith(f"openai ({page_status}): ") and "nginx says no" in e["message"], e
    # The same page to a Messages client: Anthropic's shape.
    stack.respond("anthropic", Reply(status=page_status, headers={"content-type": "text/html"}, body=page))
    status, _, body = chat(stack, "claude", rid(), path="/v1/messages")
    assert status == client_status and "nginx says no" in anthropic_error(body)["message"]


# ----------------------------------------------------------------------------------------------- item 8


@pytest.fixture(scope="module")
def big_answers():
    text = "x" * BIG
    return json.dumps(anthropic_message("claude-sonnet-4-5", text)).encode(), json.dumps(bedrock_converse(text)).encode()


@pytest.mark.parametrize("label,model", [("route role, with a length", "claude"), ("route role, chunked", "claude-chunked"),
                                         ("upstream role", "nova")])
def test_a_translated_answer_over_the_buffer_is_a_clear_502(stack, big_answers, label, model):
    claude, converse = big_answers
    if model == "nova":
        stack.respond("bedrock", Reply(body=converse))
    elif model == "claude":
        stack.respond("anthropic", Reply(body=claude))
    else:
        stack.respond("anthropic", Reply(chunks=[claude[i:i + (1 << 20)] for i in range(0, len(claude), 1 << 20)]))
        model = "claude"
    r = rid()
    status, _, body = chat(stack, model, r)
    assert status == 502, label
    e = openai_error(body)
    assert e["code"] == "response_too_large" and "per_connection_buffer_limit_bytes, 32 MiB" in e["message"], e
    rec = stack.record(r)
    assert rec["status"] == 502 and rec["outcome"] == "upstream_error", (label, rec)
    if label == "upstream role":
        # A Messages client of a translated provider: the same answer in Anthropic's shape.
        status, _, body = chat(stack, "nova", rid(), path="/v1/messages")
        assert status == 502 and anthropic_error(body)["code"] == "response_too_large"


def test_no_secret_in_any_answer_or_log(stack):
    no_secrets(stack.envoy.log(), stack.envoy.access_log())
