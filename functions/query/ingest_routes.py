"""Routes of the query function: small batches over HTTP (``/ingest``).

``POST /ingest/{dataset}`` (a ``write`` key) takes an NDJSON or CSV body of up to
``LAKE_INGEST_API_MAX_BYTES`` (6 MB, a function URL's limit), stores it in the landing bucket
and answers 202 with the batch id; ``GET /ingest/{id}`` (a ``read`` key) says ``pending``,
``committed`` (with the ingest report) or ``failed`` (with the reason). Each key may post
``LAKE_INGEST_API_RATE`` batches a second (bursts of twice that); past it: 429 and ``Retry-After``.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel

from functions.query.common import COMMON, caller, error_responses
from lakehouse.config import get_settings
from lakehouse.errors import RateLimited
from lakehouse.ingest import api

router = Router()
RAW_BODY_PREFIX = "/ingest/"  # bodies here are CSV or NDJSON, kept as sent (not read as JSON)
_limiter: api.RateLimiter | None = None


class Accepted(BaseModel):
    id: str
    key: str
    version: str
    status: str = "pending"


class Status(BaseModel):
    id: str
    status: str
    duplicate: bool | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None


def _limit(key_id: str) -> None:
    global _limiter
    settings = get_settings()
    if _limiter is None or _limiter.rate != settings.ingest_api_rate:
        _limiter = api.RateLimiter(settings.ingest_api_rate, 2 * settings.ingest_api_rate)
    _limiter.take(key_id)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers=headers,
    )


@router.post(
    "/ingest/<dataset>",
    responses={
        202: {"description": "Stored; ingest follows", "content": {"application/json": {"model": Accepted}}},
        **COMMON,
        **error_responses(404),
        413: {"description": "Body too large"},
        429: {"description": "Too many requests for this key (see Retry-After)"},
    },
    summary="Ingest a small NDJSON or CSV batch",
)
def post_ingest(dataset: str) -> Response[str]:
    who = caller(router)
    who.require("write")
    try:
        _limit(who.id)
    except RateLimited as e:
        headers = {"Retry-After": str(e.retry_after)}
        return _json(429, {"error": "RateLimited", "message": str(e)}, headers)
    event = router.current_event
    body = event.decoded_body or ""
    raw = body.encode() if isinstance(body, str) else body
    headers = {k.lower(): v for k, v in (event.headers or {}).items()}
    stored = api.submit(get_settings(), dataset, raw, headers.get("content-type"))
    router.append_context(target=stored["key"])
    return _json(202, {**stored, "status": "pending"})


@router.get(
    "/ingest/<batch_id>",
    responses={
        200: {"description": "The batch's state", "content": {"application/json": {"model": Status}}},
        **COMMON,
        **error_responses(404),
    },
    summary="State of an ingested batch",
)
def get_ingest(batch_id: str) -> dict[str, Any]:
    caller(router).require("read")
    return api.status(get_settings(), batch_id)
