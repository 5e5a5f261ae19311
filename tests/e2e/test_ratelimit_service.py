"""Issue 17: the shipped rate-limit service speaks Envoy's standard protocol. Envoy's OWN
`envoy.filters.http.ratelimit` filter (no Wasm here), with a descriptor from a request header, pointed at
dist/switchyard-limits with a rules file of N requests per minute, over a real redis-server: N requests
pass and the next is refused with 429, per header value; Envoy reads our statuses into its
x-ratelimit-* headers; 3N parallel requests through an Envoy with two workers admit exactly N; Redis
stopped → the service answers UNAVAILABLE and Envoy applies its failure mode (open here, closed on a
second listener), and the limit holds again once Redis is back."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import pytest

from fleet import LimitsService, RedisServer
from harness import Envoy, MockUpstream, Reply, request

N = 3
DOMAIN = "edge"
RULES = f"""\
domain: {DOMAIN}
descriptors:
  - key: client
    rate_limit:
      unit: minute
      requests_per_unit: {N}
  - key: client
    value: unlimited
    unlimited: true
"""


def ok_responder(_rec):
    return Reply(200, {"content-type": "text/plain"}, b"upstream ok")


def ratelimit_filter(failure_mode_deny: bool) -> dict:
    return {
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": DOMAIN,
            "timeout": "0.5s",
            "failure_mode_deny": failure_mode_deny,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limit_service": {
                "transport_api_version": "V3",
                "grpc_service": {"envoy_grpc": {"cluster_name": "switchyard_limits"}},
            },
        },
    }


def config(service: LimitsService, upstream: MockUpstream, failure_mode_deny: bool = False) -> dict:
    """A plain Envoy: one listener, Envoy's ratelimit filter, a route sending header `x-client` as the
    descriptor `client`, the mock upstream, and the service's gRPC cluster."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {"virtual_hosts": [{
            "name": "all",
            "domains": ["*"],
            "routes": [{
                "match": {"prefix": "/"},
                "route": {
                    "cluster": "upstream",
                    "rate_limits": [{"actions": [{"request_headers": {"header_name": "x-client", "descriptor_key": "client"}}]}],
                },
            }],
        }]},
        "http_filters": [
            ratelimit_filter(failure_mode_deny),
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
            }],
            "clusters": [
                {
                    "name": "upstream", "type": "STATIC", "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream.port}}}}]}]},
                },
                service.cluster(),
            ],
        },
    }


class Stack:
    def __init__(self):
        self.redis = RedisServer().start()
        self.rules = Path(self.redis.dir) / "rules.yaml"
        self.rules.write_text(RULES)
        self.service = LimitsService(self.redis.url, rules=[self.rules], redis_timeout_ms=50).start()
        self.upstream = MockUpstream(ok_responder)
        self.envoy = Envoy(config(self.service, self.upstream), concurrency=2).wait_ready()
        self.closed = Envoy(config(self.service, self.upstream, failure_mode_deny=True)).wait_ready()

    def get(self, client: str | None, envoy: Envoy | None = None):
        headers = {"x-client": client} if client is not None else {}
        return request("GET", (envoy or self.envoy).base + "/", headers=headers)

    def close(self):
        for e in (self.envoy, self.closed):
            e.stop()
        self.upstream.close()
        self.service.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    yield s
    s.close()


def test_n_pass_then_429_per_header_value(stack):
    for i in range(N):
        status, headers, body = stack.get("alice")
        assert (status, body) == (200, b"upstream ok"), (i, status, body)
        # Envoy turned our DescriptorStatus into its x-ratelimit-* headers.
        assert headers["x-ratelimit-limit"].startswith(f"{N}, {N};w=60"), headers
        assert headers["x-ratelimit-remaining"] == str(N - 1 - i), headers
    status, headers, _ = stack.get("alice")
    assert status == 429
    assert headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(headers["x-ratelimit-reset"]) <= 20, headers
    # Each value of the header is its own bucket; `unlimited` is exempt; no header, no descriptor.
    assert stack.get("bob")[0] == 200
    for _ in range(N + 2):
        assert stack.get("unlimited")[0] == 200
        assert stack.get(None)[0] == 200
    # The service counted Envoy's calls.
    assert stack.service.metric('switchyard_limits_requests_total{result="over"}') >= 1
    assert stack.service.metric('switchyard_limits_descriptors_total{kind="standard"}') >= N + 2


def test_parallel_requests_admit_exactly_n(stack):
    with concurrent.futures.ThreadPoolExecutor(max_workers=3 * N) as pool:
        statuses = list(pool.map(lambda _: stack.get("parallel")[0], range(3 * N)))
    assert sorted(statuses) == [200] * N + [429] * (2 * N), statuses
    assert stack.upstream.requests and sum(1 for r in stack.upstream.requests if r.headers.get("x-client") == "parallel") == N


def test_redis_down_is_envoys_failure_mode_then_recovers(stack):
    stack.redis.stop()
    try:
        started = time.time()
        # Fail open (the default listener): admitted although the limit is spent.
        for _ in range(N + 1):
            status, _, _ = stack.get("carol")
            assert status == 200
        # Fail closed (failure_mode_deny): Envoy refuses with its own 500.
        assert stack.get("carol", stack.closed)[0] == 500
        assert time.time() - started < 3, "a Redis outage must never hang requests"
        assert stack.service.healthz() == 503
    finally:
        stack.redis.start()
    # Back: the service recovers by itself and the limit is counted again (Redis came back empty).
    deadline = time.time() + 10
    while stack.get("dave")[0] != 200 or stack.service.healthz() != 200:
        assert time.time() < deadline, "no recovery"
        time.sleep(0.1)
    statuses = [stack.get("erin")[0] for _ in range(N + 1)]
    assert statuses == [200] * N + [429]
    log = stack.service.log()
    assert log.count("redis is unavailable") == 1, log
    assert log.count("redis is back") == 1, log
