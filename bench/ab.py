"""Interleaved A/B of two Switchyard builds in Envoy: is a change faster or slower than the noise?

Two Envoys with the same configuration as `make bench` (key auth and every limit on) run side by side on
CPU 0, one with build A, one with build B; the load generator and the nginx mock run on CPU 1. Each
repetition measures every (target, concurrency) cell on A then B, alternating which goes first, so that
the machine's drift falls on both. Prints medians and the B/A ratio per cell.

    make bench-ab A=/tmp/old.wasm B=dist/switchyard.wasm [REPS=8 DURATION=5] [AB_ROUTES=shared] [AB_CACHED=1]
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402

REPS = int(os.environ.get("REPS", "8"))
DURATION = int(os.environ.get("DURATION", "5"))
TARGETS = {  # name: (model, stream, expected text)
    "passthrough": ("bench-openai", False, "river"),
    "translating": ("bench-claude", False, "chat.completion"),
    "streaming": ("bench-stream", True, "[DONE]"),
}
CONCURRENCY = [1, 32]

# AB_CACHED=1: both builds also serve the cached model of `make bench`'s cache row (builds from before the
# response cache refuse that config), and a `cache-hit` target sends it the same request every time.
if os.environ.get("AB_CACHED") == "1":
    TARGETS["cache-hit"] = ("bench-cached", False, "river")


# AB_ROUTES=shared: both builds get only the catch-all route (`cluster_header`), so that Envoy does the same
# routing work for both; builds from before the per-model routes (which set no `x-switchyard-route`) never
# match those routes, while newer ones pay for their retry policy. Measures the filter alone.
SHARED_ROUTE = os.environ.get("AB_ROUTES") == "shared"


def config_for(wasm: str, port: int, upstream: int) -> dict:
    cfg = run.switchyard_config(port, upstream, cached="cache-hit" in TARGETS)
    if SHARED_ROUTE:
        hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        for vh in hcm["route_config"]["virtual_hosts"]:
            vh["routes"] = [r for r in vh["routes"] if not r["match"].get("headers")]
    for pc in run.plugin_configs(cfg):
        pc["vm_config"]["code"]["local"]["filename"] = str(Path(wasm).resolve())
    return cfg


def main() -> int:
    a_wasm, b_wasm = sys.argv[1], sys.argv[2]
    procs = []
    try:
        nginx, up = run.start_nginx()
        procs.append(nginx)
        ports = {"A": run.free_port(), "B": run.free_port()}
        envoys = {}
        for side, wasm in (("A", a_wasm), ("B", b_wasm)):
            envoys[side] = run.start_envoy(f"envoy-{side}", config_for(wasm, ports[side], up), ports[side])
            procs.append(envoys[side])
        auth = {"Authorization": f"Bearer {run.KEY}"}
        for side in ports:
            for model, stream, expect in TARGETS.values():
                run.check(ports[side], "/v1/chat/completions", run.chat_body(1024, model, stream), auth, expect)
        cells: dict = {}
        for rep in range(REPS):
            order = ["A", "B"] if rep % 2 == 0 else ["B", "A"]
            for name, (model, stream, _) in TARGETS.items():
                body = run.chat_body(1024, model, stream)
                for conc in CONCURRENCY:
                    for side in order:
                        proc = envoys[side]
                        before = proc.cpu_seconds()
                        r = run.wrk(f"http://127.0.0.1:{ports[side]}/v1/chat/completions", body, auth, conc, DURATION)
                        used = proc.cpu_seconds() - before
                        r["cpu_us_per_req"] = used / r["requests"] * 1e6 if r["requests"] else None
                        cells.setdefault((name, conc, side), []).append(r)
                        print(f"rep {rep} {side} {name:12} c={conc:<3} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:.3f} ms"
                              f"  cpu {r['cpu_us_per_req'] or 0:.1f} us/req  non2xx {r['non_2xx']}", flush=True)
        rss = {side: round(p.rss_mb(), 1) for side, p in envoys.items()}
    finally:
        for p in reversed(procs):
            p.stop()

    def med(name, conc, side, field):
        xs = [r[field] for r in cells[(name, conc, side)] if r[field] is not None]
        return statistics.median(xs) if xs else float("nan")

    print(f"\nA = {a_wasm}\nB = {b_wasm}\n{REPS} interleaved reps x {DURATION} s, 1 KB bodies; medians\n")
    print("| target | c | A req/s | B req/s | B/A | A CPU us/req | B CPU us/req | A p50 ms | B p50 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in TARGETS:
        for conc in CONCURRENCY:
            a, b = med(name, conc, "A", "rps"), med(name, conc, "B", "rps")
            print(f"| {name} | {conc} | {a:.0f} | {b:.0f} | {b / a:.3f} | {med(name, conc, 'A', 'cpu_us_per_req'):.1f} | "
                  f"{med(name, conc, 'B', 'cpu_us_per_req'):.1f} | {med(name, conc, 'A', 'p50_ms'):.3f} | "
                  f"{med(name, conc, 'B', 'p50_ms'):.3f} |")
    print(f"\nRSS after the run: A {rss['A']} MB, B {rss['B']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
