"""Routes of the query function: the web console (``GET /console`` and its files).

The page holds no data and is served without authentication; its API calls carry a bearer token
(an API key or an OIDC ID token) kept in the tab's ``sessionStorage``. The files ship as package
data beside this module (``console/``; third-party ones in ``console/vendor/``, see
``console/vendor.py`` at the repository root). Every file is served with a strict
Content-Security-Policy (no inline script or style, no eval, nothing from another origin), an
ETag (``304`` on ``If-None-Match``) and ``Cache-Control``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from lakehouse.errors import TerminalError

router = Router()

PREFIX = "/console"
CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".md": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE files
}


class AssetNotFound(TerminalError):
    """No console file of that name."""

    http_status = 404


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str
    etag: str
    cache_control: str


@cache
def assets() -> dict[str, Asset]:
    """Every console file by its path under ``/console/`` (``""`` is the page), read once."""
    root = resources.files("functions.query") / "console"
    found: dict[str, Asset] = {}
    for folder, prefix in ((root, ""), (root / "vendor", "vendor/")):
        for entry in folder.iterdir():
            if not entry.is_file():
                continue
            suffix = "." + entry.name.rsplit(".", 1)[1] if "." in entry.name else ""
            if suffix not in TYPES:
                continue
            body = entry.read_text(encoding="utf-8")
            etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
            # The page is revalidated every time (new releases show at once); the files it
            # names are fresh for an hour, then revalidated by ETag.
            cache = "no-cache" if entry.name == "index.html" else "public, max-age=3600"
            found[prefix + entry.name] = Asset(body, TYPES[suffix], etag, cache)
    found[""] = found["index.html"]
    return found


def serve(name: str) -> Response[str]:
    """The console file ``name`` with its headers; ``304`` when the caller holds this version."""
    asset = assets().get(name)
    if asset is None:
        raise AssetNotFound(f"no console file {name!r}")
    headers = {
        "Content-Security-Policy": CSP,
        "Cache-Control": asset.cache_control,
        "ETag": asset.etag,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }
    held = router.current_event.headers.get("if-none-match") or ""
    if asset.etag in (tag.strip() for tag in held.split(",")) or held.strip() == "*":
        return Response(status_code=304, content_type=asset.content_type, body="", headers=headers)
    return Response(
        status_code=200, content_type=asset.content_type, body=asset.body, headers=headers, compress=True
    )


def is_console(path: str) -> bool:
    """Whether ``path`` is one of the console's open (unauthenticated) paths."""
    return path == PREFIX or path.startswith(PREFIX + "/")


@router.get(PREFIX, include_in_schema=False)
def page() -> Response[str]:
    return serve("")


@router.get(PREFIX + "/<name>", include_in_schema=False)
def asset(name: str) -> Response[str]:
    return serve(name)


@router.get(PREFIX + "/vendor/<name>", include_in_schema=False)
def vendored(name: str) -> Response[str]:
    return serve("vendor/" + name)
