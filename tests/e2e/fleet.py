"""Fleet-wide limits for the end-to-end tests: a real redis-server and the shipped switchyard-limits service
(dist/switchyard-limits, `make build`), each a process on free loopback ports with start/stop/restart and
pause/resume (SIGSTOP: a component that is there but answers nothing, the "slow" failure).

`make e2e` installs Debian's redis-server; a missing one is an error here, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import ROOT, free_port, terminate

LIMITS_BIN = ROOT / "dist" / "switchyard-limits"


def _wait(what: str, ok, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready in {timeout}s")


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


class _Process:
    """A child process with SIGSTOP/SIGCONT and a clean stop."""

    proc: subprocess.Popen | None = None

    def pause(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc is None:
            return
        self.resume()  # a stopped process cannot act on SIGTERM
        terminate(self.proc)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RedisServer(_Process):
    """redis-server without persistence (`--save '' --appendonly no`) on a free port; `restart()` keeps the
    port (and, without persistence, loses the data, as a Redis that lost its disk would)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="switchyard-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `make e2e` installs it (apt-get install redis-server)")
        self.log_path = self.dir / "redis.log"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.log_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        _wait("redis-server", lambda: self.command("PING") == "PONG", 10, self.proc, self.log_path)
        return self

    def restart(self) -> "RedisServer":
        self.stop()
        return self.start()

    def command(self, *args: str, timeout: float = 2) -> str:
        """One command through redis-cli (raw output, stripped)."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw", *args], capture_output=True, text=True,
                             timeout=timeout)
        return out.stdout.strip()


class LimitsService(_Process):
    """dist/switchyard-limits against a Redis URL, with rules files and flags; ports kept across restarts."""

    def __init__(self, redis_url: str, rules: list[Path] | None = None, domain: str | None = None,
                 redis_timeout_ms: int | None = None, extra: list[str] | None = None):
        self.redis_url = redis_url
        self.rules = rules or []
        self.domain = domain
        self.redis_timeout_ms = redis_timeout_ms
        self.extra = extra or []
        self.grpc_port = free_port()
        self.admin_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="switchyard-limits-"))
        self.log_path = self.dir / "service.log"

    def args(self) -> list[str]:
        a = [str(LIMITS_BIN), "--grpc", f"127.0.0.1:{self.grpc_port}", "--admin", f"127.0.0.1:{self.admin_port}",
             "--redis", self.redis_url]
        for r in self.rules:
            a += ["--rules", str(r)]
        if self.domain:
            a += ["--domain", self.domain]
        if self.redis_timeout_ms is not None:
            a += ["--redis-timeout-ms", str(self.redis_timeout_ms)]
        return a + self.extra

    def start(self) -> "LimitsService":
        if not LIMITS_BIN.exists():
            raise RuntimeError("no dist/switchyard-limits: run `make build`")
        self.log_file = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=self.log_file, cwd=ROOT)
        _wait("switchyard-limits", lambda: _port_open(self.grpc_port) and self.healthz() in (200, 503), 10,
              self.proc, self.log_path)
        return self

    def stop(self):
        super().stop()
        if getattr(self, "log_file", None) is not None:
            self.log_file.close()
            self.log_file = None

    def restart(self) -> "LimitsService":
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def healthz(self) -> int:
        return self._get("/healthz")[0]

    def metrics(self) -> str:
        return self._get("/metrics")[1]

    def metric(self, sample: str) -> float:
        """One sample's value (`name{labels}` exactly as exported), 0 when absent."""
        for line in self.metrics().splitlines():
            if line.startswith(sample + " "):
                return float(line.split(" ", 1)[1])
        return 0.0

    def spend(self, key: str) -> dict:
        status, body = self._get(f"/spend?key={urllib.request.quote(key, safe='')}")
        if status != 200:
            raise RuntimeError(f"/spend answered {status}: {body}")
        return json.loads(body)

    def cluster(self, name: str = "switchyard_limits") -> dict:
        """An Envoy cluster for this service (gRPC: HTTP/2 to the loopback port)."""
        return {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "0.25s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.grpc_port}}}}
            ]}]},
        }
