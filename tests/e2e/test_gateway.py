"""Issue 16: the gateway file and the `switchyard` CLI. Bad files are refused naming the field, with a
non-zero exit; the shipped rendered files are not stale; every rendered file passes `envoy --mode
validate`; the Istio rendering is well formed and its plugin config loads in the real filter; a key made by
`switchyard key new` works; `check` says which providers are off for want of a key."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest
import yaml

import harness
from harness import (
    DEMO_GATEWAY,
    DEMO_YAML,
    ROOT,
    Envoy,
    MockUpstream,
    cli,
    envoy_binary,
    gateway_file,
    mock_url,
    plugin_configs,
    render,
    render_istio,
)
from openai_wire import echo_responder

ISTIO_GATEWAY = ROOT / "envoy" / "istio" / "gateway.yaml"
ISTIO_YAML = ROOT / "envoy" / "istio" / "switchyard.yaml"
FLEET_GATEWAY = ROOT / "envoy" / "fleet" / "gateway.yaml"
FLEET_YAML = ROOT / "envoy" / "fleet" / "envoy.yaml"
IDENTITY_GATEWAY = ROOT / "envoy" / "identity" / "gateway.yaml"
IDENTITY_YAML = ROOT / "envoy" / "identity" / "envoy.yaml"
IDENTITY_ISTIO_YAML = ROOT / "envoy" / "identity" / "istio.yaml"
DEMO_KEY = "sk-switchyard-demo"


def good() -> dict:
    return {
        "providers": {
            "local": {"kind": "mock"},
            "openai": {"kind": "openai", "api_key": {"env": "OPENAI_API_KEY", "optional": True}},
            "ollama": {"kind": "openai_compatible", "url": "http://127.0.0.1:11434"},
        },
        "models": {
            "echo": {"provider": "local"},
            "gpt": {"provider": "openai", "model": "gpt-4o-mini"},
            "both": {"targets": [{"provider": "openai"}, {"provider": "ollama", "model": "llama3"}]},
        },
        "keys": [{"id": "demo", "models": ["*"], "sha256": hashlib.sha256(DEMO_KEY.encode()).hexdigest()}],
    }


def mutated(path: str, value) -> dict:
    """`good()` with the value at a dotted path (list indexes as numbers) set, or removed when None."""
    doc = good()
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        node.pop(last)
    else:
        node[last] = value
    return doc


BAD = [
    ("target names no provider", mutated("models.both.targets.1", {"provider": "nope"}),
     "models.both.targets[1].provider", "names no provider 'nope'"),
    ("unknown kind", mutated("providers.local.kind", "lokal"), "providers.local.kind", "unknown provider kind"),
    ("key's model list", mutated("keys.0.models", ["ghost"]), "keys[0].models[0]", "ghost"),
    ("url without scheme", mutated("providers.ollama.url", "127.0.0.1:11434"), "providers.ollama.url", "http:// or https://"),
    ("url required", mutated("providers.ollama.url", None), "providers.ollama.url", "is required"),
    ("split without weights", mutated("models.both.strategy", "split"), "models.both.targets[0].weight", "required"),
    ("a 429 tried twice", mutated("models.both.retries", 2), "models.both.retries", "0 to 1"),
    ("cluster taken", mutated("models.both.cluster", "ollama"), "models.both.cluster", "already providers.ollama's"),
    ("bad timeout", mutated("models.gpt.timeout", "fast"), "models.gpt.timeout", "duration"),
    ("admin exposed", mutated("admin", {"address": "0.0.0.0", "port": 9901}), "admin.address", "loopback"),
    ("typo", mutated("modles", {}), "modles", "unknown field"),
    ("jwt key set without a host", mutated("jwt_providers", {"idp": {"issuer": "https://idp.example.com", "audiences": ["api"],
                                                                    "jwks": "https:///keys"}}), "jwt_providers.idp.jwks", "host"),
    ("jwt providers, tokens not accepted", mutated("jwt_providers", {"idp": {"issuer": "https://idp.example.com", "audiences": ["api"],
                                                                           "jwks": "https://idp.example.com/keys"}}),
     "jwt_providers", "identity.accept"),
]


@pytest.mark.parametrize("name,doc,field,reason", BAD, ids=[b[0] for b in BAD])
def test_check_refuses_bad_files_naming_the_field(name, doc, field, reason):
    out = cli("check", str(gateway_file(doc)))
    assert out.returncode == 1, out.stdout
    assert f"invalid switchyard config at '{field}'" in out.stderr, out.stderr
    assert reason in out.stderr
    # render refuses the same file the same way.
    r = cli("render", str(gateway_file(doc)))
    assert r.returncode == 1 and r.stdout == "" and f"'{field}'" in r.stderr


def test_unreadable_files_and_bad_usage(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("providers: [\n")
    out = cli("check", str(bad_yaml))
    assert out.returncode == 1 and "not valid YAML" in out.stderr and "line" in out.stderr
    out = cli("check", str(tmp_path / "missing.yaml"))
    assert out.returncode == 1 and "missing.yaml" in out.stderr
    out = cli("frobnicate")
    assert out.returncode == 2 and "usage:" in out.stderr


def test_yaml_and_json_files_render_alike(tmp_path):
    y = tmp_path / "g.yaml"
    y.write_text(yaml.safe_dump(good()))
    assert cli("render", str(y)).stdout == cli("render", str(gateway_file(good()))).stdout


def test_the_shipped_rendered_files_are_not_stale():
    out = cli("render", str(DEMO_GATEWAY))
    assert out.returncode == 0, out.stderr
    assert out.stdout == DEMO_YAML.read_text(), "envoy/envoy.yaml is stale: run `make render`"
    out = cli("render", "--istio", str(ISTIO_GATEWAY))
    assert out.returncode == 0, out.stderr
    assert out.stdout == ISTIO_YAML.read_text(), "envoy/istio/switchyard.yaml is stale: run `make render`"
    out = cli("render", str(FLEET_GATEWAY))
    assert out.returncode == 0, out.stderr
    assert out.stdout == FLEET_YAML.read_text(), "envoy/fleet/envoy.yaml is stale: run `make render`"
    out = cli("render", str(IDENTITY_GATEWAY))
    assert out.returncode == 0, out.stderr
    assert out.stdout == IDENTITY_YAML.read_text(), "envoy/identity/envoy.yaml is stale: run `make render`"
    out = cli("render", "--istio", str(IDENTITY_GATEWAY))
    assert out.returncode == 0, out.stderr
    assert out.stdout == IDENTITY_ISTIO_YAML.read_text(), "envoy/identity/istio.yaml is stale: run `make render`"


RENDERED = {
    "demo": DEMO_GATEWAY,
    "fleet demo": FLEET_GATEWAY,
    "identity example (jwt_authn, an https key set)": IDENTITY_GATEWAY,
    "mixed tls and plain split, services": {
        **good(),
        "models": {
            "echo": {"provider": "local"},
            "canary": {"strategy": "split", "timeout": "45s", "targets": [
                {"provider": "openai", "model": "a", "weight": 3}, {"provider": "ollama", "model": "b", "weight": 1}]},
        },
        "services": {"ratelimit": {"url": "http://127.0.0.1:8081", "protocol": "grpc"},
                     "idp": {"url": "https://login.example.com", "protocol": "http1"}},
        "listener": {"address": "0.0.0.0", "port": 18080},
    },
    "every provider kind": {
        "providers": {
            "oa": {"kind": "openai", "api_key": "k"},
            "az": {"kind": "azure_openai", "api_key": "k", "api_version": "2024-10-21", "url": "https://r.openai.azure.com"},
            "an": {"kind": "anthropic", "api_key": "k"},
            "ge": {"kind": "gemini", "api_key": "k"},
            "ve": {"kind": "vertex", "api_key": "k", "project": "p", "location": "europe-west4"},
            "be": {"kind": "bedrock", "region": "eu-west-1", "access_key_id": "a", "secret_access_key": "s"},
        },
        "models": {"m-" + p: {"provider": p} for p in ["oa", "az", "an", "ge", "ve", "be"]},
        "keys": [],
    },
}


@pytest.mark.parametrize("name", list(RENDERED))
def test_every_rendered_file_validates_in_envoy(name, tmp_path):
    cfg = render(RENDERED[name])
    for pc in plugin_configs(cfg):
        pc["vm_config"]["code"]["local"]["filename"] = str(ROOT / "dist" / "switchyard.wasm")
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_rendered_clusters_follow_the_urls():
    cfg = render(RENDERED["every provider kind"])
    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    hosts = {n: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["hostname"] for n, c in clusters.items()}
    assert hosts == {"oa": "api.openai.com", "az": "r.openai.azure.com", "an": "api.anthropic.com",
                     "ge": "generativelanguage.googleapis.com", "ve": "europe-west4-aiplatform.googleapis.com",
                     "be": "bedrock-runtime.eu-west-1.amazonaws.com"}
    assert all("transport_socket" in c for c in clusters.values()), "https URLs get TLS"
    cfg = render(RENDERED["mixed tls and plain split, services"])
    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    assert "transport_socket" not in clusters["ollama"] and clusters["ollama"]["type"] == "STATIC"
    canary = clusters["canary"]
    eps = canary["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["load_balancing_weight"] for e in eps] == [3, 1]
    assert [e["metadata"]["filter_metadata"]["switchyard"] for e in eps] == [
        {"provider": "openai", "model": "a"}, {"provider": "ollama", "model": "b"}]
    assert "http2_protocol_options" in json.dumps(clusters["ratelimit"])
    assert clusters["idp"]["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    # A service over https is reached with its name as SNI and its certificate checked against that name
    # (the file above passes `envoy --mode validate` with it).
    idp_tls = clusters["idp"]["transport_socket"]["typed_config"]
    assert idp_tls["sni"] == "login.example.com"
    assert idp_tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "login.example.com"}}]
    assert idp_tls["common_tls_context"]["alpn_protocols"] == ["http/1.1"]
    routes = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    canary_route = next(r for r in routes if r["match"].get("headers", [{}])[0].get("string_match", {}).get("exact") == "canary")
    assert canary_route["route"]["timeout"] == "45s" and canary_route["route"]["cluster"] == "canary"
    assert canary_route["route"]["retry_policy"]["retriable_status_codes"] == [429]


def test_istio_rendering_is_well_formed():
    docs = render_istio(ISTIO_GATEWAY)
    kinds = [(d["apiVersion"], d["kind"]) for d in docs]
    assert kinds.count(("extensions.istio.io/v1alpha1", "WasmPlugin")) == 1
    assert ("networking.istio.io/v1", "VirtualService") in kinds
    assert kinds.count(("networking.istio.io/v1", "ServiceEntry")) == 2  # openai, anthropic (the mock has none)
    assert kinds.count(("networking.istio.io/v1", "DestinationRule")) == 2
    assert kinds.count(("networking.istio.io/v1alpha3", "EnvoyFilter")) == 3  # hold headers + 2 upstream roles
    for d in docs:
        assert d["metadata"]["name"] and d["metadata"]["namespace"] == "istio-system"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", d["metadata"]["name"]), d["metadata"]["name"]
        assert isinstance(d["spec"], dict) and d["spec"]
    wp = next(d for d in docs if d["kind"] == "WasmPlugin")
    assert wp["spec"]["url"].startswith("oci://") and wp["spec"]["pluginName"] == "switchyard"
    plugin = wp["spec"]["pluginConfig"]
    # Every upstream role's configuration is the WasmPlugin's pluginConfig, as JSON.
    ups = [d for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"].startswith("switchyard-upstream-")]
    for u in ups:
        value = u["spec"]["configPatches"][0]["patch"]["value"]
        hf = value["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
        assert json.loads(hf[0]["typed_config"]["config"]["configuration"]["value"]) == plugin
        assert hf[-1]["name"] == "envoy.filters.http.upstream_codec"
    vs = next(d for d in docs if d["kind"] == "VirtualService")
    routed = {r["match"][0]["headers"]["x-switchyard-route"]["exact"] for r in vs["spec"]["http"]}
    assert routed == {"gpt-4o-mini", "claude-sonnet-4-5"}
    hold = next(d for d in docs if d["metadata"]["name"] == "switchyard-hold-headers")
    assert hold["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True


def test_istio_refuses_a_multi_target_model():
    out = cli("render", "--istio", str(gateway_file(good())))
    assert out.returncode == 1 and "models.both" in out.stderr and "Istio" in out.stderr


def test_istio_plugin_config_loads_in_the_real_filter():
    """The pluginConfig of the Istio rendering, loaded as the configuration of both roles of a real Envoy."""
    plugin = next(d for d in render_istio(ISTIO_GATEWAY) if d["kind"] == "WasmPlugin")["spec"]["pluginConfig"]
    cfg = render(DEMO_GATEWAY)
    for pc in plugin_configs(cfg):
        pc["configuration"]["value"] = json.dumps(plugin)
    envoy = Envoy(cfg).wait_ready()
    try:
        client = harness.openai_client(base_url=f"{envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
        assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "istio"}]).choices[0].message.content == "istio"
        assert [m.id for m in client.models.list()] == ["echo"]
    finally:
        envoy.stop()


def test_a_key_from_key_new_opens_the_gateway():
    out = cli("key", "new", "team-a")
    assert out.returncode == 0, out.stderr
    key = re.search(r"(sk-sy-[0-9a-f]{48})", out.stdout).group(1)
    digest = re.search(r"sha256: ([0-9a-f]{64})", out.stdout).group(1)
    assert hashlib.sha256(key.encode()).hexdigest() == digest
    assert cli("key", "new", "team-a").stdout != out.stdout, "every key is fresh"
    assert cli("key", "new", "bad id!").returncode == 1
    upstream = MockUpstream(echo_responder)
    doc = good()
    doc["providers"]["ollama"]["url"] = mock_url(upstream)
    doc["models"] = {"llama": {"provider": "ollama", "model": "llama3"}}
    doc["keys"] = [{"id": "team-a", "models": ["llama"], "sha256": digest}]
    envoy = Envoy(render(doc)).wait_ready()
    try:
        client = harness.openai_client(base_url=f"{envoy.base}/v1", api_key=key, max_retries=0, timeout=10)
        r = client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == "served by llama3"
        assert upstream.last().path == "/v1/chat/completions"
        assert "x-switchyard-route" not in upstream.last().headers, "the routing header never reaches a provider"
    finally:
        envoy.stop()
        upstream.close()


def test_check_summarises_what_is_served_and_what_is_off():
    env = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-x"}
    out = subprocess.run([str(ROOT / "dist" / "switchyard"), "check", str(DEMO_GATEWAY)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "listener  http://127.0.0.1:10000/v1" in out.stdout
    served = re.search(r"models\s+(.*)", out.stdout).group(1)
    assert "echo" in served and "gpt-4o-mini" in served and "claude-sonnet-4-5" not in served
    assert re.search(r"off\s+anthropic \(no ANTHROPIC_API_KEY\): claude-sonnet-4-5", out.stdout), out.stdout
    assert "off       openai" not in out.stdout
