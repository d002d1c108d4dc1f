"""OpenID Connect ID tokens as bearer tokens (``LAKE_AUTH=oidc``).

A token is accepted only when it is a JWS signed with an allowed asymmetric algorithm (RS*, PS*,
ES*, EdDSA; never ``none`` or HMAC) by a key of the issuer's JWKS, and its ``iss``, ``aud``,
``exp``, ``nbf`` and ``iat`` hold. The JWKS location comes from the issuer's discovery document
(``<issuer>/.well-known/openid-configuration``, whose ``issuer`` must be the configured one).
Both are cached per process; an unknown ``kid`` (the issuer rotated its keys) refreshes the JWKS,
at most once a minute, so forged ``kid``s cannot make Lake hammer the issuer.

The issuer must be ``https`` (``http`` only on the loopback interface, for local tests).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt

from lakehouse.errors import IdentityProviderUnavailable, TerminalError, Unauthorized

ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DISCOVERY = "/.well-known/openid-configuration"
REFRESH_FLOOR_SECONDS = 60.0
LEEWAY_SECONDS = 30
MAX_DOCUMENT_BYTES = 1 << 20

Fetch = Callable[[str], dict[str, Any]]


def fetch_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET a JSON object (the discovery document or the JWKS) from the issuer."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise IdentityProviderUnavailable(f"the OIDC issuer did not answer at {url}: {e}") from e
    if len(body) > MAX_DOCUMENT_BYTES:
        raise IdentityProviderUnavailable(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise IdentityProviderUnavailable(f"{url} did not answer JSON") from e
    if not isinstance(doc, dict):
        raise IdentityProviderUnavailable(f"{url} did not answer a JSON object")
    return doc


def check_url(url: str, what: str) -> str:
    """``url`` if it is https, or http on the loopback interface; else a configuration error."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return url
    raise TerminalError(f"{what} must be an https URL (http only on 127.0.0.1), not {url!r}")


@dataclass
class Verifier:
    """Validates ID tokens of one issuer for one audience (thread-safe; keeps its caches)."""

    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    jwks_ttl_seconds: float = 3600.0
    fetch: Fetch = fetch_json
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _jwks_uri: str | None = field(default=None, repr=False)
    _keys: dict[str, tuple[jwt.PyJWK, str | None]] = field(default_factory=dict, repr=False)
    _fetched_at: float = field(default=-1e18, repr=False)

    def __post_init__(self) -> None:
        check_url(self.issuer, "LAKE_OIDC_ISSUER")
        if not self.audience:
            raise TerminalError("LAKE_OIDC_AUDIENCE is required with LAKE_AUTH=oidc")
        refused = [a for a in self.algorithms if a not in ASYMMETRIC]
        if refused or not self.algorithms:
            raise TerminalError(
                f"LAKE_OIDC_ALGORITHMS may name only {', '.join(sorted(ASYMMETRIC))}; refused: {refused}"
            )

    def _discover(self) -> str:
        doc = self.fetch(self.issuer.rstrip("/") + DISCOVERY)
        if doc.get("issuer") != self.issuer:
            raise IdentityProviderUnavailable(
                f"the discovery document names issuer {doc.get('issuer')!r}, not {self.issuer!r}"
            )
        uri = doc.get("jwks_uri")
        if not isinstance(uri, str):
            raise IdentityProviderUnavailable("the discovery document has no jwks_uri")
        return check_url(uri, "jwks_uri")

    def _refresh(self) -> None:
        self._jwks_uri = self._jwks_uri or self._discover()
        doc = self.fetch(self._jwks_uri)
        keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        for entry in doc.get("keys") or []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or "kid" not in entry:
                continue
            try:
                keys[str(entry["kid"])] = (jwt.PyJWK.from_dict(entry), entry.get("alg"))
            except jwt.PyJWTError:
                continue  # a key type this process cannot use (an HMAC "oct" key, say): never trusted
        self._keys = keys
        self._fetched_at = time.monotonic()

    def signing_key(self, kid: str) -> tuple[jwt.PyJWK, str | None]:
        """The issuer's key ``kid`` and the algorithm its JWK names, if any (JWKS cached;
        refreshed when stale or the kid is new)."""
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > self.jwks_ttl_seconds or (kid not in self._keys and age > REFRESH_FLOOR_SECONDS):
                self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized(f"no key {kid!r} in the issuer's JWKS")
        return key

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid ID token; :class:`Unauthorized` for any other token."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Unauthorized("not a signed JWT") from e
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:
            raise Unauthorized(f"token algorithm {alg!r} is not allowed")
        if not isinstance(kid, str):
            raise Unauthorized("the token names no key (kid)")
        key, key_alg = self.signing_key(kid)
        if key_alg not in (None, alg):
            raise Unauthorized(f"key {kid!r} is for {key_alg}, not {alg}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise Unauthorized(f"token refused: {e}") from e
        return claims


def claim_values(claims: dict[str, Any], name: str) -> list[str]:
    """A claim as a list of strings: a list as is, a string split on spaces (like ``scope``)."""
    value = claims.get(name)
    if isinstance(value, str):
        return value.split()
    if isinstance(value, Iterable) and not isinstance(value, dict | bytes):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


_verifiers: dict[tuple[str, str, tuple[str, ...], float], Verifier] = {}
_verifiers_lock = threading.Lock()


def verifier(issuer: str, audience: str, algorithms: tuple[str, ...], ttl: float) -> Verifier:
    """The process's :class:`Verifier` for this configuration (its JWKS cache outlives requests)."""
    key = (issuer, audience, algorithms, ttl)
    with _verifiers_lock:
        if key not in _verifiers:
            _verifiers[key] = Verifier(issuer, audience, algorithms, ttl)
        return _verifiers[key]
