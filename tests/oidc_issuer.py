"""A small OpenID Connect issuer for tests: an RSA and an EC key made here, the discovery
document and the JWKS served over HTTP on 127.0.0.1, and ID tokens signed with those keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """Start with :meth:`start`; ``url`` is the issuer; ``hits`` counts requests per path."""

    def __init__(self, audience: str = "lake-console") -> None:
        self.audience = audience
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.hits: Counter[str] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/issuer"

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        return {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
                {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"},
            ]
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                issuer.hits[self.path] += 1
                if self.path == "/issuer/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks.json"}
                elif self.path == "/issuer/jwks.json":
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler

    def start(self) -> Issuer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.url, "aud": self.audience, "sub": "user-1", "iat": now, "exp": now + 600}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, alg: str = "RS256", kid: str | None = None, **claims: Any) -> str:
        """A token signed with the issuer's RSA (RS256) or EC (ES256) key."""
        key = self.rsa if alg.startswith(("RS", "PS")) else self.ec
        kid = kid or ("rsa-1" if key is self.rsa else "ec-1")
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers={"kid": kid})

    def unsigned(self, **claims: Any) -> str:
        return jwt.encode(self.claims(**claims), None, algorithm="none", headers={"kid": "rsa-1"})

    def hmac_with_public_key(self, **claims: Any) -> str:
        """HS256 'signed' with the RSA public key's PEM: the classic algorithm-confusion forgery."""
        pem = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        payload = b64url(json.dumps(self.claims(**claims)).encode())
        signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(signature)}"

    def tampered(self, **claims: Any) -> str:
        """A good token whose payload was changed after signing (here: a wider scope)."""
        header, _, signature = self.token(**claims).split(".")
        payload = b64url(json.dumps(self.claims(**{**claims, "lake_scope": "admin"})).encode())
        return f"{header}.{payload}.{signature}"
