"""Deterministic count of the work a Switchyard build does inside its Wasm VM per request.

A proxy-wasm host (ABI 0.2.1) in Python over wasmtime with fuel metering (fuel consumed ≈ Wasm
instructions executed). It loads a build the way Envoy does with the configuration `make bench` renders
(one VM, vm_id `switchyard`, with two plugins: the route role, root_id `switchyard`, and the upstream role,
root_id `switchyard-upstream`, both with the same configuration string) and drives the bench's three
targets through the same callbacks Envoy makes:

    route role:    context create, request headers (pauses), request body (whole, end of stream)
    router:        the route the route role picked (x-switchyard-route, else x-switchyard-cluster),
                   :authority rewritten to the endpoint's hostname (auto_host_rewrite)
    upstream role: context create, request headers, request body
    the mock:      nginx's answer for the path the upstream role sent (bench/run.py's bodies and headers)
    upstream role, then route role: response headers, response body (whole, end of stream)
    end:           upstream role's then route role's on_log, on_done, on_delete

For each target it reports the fuel per request in each role and phase (the median over N requests after a
warm-up) and how many times each host call was made per request. Nothing here depends on the machine's
load: two runs print the same numbers. Every request's answer is checked like bench/ab.py does (status
200, the expected text in the body), so a broken host cannot silently measure an error path.

    make bench-vm A=/tmp/old.wasm [B=dist/switchyard.wasm] [N=200]
    .venv/bin/python bench/vmcount.py A.wasm [B.wasm] [-n 200] [--warmup 20] [--targets passthrough,...]
    .venv/bin/python bench/vmcount.py A.wasm B.wasm --profile translating:route:req_body

`--profile TARGET:ROLE:PHASE` adds a per-function profile of that callback: the request is replayed
from a fresh VM (deterministic) and stopped when its fuel runs out at evenly spaced points of the callback;
the Wasm stack at each stop is one sample. Function names need a build that keeps the name section
(`cargo build --release --config 'profile.release.strip="none"'`: same code, so same fuel).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import struct
import sys
from collections import Counter, defaultdict
from pathlib import Path

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402

# ------------------------------------------------------------------------------------- ABI values

OK, NOT_FOUND, BAD_ARGUMENT, CAS_MISMATCH, INTERNAL_FAILURE = 0, 1, 2, 8, 10
CONTINUE, PAUSE = 0, 1
REQUEST_BODY, RESPONSE_BODY, PLUGIN_CONFIGURATION, VM_CONFIGURATION = 0, 1, 7, 6
REQUEST_HEADERS, RESPONSE_HEADERS = 0, 2
LOG_WARN = 3  # the bench's Envoy runs with `-l warn`
FUEL = 1 << 40
# A fixed start for the fake clock (2023-11-14T22:13:20Z), advanced 1 µs per read and 1 ms per request.
CLOCK_START_NS = 1_700_000_000 * 10**9

ROUTE_ROOT_ID, UPSTREAM_ROOT_ID = "switchyard", "switchyard-upstream"
ROLES = ("route", "upstream")
PHASES = ("create", "req_headers", "req_body", "resp_headers", "resp_body", "log", "done", "delete")
TARGETS = {  # name: (model, stream, expected text) as in bench/ab.py
    "passthrough": ("bench-openai", False, "river"),
    "translating": ("bench-claude", False, "chat.completion"),
    "streaming": ("bench-stream", True, "[DONE]"),
    # The same request to a cached model (bench/run.py's cache_gateway): the first (a warm-up) is a miss
    # that goes upstream and is stored; every measured one is a hit the route role answers itself.
    "cache-hit": ("bench-cached", False, "river"),
}
# Targets measured with the cached model's configuration (the others keep the plain bench config, so
# their numbers compare with builds from before the cache).
CACHED_TARGETS = {"cache-hit"}
# nginx's answers in bench/run.py, by path (what `location` serves), with the headers nginx sends.
ANSWERS = {
    "/v1/chat/completions": ("application/json", run.OPENAI_ANSWER.encode()),
    "/v1/messages": ("application/json", run.ANTHROPIC_ANSWER.encode()),
    "/stream/v1/chat/completions": ("text/event-stream", run.sse_answer().encode()),
}
HTTP_DATE = "Tue, 14 Nov 2023 22:13:20 GMT"


class HostError(Exception):
    """The module did something this host (or Envoy) would refuse, or an answer is not what the bench expects."""


def serialize_map(pairs) -> bytes:
    """proxy-wasm's map format: count, (key length, value length) per pair, then key\\0 value\\0 each."""
    out = [struct.pack("<I", len(pairs))]
    out += [struct.pack("<II", len(k), len(v)) for k, v in pairs]
    for k, v in pairs:
        out += [k, b"\0", v, b"\0"]
    return b"".join(out)


def deserialize_map(data: bytes) -> list[list[bytes]]:
    if not data:
        return []
    (n,) = struct.unpack_from("<I", data, 0)
    sizes = [struct.unpack_from("<II", data, 4 + 8 * i) for i in range(n)]
    p, out = 4 + 8 * n, []
    for ks, vs in sizes:
        k = bytes(data[p:p + ks])
        p += ks + 1
        v = bytes(data[p:p + vs])
        p += vs + 1
        out.append([k, v])
    return out


# ------------------------------------------------------------------------------------- the stream


class Stream:
    """What Envoy keeps for one HTTP context: its header maps and the body in flight."""

    def __init__(self, cid: int, role: str, root: int):
        self.id, self.role, self.root = cid, role, root
        self.req_headers: list[list[bytes]] = []
        self.resp_headers: list[list[bytes]] | None = None
        self.body = bytearray()  # the body the current callback sees (request or response)
        self.local_response: tuple | None = None
        self.filter_state: dict[str, bytes] = {}
        self.endpoint_meta: list[tuple[bytes, bytes]] | None = None
        self.held = False  # headers paused by this filter, waiting for the body


class OutOfFuel(Exception):
    """A profile sample: the Wasm stack when the fuel ran out."""

    def __init__(self, frames):
        super().__init__("out of fuel")
        self.frames = frames


class Host:
    """One Wasm VM of a build, with Envoy's side of proxy-wasm 0.2.1 for the bench's configuration."""

    def __init__(self, module: wasmtime.Module, engine: wasmtime.Engine, cfg: dict, verbose: bool = False):
        self.engine, self.module, self.verbose = engine, module, verbose
        self.plugins = {pc["root_id"]: pc["configuration"]["value"].encode() for pc in run.plugin_configs(cfg)}
        missing = {ROUTE_ROOT_ID, UPSTREAM_ROOT_ID} - set(self.plugins)
        if missing:
            raise HostError(f"the rendered config has no plugin with root_id {sorted(missing)}")
        self.clusters = self._clusters(cfg)
        self.routes = self._routes(cfg)
        self.store = wasmtime.Store(engine)
        self.clock_ns = CLOCK_START_NS
        self.rand_counter = 0
        self.next_id = 1
        self.contexts: dict[int, Stream | str] = {}  # id -> Stream, or the root_id of a root context
        self.current: int = 0
        self.shared: dict[bytes, tuple[bytes, int]] = {}
        self.cas = 0
        self.queues: dict[bytes, int] = {}
        self.queue_data: dict[int, list[bytes]] = defaultdict(list)
        self.metrics: dict[tuple[int, bytes], int] = {}
        self.metric_values: dict[int, int] = {}
        self.tick_ms = 0
        self.logs: list[tuple[int, str]] = []
        self.stderr = bytearray()
        # Accounting: fuel per (role, phase) and host calls per (role, phase, name) for the request running.
        self.phase: tuple[str, str] = ("vm", "start")
        self.fuel: Counter = Counter()
        self.calls: Counter = Counter()
        self.fuel_limit: int | None = None  # profile: stop the callback after this much fuel
        self.trace: list[str] | None = None  # --trace: every host call of a request, with its arguments
        linker = wasmtime.Linker(engine)
        self._define_imports(linker)
        self.instance = linker.instantiate(self.store, module)
        ex = self.instance.exports(self.store)
        self.memory = ex["memory"]
        self.ex = {e.name: ex[e.name] for e in module.exports if isinstance(ex[e.name], wasmtime.Func)}
        if "proxy_abi_version_0_2_1" not in self.ex:
            raise HostError("the module does not export proxy_abi_version_0_2_1")
        self.malloc = self.ex.get("proxy_on_memory_allocate") or self.ex.get("malloc")

    # ---------------------------------------------------------------------------- config

    @staticmethod
    def _clusters(cfg: dict) -> dict[str, dict]:
        out = {}
        for c in cfg["static_resources"]["clusters"]:
            eps = [lb for e in c["load_assignment"]["endpoints"] for lb in e["lb_endpoints"]]
            ep = eps[0]
            meta = ep.get("metadata", {}).get("filter_metadata", {}).get("switchyard", {})
            out[c["name"]] = {"hostname": ep["endpoint"].get("hostname") or ep["endpoint"]["address"]["socket_address"]["address"],
                              "meta": [(k.encode(), str(v).encode()) for k, v in meta.items()]}
        return out

    @staticmethod
    def _routes(cfg: dict) -> list[dict]:
        hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        return [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"]]

    def route(self, headers: list[list[bytes]]) -> str:
        """Envoy's route match for the bench's routes: exact header matches, then cluster_header."""
        def value(name: str) -> str | None:
            return next((v.decode() for k, v in headers if k == name.encode()), None)
        for r in self.routes:
            if all(value(h["name"]) == h["string_match"]["exact"] for h in r["match"].get("headers", [])):
                cluster = r["route"].get("cluster") or value(r["route"]["cluster_header"])
                if cluster not in self.clusters:
                    raise HostError(f"no cluster '{cluster}' for the request (headers {headers})")
                return cluster
        raise HostError("no route matched")

    # ---------------------------------------------------------------------------- memory

    def read(self, st, ptr: int, size: int) -> bytes:
        return bytes(self.memory.read(st, ptr, ptr + size)) if size else b""

    def write(self, st, ptr: int, data: bytes) -> None:
        self.memory.write(st, data, ptr)

    def put_u32(self, st, ptr: int, v: int) -> None:
        self.write(st, ptr, struct.pack("<I", v & 0xFFFFFFFF))

    def copy_out(self, st, data: bytes, ptr_ptr: int, size_ptr: int) -> None:
        """Hands bytes to the module as Envoy does: in memory from the module's allocator (none if empty)."""
        addr = 0
        if data:
            self.calls[(*self.phase, "(vm) proxy_on_memory_allocate")] += 1
            addr = self.malloc(st, len(data))
            if not addr:
                raise HostError("proxy_on_memory_allocate returned 0")
            self.write(st, addr, data)
        self.put_u32(st, ptr_ptr, addr)
        self.put_u32(st, size_ptr, len(data))

    # ---------------------------------------------------------------------------- imports

    def describe(self, st, name: str, a: list) -> str:
        """A host call's arguments, readable (for --trace)."""
        try:
            if name in ("proxy_replace_header_map_value", "proxy_add_header_map_value"):
                return f"(map {a[0]}, {self.read(st, a[1], a[2]).decode()}: {self.read(st, a[3], a[4])[:60].decode(errors='replace')})"
            if name in ("proxy_get_header_map_value", "proxy_remove_header_map_value"):
                return f"(map {a[0]}, {self.read(st, a[1], a[2]).decode()})"
            if name in ("proxy_get_header_map_pairs", "proxy_set_header_map_pairs"):
                keys = [k.decode() for k, _ in self.headers_of(a[0])]
                return f"(map {a[0]}: now {', '.join(keys)})"
            if name in ("proxy_get_property", "proxy_set_property"):
                return "(" + self.read(st, a[0], a[1]).replace(b"\0", b".").decode() + ")"
            if name in ("proxy_get_shared_data", "proxy_set_shared_data"):
                return "(" + self.read(st, a[0], a[1]).decode(errors="replace") + ")"
            if name in ("proxy_get_buffer_bytes", "proxy_set_buffer_bytes"):
                return f"(buffer {a[0]}, start {a[1]}, size {a[2]})"
            if name == "proxy_log":
                return "(" + self.read(st, a[1], a[2]).decode(errors="replace")[:100] + ")"
        except (HostError, UnicodeDecodeError):
            pass
        return "(" + ", ".join(str(x) for x in a) + ")"

    def stream(self) -> Stream:
        s = self.contexts.get(self.current)
        if not isinstance(s, Stream):
            raise HostError(f"an HTTP call from context {self.current}, which is not an HTTP context")
        return s

    def root_id_of(self, cid: int) -> str:
        c = self.contexts.get(cid)
        if isinstance(c, Stream):
            c = self.contexts[c.root]
        return c or ""

    def headers_of(self, map_type: int) -> list[list[bytes]]:
        s = self.stream()
        if map_type == REQUEST_HEADERS:
            return s.req_headers
        if map_type == RESPONSE_HEADERS and s.resp_headers is not None:
            return s.resp_headers
        raise HostError(f"header map {map_type} is not available in phase {self.phase}")

    def now(self) -> int:
        self.clock_ns += 1000
        return self.clock_ns

    def random_bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self.rand_counter += 1
            out += hashlib.sha256(b"vmcount-%d" % self.rand_counter).digest()
        return out[:n]

    def property(self, path: list[bytes]) -> bytes | None:
        key = b".".join(path)
        if key == b"plugin_root_id":
            return self.root_id_of(self.current).encode()
        s = self.contexts.get(self.current)
        if not isinstance(s, Stream):
            return None
        if key == b"response.code" and s.resp_headers is not None:
            status = next(int(v) for k, v in s.resp_headers if k == b":status")
            return struct.pack("<q", status)
        if key == b"response.code_details" and s.resp_headers is not None:
            return b"via_upstream"
        if key == b"xds.upstream_host_metadata.filter_metadata.switchyard" and s.endpoint_meta is not None:
            return serialize_map(s.endpoint_meta)
        if path and path[0].decode() in s.filter_state:
            return s.filter_state[path[0].decode()]
        return None

    def _define_imports(self, linker: wasmtime.Linker) -> None:
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
        host = self
        known = {}

        def fn(module, params, results=(i32,)):
            def deco(f):
                known[(module, f.__name__)] = (wasmtime.FuncType(list(params), list(results)), f)
                return f
            return deco

        E, W = "env", "wasi_snapshot_preview1"

        @fn(E, [i32, i32, i32])
        def proxy_log(st, level, ptr, size):
            msg = host.read(st, ptr, size).decode("utf-8", "replace")
            host.logs.append((level, msg))
            if host.verbose or level >= 4:
                print(f"[wasm log {level}] {msg}", file=sys.stderr)
            return OK

        @fn(E, [i32])
        def proxy_get_log_level(st, ptr):
            host.put_u32(st, ptr, LOG_WARN)
            return OK

        @fn(E, [i32])
        def proxy_get_current_time_nanoseconds(st, ptr):
            host.write(st, ptr, struct.pack("<Q", host.now()))
            return OK

        @fn(E, [i32])
        def proxy_set_tick_period_milliseconds(st, ms):
            host.tick_ms = ms
            return OK

        @fn(E, [i32, i32, i32, i32, i32])
        def proxy_get_buffer_bytes(st, btype, start, length, ptr_ptr, size_ptr):
            if btype in (PLUGIN_CONFIGURATION, VM_CONFIGURATION):
                buf = host.plugins[host.root_id_of(host.current)] if btype == PLUGIN_CONFIGURATION else b""
            elif btype in (REQUEST_BODY, RESPONSE_BODY):
                buf = bytes(host.stream().body)
            else:
                return NOT_FOUND
            end = min(len(buf), start + length)
            host.copy_out(st, buf[start:end] if end > start else b"", ptr_ptr, size_ptr)
            return OK

        @fn(E, [i32, i32, i32, i32, i32])
        def proxy_set_buffer_bytes(st, btype, start, length, ptr, size):
            if btype not in (REQUEST_BODY, RESPONSE_BODY):
                return NOT_FOUND
            data, body = host.read(st, ptr, size), host.stream().body
            # Envoy's Buffer::copyFrom: at 0 drain `length` and prepend; at or past the end append.
            if start == 0:
                del body[:length]
                body[0:0] = data
            elif start >= len(body):
                body += data
            else:
                return BAD_ARGUMENT
            return OK

        @fn(E, [i32, i32, i32])
        def proxy_get_header_map_pairs(st, mtype, ptr_ptr, size_ptr):
            host.copy_out(st, serialize_map(host.headers_of(mtype)), ptr_ptr, size_ptr)
            return OK

        @fn(E, [i32, i32, i32])
        def proxy_set_header_map_pairs(st, mtype, ptr, size):
            m = host.headers_of(mtype)
            m[:] = [[k.lower(), v] for k, v in deserialize_map(host.read(st, ptr, size))]
            return OK

        @fn(E, [i32, i32, i32, i32, i32])
        def proxy_get_header_map_value(st, mtype, kptr, ksize, ptr_ptr, size_ptr):
            key = host.read(st, kptr, ksize).lower()
            v = next((v for k, v in host.headers_of(mtype) if k == key), None)
            if v is None:
                return NOT_FOUND
            host.copy_out(st, v, ptr_ptr, size_ptr)
            return OK

        @fn(E, [i32, i32, i32, i32, i32])
        def proxy_replace_header_map_value(st, mtype, kptr, ksize, vptr, vsize):
            m, key, value = host.headers_of(mtype), host.read(st, kptr, ksize).lower(), host.read(st, vptr, vsize)
            at = next((i for i, (k, _) in enumerate(m) if k == key), None)
            m[:] = [p for p in m if p[0] != key]
            m.insert(at if at is not None else len(m), [key, value])
            return OK

        @fn(E, [i32, i32, i32, i32, i32])
        def proxy_add_header_map_value(st, mtype, kptr, ksize, vptr, vsize):
            host.headers_of(mtype).append([host.read(st, kptr, ksize).lower(), host.read(st, vptr, vsize)])
            return OK

        @fn(E, [i32, i32, i32])
        def proxy_remove_header_map_value(st, mtype, kptr, ksize):
            m, key = host.headers_of(mtype), host.read(st, kptr, ksize).lower()
            m[:] = [p for p in m if p[0] != key]
            return OK

        @fn(E, [i32, i32, i32, i32])
        def proxy_get_property(st, pptr, psize, ptr_ptr, size_ptr):
            path = host.read(st, pptr, psize).split(b"\0")
            host.calls[(*host.phase, "  property " + b".".join(path).decode())] += 1
            v = host.property(path)
            if v is None:
                return NOT_FOUND
            host.copy_out(st, v, ptr_ptr, size_ptr)
            return OK

        @fn(E, [i32, i32, i32, i32])
        def proxy_set_property(st, pptr, psize, vptr, vsize):
            path = host.read(st, pptr, psize).split(b"\0")
            host.calls[(*host.phase, "  set property " + b".".join(path).decode())] += 1
            s = host.contexts.get(host.current)
            if isinstance(s, Stream):
                s.filter_state[path[0].decode()] = host.read(st, vptr, vsize)
            return OK

        @fn(E, [i32, i32, i32, i32, i32])
        def proxy_get_shared_data(st, kptr, ksize, ptr_ptr, size_ptr, cas_ptr):
            got = host.shared.get(host.read(st, kptr, ksize))
            if got is None:
                return NOT_FOUND
            host.copy_out(st, got[0], ptr_ptr, size_ptr)
            host.put_u32(st, cas_ptr, got[1])
            return OK

        @fn(E, [i32, i32, i32, i32, i32])
        def proxy_set_shared_data(st, kptr, ksize, vptr, vsize, cas):
            key = host.read(st, kptr, ksize)
            got = host.shared.get(key)
            if cas and got is not None and got[1] != cas:
                return CAS_MISMATCH
            host.cas += 1
            host.shared[key] = (host.read(st, vptr, vsize), host.cas)
            return OK

        @fn(E, [i32, i32, i32])
        def proxy_register_shared_queue(st, nptr, nsize, id_ptr):
            name = host.read(st, nptr, nsize)
            qid = host.queues.setdefault(name, len(host.queues) + 1)
            host.put_u32(st, id_ptr, qid)
            return OK

        @fn(E, [i32, i32, i32, i32, i32])
        def proxy_resolve_shared_queue(st, vptr, vsize, nptr, nsize, id_ptr):
            qid = host.queues.get(host.read(st, nptr, nsize))
            if qid is None:
                return NOT_FOUND
            host.put_u32(st, id_ptr, qid)
            return OK

        @fn(E, [i32, i32, i32])
        def proxy_dequeue_shared_queue(st, qid, ptr_ptr, size_ptr):
            q = host.queue_data.get(qid)
            if not q:
                return NOT_FOUND if qid not in host.queues.values() else 7  # Empty
            host.copy_out(st, q.pop(0), ptr_ptr, size_ptr)
            return OK

        @fn(E, [i32, i32, i32])
        def proxy_enqueue_shared_queue(st, qid, ptr, size):
            if qid not in host.queues.values():
                return NOT_FOUND
            host.queue_data[qid].append(host.read(st, ptr, size))
            return OK

        @fn(E, [i32])
        def proxy_continue_stream(st, stream_type):
            return OK

        @fn(E, [i32])
        def proxy_close_stream(st, stream_type):
            return OK

        @fn(E, [i32, i32, i32, i32, i32, i32, i32, i32])
        def proxy_send_local_response(st, status, dptr, dsize, bptr, bsize, hptr, hsize, grpc):
            s = host.stream()
            s.local_response = (status, host.read(st, bptr, bsize), deserialize_map(host.read(st, hptr, hsize)))
            return OK

        # Callouts: the bench's configuration makes none; Envoy's refusal is what the module handles.
        @fn(E, [i32] * 10)
        def proxy_http_call(st, *args):
            return INTERNAL_FAILURE

        @fn(E, [i32] * 12)
        def proxy_grpc_call(st, *args):
            return INTERNAL_FAILURE

        @fn(E, [i32] * 9)
        def proxy_grpc_stream(st, *args):
            return INTERNAL_FAILURE

        @fn(E, [i32] * 4)
        def proxy_grpc_send(st, *args):
            return NOT_FOUND

        @fn(E, [i32])
        def proxy_grpc_cancel(st, token):
            return NOT_FOUND

        @fn(E, [i32])
        def proxy_grpc_close(st, token):
            return NOT_FOUND

        @fn(E, [i32, i32, i32])
        def proxy_get_status(st, code_ptr, ptr_ptr, size_ptr):
            host.put_u32(st, code_ptr, 0)
            host.copy_out(st, b"", ptr_ptr, size_ptr)
            return OK

        @fn(E, [i32])
        def proxy_set_effective_context(st, cid):
            if cid not in host.contexts:
                return BAD_ARGUMENT
            host.current = cid
            return OK

        @fn(E, [i32, i32, i32, i32, i32, i32])
        def proxy_call_foreign_function(st, nptr, nsize, aptr, asize, ptr_ptr, size_ptr):
            name = host.read(st, nptr, nsize)
            host.calls[(*host.phase, "  foreign " + name.decode())] += 1
            if name == b"declare_property":  # Envoy's: declares a filter state property; no result
                host.copy_out(st, b"", ptr_ptr, size_ptr)
                return OK
            return NOT_FOUND

        @fn(E, [])
        def proxy_done(st):
            return OK

        @fn(E, [i32, i32, i32, i32])
        def proxy_define_metric(st, mtype, nptr, nsize, id_ptr):
            key = (mtype, host.read(st, nptr, nsize))
            if key not in host.metrics:
                host.metrics[key] = (len(host.metrics) + 1) << 2 | mtype
                host.metric_values[host.metrics[key]] = 0
            host.put_u32(st, id_ptr, host.metrics[key])
            return OK

        @fn(E, [i32, i64])
        def proxy_increment_metric(st, mid, offset):
            if mid not in host.metric_values:
                return NOT_FOUND
            host.metric_values[mid] += offset
            return OK

        @fn(E, [i32, i64])
        def proxy_record_metric(st, mid, value):
            if mid not in host.metric_values:
                return NOT_FOUND
            host.metric_values[mid] = value
            return OK

        @fn(E, [i32, i32])
        def proxy_get_metric(st, mid, ptr):
            if mid not in host.metric_values:
                return NOT_FOUND
            host.write(st, ptr, struct.pack("<Q", host.metric_values[mid] & (2**64 - 1)))
            return OK

        # WASI, as much as a Rust proxy-wasm module uses: Envoy gives it no environment and no files.
        @fn(W, [i32, i32])
        def random_get(st, ptr, size):
            host.write(st, ptr, host.random_bytes(size))
            return 0

        @fn(W, [i32, i32])
        def environ_sizes_get(st, count_ptr, size_ptr):
            host.put_u32(st, count_ptr, 0)
            host.put_u32(st, size_ptr, 0)
            return 0

        @fn(W, [i32, i32])
        def environ_get(st, environ, buf):
            return 0

        @fn(W, [i32, i32])
        def args_sizes_get(st, count_ptr, size_ptr):
            host.put_u32(st, count_ptr, 0)
            host.put_u32(st, size_ptr, 0)
            return 0

        @fn(W, [i32, i32])
        def args_get(st, argv, buf):
            return 0

        @fn(W, [i32, i64, i32])
        def clock_time_get(st, clock, precision, ptr):
            host.write(st, ptr, struct.pack("<Q", host.now()))
            return 0

        @fn(W, [i32, i32, i32, i32])
        def fd_write(st, fd, iovs, iovs_len, nwritten_ptr):
            total = 0
            for i in range(iovs_len):
                base, length = struct.unpack("<II", host.read(st, iovs + 8 * i, 8))
                host.stderr += host.read(st, base, length)
                total += length
            host.put_u32(st, nwritten_ptr, total)
            return 0

        @fn(W, [i32], [])
        def proc_exit(st, code):
            raise HostError(f"the module called proc_exit({code}); its output: {host.stderr.decode(errors='replace')[-2000:]}")

        for imp in self.module.imports:
            entry = known.get((imp.module, imp.name))
            if entry is None:
                ty = imp.type
                if not isinstance(ty, wasmtime.FuncType):
                    raise HostError(f"the module imports {imp.module}.{imp.name}, which is not a function")

                def unknown(*_a, _n=f"{imp.module}.{imp.name}"):
                    raise HostError(f"the module called {_n}, which this host does not implement")
                linker.define_func(imp.module, imp.name, ty, unknown, access_caller=True)
                continue
            ty, f = entry
            sig = lambda t: ([str(v) for v in t.params], [str(v) for v in t.results])  # noqa: E731
            if not isinstance(imp.type, wasmtime.FuncType) or sig(imp.type) != sig(ty):
                raise HostError(f"{imp.module}.{imp.name}: the module's signature {imp.type} is not ABI 0.2.1's {sig(ty)}")

            # i32 arguments are pointers and sizes: unsigned (wasmtime hands them over signed).
            unsigned = [str(v) == "i32" for v in ty.params]

            def counted(caller, *args, _f=f, _name=imp.name, _u=unsigned):
                host.calls[(*host.phase, _name)] += 1
                args = [a & 0xFFFFFFFF if u else a for a, u in zip(args, _u)]
                if host.trace is None:
                    return _f(caller, *args)
                mark = len(host.trace)
                host.trace.append("")
                status = _f(caller, *args)
                host.trace[mark] = f"{host.phase[0]:8} {host.phase[1]:12} {_name}{host.describe(caller, _name, args)} -> {status}"
                return status
            linker.define_func(imp.module, imp.name, ty, counted, access_caller=True)

    # ---------------------------------------------------------------------------- calls into the VM

    def call(self, role: str, phase: str, export: str, *args):
        """Calls an export, counting its fuel (and that of the allocations the host asks for meanwhile)."""
        self.phase = (role, phase)
        limit = self.fuel_limit if self.fuel_limit is not None else FUEL
        self.store.set_fuel(limit)
        try:
            out = self.ex[export](self.store, *args)
        except wasmtime.Trap as t:
            if self.fuel_limit is not None and t.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
                raise OutOfFuel([(fr.func_index, fr.func_name, fr.module_offset) for fr in t.frames]) from None
            raise HostError(f"{export} trapped in {role} {phase}: {t}\n{self.stderr.decode(errors='replace')[-2000:]}") from None
        self.fuel[(role, phase)] += limit - self.store.get_fuel()
        return out

    def new_id(self) -> int:
        cid = self.next_id
        self.next_id += 1
        return cid

    def start(self) -> None:
        """VM start and the two plugins' root contexts, as Envoy does for a new VM."""
        if "_initialize" in self.ex:
            self.call("vm", "start", "_initialize")
        self.roots = {}
        for role, root_id in (("route", ROUTE_ROOT_ID), ("upstream", UPSTREAM_ROOT_ID)):
            rid = self.new_id()
            self.contexts[rid] = root_id
            self.current = rid
            self.roots[role] = rid
            self.call("vm", "start", "proxy_on_context_create", rid, 0)
            if not self.call("vm", "start", "proxy_on_vm_start", rid, 0):
                raise HostError(f"proxy_on_vm_start failed for {root_id}")
            if not self.call("vm", "start", "proxy_on_configure", rid, len(self.plugins[root_id])):
                raise HostError(f"proxy_on_configure failed for {root_id}: {self.logs[-3:]}")

    def create(self, role: str) -> Stream:
        s = Stream(self.new_id(), role, self.roots[role])
        self.contexts[s.id] = s
        self.current = s.id
        self.call(role, "create", "proxy_on_context_create", s.id, s.root)
        return s

    def end(self, s: Stream) -> None:
        for phase, export in (("log", "proxy_on_log"), ("done", "proxy_on_done"), ("delete", "proxy_on_delete")):
            self.current = s.id
            self.call(s.role, phase, export, s.id)
        del self.contexts[s.id]

    # ---------------------------------------------------------------------------- one request

    def chain(self, filters: list[Stream], direction: str, headers: list, body: bytes, sink,
              local_ok: bool = False) -> None:
        """Headers then the whole body (end of stream) through filters in order, as Envoy's filter manager
        does: a filter that pauses its headers still gets the body; when it continues on the body, the held
        headers go on first. `sink(headers, body)` gets what leaves the last filter."""
        state = {"body": bytearray(body)}

        def deliver(i: int, event: str) -> None:
            if i == len(filters):
                if event == "body":
                    sink(headers, bytes(state["body"]))
                return
            f = filters[i]
            self.current = f.id
            if direction == "request":
                f.req_headers = headers
            else:
                f.resp_headers = headers
            if event == "headers":
                act = self.call(f.role, f"{'req' if direction == 'request' else 'resp'}_headers",
                                f"proxy_on_{direction}_headers", f.id, len(headers), 0)
                if local_ok and f.local_response:
                    return
                self._no_local_response(f)
                f.held = act != CONTINUE
                if not f.held:
                    deliver(i + 1, "headers")
            else:
                f.body = state["body"]
                act = self.call(f.role, f"{'req' if direction == 'request' else 'resp'}_body",
                                f"proxy_on_{direction}_body", f.id, len(f.body), 1)
                if local_ok and f.local_response:
                    return
                self._no_local_response(f)
                if act != CONTINUE:
                    raise HostError(f"{f.role} role paused the {direction} body at its end (nothing would resume it)")
                if f.held:
                    f.held = False
                    deliver(i + 1, "headers")
                deliver(i + 1, "body")

        deliver(0, "headers")
        deliver(0, "body")

    def _no_local_response(self, s: Stream) -> None:
        if s.local_response:
            status, body, _ = s.local_response
            raise HostError(f"the {s.role} role answered locally with {status}: {body[:300]!r}")

    def request(self, n: int, target: str) -> dict:
        """One bench request; returns what the client got."""
        model, stream, expect = TARGETS[target]
        body = run.chat_body(1024, model, stream)
        self.clock_ns += 1_000_000
        self.fuel.clear()
        self.calls.clear()
        rid = hashlib.sha256(b"request-%d" % n).hexdigest()
        request_id = f"{rid[:8]}-{rid[8:12]}-4{rid[13:16]}-a{rid[17:20]}-{rid[20:32]}".encode()
        # What the route role sees of wrk's request after Envoy's HTTP connection manager.
        headers = [[b":authority", b"127.0.0.1:10000"], [b":path", b"/v1/chat/completions"], [b":method", b"POST"],
                   [b":scheme", b"http"], [b"content-type", b"application/json"],
                   [b"authorization", f"Bearer {run.KEY}".encode()], [b"content-length", str(len(body)).encode()],
                   [b"x-forwarded-proto", b"http"], [b"x-request-id", request_id]]
        route = self.create("route")
        upstream = None
        out: dict = {}

        def to_client(h, b):
            out["headers"], out["body"] = h, b

        def to_upstream(h, b):
            # The upstream codec: nginx answers the path the upstream role sent.
            out["upstream_request"] = ([list(p) for p in h], b)
            path = next(v for k, v in h if k == b":path").decode()
            if path not in ANSWERS:
                raise HostError(f"the upstream request went to {path}, which the bench's nginx does not serve")
            ctype, answer = ANSWERS[path]
            resp = [[b":status", b"200"], [b"server", b"nginx/1.22.1"], [b"date", HTTP_DATE.encode()],
                    [b"content-type", ctype.encode()], [b"content-length", str(len(answer)).encode()],
                    [b"last-modified", HTTP_DATE.encode()], [b"connection", b"keep-alive"],
                    [b"etag", b'"6553f100-%x"' % len(answer)], [b"accept-ranges", b"bytes"]]
            self.chain([upstream, route], "response", resp, answer, to_client)

        def router(h, b):
            nonlocal upstream
            cluster = self.route(h)
            c = self.clusters[cluster]
            out["cluster"] = cluster
            for p in h:  # auto_host_rewrite with the endpoint's hostname
                if p[0] == b":authority":
                    p[1] = c["hostname"].encode()
            upstream = self.create("upstream")
            upstream.endpoint_meta = c["meta"]
            route.endpoint_meta = c["meta"]
            self.chain([upstream], "request", h, b, to_upstream)

        local_ok = target in CACHED_TARGETS
        self.chain([route], "request", headers, body, router, local_ok=local_ok)
        if route.local_response and local_ok:
            # Envoy sends a filter's local reply through the encoder filters, the sender's own included.
            status, lbody, lheaders = route.local_response
            route.local_response = None
            resp = [[b":status", str(status).encode()], *lheaders, [b"content-length", str(len(lbody)).encode()]]
            self.chain([route], "response", resp, lbody, to_client)
            out["local"] = True
        elif upstream is None:
            raise HostError("the request never reached the upstream role")
        if upstream is not None:
            self.end(upstream)
        self.end(route)
        self.check(target, out)
        return out

    def check(self, target: str, out: dict) -> None:
        """What bench/ab.py checks (200, the expected text), and that the upstream got a credential."""
        _, _, expect = TARGETS[target]
        if "headers" not in out:
            raise HostError(f"{target}: no answer reached the client")
        status = next((v for k, v in out["headers"] if k == b":status"), b"?")
        text = out["body"].decode("utf-8", "replace")
        if status != b"200" or expect not in text:
            raise HostError(f"{target}: the client got {status.decode()} {text[:300]!r}")
        if out.get("local"):
            return
        up_headers = dict((k, v) for k, v in out["upstream_request"][0])
        if not any(b"upstream-bench" in up_headers.get(k, b"") for k in (b"authorization", b"x-api-key")):
            raise HostError(f"{target}: the upstream request carries no provider credential: {up_headers}")
        length = dict((k, v) for k, v in out["headers"]).get(b"content-length")
        if length is not None and int(length) != len(out["body"]):
            raise HostError(f"{target}: content-length {length.decode()} but {len(out['body'])} body bytes")


# ------------------------------------------------------------------------------------- measuring


def bench_config(target: str = "passthrough") -> dict:
    return run.switchyard_config(10000, 18080, cached=target in CACHED_TARGETS)


def measure(module, engine, cfg, target: str, n: int, warmup: int) -> dict:
    host = Host(module, engine, cfg)
    host.start()
    start_fuel = host.fuel.get(("vm", "start"), 0)
    fuel, calls = defaultdict(list), defaultdict(list)
    for i in range(warmup + n):
        host.request(i, target)
        if i < warmup:
            continue
        for role in ROLES:
            for phase in PHASES:
                fuel[(role, phase)].append(host.fuel.get((role, phase), 0))
        per = Counter()
        for (role, _phase, name), c in host.calls.items():
            per[(role, name)] += c
        for k in set(per) | set(calls):
            calls[k].append(per.get(k, 0))
    for k in calls:  # a call absent from early requests counts 0 there
        calls[k] = [0] * (n - len(calls[k])) + calls[k]
    return {
        "fuel": {k: statistics.median(v) for k, v in fuel.items()},
        "fuel_spread": {k: (min(v), max(v)) for k, v in fuel.items()},
        "calls": {k: statistics.median(v) for k, v in calls.items()},
        "start_fuel": start_fuel,
    }


RUST_ESCAPES = {"$LT$": "<", "$GT$": ">", "$u20$": " ", "$C$": ",", "$RF$": "&", "$BP$": "*", "$SP$": "@",
                "$LP$": "(", "$RP$": ")", "$u7b$": "{", "$u7d$": "}", "$u5b$": "[", "$u5d$": "]", "$u27$": "'",
                "$u7e$": "~", "$u3b$": ";", "$u2b$": "+", "$u22$": '"', "$u21$": "!", "$u3d$": "="}


def demangle(name: str) -> str:
    """A Rust legacy symbol (`_ZN...E`) as a path, without its hash; other names as they are."""
    if not name.startswith("_ZN") or not name.endswith("E"):
        return name
    parts, i, body = [], 0, name[3:-1]
    while i < len(body) and body[i].isdigit():
        j = i
        while body[j].isdigit():
            j += 1
        n = int(body[i:j])
        parts.append(body[j:j + n])
        i = j + n
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    out = "::".join(p[1:] if p.startswith("_$") else p for p in parts).replace("..", "::")
    for k, v in RUST_ESCAPES.items():
        out = out.replace(k, v)
    return out


def short(name: str) -> str:
    """A function's name with module paths cut to their last module (`switchyard::pipeline::usage::Sniffer`
    reads `usage::Sniffer`), so that the same code moved to another module lines up in an A/B profile."""
    return re.sub(r"(?<![A-Za-z0-9_])(?:[a-z_][a-z0-9_]*::)+(?=[a-z_][a-z0-9_]*::)", "", demangle(name))


def profile(module, engine, cfg, target: str, role: str, phase: str, samples: int, warmup: int) -> dict:
    """Stacks at `samples` evenly spaced points of one callback's fuel (each a fresh, replayed VM)."""
    def replay(limit):
        host = Host(module, engine, cfg)
        host.start()
        for i in range(warmup):
            host.request(i, target)
        if limit is None:
            host.request(warmup, target)
            return host.fuel[(role, phase)]
        orig = host.call

        def call(r, p, export, *args):
            if (r, p) == (role, phase):
                host.fuel_limit = limit
                try:
                    return orig(r, p, export, *args)
                finally:
                    host.fuel_limit = None
            return orig(r, p, export, *args)
        host.call = call
        try:
            host.request(warmup, target)
        except OutOfFuel as e:
            return e.frames
        # Wasmtime checks the fuel at function entries and loop heads: a point in the callback's last
        # straight run of code ends it without a check.
        return [(-1, "(after the last fuel check)", 0)]

    total = replay(None)
    self_fuel, incl = Counter(), Counter()
    for k in range(samples):
        frames = replay(int(total * (k + 0.5) / samples))
        names = [short(name) if name else f"func[{idx}]" for idx, name, _ in frames]
        self_fuel[names[0]] += 1
        for name in set(names):
            incl[name] += 1
    return {"total": total, "samples": samples, "self": self_fuel, "incl": incl}


# ------------------------------------------------------------------------------------- output


def fmt(v) -> str:
    return f"{v:,.0f}" if isinstance(v, (int, float)) else str(v)


def table(rows: list[list], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def compare(a, b):
    if b is None:
        return [fmt(a)]
    d = b - a
    ratio = f"{b / a:.3f}" if a else ("-" if not b else "new")
    return [fmt(a), fmt(b), f"{d:+,.0f}", ratio]


def report(results: dict, names: list[str]) -> str:
    two = len(names) == 2
    lines = []
    for target in results[names[0]]:
        ra = results[names[0]][target]
        rb = results[names[1]][target] if two else None
        lines.append(f"\n### {target} ({TARGETS[target][0]}{', stream' if TARGETS[target][1] else ''}): "
                     "fuel per request (median)\n")
        rows = []
        for role in ROLES:
            for phase in PHASES:
                a = ra["fuel"][(role, phase)]
                b = rb["fuel"][(role, phase)] if two else None
                if a or b:
                    rows.append([role, phase, *compare(a, b)])
            a = sum(ra["fuel"][(role, p)] for p in PHASES)
            b = sum(rb["fuel"][(role, p)] for p in PHASES) if two else None
            rows.append([f"**{role}**", "**total**", *compare(a, b)])
        a = sum(ra["fuel"].values())
        b = sum(rb["fuel"].values()) if two else None
        rows.append(["**both**", "**total**", *compare(a, b)])
        hdr = ["role", "phase", "A", "B", "B−A", "B/A"] if two else ["role", "phase", "fuel"]
        lines.append(table(rows, hdr))
        lines.append(f"\nhost calls per request (median; `(vm)` = the host calling the module's allocator, "
                     "indented = by argument)\n")
        keys = sorted(set(ra["calls"]) | (set(rb["calls"]) if two else set()), key=lambda k: (ROLES.index(k[0]), k[1].lstrip(), k[1]))
        rows = []
        for role in ROLES:
            ta = tb = 0
            for k in [k for k in keys if k[0] == role]:
                a = ra["calls"].get(k, 0)
                b = rb["calls"].get(k, 0) if two else None
                if not k[1].startswith(("  ", "(vm)")):
                    ta += a
                    tb += b or 0
                rows.append([role, k[1].replace("  ", "· "), *compare(a, b)])
            rows.append([f"**{role}**", "**total**", *compare(ta, tb if two else None)])
        hdr = ["role", "host call", "A", "B", "B−A", "B/A"] if two else ["role", "host call", "count"]
        lines.append(table(rows, hdr))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="build A (.wasm)")
    ap.add_argument("b", nargs="?", help="build B (.wasm), compared with A")
    ap.add_argument("-n", type=int, default=200, help="requests measured per target (default 200)")
    ap.add_argument("--warmup", type=int, default=20, help="requests before measuring (default 20)")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: " + ", ".join(TARGETS))
    ap.add_argument("--profile", action="append", default=[], metavar="TARGET:ROLE:PHASE",
                    help="per-function profile of one callback (repeatable)")
    ap.add_argument("--samples", type=int, default=200, help="profile samples per callback (default 200)")
    ap.add_argument("--top", type=int, default=25, help="functions shown per profile (default 25)")
    ap.add_argument("--json", help="also write the numbers to this file")
    ap.add_argument("--trace", action="store_true", help="print every host call of one request per build and target")
    args = ap.parse_args()

    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    cfgs = {t: bench_config(t) for t in TARGETS}
    builds = {"A": args.a, **({"B": args.b} if args.b else {})}
    modules = {k: wasmtime.Module.from_file(engine, p) for k, p in builds.items()}
    targets = [t for t in args.targets.split(",") if t]
    for t in targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t}")

    results: dict = {}
    for name, module in modules.items():
        results[name] = {}
        for t in targets:
            results[name][t] = measure(module, engine, cfgs[t], t, args.n, args.warmup)
            print(f"{name} {t}: {sum(results[name][t]['fuel'].values()):,.0f} fuel per request", file=sys.stderr, flush=True)
    if args.trace:
        for name, module in modules.items():
            for t in targets:
                host = Host(module, engine, cfgs[t])
                host.start()
                for i in range(args.warmup):
                    host.request(i, t)
                host.trace = []
                host.request(args.warmup, t)
                print(f"\n## {name} {t}: host calls of one request\n")
                print("\n".join(host.trace))
        return 0
    for name, path in builds.items():
        print(f"{name} = {path}")
    print(f"\nWasm fuel (≈ instructions executed) per request, median of {args.n} after {args.warmup} warm-up "
          "requests, one fresh VM per target; 1 KB bodies as in `make bench`.")
    print(f"VM start (both roots configured): " + ", ".join(f"{k} {fmt(results[k][targets[0]]['start_fuel'])}" for k in builds))
    print(report(results, list(builds)))
    spread = [(n, t, k, v) for n in results for t in results[n] for k, v in results[n][t]["fuel_spread"].items()
              if v[1] - v[0] > 0.02 * max(v[1], 1)]
    if spread:
        print("\nphases whose fuel varies over the run by more than 2% (min, max): " +
              "; ".join(f"{n} {t} {k[0]} {k[1]} {v[0]:,}–{v[1]:,}" for n, t, k, v in spread))

    for spec in args.profile:
        target, role, phase = spec.split(":")
        if target not in TARGETS or role not in ROLES or phase not in PHASES:
            ap.error(f"--profile {spec}: TARGET:ROLE:PHASE with a target, role (route, upstream) and phase ({', '.join(PHASES)})")
        profs = {k: profile(m, engine, cfgs[target], target, role, phase, args.samples, 3) for k, m in modules.items()}
        print(f"\n### profile: {target} {role} {phase} ({args.samples} samples per build; est. fuel = share of "
              "samples × the callback's fuel)\n")
        for kind in ("incl", "self"):
            names = Counter()
            for p in profs.values():
                for fname, c in p[kind].items():
                    names[fname] = max(names[fname], c)
            rows = []
            for fname, _ in names.most_common(args.top):
                est = [p[kind].get(fname, 0) / p["samples"] * p["total"] for p in profs.values()]
                rows.append([fname[:110], *(compare(*est) if len(est) == 2 else [fmt(est[0])])])
            hdr = ["function", "A", "B", "B−A", "B/A"] if len(profs) == 2 else ["function", "fuel"]
            print(f"{'inclusive (the function and what it calls)' if kind == 'incl' else 'self (the function itself)'}\n")
            print(table(rows, hdr) + "\n")

    if args.json:
        out = {n: {t: {"fuel": {f"{r}.{p}": v for (r, p), v in res["fuel"].items()},
                       "calls": {f"{r}.{c.strip()}": v for (r, c), v in res["calls"].items()}}
                   for t, res in rt.items()} for n, rt in results.items()}
        Path(args.json).write_text(json.dumps({"builds": builds, "results": out}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
