"""What the query function's routers share: error bodies, documented responses, the caller."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from pydantic import BaseModel

from lakehouse.access.auth import LOCAL, Principal


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
