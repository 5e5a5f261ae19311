"""Config handling through the real Envoy: a wrong config is refused by `switchyard check` and by Envoy,
both naming the field; the shipped gateway file, rendered, serves with no provider keys at all."""

from __future__ import annotations

import json
import os
import re
import subprocess

import openai
import pytest
import yaml

import harness
from harness import CLI, DEMO_GATEWAY, ROOT, Envoy, cli, demo_config, envoy_binary, gateway_file, plugin_configs, render

DEMO_KEY = "sk-switchyard-demo"
ISTIO_GATEWAY = ROOT / "envoy" / "istio" / "gateway.yaml"
ISTIO_YAML = ROOT / "envoy" / "istio" / "switchyard.yaml"


def demo_gateway() -> dict:
    """The shipped gateway file, as a dict to change."""
    return yaml.safe_load(DEMO_GATEWAY.read_text())


# name, mutation (of a gateway file, or of the filter's JSON configuration: the same paths), field, reason,
# and whether the compiler refuses the file (a missing required variable is Envoy's environment's business:
# the file renders, and Envoy refuses to start).
BAD = [
    ("unknown kind", lambda p: p["providers"]["local"].update(kind="lokal"), "providers.local.kind", "unknown provider kind", True),
    ("model names no provider", lambda p: p["models"]["echo"].update(provider="nobody"), "models.echo.provider", "no provider 'nobody'", True),
    ("bad digest", lambda p: p["keys"][0].update(sha256="1234"), "keys[0].sha256", "64 hex digits", True),
    ("typo field", lambda p: p.update(modles={}), "modles", "unknown field", True),
    ("required env", lambda p: p["providers"]["openai"]["api_key"].pop("optional"), "providers.openai.api_key.env", "OPENAI_API_KEY is not set", False),
]


def check_without_provider_keys(path) -> subprocess.CompletedProcess:
    """`switchyard check` in an environment with no provider variables (whatever the test runner's holds)."""
    return subprocess.run([str(CLI), "check", str(path)], capture_output=True, text=True, timeout=30, cwd=ROOT,
                          env={"PATH": os.environ.get("PATH", "")})


@pytest.mark.parametrize("name,mutate,field,reason,compiler_refuses", BAD, ids=[b[0] for b in BAD])
def test_envoy_refuses_bad_config(name, mutate, field, reason, compiler_refuses):
    doc = demo_gateway()
    mutate(doc)
    path = gateway_file(doc)
    checked = check_without_provider_keys(path)
    if compiler_refuses:
        assert checked.returncode == 1, checked.stdout
        assert f"invalid switchyard config at '{field}'" in checked.stderr and reason in checked.stderr, checked.stderr
        rendered = cli("render", str(path))
        assert rendered.returncode == 1 and f"'{field}'" in rendered.stderr, rendered.stderr
        # The renderer never writes this config; Envoy config written by hand (README, "Writing Envoy config
        # by hand") can, and the filter must refuse it itself. So, by hand: the shipped file rendered, then
        # the same mutation applied to its plugin configuration (one anchored config, both roles).
        cfg = demo_config()
        for configuration in {id(pc["configuration"]): pc["configuration"] for pc in plugin_configs(cfg)}.values():
            plugin = json.loads(configuration["value"])
            mutate(plugin)
            configuration["value"] = json.dumps(plugin)
    else:
        # The file is valid; check says it cannot start here, and the rendered config makes Envoy refuse.
        assert checked.returncode == 0, checked.stderr
        assert "not startable with this environment" in checked.stdout and f"'{field}'" in checked.stdout, checked.stdout
        assert reason in checked.stdout
        cfg = render(path)
    envoy = Envoy(cfg)
    try:
        code = envoy.wait_exit(timeout=30)
    finally:
        envoy.stop()
    assert code != 0, "envoy started with a bad switchyard config"
    log = envoy.log()
    assert f"invalid switchyard config at '{field}'" in log, log[-3000:]
    assert reason in log


def test_demo_config_serves_without_provider_keys():
    envoy = Envoy(demo_config()).wait_ready()
    try:
        client = harness.openai_client(base_url=f"{envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
        assert [m.id for m in client.models.list()] == ["echo"]
        r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "first call"}])
        assert r.choices[0].message.content == "first call"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    finally:
        envoy.stop()
    assert "provider 'openai' disabled" in envoy.log()


def test_demo_config_enables_providers_from_environment():
    envoy = Envoy(demo_config(), env={"OPENAI_API_KEY": "sk-from-env-SECRET-zzz"}).wait_ready()
    try:
        client = harness.openai_client(base_url=f"{envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
        ids = sorted(m.id for m in client.models.list())
        assert ids == ["echo", "gpt-4.1", "gpt-4o-mini", "gpt-canary", "smart", "text-embedding-3-small"]
    finally:
        envoy.stop()
    assert "sk-from-env-SECRET-zzz" not in envoy.log()
    env = {"ANTHROPIC_API_KEY": "sk-ant-ENV-SECRET", "GEMINI_API_KEY": "AIza-ENV-SECRET",
           "AWS_ACCESS_KEY_ID": "AKIAENVSECRET", "AWS_SECRET_ACCESS_KEY": "aws-ENV-SECRET"}
    envoy = Envoy(demo_config(), env=env).wait_ready()
    try:
        client = harness.openai_client(base_url=f"{envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
        ids = sorted(m.id for m in client.models.list())
        assert ids == ["claude-sonnet-4-5", "echo", "gemini-2.5-flash", "nova-lite", "smart"]
    finally:
        envoy.stop()
    for secret in env.values():
        assert secret not in envoy.log()


def test_shipped_istio_and_compose_files_agree_with_envoy_yaml():
    """The Istio and docker-compose examples cannot run here (no Kubernetes, no Docker engine); what can be
    checked is checked: the shipped Istio rendering has one plugin config in both roles, the Envoy config
    rendered from the same gateway file carries that config and serves with it in the real filter, and
    compose mounts the .wasm where envoy.yaml looks for it."""
    docs = [d for d in yaml.safe_load_all(ISTIO_YAML.read_text()) if d is not None]
    wasm_plugin = next(d for d in docs if d["kind"] == "WasmPlugin")
    assert wasm_plugin["spec"]["pluginName"] == "switchyard"
    route_cfg = wasm_plugin["spec"]["pluginConfig"]
    upstream_patches = [d for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"].startswith("switchyard-upstream")]
    assert upstream_patches, "the upstream role"
    for patch in upstream_patches:
        wasm = patch["spec"]["configPatches"][0]["patch"]["value"]["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"][0]["typed_config"]["config"]
        assert wasm["root_id"] == "switchyard-upstream" and wasm["allow_on_headers_stop_iteration"] is True
        assert json.loads(wasm["configuration"]["value"]) == route_cfg

    cfg = render(ISTIO_GATEWAY)
    pcs = list(plugin_configs(cfg))
    assert len(pcs) >= 2, "both roles"
    # The same config but for the rate-limit service's cluster, which Istio names outbound|PORT||HOST.
    assert route_cfg["fleet_limits"]["cluster"] == "outbound|8081||switchyard-limits.switchyard.svc.cluster.local"
    for pc in pcs:
        plain = json.loads(pc["configuration"]["value"])
        assert plain["fleet_limits"]["cluster"] == "ratelimit"
        assert {**plain, "fleet_limits": route_cfg["fleet_limits"]} == route_cfg
    envoy = Envoy(cfg).wait_ready()
    try:
        client = harness.openai_client(base_url=f"{envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
        assert [m.id for m in client.models.list()] == ["echo"]
    finally:
        envoy.stop()

    compose = yaml.safe_load((ROOT / "envoy" / "docker-compose.yaml").read_text())["services"]["switchyard"]
    wasm_file = next(plugin_configs(demo_config()))["vm_config"]["code"]["local"]["filename"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1)[::-1] for v in compose["volumes"])
    assert f"{compose['working_dir']}/{wasm_file}" in mounts
    assert mounts[f"{compose['working_dir']}/{wasm_file}"] == "../dist/switchyard.wasm"
    assert compose["image"] == "envoyproxy/envoy:v1.40.0"


def test_readme_plain_provider_recipe_validates(tmp_path):
    """The README's recipe for a plain (non-TLS) provider, added to the shipped gateway file, renders to a
    valid Envoy config whose cluster speaks plain HTTP/1.1 (the TLS clusters' ALPN would not be valid for
    it: a plain cluster needs explicit_http_config)."""
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"`(ollama: \{ kind: openai_compatible, url: http://[^`]+\})`", readme).group(1)
    doc = demo_gateway()
    doc["providers"].update(yaml.safe_load(snippet))
    doc["models"]["llama"] = {"provider": "ollama", "model": "llama3"}
    cfg = render(doc)
    cluster = next(c for c in cfg["static_resources"]["clusters"] if c["name"] == "ollama")
    assert "transport_socket" not in cluster
    opts = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "explicit_http_config" in opts and "auto_config" not in opts
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
