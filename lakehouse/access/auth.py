"""API keys, scopes and tenants.

A key is ``lake_<id>_<secret>``; only its SHA-256 is stored (keys are 256-bit random tokens, so a
fast hash is enough), with its scope (``read`` < ``write`` < ``admin``) and an optional tenant,
in ``s3://<warehouse>/_lake/api-keys.json``. A request sends ``Authorization: Bearer <key>``.

Keys are kept per process for ``LAKE_AUTH_CACHE_SECONDS`` (default 10): a revoked key is refused
at most that long after the revocation. A key id the cached document does not hold is always
looked up again, so a new key works at once.

``LAKE_AUTH`` says who authenticates: ``keys`` (Lake checks API keys; ``lake serve`` uses this by
default), ``iam`` (the function URL's AWS_IAM auth already did; the caller's ARN is recorded),
``oidc`` (OpenID Connect ID tokens, :func:`oidc_principal`; API keys are still accepted), or
``none`` (in-process calls on the operator's own machine: full access).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from lakehouse.access.docstore import read_json, update_json
from lakehouse.config import Settings
from lakehouse.errors import Forbidden, TerminalError, Unauthorized

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
KEYS_DOC = "api-keys.json"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key id (or ARN, or ``local``), its scope and its tenant, if bound to one."""

    id: str
    scope: Scope
    tenant: str | None = None

    def require(self, scope: Scope) -> None:
        if SCOPES.index(self.scope) < SCOPES.index(scope):
            raise Forbidden(f"this key's scope is {self.scope}; {scope} is needed")


LOCAL = Principal("local", "admin")


_keys: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}  # bucket -> (read at, id -> record)
_keys_lock = threading.Lock()


def _record(settings: Settings, key_id: str) -> dict[str, Any] | None:
    """The stored record of ``key_id``: from the process's copy while it is fresh enough."""
    now = time.monotonic()
    with _keys_lock:
        cached = _keys.get(settings.warehouse_bucket)
    if cached is not None and now - cached[0] < settings.auth_cache_seconds and key_id in cached[1]:
        return cached[1][key_id]
    doc, _ = read_json(settings, KEYS_DOC)
    records = {r["id"]: r for r in (doc or {"keys": []})["keys"]}
    with _keys_lock:
        _keys[settings.warehouse_bucket] = (now, records)
    return records.get(key_id)


def _forget() -> None:
    with _keys_lock:
        _keys.clear()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(
    settings: Settings, scope: Scope = "read", tenant: str | None = None, name: str = ""
) -> tuple[str, dict[str, Any]]:
    """Create a key; returns the token (shown once) and its stored record (no secret in it)."""
    if scope not in SCOPES:
        raise TerminalError(f"scope must be one of {', '.join(SCOPES)}")
    key_id = secrets.token_hex(6)
    token = f"lake_{key_id}_{secrets.token_urlsafe(32)}"
    record = {
        "id": key_id,
        "name": name,
        "scope": scope,
        "tenant": tenant,
        "sha256": _hash(token),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "revoked_at": None,
    }

    def add(doc: Any) -> Any:
        doc = doc or {"keys": []}
        doc["keys"].append(record)
        return doc

    update_json(settings, KEYS_DOC, add)
    _forget()
    return token, {k: v for k, v in record.items() if k != "sha256"}


def list_keys(settings: Settings) -> list[dict[str, Any]]:
    doc, _ = read_json(settings, KEYS_DOC)
    return [{k: v for k, v in r.items() if k != "sha256"} for r in (doc or {"keys": []})["keys"]]


def revoke_key(settings: Settings, key_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def revoke(doc: Any) -> Any:
        for record in (doc or {"keys": []})["keys"]:
            if record["id"] == key_id:
                record["revoked_at"] = record["revoked_at"] or dt.datetime.now(dt.UTC).isoformat()
                found.update(record)
                return doc
        raise TerminalError(f"no key {key_id!r}")

    update_json(settings, KEYS_DOC, revoke)
    _forget()
    return {k: v for k, v in found.items() if k != "sha256"}


def scope_of(values: list[str]) -> Scope | None:
    """The highest Lake scope among claim values (``read``, ``lake-read``, ``lake/read``, ...)."""
    found = [v[5:] if v[:4] == "lake" and v[4:5] in ("-", "/", ":", "_") else v for v in values]
    ranked = [SCOPES.index(v) for v in found if v in SCOPES]
    return SCOPES[max(ranked)] if ranked else None


def oidc_principal(settings: Settings, token: str) -> Principal:
    """The principal of an OIDC ID token (``LAKE_AUTH=oidc``): ``oidc:<sub>``, its scope from
    ``LAKE_OIDC_SCOPE_CLAIM`` and its tenant from ``LAKE_OIDC_TENANT_CLAIM``.

    A token without a Lake scope is refused; with a tenant claim configured, only an admin token
    may lack it (and then spans every tenant).
    """
    from lakehouse.access import oidc  # PyJWT and cryptography only where tokens are used

    if not settings.oidc_issuer or not settings.oidc_audience:
        raise TerminalError("LAKE_AUTH=oidc needs LAKE_OIDC_ISSUER and LAKE_OIDC_AUDIENCE")
    verifier = oidc.verifier(
        settings.oidc_issuer,
        settings.oidc_audience,
        tuple(settings.oidc_algorithms),
        settings.oidc_jwks_ttl_seconds,
    )
    claims = verifier.verify(token)
    scope = scope_of(oidc.claim_values(claims, settings.oidc_scope_claim))
    if scope is None:
        raise Forbidden(f"the token's {settings.oidc_scope_claim!r} claim names no Lake scope")
    tenant = None
    if settings.oidc_tenant_claim:
        tenants = oidc.claim_values(claims, settings.oidc_tenant_claim)
        if len(tenants) > 1 or (not tenants and scope != "admin"):
            raise Forbidden(f"the token needs exactly one {settings.oidc_tenant_claim!r} claim")
        tenant = tenants[0] if tenants else None
    return Principal(f"oidc:{claims['sub']}", scope, tenant)


def authenticate(settings: Settings, headers: dict[str, str], iam_arn: str | None = None) -> Principal:
    """The principal of a request, per ``LAKE_AUTH``."""
    if settings.auth == "none":
        return LOCAL
    if settings.auth == "iam":
        return Principal(iam_arn or "iam", "admin")
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.partition(" ")
    if settings.auth == "oidc" and scheme.lower() == "bearer" and not token.startswith("lake_"):
        return oidc_principal(settings, token)
    if scheme.lower() != "bearer" or not token.startswith("lake_"):
        raise Unauthorized("a key is required")
    key_id = token.split("_")[1] if token.count("_") >= 2 else ""
    record = _record(settings, key_id)
    if (
        record is not None
        and hmac.compare_digest(record["sha256"], _hash(token))
        and not record["revoked_at"]
    ):
        return Principal(record["id"], record["scope"], record["tenant"])
    raise Unauthorized("a key is required")
