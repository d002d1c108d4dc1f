"""What the query function's routers share: error bodies, documented responses, the caller."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from pydantic import BaseModel

from lakehouse.access.auth import LOCAL, Principal
from lakehouse.config import Settings
from lakehouse.duck import json_depth, json_value


class ErrorBody(BaseModel):
    error: str
    message: str | None = None


def error_responses(*codes: int) -> dict[int, Any]:
    """OpenAPI responses for the given error statuses (all with an :class:`ErrorBody`)."""
    text = {
        400: "Bad request",
        401: "No valid key",
        403: "Not allowed for this key",
        404: "Not found",
        503: "Temporarily unavailable",
    }
    return {c: {"description": text[c], "content": {"application/json": {"model": ErrorBody}}} for c in codes}


COMMON = {200: {"description": "OK"}, **error_responses(400, 401, 403, 503)}


def caller(router: BaseRouter) -> Principal:
    """Who made the request (set by the authentication middleware; ``local`` without auth)."""
    found = router.context.get("principal")
    return found if isinstance(found, Principal) else LOCAL


def dumps(body: Any) -> str:
    """Response bodies as JSON, by orjson (values it does not know as :func:`json_value` gives them)."""
    return orjson.dumps(body, default=json_value, option=orjson.OPT_NON_STR_KEYS).decode()


def _refusal(status: int, error: str, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": error, "message": message}),
        "isBase64Encoded": False,
    }


def early_refusal(event: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """A 4xx response for a body over ``LAKE_MAX_REQUEST_BYTES`` or a JSON body nested deeper than
    ``LAKE_QUERY_MAX_NESTING``, decided without parsing it; None for a body within both."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        return _refusal(400, "BadRequest", "the body is not text")
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())
    if size > settings.max_request_bytes:
        return _refusal(
            413,
            "RequestTooLarge",
            f"the body has {size} bytes; the limit is {settings.max_request_bytes} (LAKE_MAX_REQUEST_BYTES)",
        )
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body).decode()
        except (ValueError, UnicodeDecodeError):
            return _refusal(400, "BadRequest", "the body is not base64-encoded UTF-8 text")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    kind = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind not in ("application/json", ""):  # CSV, NDJSON: each route parses its own lines
        return None
    depth = json_depth(body)
    if depth > settings.query_max_nesting:
        return _refusal(
            400,
            "BadRequest",
            f"the body nests {depth} deep; the limit is {settings.query_max_nesting} "
            "(LAKE_QUERY_MAX_NESTING)",
        )
    return None
