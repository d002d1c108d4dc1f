"""OIDC ID tokens: validated against an issuer served on 127.0.0.1 by the test itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lake.client import LakeClient
from lakehouse.access.oidc import REFRESH_FLOOR_SECONDS, Verifier, claim_values
from lakehouse.errors import IdentityProviderUnavailable, TerminalError, Unauthorized
from tests.conftest import ROOT
from tests.oidc_issuer import Issuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    issuer = Issuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture()
def verifier(issuer: Issuer) -> Verifier:
    return Verifier(issuer.url, issuer.audience, ("RS256", "ES256"))


def test_a_valid_token_gives_its_claims(issuer: Issuer, verifier: Verifier) -> None:
    claims = verifier.verify(issuer.token(lake_scope="read", tenant="acme"))
    assert (claims["sub"], claims["lake_scope"], claims["tenant"]) == ("user-1", "read", "acme")
    assert verifier.verify(issuer.token("ES256"))["sub"] == "user-1"


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda i: i.token(exp=int(time.time()) - 3600), "expired"),
        (lambda i: i.token(aud="someone-else"), "(?i)audience"),
        (lambda i: i.token(iss="https://evil.example/"), "issuer"),
        (lambda i: i.token(nbf=int(time.time()) + 3600), "not yet valid"),
        (lambda i: i.token(exp=None), "exp"),
        (lambda i: i.unsigned(), "'none' is not allowed"),
        (lambda i: i.tampered(), "(?i)signature"),
        (lambda i: i.hmac_with_public_key(), "'HS256' is not allowed"),
        (lambda i: i.token(kid="rsa-2"), "no key 'rsa-2'"),
        (lambda i: i.token("RS256", kid="ec-1"), "for ES256"),
        (lambda i: "not-a-jwt", "not a signed JWT"),
    ],
)
def test_bad_tokens_are_refused(issuer: Issuer, verifier: Verifier, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthorized, match=reason):
        verifier.verify(make(issuer))


def test_hmac_is_refused_even_when_allowed_by_mistake(issuer: Issuer) -> None:
    with pytest.raises(TerminalError, match="refused: \\['HS256'\\]"):
        Verifier(issuer.url, issuer.audience, ("RS256", "HS256"))
    with pytest.raises(TerminalError, match="refused: \\['none'\\]"):
        Verifier(issuer.url, issuer.audience, ("none",))


def test_issuer_must_be_https_off_loopback(issuer: Issuer) -> None:
    with pytest.raises(TerminalError, match="https"):
        Verifier("http://login.example.com/", "aud")
    Verifier("https://login.example.com/", "aud")  # no fetch until a token comes


def test_jwks_is_cached_and_unknown_kids_do_not_hammer_the_issuer(issuer: Issuer) -> None:
    verifier = Verifier(issuer.url, issuer.audience)
    before = dict(issuer.hits)
    for _ in range(5):
        verifier.verify(issuer.token())
    for _ in range(5):
        with pytest.raises(Unauthorized):
            verifier.verify(issuer.token(kid="forged"))
    fetched = {path: n - before.get(path, 0) for path, n in issuer.hits.items()}
    assert fetched == {"/issuer/.well-known/openid-configuration": 1, "/issuer/jwks.json": 1}
    assert REFRESH_FLOOR_SECONDS >= 60


def test_an_unreachable_issuer_is_a_transient_error() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    verifier = Verifier(f"http://127.0.0.1:{port}/issuer", "aud")
    issuer = Issuer()  # not started: only signs
    with pytest.raises(IdentityProviderUnavailable) as raised:
        verifier.verify(issuer.token())
    assert raised.value.http_status == 503 and not raised.value.terminal


def test_claim_values() -> None:
    claims = {"scope": "openid lake/read", "groups": ["admin", "x"], "n": 3}
    assert claim_values(claims, "scope") == ["openid", "lake/read"]
    assert claim_values(claims, "groups") == ["admin", "x"]
    assert claim_values(claims, "n") == ["3"]
    assert claim_values(claims, "missing") == []


# --- over HTTP: `lake serve --auth oidc` ------------------------------------------------------

TENANT_CONTRACT = """
name: {name}
event_time: ts
tenant_column: org
columns:
  ts:     {type: timestamp, required: true}
  org:    {type: string, required: true}
  amount: {type: double}
"""


@pytest.fixture(scope="module")
def oidc_serve_url(stack: dict[str, Any], lake_env: Path, issuer: Issuer) -> Iterator[str]:
    """`lake serve --auth oidc` trusting the test's issuer (scope in `lake_scope`, tenant in `org`)."""
    env = {
        **os.environ,
        "LAKE_OIDC_ISSUER": issuer.url,
        "LAKE_OIDC_AUDIENCE": issuer.audience,
        "LAKE_OIDC_SCOPE_CLAIM": "lake_scope",
        "LAKE_OIDC_TENANT_CLAIM": "org",
    }
    out, err = lake_env / "oidc-serve.out", lake_env / "oidc-serve.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lake.cli.main", "serve", "--auth", "oidc", "--port", "0", "--no-watch",
             "--no-maintain"],
            stdout=stdout, stderr=stderr, cwd=ROOT, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not out.read_text().strip():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    yield json.loads(out.read_text().splitlines()[0])["serving"]
    proc.terminate()
    proc.wait(10)


def test_id_tokens_over_http_scopes_tenants_and_refusals(
    oidc_serve_url: str,
    issuer: Issuer,
    dataset: Callable[[str], str],
    upload: Callable[..., dict[str, Any]],
    make_key: Callable[..., str],
) -> None:
    name = dataset(TENANT_CONTRACT)
    upload(name, "a.csv", b"ts,org,amount\n2026-01-01T00:00:00Z,acme,1\n2026-01-01T00:00:00Z,globex,2\n")
    sql = f"SELECT org, amount FROM lake.{name} ORDER BY org"

    def client(token: str) -> LakeClient:
        return LakeClient(oidc_serve_url, key=token)

    for bad in (
        issuer.token(exp=int(time.time()) - 3600, lake_scope="read"),
        issuer.token(aud="other", lake_scope="read"),
        issuer.token(iss="https://evil.example", lake_scope="read"),
        issuer.unsigned(lake_scope="admin"),
        issuer.tampered(lake_scope="read"),
        issuer.hmac_with_public_key(lake_scope="admin"),
    ):
        answer = client(bad).sql(sql)
        assert answer.status == 401 and answer.body == {"error": "Unauthorized"}
    # A valid token: an admin (no tenant) reads every row; a tenant-bound reader its own only.
    assert client(issuer.token(lake_scope="lake-admin")).sql(sql).body["rows"] == [
        ["acme", 1.0],
        ["globex", 2.0],
    ]
    acme = client(issuer.token(lake_scope="read", org="acme"))
    assert acme.sql(sql).body["rows"] == [["acme", 1.0]]
    assert acme.sql(f"SELECT count(*) FROM lake.{name}__quarantine").status == 403
    # Scope from the claim: a reader cannot replay the quarantine; no Lake scope, no access.
    replay = client(issuer.token(lake_scope="read")).request("POST", f"/quarantine/{name}/replay")
    assert replay.status == 403
    assert client(issuer.token(lake_scope="openid profile")).sql(sql).status == 403
    assert client(issuer.token(lake_scope="read")).sql(sql).status == 403  # tenant claim missing
    # API keys still work beside ID tokens; the console page stays open.
    assert client(make_key("read", tenant="globex")).sql(sql).body["rows"] == [["globex", 2.0]]
    with urllib.request.urlopen(f"{oidc_serve_url}/console", timeout=30) as page:
        assert page.status == 200
