"""Config handling through the real Envoy: a wrong config makes Envoy refuse to start, naming the field;
the shipped envoy/envoy.yaml serves with no provider keys at all."""

from __future__ import annotations

import json

import openai
import pytest

from harness import Envoy, demo_config, plugin_configs

DEMO_KEY = "sk-switchyard-demo"


def with_plugin(mutate) -> dict:
    cfg = demo_config()
    pc = next(plugin_configs(cfg))
    plugin = json.loads(pc["configuration"]["value"])
    mutate(plugin)
    pc["configuration"]["value"] = json.dumps(plugin)
    return cfg


BAD = [
    ("unknown kind", lambda p: p["providers"]["local"].update(kind="lokal"), "providers.local.kind", "unknown provider kind"),
    ("model names no provider", lambda p: p["models"]["echo"].update(provider="nobody"), "models.echo.provider", "no provider 'nobody'"),
    ("bad digest", lambda p: p["keys"][0].update(sha256="1234"), "keys[0].sha256", "64 hex digits"),
    ("typo field", lambda p: p.update(modles={}), "modles", "unknown field"),
    ("required env", lambda p: p["providers"]["openai"]["api_key"].pop("optional"), "providers.openai.api_key.env", "OPENAI_API_KEY is not set"),
]


@pytest.mark.parametrize("name,mutate,field,reason", BAD, ids=[b[0] for b in BAD])
def test_envoy_refuses_bad_config(name, mutate, field, reason):
    envoy = Envoy(with_plugin(mutate))
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
        client = openai.OpenAI(base_url=f"{envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
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
        client = openai.OpenAI(base_url=f"{envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
        ids = sorted(m.id for m in client.models.list())
        assert ids == ["echo", "gpt-4.1", "gpt-4o-mini", "gpt-canary", "smart", "text-embedding-3-small"]
    finally:
        envoy.stop()
    assert "sk-from-env-SECRET-zzz" not in envoy.log()
    env = {"ANTHROPIC_API_KEY": "sk-ant-ENV-SECRET", "GEMINI_API_KEY": "AIza-ENV-SECRET",
           "AWS_ACCESS_KEY_ID": "AKIAENVSECRET", "AWS_SECRET_ACCESS_KEY": "aws-ENV-SECRET"}
    envoy = Envoy(demo_config(), env=env).wait_ready()
    try:
        client = openai.OpenAI(base_url=f"{envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
        ids = sorted(m.id for m in client.models.list())
        assert ids == ["claude-sonnet-4-5", "echo", "gemini-2.5-flash", "nova-lite", "smart"]
    finally:
        envoy.stop()
    for secret in env.values():
        assert secret not in envoy.log()


def test_shipped_istio_and_compose_files_agree_with_envoy_yaml():
    """The Istio and docker-compose examples cannot run here (no Kubernetes, no Docker engine); what can be
    checked is checked: the Istio plugin config is one config in both roles and loads in the real filter,
    and compose mounts the .wasm where envoy.yaml looks for it."""
    import yaml
    from harness import ROOT

    docs = list(yaml.safe_load_all((ROOT / "envoy" / "istio" / "wasmplugin.yaml").read_text()))
    wasm_plugin = next(d for d in docs if d["kind"] == "WasmPlugin")
    assert wasm_plugin["spec"]["pluginName"] == "switchyard"
    route_cfg = wasm_plugin["spec"]["pluginConfig"]
    upstream_patch = next(d for d in docs if d["kind"] == "EnvoyFilter" and d["metadata"]["name"].startswith("switchyard-upstream"))
    wasm = upstream_patch["spec"]["configPatches"][0]["patch"]["value"]["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"][0]["typed_config"]["config"]
    assert wasm["root_id"] == "switchyard-upstream" and wasm["allow_on_headers_stop_iteration"] is True
    assert json.loads(wasm["configuration"]["value"]) == route_cfg

    cfg = demo_config()
    next(plugin_configs(cfg))["configuration"]["value"] = json.dumps(route_cfg)
    envoy = Envoy(cfg).wait_ready()
    try:
        client = openai.OpenAI(base_url=f"{envoy.base}/v1", api_key=DEMO_KEY, max_retries=0, timeout=10)
        assert [m.id for m in client.models.list()] == ["echo"]
    finally:
        envoy.stop()

    compose = yaml.safe_load((ROOT / "envoy" / "docker-compose.yaml").read_text())["services"]["switchyard"]
    wasm_file = next(plugin_configs(demo_config()))["vm_config"]["code"]["local"]["filename"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1)[::-1] for v in compose["volumes"])
    assert f"{compose['working_dir']}/{wasm_file}" in mounts
    assert mounts[f"{compose['working_dir']}/{wasm_file}"] == "../dist/switchyard.wasm"
    assert compose["image"] == "envoyproxy/envoy:v1.40.0"


def test_readme_plain_cluster_snippet_validates():
    """The README's recipe for a plain (non-TLS) provider cluster, pasted into envoy.yaml, is a valid
    Envoy config (the TLS anchor's ALPN would not be: a plain cluster needs explicit_http_config)."""
    import re
    import subprocess

    from harness import ROOT, envoy_binary

    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"  ```yaml\n(  - name: ollama.*?)  ```", readme, re.S).group(1)
    demo = (ROOT / "envoy" / "envoy.yaml").read_text()
    cut = demo.index("\n# The filter's stats are named")
    path = ROOT / "target" / "readme-ollama.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(demo[:cut] + "\n" + snippet + "\n" + demo[cut:])
    r = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
