"""Issue 20, end to end: JWT users and teams through the real Envoy. The Envoy configs are rendered by
`switchyard render` from gateway files with `jwt_providers`: Envoy's own `jwt_authn` filter verifies the
tokens (issuer, audience, expiry, signature against the key set it fetches), never rejecting, and the
filter reads only its verdict. Tokens are minted here with PyJWT (RS256 and ES256); the identity provider's
key set is served by this process, and the tests change it (key rotation). Clients are the official
`openai` SDK with the JWT as its api key and the `anthropic` SDK (which sends it as `x-api-key`).

Three Envoys: the main one accepts keys and JWTs (`identity.accept: [keys, jwt]`, users hashed in the
log), one JWTs only (users logged plainly), one keys only (its rendered config patched with the main one's
jwt_authn filter, to show that a filter that does not accept JWTs ignores even a verified one)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import datetime
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import jwt
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import harness
from harness import Envoy, MockUpstream, Reply, mock_url, module_stack, plugin_configs, render, request, sha256_hex
from openai_wire import chat_completion
from provider_wire import anthropic_message

ISSUER = "https://idp.switchyard.test/realms/test"
AUDIENCE = "api://switchyard"
JWKS_CACHE_S = 2
CI_KEY = "sk-sy-identity-ds-ci-0001"  # a virtual key of team data-science
TIGHT_KEY = "sk-sy-identity-tight-0002"  # a virtual key of team tight (shares its budget)
UPSTREAM_OPENAI = "sk-upstream-identity-openai"
UPSTREAM_ANTHROPIC = "sk-ant-upstream-identity"
PROMPT, COMPLETION = 250, 50  # each answer's usage: $0.35 at the price below


# ------------------------------------------------------------------------------------- identity provider


class IdentityProvider:
    """Signing keys, the key set Envoy fetches (published keys only, changeable at run time), and tokens."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1", issuer: str = ISSUER):
        self.keys: dict[str, tuple[object, str]] = {}  # kid -> (private key, alg)
        self.published: list[str] = []
        self.fetches = 0
        self.host, self.issuer, self.tls = host, issuer, tls
        self.sni: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/jwks.json":
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = json.dumps(outer.jwks()).encode()
                with outer.lock:
                    outer.fetches += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            def get_request(self):
                conn, addr = self.socket.accept()
                if outer.tls is not None:
                    conn = outer.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                return conn, addr

            def handle_error(self, request, client_address):
                pass  # a refused handshake is part of the tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/jwks.json"

    def add(self, kid: str, alg: str = "RS256", publish: bool = True) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256" else ec.generate_private_key(ec.SECP256R1())
        self.keys[kid] = (key, alg)
        if publish:
            self.publish(kid)

    def publish(self, kid: str) -> None:
        with self.lock:
            if kid not in self.published:
                self.published.append(kid)

    def retire(self, kid: str) -> None:
        with self.lock:
            self.published.remove(kid)

    def jwks(self) -> dict:
        with self.lock:
            kids = list(self.published)
        out = []
        for kid in kids:
            key, alg = self.keys[kid]
            algo = RSAAlgorithm if alg == "RS256" else ECAlgorithm
            entry = json.loads(algo.to_jwk(key.public_key()))
            entry.update(kid=kid, alg=alg, use="sig")
            out.append(entry)
        return {"keys": out}

    def token(self, sub: str | None, groups=None, kid: str = "rsa-1", signer: str | None = None, **claims) -> str:
        """A token for `sub` with `groups`; `claims` override the standard ones (None removes one).
        `signer` signs with another kid's key while the header names `kid` (a bad signature)."""
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600}
        if groups is not None:
            body["groups"] = groups
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        key, alg = self.keys[signer or kid]
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------- mock providers


def openai_responder(rec):
    body = rec.json()
    return Reply(body=json.dumps(chat_completion(body["model"], f"served by {body['model']}", PROMPT, COMPLETION)).encode())


def anthropic_responder(rec):
    body = rec.json()
    return Reply(body=json.dumps(anthropic_message(body["model"], f"served by {body['model']}", usage=(PROMPT, COMPLETION, 0))).encode())


# ------------------------------------------------------------------------------------------------ stack


def gateway(s: "Stack", accept=("keys", "jwt"), log_user="hashed") -> dict:
    price = {"input": 1000, "output": 2000}  # per million tokens: 250 in + 50 out = $0.35 an answer
    doc = {
        "default_max_output_tokens": 100,
        "providers": {
            "openai": {"kind": "openai", "api_key": UPSTREAM_OPENAI, "url": mock_url(s.openai_up)},
            "anthropic": {"kind": "anthropic", "api_key": UPSTREAM_ANTHROPIC, "url": mock_url(s.anthropic_up)},
        },
        "models": {
            "gpt-4o-mini": {"provider": "openai", "price": price},
            "gpt-4o": {"provider": "openai", "price": price},
            "claude-haiku": {"provider": "anthropic", "model": "claude-3-5-haiku-latest", "price": price},
            "o3": {"provider": "openai", "price": price},
        },
        "identity": {"accept": list(accept), "user_claim": "sub", "teams_claim": "groups", "log_user": log_user},
        "teams": {
            "data-science": {"claims": ["ds", "grp-8a7d"], "models": ["gpt-4o-mini", "claude-*"]},
            "eng": {"models": ["gpt-4o", "gpt-4o-mini"]},
            "tight": {"models": ["gpt-4o-mini"], "limits": {"budget": {"usd": 1.0, "period": "day"}}},
        },
        "keys": [
            {"id": "ds-ci", "sha256": sha256_hex(CI_KEY), "models": ["*"], "team": "data-science"},
            {"id": "tight-ci", "sha256": sha256_hex(TIGHT_KEY), "models": ["gpt-4o-mini"], "team": "tight"},
        ],
    }
    if "jwt" not in accept:
        doc["identity"] = {"accept": list(accept)}  # the claim settings are for JWT users only
    else:
        doc["jwt_providers"] = {
            "idp": {"issuer": ISSUER, "audiences": [AUDIENCE], "jwks": s.idp.url, "jwks_cache": f"{JWKS_CACHE_S}s"}
        }
    return doc


def http_filters(cfg: dict) -> list:
    return cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


class Stack:
    def __init__(self):
        self.idp = IdentityProvider()
        self.idp.add("rsa-1", "RS256")
        self.idp.add("ec-1", "ES256")
        self.openai_up = MockUpstream(openai_responder)
        self.anthropic_up = MockUpstream(anthropic_responder)
        self.envoys: list[Envoy] = []
        self.cfg = render(gateway(self))
        self.main = self.start(self.cfg, concurrency=2)
        self.jwt_only = self.start(render(gateway(self, accept=("jwt",), log_user="plain")))
        # A gateway file cannot put jwt_authn before a filter that does not accept JWTs (check refuses
        # it); the keys-only config gets the main one's jwt_authn filter and key-set cluster by hand.
        keys_cfg = render(gateway(self, accept=("keys",)))
        http_filters(keys_cfg).insert(0, copy.deepcopy(http_filters(self.cfg)[0]))
        keys_cfg["static_resources"]["clusters"] += [c for c in self.cfg["static_resources"]["clusters"] if c["name"] == "jwks_idp"]
        self.keys_only = self.start(keys_cfg)

    def start(self, cfg: dict, concurrency: int = 1) -> Envoy:
        e = Envoy(cfg, concurrency=concurrency, access_log=True)
        self.envoys.append(e)
        return e.wait_ready()

    def client(self, credential: str, envoy: Envoy | None = None, **headers) -> openai.OpenAI:
        return harness.openai_client(base_url=f"{(envoy or self.main).base}/v1", api_key=credential, max_retries=0,
                                     timeout=20, default_headers=headers or None)

    def claude(self, credential: str, envoy: Envoy | None = None) -> anthropic.Anthropic:
        return harness.anthropic_client(base_url=(envoy or self.main).base, api_key=credential, max_retries=0, timeout=20)

    def chat(self, credential: str | None, model: str = "gpt-4o-mini", envoy: Envoy | None = None, headers=None):
        """A raw chat completion: (status, headers, JSON body or the raw bytes)."""
        h = {"content-type": "application/json", **(headers or {})}
        if credential is not None:
            h["authorization"] = f"Bearer {credential}"
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
        status, rh, raw = request("POST", f"{(envoy or self.main).base}/v1/chat/completions", json.dumps(body), h, timeout=20)
        try:
            return status, rh, json.loads(raw)
        except ValueError:
            return status, rh, raw

    def log_records(self, envoy: Envoy | None = None) -> list[dict]:
        lines = [json.loads(l) for l in (envoy or self.main).access_log().splitlines() if l.startswith("{")]
        return [{**r, **((r.get("switchyard") or {}).get("value") or {})} for r in lines]

    def close(self):
        for e in self.envoys:
            e.stop()
        for u in (self.openai_up, self.anthropic_up, self.idp):
            u.close()


stack = module_stack(Stack)


def hashed(user: str) -> str:
    return hashlib.sha256(user.encode()).hexdigest()[:16]


def wait_for(predicate, timeout: float, step: float = 0.2):
    """Polls `predicate` until it returns something true; returns that, or the last value after `timeout`."""
    deadline = time.time() + timeout
    value = predicate()
    while not value and time.time() < deadline:
        time.sleep(step)
        value = predicate()
    return value


def user_records(stack: Stack, user: str, envoy: Envoy | None = None, n: int = 1) -> list[dict]:
    """The access-log records of `user` (as logged), once there are at least `n` (the log is flushed
    every 200 ms)."""

    def mine():
        rs = [r for r in stack.log_records(envoy) if r.get("user") == user]
        return rs if len(rs) >= n else []

    return wait_for(mine, 5)


# --------------------------------------------------------------------------------------- the key set


def test_the_identity_provider_serves_what_its_tokens_verify_against():
    """The test's identity provider: PyJWT's own JWKS client verifies its RS256 and ES256 tokens against
    the served key set; an unpublished key is not in it."""
    idp = IdentityProvider()
    try:
        idp.add("r", "RS256")
        idp.add("e", "ES256")
        idp.add("hidden", "RS256", publish=False)
        client = jwt.PyJWKClient(idp.url, cache_keys=False, cache_jwk_set=False)
        for kid in ["r", "e"]:
            tok = idp.token("alice", ["ds"], kid=kid)
            key = client.get_signing_key_from_jwt(tok)
            claims = jwt.decode(tok, key.key, algorithms=["RS256", "ES256"], audience=AUDIENCE, issuer=ISSUER)
            assert claims["sub"] == "alice" and claims["groups"] == ["ds"]
        assert [k["kid"] for k in idp.jwks()["keys"]] == ["r", "e"]
        with pytest.raises(jwt.PyJWKClientError):
            client.get_signing_key_from_jwt(idp.token("alice", kid="hidden"))
        idp.publish("hidden")
        assert client.get_signing_key_from_jwt(idp.token("alice", kid="hidden")).key_id == "hidden"
        assert idp.fetches >= 4
    finally:
        idp.close()


def test_rendered_jwt_authn_is_what_envoy_runs(stack):
    """jwt_authn before the route role, as rendered; Envoy fetched the key set at startup over the
    provider's cluster; every rendered config passes `envoy --mode validate`."""
    names = [f["name"] for f in http_filters(stack.cfg)]
    assert names == ["envoy.filters.http.jwt_authn", "switchyard", "envoy.filters.http.router"]
    provider = http_filters(stack.cfg)[0]["typed_config"]["providers"]["idp"]
    assert provider["payload_in_metadata"] == "payload" and provider["failed_status_in_metadata"] == "failure"
    assert provider["forward"] is False and provider["require_expiration"] is True
    assert provider["remote_jwks"]["http_uri"] == {"uri": stack.idp.url, "cluster": "jwks_idp", "timeout": "5s"}
    assert provider["remote_jwks"]["cache_duration"] == f"{JWKS_CACHE_S}s"
    rules = http_filters(stack.cfg)[0]["typed_config"]["rules"]
    assert rules == [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
        {"provider_name": "idp"}, {"allow_missing_or_failed": {}}]}}}]
    stats = stack.main.admin("/stats?filter=jwt_authn")
    assert int(re.search(r"http\.switchyard\.jwt_authn\.jwks_fetch_success: (\d+)", stats).group(1)) >= 1, stats
    assert "jwt_providers" not in next(plugin_configs(stack.cfg))["configuration"]["value"], "gateway-only section"


def tls_context(tmp, ca_key, ca_cert, dns_name: str) -> ssl.SSLContext:
    """A server TLS context with a certificate for `dns_name` signed by the test CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp / f"{dns_name}.crt", tmp / f"{dns_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def test_an_https_key_set_is_fetched_with_sni_and_a_checked_certificate(stack, tmp_path):
    """Two providers with https key sets on `localhost`: one whose certificate names localhost, one whose
    certificate names another host. The rendered clusters trust the system CAs; here (by hand) the test's
    CA instead."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchyard test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    good = IdentityProvider(tls_context(tmp_path, ca_key, ca_cert, "localhost"), host="localhost",
                            issuer="https://good.idp.test")
    bad = IdentityProvider(tls_context(tmp_path, ca_key, ca_cert, "elsewhere.example.com"), host="localhost",
                           issuer="https://bad.idp.test")
    envoy = None
    try:
        for idp in (good, bad):
            idp.add("k1", "RS256")
        doc = gateway(stack, accept=("jwt",))
        doc["jwt_providers"] = {
            name: {"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks": idp.url, "jwks_cache": "60s"}
            for name, idp in [("good", good), ("bad", bad)]
        }
        cfg = render(doc)
        clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
        for n in ["jwks_good", "jwks_bad"]:
            tls = clusters[n]["transport_socket"]["typed_config"]
            assert tls["sni"] == "localhost" and clusters[n]["type"] == "STRICT_DNS"
            validation = tls["common_tls_context"]["validation_context"]
            assert validation["match_typed_subject_alt_names"] == [{"san_type": "DNS", "matcher": {"exact": "localhost"}}]
            assert validation["trusted_ca"] == {"filename": "/etc/ssl/certs/ca-certificates.crt"}
            validation["trusted_ca"]["filename"] = str(ca_path)  # the hand edit
        envoy = Envoy(cfg).wait_ready()
        assert stack.chat(good.token("tls-user", ["ds"], kid="k1"), envoy=envoy)[0] == 200
        assert "localhost" in good.sni and good.fetches >= 1
        status, headers, body = stack.chat(bad.token("tls-user", ["ds"], kid="k1"), envoy=envoy)
        assert status == 401 and body["error"]["code"] == "invalid_token", body
        assert bad.fetches == 0, "a certificate for another name is refused before any request"
        stats = envoy.admin("/stats?filter=jwt_authn")
        assert re.search(r"jwks_fetch_failed: [1-9]", stats), stats
    finally:
        if envoy is not None:
            envoy.stop()
        good.close()
        bad.close()


def test_istio_gets_the_same_jwt_authn_first_and_the_key_set_host(stack):
    docs = harness.render_istio(gateway(stack))
    jwt_filter = next(d for d in docs if d["metadata"]["name"] == "switchyard-jwt")
    patch = jwt_filter["spec"]["configPatches"][0]
    assert patch["applyTo"] == "HTTP_FILTER" and patch["patch"]["operation"] == "INSERT_FIRST"
    istio_cfg = patch["patch"]["value"]["typed_config"]
    # The plain Envoy rendering's configuration, with Istio's name for the key set's cluster.
    envoy_cfg = copy.deepcopy(http_filters(stack.cfg)[0]["typed_config"])
    envoy_cfg["providers"]["idp"]["remote_jwks"]["http_uri"]["cluster"] = f"outbound|{stack.idp.port}||127.0.0.1"
    assert istio_cfg == envoy_cfg
    entry = next(d for d in docs if d["metadata"]["name"] == "jwks-idp")
    assert entry["kind"] == "ServiceEntry" and entry["spec"]["endpoints"] == [{"address": "127.0.0.1"}]
    assert entry["spec"]["ports"][0]["number"] == stack.idp.port
    wasm = next(d for d in docs if d["kind"] == "WasmPlugin")
    assert wasm["spec"]["pluginConfig"]["identity"]["accept"] == ["keys", "jwt"]
    assert "jwt_providers" not in wasm["spec"]["pluginConfig"]


# --------------------------------------------------------------------------------------------- refusals


def refused_tokens(idp: IdentityProvider) -> dict:
    now = int(time.time())
    if "stranger" not in idp.keys:
        idp.add("stranger", "RS256", publish=False)
    return {
        "malformed": ("abc.def.ghi", None),
        "expired beyond the skew": (idp.token("alice", ["ds"], exp=now - 120), "Jwt is expired"),
        "not yet valid": (idp.token("alice", ["ds"], nbf=now + 600), "Jwt not yet valid"),
        "no expiry": (idp.token("alice", ["ds"], exp=None), None),
        "wrong issuer": (idp.token("alice", ["ds"], iss="https://evil.example.com"), "Jwt issuer is not configured"),
        "wrong audience": (idp.token("alice", ["ds"], aud="api://another-app"), "Audiences in Jwt are not allowed"),
        "bad signature": (idp.token("alice", ["ds"], kid="rsa-1", signer="stranger"), "Jwt verification fails"),
        "unknown kid": (idp.token("alice", ["ds"], kid="stranger"), "Jwks doesn't have key to match kid or alg from Jwt"),
    }


REFUSALS = ["malformed", "expired beyond the skew", "not yet valid", "no expiry", "wrong issuer", "wrong audience",
            "bad signature", "unknown kid"]


def assert_invalid_token(status, headers, body, reason):
    assert status == 401, body
    assert headers["content-type"].startswith("application/json"), "never Envoy's plain text"
    err = body["error"]
    assert err["code"] == "invalid_token" and err["type"] == "invalid_request_error", err
    if reason:
        assert reason in err["message"], err
    assert headers.get("www-authenticate") == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("case", REFUSALS)
def test_each_bad_token_is_a_401_in_the_openai_shape(stack, case):
    token, reason = refused_tokens(stack.idp)[case]
    served = len(stack.openai_up.requests)
    assert_invalid_token(*stack.chat(token), reason)
    # The SDK sees an AuthenticationError with the same code.
    with pytest.raises(openai.AuthenticationError) as e:
        stack.client(token).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "invalid_token"
    assert len(stack.openai_up.requests) == served, "nothing reached the provider"


@pytest.mark.parametrize("case", ["expired beyond the skew", "wrong audience", "bad signature", "unknown kid"])
def test_bad_tokens_on_messages_get_the_anthropic_shape(stack, case):
    token, reason = refused_tokens(stack.idp)[case]
    with pytest.raises(anthropic.AuthenticationError) as e:
        stack.claude(token).messages.create(model="claude-haiku", max_tokens=50, messages=[{"role": "user", "content": "x"}])
    body = e.value.response.json()
    assert e.value.status_code == 401 and body["type"] == "error", body
    assert body["error"]["type"] == "authentication_error" and reason in body["error"]["message"], body


def test_no_credential_is_a_401_on_both_listeners(stack):
    status, headers, body = stack.chat(None)
    assert status == 401 and body["error"]["code"] == "missing_api_key", "keys accepted: as without identity"
    status, headers, body = stack.chat(None, envoy=stack.jwt_only)
    assert_invalid_token(status, headers, body, "Jwt is missing")


def test_expired_within_the_skew_is_still_served(stack):
    """Envoy's default 60 s tolerance on exp (clock_skew)."""
    token = stack.idp.token("skewed", ["ds"], exp=int(time.time()) - 20)
    assert stack.chat(token)[0] == 200


# -------------------------------------------------------------------------------------- users served


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_a_valid_token_is_served_and_never_forwarded(stack, kid):
    token = stack.idp.token(f"user-{kid}", ["ds"], kid=kid)
    r = stack.client(token).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "served by gpt-4o-mini"
    sent = stack.openai_up.last()
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_OPENAI}", "the provider gets the gateway's credential"
    assert token not in json.dumps(sent.headers) and token.encode() not in sent.body


def test_the_anthropic_sdk_sends_the_token_as_x_api_key(stack):
    token = stack.idp.token("claude-user", ["ds"], kid="ec-1")
    m = stack.claude(token).messages.create(model="claude-haiku", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == "served by claude-3-5-haiku-latest"
    sent = stack.anthropic_up.last()
    assert sent.headers["x-api-key"] == UPSTREAM_ANTHROPIC and token not in json.dumps(sent.headers)


def test_a_rotated_key_is_refused_until_published_then_accepted_within_the_cache(stack):
    idp = stack.idp
    idp.add("rsa-2", "RS256", publish=False)
    token = idp.token("rotating", ["ds"], kid="rsa-2")
    assert_invalid_token(*stack.chat(token), "Jwks doesn't have key to match kid")
    time.sleep(JWKS_CACHE_S + 0.5)
    assert_invalid_token(*stack.chat(token), "Jwks doesn't have key to match kid")  # a refetch later: still unknown
    fetches = idp.fetches
    idp.publish("rsa-2")
    published = time.time()
    assert wait_for(lambda: stack.chat(token)[0] == 200, timeout=JWKS_CACHE_S * 3), "never picked up"
    assert time.time() - published <= JWKS_CACHE_S + 3, "picked up within the cache duration (and a fetch)"
    assert idp.fetches > fetches
    # Retired: refused again within the cache duration.
    idp.retire("rsa-2")
    assert wait_for(lambda: stack.chat(token)[0] == 401, timeout=JWKS_CACHE_S * 3), "a retired key kept working"


# ------------------------------------------------------------------------------------- teams and models


def test_a_user_in_two_teams_gets_the_union_of_their_models(stack):
    token = stack.idp.token("alice", ["ds", "eng"])
    client = stack.client(token)
    for model in ["gpt-4o-mini", "gpt-4o"]:
        assert client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}]).choices
    m = stack.claude(token).messages.create(model="claude-haiku", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    assert m.content[0].text.startswith("served by")
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_allowed" and "o3" in e.value.message
    assert sorted(m.id for m in client.models.list()) == ["claude-haiku", "gpt-4o", "gpt-4o-mini"]


def test_models_follow_the_teams_and_a_teamless_user_gets_nothing(stack):
    eng = stack.client(stack.idp.token("bob", ["eng"]))
    assert sorted(m.id for m in eng.models.list()) == ["gpt-4o", "gpt-4o-mini"]
    with pytest.raises(openai.PermissionDeniedError) as e:
        eng.chat.completions.create(model="claude-haiku", messages=[{"role": "user", "content": "x"}])
    assert "claude-haiku" in e.value.message
    # The claim value grp-8a7d maps to data-science.
    mapped = stack.client(stack.idp.token("gina", ["grp-8a7d"]))
    assert sorted(m.id for m in mapped.models.list()) == ["claude-haiku", "gpt-4o-mini"]
    nobody = stack.client(stack.idp.token("nobody", []))
    assert list(nobody.models.list()) == []
    status, _, body = stack.chat(stack.idp.token("nobody", []))
    assert status == 403 and body["error"]["code"] == "model_not_allowed" and "gpt-4o-mini" in body["error"]["message"]


def test_a_team_budget_is_shared_by_its_users_and_keys(stack):
    """Team tight: $1 a day. Each answer costs $0.35, a reservation ~$0.24: two users and the team's key
    spend it together (0.35, 0.70, 0.70 + 0.24 fits and ends at 1.05), then all three are refused."""
    u1, u2 = stack.idp.token("tight-1", ["tight"]), stack.idp.token("tight-2", ["tight"])
    assert stack.chat(u1)[0] == 200
    assert stack.chat(TIGHT_KEY)[0] == 200
    assert stack.chat(u2)[0] == 200
    for credential in [u2, u1, TIGHT_KEY]:
        status, headers, body = stack.chat(credential)
        assert status == 429, body
        assert body["error"]["code"] == "insufficient_quota", body
        assert 0 < int(headers["retry-after"]) <= 86400
    # Other teams are untouched.
    assert stack.chat(stack.idp.token("tight-3", ["ds"]))[0] == 200


def test_x_switchyard_team_attributes_the_request(stack):
    token = stack.idp.token("attributed", ["ds", "eng"])
    assert stack.chat(token)[0] == 200  # gpt-4o-mini: granted by both; the first by name, data-science
    assert stack.chat(token, headers={"x-switchyard-team": "eng"})[0] == 200
    status, _, body = stack.chat(token, headers={"x-switchyard-team": "tight"})
    assert status == 403 and body["error"]["code"] == "team_not_allowed", body
    status, _, body = stack.chat(token, model="claude-haiku", headers={"x-switchyard-team": "eng"})
    assert status == 403 and body["error"]["code"] == "model_not_allowed", body
    records = user_records(stack, hashed("attributed"), n=4)
    teams = [(r["status"], r.get("team")) for r in records]
    assert teams[:2] == [(200, "data-science"), (200, "eng")], teams


# -------------------------------------------------------------------------------- headers and listeners


CLAIM_LIKE = {
    "x-jwt-payload": base64.urlsafe_b64encode(json.dumps({"iss": ISSUER, "sub": "mallory", "groups": ["ds"]}).encode()).decode(),
    "x-jwt-claim-groups": "ds",
    "x-forwarded-user": "mallory",
    "x-auth-request-groups": "ds",
    "x-envoy-dynamic-metadata": json.dumps({"envoy.filters.http.jwt_authn": {"payload": {"sub": "mallory", "groups": ["ds"]}}}),
    "payload": json.dumps({"sub": "mallory", "groups": ["ds"]}),
}


def test_client_headers_that_look_like_claims_are_ignored(stack):
    # Without a token they are no credential.
    status, _, body = stack.chat(None, headers=CLAIM_LIKE)
    assert status == 401 and body["error"]["code"] == "missing_api_key", body
    status, headers, body = stack.chat(None, envoy=stack.jwt_only, headers=CLAIM_LIKE)
    assert_invalid_token(status, headers, body, "Jwt is missing")
    # With an eng user's token they grant nothing more, and none reaches the provider.
    eve = stack.idp.token("eve", ["eng"])
    status, _, body = stack.chat(eve, model="claude-haiku", headers=CLAIM_LIKE)
    assert status == 403 and body["error"]["code"] == "model_not_allowed", body
    assert stack.chat(eve, model="gpt-4o", headers=CLAIM_LIKE)[0] == 200
    assert not set(CLAIM_LIKE) & set(stack.openai_up.last().headers)


def test_jwt_only_refuses_virtual_keys(stack):
    status, headers, body = stack.chat(CI_KEY, envoy=stack.jwt_only)
    assert_invalid_token(status, headers, body, None)
    assert stack.chat(stack.idp.token("carol", ["ds"]), envoy=stack.jwt_only)[0] == 200
    # Keys are accepted beside tokens on the main listener.
    assert stack.chat(CI_KEY)[0] == 200


def test_keys_only_ignores_even_a_verified_token(stack):
    # Envoy verified it and took it off the request (forward: false); the filter does not read the
    # verdict, so the request has no credential.
    token = stack.idp.token("dave", ["ds"])
    status, _, body = stack.chat(token, envoy=stack.keys_only)
    assert status == 401 and body["error"]["code"] == "missing_api_key", body
    # One Envoy did not verify stays on the request, and is no key.
    status, _, body = stack.chat(token + "x", envoy=stack.keys_only)
    assert status == 401 and body["error"]["code"] == "invalid_api_key", body
    assert stack.chat(CI_KEY, envoy=stack.keys_only)[0] == 200
    # Envoy verifies it (it has the key set), the filter does not read the verdict.
    stats = stack.keys_only.admin("/stats?filter=jwt_authn")
    assert re.search(r"jwt_authn\.jwks_fetch_success: [1-9]", stats), stats


# ------------------------------------------------------------------------------------------ observability


def test_the_access_log_has_user_and_team_never_the_token(stack):
    token = stack.idp.token("logged-user", ["ds"])
    plain_token = stack.idp.token("plain-user", ["eng"])
    assert stack.chat(token)[0] == 200
    assert stack.chat(plain_token, model="gpt-4o", envoy=stack.jwt_only)[0] == 200
    mine = user_records(stack, hashed("logged-user"))
    assert mine and mine[-1]["team"] == "data-science" and mine[-1]["status"] == 200, mine
    assert "key_id" not in mine[-1]
    plain = user_records(stack, "plain-user", envoy=stack.jwt_only)
    assert plain and plain[-1]["team"] == "eng", plain
    keyed = [r for r in stack.log_records() if r.get("key_id") == "ds-ci"]
    assert keyed and keyed[-1].get("team") == "data-science" and "user" not in keyed[-1]
    for e in stack.envoys:
        text = e.access_log() + e.log()
        assert "logged-user" not in e.access_log(), "hashed on the main listener"
        assert token not in text and plain_token not in text, "a token in a log"
        assert token.split(".")[2] not in text


def test_stats_carry_the_team_and_never_the_user(stack):
    assert stack.chat(stack.idp.token("stats-user", ["eng"]), model="gpt-4o")[0] == 200
    p = harness.prom_samples(stack.main.admin("/stats/prometheus"))
    key = 'model="gpt-4o",provider="openai",key="-",team="eng",outcome="ok"'
    assert p[f"switchyard_requests{{{key}}}"] >= 1, sorted(p)[:40]
    assert any('key="ds-ci",team="data-science"' in k for k in p), sorted(p)[:40]
    text = stack.main.admin("/stats/prometheus")
    for user in ["stats-user", "alice", hashed("alice")]:
        assert user not in text
    assert not re.search(r'team="(?!data-science|eng|tight|-)', text)
