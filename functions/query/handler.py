"""Query function behind a function URL: SQL, table metadata and health, routed by Powertools."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakehouse import query
from lakehouse.config import get_settings
from lakehouse.errors import BadRequest, LakeError
from lakehouse.logs import function_logger

logger = function_logger("lake-query")
app = LambdaFunctionUrlResolver()


class SqlRequest(BaseModel):
    """Body of ``POST /sql``."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1)
    as_of: int | str | None = None
    explain: bool = False


def _error(status: int, error: str, message: str) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"error": error, "message": message}),
    )


@app.exception_handler(LakeError)
def _lake_error(e: LakeError) -> Response[str]:
    if e.http_status >= 500:
        logger.warning("request failed", extra={"error": type(e).__name__, "reason": str(e)})
    return _error(e.http_status, type(e).__name__, str(e))


@app.exception_handler(ValidationError)
def _bad_request(e: ValidationError) -> Response[str]:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()
    )
    return _error(400, "BadRequest", problems)


@app.exception_handler(json.JSONDecodeError)
def _bad_json(e: json.JSONDecodeError) -> Response[str]:
    return _error(400, "BadRequest", f"the body is not valid JSON: {e}")


@app.post("/sql")
def post_sql() -> dict[str, Any]:
    body = app.current_event.json_body
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    request = SqlRequest.model_validate(body)
    return query.run_sql(get_settings(), request.sql, request.as_of, request.explain).to_dict()


@app.get("/tables")
def get_tables() -> dict[str, Any]:
    return {"tables": query.tables_overview(get_settings())}


@app.get("/tables/<name>")
def get_table(name: str) -> dict[str, Any]:
    return query.describe_table(get_settings(), name)


@app.get("/health/live")
def live() -> dict[str, Any]:
    return {"live": True}


@app.get("/health/ready")
def ready() -> Response[str]:
    report = query.health(get_settings())
    return Response(
        status_code=200 if report["ready"] else 503,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(report),
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
