"""Switchyard side by side with plain Envoy, LiteLLM and Portkey, on this machine, in one run.

Everything listens on 127.0.0.1 only and is stopped at the end. One fast mock upstream (nginx answering
fixed OpenAI, Anthropic and SSE bodies) serves every configuration; the same request bodies (about 1 KB
and 10 KB) and concurrency levels go to each; configurations are measured in interleaved repetitions so
that the machine's drift spreads over all of them. The gateway runs on CPU 0, the load generator and the
mock on CPU 1 (taskset). Results: bench/results.json, bench/results.md, bench/results.png.

Run it with `make bench` (which installs the tools first). BENCH_QUICK=1 makes a short run.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from harness import plugin_configs, render, sha256_hex  # noqa: E402

import yaml  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
DURATION = 2 if QUICK else 5
REPS = 1 if QUICK else 3
CONCURRENCY = [1, 32]
SIZES = {"1KB": 1024, "10KB": 10 * 1024}
GATEWAY_CPU, LOAD_CPU = "0", "1"
KEY = "sk-bench-switchyard-key-0001"
LITELLM_KEY = "sk-bench-litellm-master-7f3a9c"
TOOLS = Path(os.environ.get("BENCH_TOOLS", ROOT / "bench" / ".tools"))
WORK = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
STREAM_CHUNKS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


# ----------------------------------------------------------------------------------------- bodies


def chat_body(size: int, model: str, stream: bool = False) -> bytes:
    turn = "Tell me about the history of the city, its rivers, bridges and the people who built them. "
    msgs = [{"role": "system", "content": "You are a helpful assistant. Answer briefly."}]
    while len(json.dumps(msgs)) < size - 120:
        msgs.append({"role": "user" if len(msgs) % 2 else "assistant", "content": turn})
    body = {"model": model, "messages": msgs, "max_tokens": 64, "temperature": 0.7}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


OPENAI_ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "The city grew along its river."},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 250, "completion_tokens": 9, "total_tokens": 259},
})
ANTHROPIC_ANSWER = json.dumps({
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-haiku",
    "content": [{"type": "text", "text": "The city grew along its river."}], "stop_reason": "end_turn",
    "stop_sequence": None, "usage": {"input_tokens": 250, "output_tokens": 9},
})


def sse_answer() -> str:
    def c(delta, finish=None, usage=None, choices=True):
        d = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
        if usage:
            d["usage"] = usage
        return "data: " + json.dumps(d) + "\n\n"
    out = c({"role": "assistant", "content": ""})
    for i in range(STREAM_CHUNKS - 3):
        out += c({"content": f" word{i}"})
    out += c({}, "stop") + c({}, usage={"prompt_tokens": 250, "completion_tokens": 17, "total_tokens": 267}, choices=False)
    return out + "data: [DONE]\n\n"


# ------------------------------------------------------------------------------------ processes


class Proc:
    def __init__(self, name: str, cmd: list[str], cpu: str, env: dict | None = None, cwd: Path | None = None):
        self.name = name
        self.log = open(WORK / f"{name}.log", "w")
        self.p = subprocess.Popen(["taskset", "-c", cpu, *cmd], stdout=self.log, stderr=subprocess.STDOUT,
                                  env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)

    def pids(self) -> list[int]:
        """The process and all its descendants."""
        out, todo = [], [self.p.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for t in Path(f"/proc/{pid}/task").iterdir():
                    kids = Path(f"/proc/{pid}/task/{t.name}/children").read_text().split()
                    todo.extend(int(k) for k in kids)
            except OSError:
                pass
        return out

    def cpu_seconds(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
                total += int(m.group(1)) if m else 0
            except OSError:
                pass
        return total / 1024

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGKILL)
        self.log.close()


def start_nginx() -> tuple[Proc, int]:
    port = free_port()
    root = WORK / "nginx"
    root.mkdir(exist_ok=True)
    # nginx's workers drop root privileges: let them read the answers.
    WORK.chmod(0o755)
    root.chmod(0o755)
    (root / "openai.json").write_text(OPENAI_ANSWER)
    (root / "anthropic.json").write_text(ANTHROPIC_ANSWER)
    (root / "stream.sse").write_text(sse_answer())
    (root / "jwks.json").write_text(json.dumps(JWT["jwks"]))
    conf = f"""
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port};
    location = /v1/chat/completions {{ default_type application/json; alias {root}/openai.json; error_page 405 =200 $uri; }}
    location = /v1/messages {{ default_type application/json; alias {root}/anthropic.json; error_page 405 =200 $uri; }}
    location = /stream/v1/chat/completions {{ default_type text/event-stream; alias {root}/stream.sse; error_page 405 =200 $uri; }}
    location = /jwks.json {{ default_type application/json; alias {root}/jwks.json; }}
  }}
}}
"""
    (root / "nginx.conf").write_text(conf)
    p = Proc("nginx", [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(root / "nginx.conf"), "-p", str(root)], LOAD_CPU)
    wait_port(port, p.p)
    return p, port


def envoy_bin() -> str:
    return str(ROOT / ".venv" / "bin" / "envoy")


def start_envoy(name: str, cfg: dict, port: int) -> Proc:
    path = WORK / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    p = Proc(name, [envoy_bin(), "-c", str(path), "--concurrency", "1", "--use-dynamic-base-id", "-l", "warn"], GATEWAY_CPU, cwd=ROOT)
    wait_port(port, p.p)
    return p


def plain_envoy_config(port: int, upstream: int) -> dict:
    return {
        "static_resources": {
            "listeners": [{
                "name": "plain", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "plain",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "route": {"cluster": "mock", "timeout": "30s"}}]}]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                    }}]}],
            }],
            "clusters": [{
                "name": "mock", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "mock", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}}]}]},
            }],
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
    }


def switchyard_gateway(port: int, upstream: int) -> dict:
    """Switchyard's gateway file: three providers on the one mock, key auth and every kind of limit on."""
    mock = f"http://127.0.0.1:{upstream}"
    return {
        "listener": {"address": "127.0.0.1", "port": port},
        "wasm": str(ROOT / "dist" / "switchyard.wasm"),
        "providers": {
            "mock-openai": {"kind": "openai_compatible", "url": mock, "base_path": "/v1", "api_key": "sk-upstream-bench"},
            "mock-stream": {"kind": "openai_compatible", "url": mock, "base_path": "/stream/v1", "api_key": "sk-upstream-bench"},
            "mock-anthropic": {"kind": "anthropic", "url": mock, "api_key": "sk-ant-upstream-bench"},
        },
        "models": {
            "bench-openai": {"provider": "mock-openai", "model": "gpt-4o-mini", "price": {"input": 0.15, "output": 0.6}},
            "bench-stream": {"provider": "mock-stream", "model": "gpt-4o-mini", "price": {"input": 0.15, "output": 0.6}},
            "bench-claude": {"provider": "mock-anthropic", "model": "claude-haiku", "price": {"input": 0.8, "output": 4}},
        },
        # Set high enough never to refuse during the run.
        "keys": [{"id": "bench", "sha256": sha256_hex(KEY), "models": ["*"], "limits": {
            "requests": {"limit": 1_000_000_000, "window_secs": 60},
            "tokens": {"limit": 1_000_000_000_000, "window_secs": 60},
            "concurrent": 100_000,
            "budget": {"usd": 1_000_000_000, "period": "day"},
        }}],
    }


def cache_gateway(port: int, upstream: int) -> dict:
    """The same, with a cached model (`bench-cached`, the openai target): after the first request every
    answer is a hit from the process tier. An Envoy of its own, so that the other rows' configuration stays
    what older builds accept (`make bench-ab` runs builds without caching)."""
    g = switchyard_gateway(port, upstream)
    g["models"]["bench-cached"] = {**g["models"]["bench-openai"], "cache": {"ttl": "1h"}}
    return g


def bench_jwt() -> dict:
    """An RS256 key pair for the bench's identity provider: its key set and a token valid for a day."""
    import jwt  # PyJWT, from tests/requirements.txt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid="bench", alg="RS256", use="sig")
    now = int(time.time())
    claims = {"iss": JWT_ISSUER, "aud": "switchyard", "sub": "bench-user@example.com", "groups": ["bench"],
              "iat": now, "exp": now + 86400}
    return {"jwks": {"keys": [public]}, "token": jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})}


JWT_ISSUER = "https://idp.bench.example"
JWT = bench_jwt()


def jwt_gateway(port: int, upstream: int) -> dict:
    """The same, with callers that are JWT users: Envoy's jwt_authn verifies the token (key set served by
    the nginx mock), the route role reads the verdict from the request's metadata; the user has the key's
    limits (`user_limits`) and one team granting every model. An Envoy of its own, as the cache row."""
    g = switchyard_gateway(port, upstream)
    g["jwt_providers"] = {"bench": {"issuer": JWT_ISSUER, "audiences": ["switchyard"],
                                    "jwks": f"http://127.0.0.1:{upstream}/jwks.json"}}
    g["identity"] = {"accept": ["keys", "jwt"], "teams_claim": "groups", "user_limits": g["keys"][0]["limits"]}
    g["teams"] = {"bench": {"models": ["*"]}}
    g["keys"][0]["team"] = "bench"
    return g


def fleet_gateway(port: int, upstream: int, grpc_port: int) -> dict:
    """The same, with the key's limits also fleet-wide (requests, tokens, budget: three descriptors per
    admission) through switchyard-limits on `grpc_port`."""
    g = switchyard_gateway(port, upstream)
    g["services"] = {"ratelimit": {"url": f"http://127.0.0.1:{grpc_port}", "protocol": "grpc"}}
    g["fleet_limits"] = {"cluster": "ratelimit", "failure_mode": "closed", "timeout_ms": 1000}
    limits = g["keys"][0]["limits"]
    limits["fleet"] = {k: limits[k] for k in ("requests", "tokens", "budget")}
    return g


def start_fleet_backend() -> tuple[list[Proc], int]:
    """redis-server (no persistence) and switchyard-limits, beside the load generator on its CPU."""
    redis_port, grpc_port, admin_port = free_port(), free_port(), free_port()
    redis = Proc("redis", [shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", str(WORK)], LOAD_CPU)
    wait_port(redis_port, redis.p)
    svc = Proc("switchyard-limits", [str(ROOT / "dist" / "switchyard-limits"), "--grpc", f"127.0.0.1:{grpc_port}",
                                     "--admin", f"127.0.0.1:{admin_port}", "--redis", f"redis://127.0.0.1:{redis_port}"], LOAD_CPU)
    wait_port(grpc_port, svc.p)
    return [redis, svc], grpc_port


def switchyard_config(port: int, upstream: int, grpc_port: int | None = None, cached: bool = False,
                      jwt: bool = False) -> dict:
    """The Envoy config `switchyard render` makes of the gateway file (with fleet-wide limits when the
    rate-limit service's port is given, with the cached model or JWT users when asked)."""
    if grpc_port:
        g = fleet_gateway(port, upstream, grpc_port)
    elif jwt:
        g = jwt_gateway(port, upstream)
    else:
        g = cache_gateway(port, upstream) if cached else switchyard_gateway(port, upstream)
    cfg = render(g)
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm.pop("access_log", None)  # measured without the access log, like the plain Envoy
    # An admin port of the kernel's choosing (a gateway file names a fixed one).
    cfg["admin"]["address"]["socket_address"]["port_value"] = 0
    return cfg


FLOOR_WASM = ROOT / "target" / "floor" / "wasm32-wasip1" / "release" / "switchyard_floor.wasm"


def floor_config(port: int, upstream: int) -> dict:
    """Switchyard's Envoy config (same listener, route, clusters and two filter places) running the floor
    filter (bench/floor) instead: only reading the body for its model and setting the credential."""
    cfg = switchyard_config(port, upstream)
    lines = [f"model.{m}={c}" for m, c in (("bench-openai", "mock-openai"), ("bench-stream", "mock-stream"))]
    lines.append("credential=Bearer sk-upstream-bench")
    for pc in plugin_configs(cfg):
        pc["root_id"] = "floor-upstream" if pc["root_id"] == "switchyard-upstream" else "floor"
        pc["configuration"]["value"] = "\n".join(lines)
        pc["vm_config"]["code"]["local"]["filename"] = str(FLOOR_WASM)
    return cfg


def start_litellm(port: int, upstream: int) -> Proc:
    cfg = {
        "model_list": [{"model_name": "bench-openai", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{upstream}/v1", "api_key": "sk-upstream-bench"}}],
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }
    path = WORK / "litellm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    exe = TOOLS / "litellm-venv" / "bin" / "litellm"
    p = Proc("litellm", [str(exe), "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
             GATEWAY_CPU, env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "NO_DOCS": "True",
                  "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    wait_port(port, p.p, timeout=180)
    return p


def start_portkey(port: int) -> Proc:
    gw = TOOLS / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    p = Proc("portkey", ["node", "--require", str(ROOT / "bench" / "portkey-loopback.cjs"), str(gw), f"--port={port}", "--headless"],
             GATEWAY_CPU)
    wait_port(port, p.p)
    return p


# ------------------------------------------------------------------------------------ measuring


def wrk(url: str, body: bytes, headers: dict, conc: int, duration: int) -> dict:
    body_file = WORK / f"body-{abs(hash(body))}.json"
    body_file.write_bytes(body)
    lua = WORK / f"wrk-{abs(hash((url, body, tuple(headers.items()))))}.lua"
    hdrs = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    lua.write_text(f'wrk.method = "POST"\nlocal f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
                   f'wrk.headers["Content-Type"] = "application/json"\n{hdrs}')
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conc}", f"-d{duration}s", "--latency", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout

    def ms(tok: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", tok)
        if not m:
            return float("nan")
        v = float(m.group(1))
        return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]

    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    reqs = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) if "Requests/sec" in out else 0.0,
        "p50_ms": ms(pct.get("50", "")), "p99_ms": ms(pct.get("99", "")),
        "requests": int(reqs.group(1)) if reqs else 0,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(int(x) for x in errs.groups()) if errs else 0,
    }


def ttfb(port: int, path: str, body: bytes, headers: dict, n: int) -> list[float]:
    """Time to the first body byte, sequential requests on one connection (ms)."""
    out = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", path, body=body, headers={"content-type": "application/json", **headers})
        r = conn.getresponse()
        r.read(1)
        out.append((time.perf_counter() - t) * 1000)
        r.read()
    conn.close()
    return out


def check(port: int, path: str, body: bytes, headers: dict, expect: str) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                 headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    if expect not in text:
        raise RuntimeError(f"unexpected answer on {port}{path}: {text[:300]}")


# ----------------------------------------------------------------------------------------- main


def main() -> int:
    procs: list[Proc] = []
    try:
        nginx, up = start_nginx()
        procs.append(nginx)
        p_plain, p_sy, p_lite, p_pk = free_port(), free_port(), free_port(), free_port()
        plain = start_envoy("envoy-plain", plain_envoy_config(p_plain, up), p_plain)
        procs.append(plain)
        sy = start_envoy("envoy-switchyard", switchyard_config(p_sy, up), p_sy)
        procs.append(sy)
        p_floor = free_port()
        floor = start_envoy("envoy-wasm-floor", floor_config(p_floor, up), p_floor)
        procs.append(floor)
        backend, grpc_port = start_fleet_backend()
        procs.extend(backend)
        p_fleet = free_port()
        fleet = start_envoy("envoy-switchyard-fleet", switchyard_config(p_fleet, up, grpc_port), p_fleet)
        procs.append(fleet)
        p_cache = free_port()
        cached = start_envoy("envoy-switchyard-cache", switchyard_config(p_cache, up, cached=True), p_cache)
        procs.append(cached)
        p_jwt = free_port()
        with_jwt = start_envoy("envoy-switchyard-jwt", switchyard_config(p_jwt, up, jwt=True), p_jwt)
        procs.append(with_jwt)
        gateways = {"envoy-plain": plain, "switchyard": sy, "wasm-floor": floor, "switchyard-fleet": fleet,
                    "switchyard-cache": cached, "switchyard-jwt": with_jwt}
        have_litellm = (TOOLS / "litellm-venv" / "bin" / "litellm").exists()
        have_portkey = (TOOLS / "portkey" / "node_modules" / "@portkey-ai" / "gateway").exists()
        if have_litellm:
            lite = start_litellm(p_lite, up)
            procs.append(lite)
            gateways["litellm"] = lite
        if have_portkey:
            pk = start_portkey(p_pk)
            procs.append(pk)
            gateways["portkey"] = pk

        auth = {"Authorization": f"Bearer {KEY}"}
        configs = {
            # name: (gateway process or None, port, path, model, headers, expected text)
            "direct": (None, up, "/v1/chat/completions", "gpt-4o-mini", {}, "river"),
            "envoy-plain": ("envoy-plain", p_plain, "/v1/chat/completions", "gpt-4o-mini", {}, "river"),
            "wasm-floor": ("wasm-floor", p_floor, "/v1/chat/completions", "bench-openai", auth, "river"),
            "switchyard-openai": ("switchyard", p_sy, "/v1/chat/completions", "bench-openai", auth, "river"),
            "switchyard-anthropic": ("switchyard", p_sy, "/v1/chat/completions", "bench-claude", auth, "chat.completion"),
            "switchyard-stream": ("switchyard", p_sy, "/v1/chat/completions", "bench-stream", auth, "[DONE]"),
            # The same as switchyard-openai, with the limits also checked fleet-wide (service + Redis on CPU 1).
            "switchyard-fleet": ("switchyard-fleet", p_fleet, "/v1/chat/completions", "bench-openai", auth, "river"),
            # The same request to a cached model: every answer but the first (made by the check below) is a
            # hit answered in the route role, no upstream.
            "switchyard-cache-hit": ("switchyard-cache", p_cache, "/v1/chat/completions", "bench-cached", auth, "river"),
            # The same as switchyard-openai from a JWT user (jwt_authn verifies, the filter reads the claims).
            "switchyard-jwt": ("switchyard-jwt", p_jwt, "/v1/chat/completions", "bench-openai",
                               {"Authorization": f"Bearer {JWT['token']}"}, "river"),
        }
        if have_litellm:
            configs["litellm"] = ("litellm", p_lite, "/v1/chat/completions", "bench-openai", {"Authorization": f"Bearer {LITELLM_KEY}"}, "river")
        if have_portkey:
            configs["portkey"] = ("portkey", p_pk, "/v1/chat/completions", "gpt-4o-mini",
                                  {"x-portkey-provider": "openai", "x-portkey-custom-host": f"http://127.0.0.1:{up}/v1",
                                   "Authorization": "Bearer sk-upstream-bench"}, "river")
        # jwt_authn fetches the key set when its listener starts: wait for it to verify.
        deadline = time.time() + 30
        while True:
            try:
                check(p_jwt, "/v1/chat/completions", chat_body(1024, "bench-openai"), configs["switchyard-jwt"][4], "river")
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        for name, (_, port, path, model, headers, expect) in configs.items():
            check(port, path, chat_body(1024, model, stream=name.endswith("stream")), headers, expect)

        runs: dict = {}
        cpu: dict = {}
        for rep in range(REPS):
            for size_name, size in SIZES.items():
                for conc in CONCURRENCY:
                    for name, (gw, port, path, model, headers, _) in configs.items():
                        if name in ("litellm", "portkey") and conc > 1 and size_name != "1KB" and QUICK:
                            continue
                        body = chat_body(size, model, stream=name.endswith("stream"))
                        proc = gateways.get(gw) if gw else None
                        before = proc.cpu_seconds() if proc else 0.0
                        r = wrk(f"http://127.0.0.1:{port}{path}", body, headers, conc, DURATION)
                        used = (proc.cpu_seconds() - before) if proc else 0.0
                        r["cpu_us_per_req"] = used / r["requests"] * 1e6 if proc and r["requests"] else None
                        r["req_per_cpu_s"] = r["requests"] / used if proc and used > 0 else None
                        runs.setdefault(f"{name}|{size_name}|c{conc}", []).append(r)
                        print(f"rep {rep} {name:22} {size_name:5} c={conc:<3} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:.3f} ms"
                              f"  p99 {r['p99_ms']:.3f} ms  non2xx {r['non_2xx']}", flush=True)
        for name, proc in gateways.items():
            cpu[name] = {"rss_mb": round(proc.rss_mb(), 1)}

        stream_body = chat_body(1024, "bench-stream", stream=True)
        n = 100 if QUICK else 400
        ttfb_sy = ttfb(p_sy, "/v1/chat/completions", stream_body, auth, n)
        ttfb_direct = ttfb(up, "/stream/v1/chat/completions", stream_body, {}, n)
    finally:
        for p in reversed(procs):
            p.stop()

    summary = summarise(runs, cpu, ttfb_sy, ttfb_direct)
    (ROOT / "bench" / "results.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    write_markdown(summary)
    plot(summary)
    print((ROOT / "bench" / "results.md").read_text())
    return 0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(runs: dict, cpu: dict, ttfb_sy: list[float], ttfb_direct: list[float]) -> dict:
    table = {}
    for k, rs in runs.items():
        name, size, conc = k.split("|")
        table[k] = {
            "config": name, "size": size, "concurrency": int(conc[1:]),
            "rps": med(r["rps"] for r in rs), "p50_ms": med(r["p50_ms"] for r in rs), "p99_ms": med(r["p99_ms"] for r in rs),
            "cpu_us_per_req": med(r["cpu_us_per_req"] for r in rs), "req_per_cpu_s": med(r["req_per_cpu_s"] for r in rs),
            "errors": sum(r["non_2xx"] + r["socket_errors"] for r in rs),
        }
    for k, row in table.items():
        direct = table.get(f"direct|{row['size']}|c{row['concurrency']}")
        plain = table.get(f"envoy-plain|{row['size']}|c{row['concurrency']}")
        row["added_p50_us"] = (row["p50_ms"] - direct["p50_ms"]) * 1000 if direct else None
        row["vs_plain_envoy"] = row["rps"] / plain["rps"] if plain and plain["rps"] else None
    def get(name, size="1KB", conc=32, field="rps"):
        r = table.get(f"{name}|{size}|c{conc}")
        return r and r.get(field)
    targets = {
        "throughput_vs_plain_envoy_1KB": ratio(get("switchyard-anthropic"), get("envoy-plain")),
        "added_p50_us_vs_plain_envoy_c1": diff_us(get("switchyard-anthropic", conc=1, field="p50_ms"), get("envoy-plain", conc=1, field="p50_ms")),
        "floor_throughput_vs_plain_envoy_1KB": ratio(get("wasm-floor"), get("envoy-plain")),
        "floor_added_p50_us_vs_plain_envoy_c1": diff_us(get("wasm-floor", conc=1, field="p50_ms"), get("envoy-plain", conc=1, field="p50_ms")),
        "per_core_vs_portkey": ratio(get("switchyard-openai", field="req_per_cpu_s"), get("portkey", field="req_per_cpu_s")),
        "per_core_vs_litellm": ratio(get("switchyard-openai", field="req_per_cpu_s"), get("litellm", field="req_per_cpu_s")),
        "rss_mb": cpu,
        "ttfb_ms_p50_switchyard_stream": statistics.median(ttfb_sy),
        "ttfb_ms_p50_direct_stream": statistics.median(ttfb_direct),
        "stream_added_per_chunk_us": per_chunk(table),
        "fleet_added_p50_us_c1": diff_us(get("switchyard-fleet", conc=1, field="p50_ms"), get("switchyard-openai", conc=1, field="p50_ms")),
        "fleet_throughput_vs_local_1KB": ratio(get("switchyard-fleet"), get("switchyard-openai")),
        "cache_hit_throughput_vs_miss_1KB": ratio(get("switchyard-cache-hit"), get("switchyard-openai")),
        "cache_hit_p50_us_c1": diff_us(get("switchyard-cache-hit", conc=1, field="p50_ms"), 0.0),
        "jwt_throughput_vs_key_1KB": ratio(get("switchyard-jwt"), get("switchyard-openai")),
        "jwt_added_p50_us_c1": diff_us(get("switchyard-jwt", conc=1, field="p50_ms"), get("switchyard-openai", conc=1, field="p50_ms")),
    }
    return {"table": table, "targets": targets, "machine": machine(), "duration_s": DURATION, "reps": REPS}


def ratio(a, b):
    return a / b if a and b else None


def diff_us(a_ms, b_ms):
    return (a_ms - b_ms) * 1000 if a_ms is not None and b_ms is not None else None


def per_chunk(table):
    s = table.get("switchyard-stream|1KB|c1")
    o = table.get("switchyard-openai|1KB|c1")
    if not s or not o:
        return None
    return (s["p50_ms"] - o["p50_ms"]) * 1000 / STREAM_CHUNKS


def machine() -> dict:
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return {"cpu": cpu.group(1) if cpu else "?", "cores": os.cpu_count(), "kernel": os.uname().release}


def fmt(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def write_markdown(s: dict) -> None:
    t = s["targets"]
    lines = [
        "# Benchmark results", "",
        f"Machine: {s['machine']['cpu']}, {s['machine']['cores']} cores. Gateway on CPU 0; wrk (1 thread) and the nginx "
        f"mock on CPU 1. {s['reps']} interleaved repetitions of {s['duration_s']} s per cell; medians shown. Envoy 1.40.0 "
        "with --concurrency 1; Switchyard with key auth and every limit on (requests, tokens, concurrency, budget). "
        "`wasm-floor` is Envoy with Switchyard's layout running bench/floor, a proxy-wasm filter that only does what "
        "routing on the body's model and setting the credential after routing require (reads the body, sets the routing "
        "header; sets the credential upstream): the least any filter of this design costs in this Envoy.", "",
        "| config | body | conc | req/s | p50 ms | p99 ms | added p50 µs vs direct | × plain Envoy | gateway CPU µs/req | req per CPU-s | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k in sorted(s["table"], key=lambda k: (s["table"][k]["size"], s["table"][k]["concurrency"], k)):
        r = s["table"][k]
        lines.append(f"| {r['config']} | {r['size']} | {r['concurrency']} | {fmt(r['rps'])} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} | "
                     f"{fmt(r['added_p50_us'])} | {fmt(r['vs_plain_envoy'], 2)} | {fmt(r['cpu_us_per_req'], 1)} | {fmt(r['req_per_cpu_s'])} | {r['errors']} |")
    rss = t["rss_mb"]
    lines += ["", "## Targets", "",
              f"- Switchyard translating to Anthropic (1 KB, c=32) keeps **{fmt((t['throughput_vs_plain_envoy_1KB'] or 0) * 100, 0)}%** of plain Envoy's throughput (target ≥ 75%).",
              f"  The floor filter alone keeps {fmt((t['floor_throughput_vs_plain_envoy_1KB'] or 0) * 100, 0)}%.",
              f"- Added p50 over plain Envoy at c=1 (1 KB, translating): **{fmt(t['added_p50_us_vs_plain_envoy_c1'])} µs** (target < 50 µs); "
              f"the floor filter alone adds {fmt(t['floor_added_p50_us_vs_plain_envoy_c1'])} µs.",
              f"- Requests per gateway CPU-second vs Portkey: **{fmt(t['per_core_vs_portkey'], 1)}×** (target ≥ 10×); vs LiteLLM: **{fmt(t['per_core_vs_litellm'], 1)}×** (target ≥ 100×).",
              f"- Memory (RSS after the run): plain Envoy {fmt(rss.get('envoy-plain', {}).get('rss_mb'), 1)} MB, Envoy + Switchyard "
              f"{fmt(rss.get('switchyard', {}).get('rss_mb'), 1)} MB (target: under plain + 20 MB), the floor filter "
              f"{fmt(rss.get('wasm-floor', {}).get('rss_mb'), 1)} MB; LiteLLM {fmt(rss.get('litellm', {}).get('rss_mb'), 1)} MB, "
              f"Portkey {fmt(rss.get('portkey', {}).get('rss_mb'), 1)} MB.",
              f"- Streaming ({STREAM_CHUNKS} chunks): time to first byte p50 {fmt(t['ttfb_ms_p50_switchyard_stream'], 3)} ms through Switchyard vs "
              f"{fmt(t['ttfb_ms_p50_direct_stream'], 3)} ms direct; per chunk over a non-streamed answer: "
              + (f"about {fmt(t['stream_added_per_chunk_us'], 1)} µs." if (t['stream_added_per_chunk_us'] or 0) > 0.5 else "below what this run can measure."),
              f"- Fleet-wide limits (requests, tokens and budget checked by switchyard-limits and Redis, both on the load's CPU, "
              f"beside the local ones): **{fmt(t['fleet_added_p50_us_c1'])} µs** added p50 at c=1 over the same request with local "
              f"limits only; **{fmt((t['fleet_throughput_vs_local_1KB'] or 0) * 100, 0)}%** of its throughput at c=32 (1 KB).",
              f"- Cache hits (the same request to a cached model, answered from the process tier with no upstream): "
              f"**{fmt(t['cache_hit_throughput_vs_miss_1KB'], 2)}×** the throughput of the uncached passthrough at c=32 (1 KB), "
              f"p50 {fmt(t['cache_hit_p50_us_c1'])} µs at c=1.",
              f"- JWT users (jwt_authn verifies an RS256 token, the filter reads the claims from the metadata; the user has the "
              f"key's four limits and a team): **{fmt((t['jwt_throughput_vs_key_1KB'] or 0) * 100, 0)}%** of the same request's "
              f"throughput with a virtual key at c=32 (1 KB), {fmt(t['jwt_added_p50_us_c1'])} µs added p50 at c=1.",
              ""]
    (ROOT / "bench" / "results.md").write_text("\n".join(lines))


def plot(s: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot")
        return
    rows = [r for r in s["table"].values() if r["size"] == "1KB" and r["concurrency"] == 32]
    rows.sort(key=lambda r: -(r["rps"] or 0))
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    a.barh([r["config"] for r in rows], [r["rps"] or 0 for r in rows], color="#4477aa")
    a.set_xlabel("requests/s (1 KB, 32 connections)")
    a.set_xscale("log")
    a.invert_yaxis()
    rows1 = [r for r in s["table"].values() if r["size"] == "1KB" and r["concurrency"] == 1]
    rows1.sort(key=lambda r: r["p50_ms"] or 0)
    b.barh([r["config"] for r in rows1], [r["p50_ms"] or 0 for r in rows1], color="#cc6677")
    b.set_xlabel("p50 latency, ms (1 KB, 1 connection)")
    b.set_xscale("log")
    b.invert_yaxis()
    fig.suptitle("Switchyard vs plain Envoy, LiteLLM and Portkey (same mock upstream, same machine)")
    fig.tight_layout()
    fig.savefig(ROOT / "bench" / "results.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
