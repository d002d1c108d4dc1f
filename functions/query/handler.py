"""Query function behind a function URL: SQL, table metadata and health, routed by Powertools.

Every request is authenticated (``LAKE_AUTH``), validated against the models below (which are
also the published ``/openapi.json``), audited, and measured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from functions.observability import function_logger, function_metrics, function_tracer
from functions.query import artifact_routes, console_routes, ingest_routes, search_routes
from functions.query.common import COMMON, caller, dumps, early_refusal
from functions.query.common import error_responses as _error_responses
from lakehouse.access import audit
from lakehouse.access.auth import LOCAL, Principal, authenticate
from lakehouse.config import get_settings
from lakehouse.duck import with_id_strings
from lakehouse.errors import LakeError, StoreUnavailable
from lakehouse.ingest import quarantine
from lakehouse.query import engine as query
from lakehouse.query import geo, history, timeseries

logger = function_logger("lake-query")
metrics = function_metrics("lake-query")
tracer = function_tracer("lake-query")
app = LambdaFunctionUrlResolver(enable_validation=True, serializer=dumps)
app.configure_openapi(
    title="Lake query API",
    version="1.0.0",
    description="Read-only SQL, table metadata and health over Lake's Iceberg tables.",
)
OPEN_PATHS = {"/health/live", "/health/ready", "/openapi.json"}


class SqlRequest(BaseModel):
    """Body of ``POST /sql``."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, description="One SELECT/WITH statement (LAKE_QUERY_MAX_SQL_CHARS).")
    as_of: int | str | None = Field(
        None, description="Snapshot id (a number or a string of digits) or ISO-8601 time."
    )
    explain: bool = Field(False, description="Also return DuckDB's analysed plan.")


class SqlResponse(BaseModel):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    snapshots: dict[str, int | None]
    snapshots_str: dict[str, str | None] = Field(
        default_factory=dict, description="The same snapshot ids as strings (exact in JavaScript)."
    )
    row_count: int
    truncated: bool
    elapsed_ms: float
    plan: str | None = None
    cached: bool = False
    stats: dict[str, int] = Field(
        default_factory=dict,
        description="files_planned, files_read, bytes_from_cache, bytes_from_store of the scans.",
    )


def _error(status: int, error: str, message: str | None) -> Response[str]:
    body = {"error": error} if message is None else {"error": error, "message": message}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@app.exception_handler(LakeError)
def _lake_error(e: LakeError) -> Response[str]:
    if e.http_status >= 500:
        logger.warning("request failed", extra={"error": type(e).__name__, "reason": str(e)})
    if e.http_status in (401, 403):  # no data in the body of an auth failure
        return _error(e.http_status, "Unauthorized" if e.http_status == 401 else "Forbidden", None)
    return _error(e.http_status, type(e).__name__, str(e))


@app.exception_handler(RequestValidationError)
def _bad_request(e: RequestValidationError) -> Response[str]:
    # Validation runs before the middleware: a caller without a valid key learns nothing (401).
    event = app.current_event
    if event.path not in OPEN_PATHS:
        try:
            authenticate(get_settings(), dict(event.headers or {}), _iam_arn(event))
        except LakeError as denied:
            return _lake_error(denied)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())) or 'request'}: {err.get('msg', 'invalid')}"
        for err in e.errors()
    )
    return _error(400, "BadRequest", problems)


def _iam_arn(event: Any) -> str | None:
    return event.request_context.authorizer.iam.user_arn if event.request_context.authorizer else None


def _json_as_sent(event: dict[str, Any]) -> dict[str, Any]:
    """Read a body as JSON whatever content type it came with (none, ``text/plain``, or curl's
    default for ``-d``, ``application/x-www-form-urlencoded``): every route takes JSON but
    ``POST /ingest/{dataset}``, whose body is CSV or NDJSON as its content type says."""
    headers = event.get("headers") or {}
    declared = next((k for k in headers if k.lower() == "content-type"), None)
    kind = headers.get(declared, "") if declared else ""
    raw_body_route = str(event.get("rawPath") or "").startswith(ingest_routes.RAW_BODY_PREFIX)
    as_json = not kind.lower().startswith(("application/json", "multipart/"))
    if event.get("body") and not raw_body_route and as_json:
        headers = {k: v for k, v in headers.items() if k != declared}
        return {**event, "headers": {**headers, "content-type": "application/json"}}
    return event


def principal() -> Principal:
    return caller(app)


def _authenticate_and_audit(
    app: LambdaFunctionUrlResolver, next_middleware: Callable[..., Response[Any]]
) -> Response[Any]:
    settings = get_settings()
    event = app.current_event
    path = event.path
    if path in OPEN_PATHS or console_routes.is_console(path):
        return next_middleware(app)
    started = time.perf_counter()
    outcome = "error"
    who = LOCAL
    try:
        who = authenticate(settings, dict(event.headers or {}), _iam_arn(event))
        app.append_context(principal=who)
        response = next_middleware(app)
        outcome = "ok" if response.status_code < 400 else f"http {response.status_code}"
        return response
    except LakeError as e:
        outcome = type(e).__name__
        raise
    finally:
        ms = (time.perf_counter() - started) * 1000
        metrics.add_metric(name="RequestMs", unit=MetricUnit.Milliseconds, value=ms)
        audit.record(
            who.id,
            f"{event.http_method} {path}",
            outcome,
            tenant=who.tenant,
            target=app.context.get("target"),
            rows=app.context.get("rows"),
            request_id=event.request_context.request_id,
        )


app.use(middlewares=[_authenticate_and_audit])
app.include_router(search_routes.router)
app.include_router(artifact_routes.router)
app.include_router(console_routes.router)
app.include_router(ingest_routes.router)


@app.post(
    "/sql",
    responses={
        **COMMON,
        **_error_responses(404),
        200: {"description": "Query result", "content": {"application/json": {"model": SqlResponse}}},
    },
)
def post_sql(request: Annotated[SqlRequest, Body()]) -> dict[str, Any]:
    result = query.run_sql(get_settings(), request.sql, request.as_of, request.explain, principal=principal())
    app.append_context(target=",".join(result.snapshots) or None, rows=len(result.rows))
    metrics.add_metric(name="QueryMs", unit=MetricUnit.Milliseconds, value=result.elapsed_ms)
    metrics.add_metric(name="RowsReturned", unit=MetricUnit.Count, value=len(result.rows))
    return with_id_strings(result.to_dict())


@app.get("/tables", responses=COMMON)
def get_tables(
    health: Annotated[
        bool, Query(description="Also count small data files per table (reads every manifest).")
    ] = False,
) -> dict[str, Any]:
    return {"tables": query.tables_overview(get_settings(), principal=principal(), health=health)}


@app.get("/tables/<name>", responses={**COMMON, **_error_responses(404)})
def get_table(
    name: str,
    as_of: Annotated[str | None, Query(description="Snapshot id or ISO-8601 time; default current.")] = None,
) -> dict[str, Any]:
    app.append_context(target=name)
    return with_id_strings(query.describe_table(get_settings(), name, principal=principal(), as_of=as_of))


@app.get("/activity", responses=COMMON)
def get_activity(
    bucket: Annotated[str, Query(description="hour or day.")] = "day",
) -> dict[str, Any]:
    from lakehouse.maintenance import recorded_runs  # only here: it loads the table services

    activity = history.activity(get_settings(), bucket, principal=principal())
    return {**activity, "runs": recorded_runs(get_settings())}


@app.get("/tables/<name>/snapshots", responses={**COMMON, **_error_responses(404)})
def get_snapshots(name: str) -> dict[str, Any]:
    app.append_context(target=name)
    return with_id_strings(history.list_snapshots(get_settings(), name, principal=principal()))


@app.get("/tables/<name>/changes", responses={**COMMON, **_error_responses(404)})
def get_changes(
    name: str,
    from_: Annotated[str, Query(alias="from", description="Snapshot id; changes after it.")],
    to: Annotated[str | None, Query(description="Snapshot id; default the current one.")] = None,
) -> dict[str, Any]:
    app.append_context(target=name)
    changes = history.changes(get_settings(), name, from_, to, principal=principal())
    app.append_context(rows=changes["row_count"])
    return with_id_strings(changes)


@app.get("/quarantine/<dataset>", responses={**COMMON, **_error_responses(404)})
def get_quarantine(
    dataset: str,
    source: Annotated[str | None, Query(description="Only rows of this upload (key or s3:// URI).")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Most rows returned.")] = 100,
) -> dict[str, Any]:
    app.append_context(target=f"{dataset}__quarantine")
    body = quarantine.list_quarantine(get_settings(), dataset, source, limit, principal=principal())
    app.append_context(rows=len(body["rows"]))
    return body


@app.post("/quarantine/<dataset>/replay", responses={**COMMON, **_error_responses(404)})
def post_replay(
    dataset: str,
    source: Annotated[str | None, Query(description="Only rows of this upload (key or s3:// URI).")] = None,
) -> dict[str, Any]:
    app.append_context(target=f"{dataset}__quarantine")
    report = quarantine.replay(get_settings(), dataset, source, principal=principal())
    return report.to_dict()


@app.get("/timeseries/<table>", responses={**COMMON, **_error_responses(404)})
def get_timeseries(
    table: str,
    agg: Annotated[str, Query(min_length=1, description="avg, min, max, sum or count.")],
    bucket: Annotated[str, Query(min_length=1, description="1m, 1h, 1d, 1w, 1mo or 1y.")],
    column: Annotated[str | None, Query(description="Column to aggregate (count: optional).")] = None,
    from_: Annotated[str | None, Query(alias="from", description="ISO-8601 start (inclusive).")] = None,
    to: Annotated[str | None, Query(description="ISO-8601 end (exclusive).")] = None,
    group_by: Annotated[str | None, Query(description="Also group by this column.")] = None,
    explain: Annotated[bool, Query(description="Also return DuckDB's analysed plan.")] = False,
) -> dict[str, Any]:
    app.append_context(target=table)
    result = timeseries.rollup(
        get_settings(), table, column, agg, bucket, from_, to, group_by, explain, principal=principal()
    )
    app.append_context(rows=len(result.rows))
    return with_id_strings(result.to_dict())


@app.get("/geo/<table>", responses={**COMMON, **_error_responses(404)})
def get_geo(
    table: str,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
    near: Annotated[str | None, Query(description="lon,lat (with radius_m)")] = None,
    radius_m: Annotated[float | None, Query(gt=0, description="Radius in metres around near.")] = None,
    from_: Annotated[str | None, Query(alias="from", description="ISO-8601 start (inclusive).")] = None,
    to: Annotated[str | None, Query(description="ISO-8601 end (exclusive).")] = None,
    lat_column: Annotated[str, Query(description="Latitude column.")] = "lat",
    lon_column: Annotated[str, Query(description="Longitude column.")] = "lon",
    explain: Annotated[bool, Query(description="Also return DuckDB's analysed plan.")] = False,
) -> dict[str, Any]:
    app.append_context(target=table)
    result = geo.geo_query(
        get_settings(),
        table,
        bbox,
        near,
        radius_m,
        from_,
        to,
        lat_column,
        lon_column,
        explain,
        principal=principal(),
    )
    app.append_context(rows=len(result.rows))
    return with_id_strings(result.to_dict())


@app.get("/health/live")
def live() -> dict[str, Any]:
    return {"live": True}


@app.get("/health/ready", responses={200: {"description": "Ready"}, **_error_responses(503)})
def ready() -> dict[str, Any]:
    report = query.health(get_settings())
    if not report["ready"]:
        failing = {name: check.get("error") for name, check in report["checks"].items() if not check["ok"]}
        raise StoreUnavailable(f"not ready: {json.dumps(failing)}")
    return report


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=app.get_openapi_json_schema()
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.LAMBDA_FUNCTION_URL)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    refused = early_refusal(event, settings)  # before parsing deeply and before any key lookup
    if refused is not None:
        return refused
    try:
        return app.resolve(_json_as_sent(event), context)
    finally:
        audit.flush_soon(settings, logger)
