"""Ingest function: an S3 ObjectCreated event → lakehouse.ingest.upload, one report per record.

A terminal error (no contract, unreadable file) fails the invocation so the event goes to the
DLQ after Lambda's retries; a transient one (commit conflicts, throttling) fails it so it is
retried.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.ingest import metrics as quality
from functions.observability import function_logger, function_metrics, function_tracer
from lakehouse.access import audit
from lakehouse.config import get_settings
from lakehouse.errors import LakeError
from lakehouse.ingest.upload import ingest_upload

logger = function_logger("lake-ingest")
metrics = function_metrics("lake-ingest")
tracer = function_tracer("lake-ingest")


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    reports = []
    try:
        for record in event.records:
            bucket = record.s3.bucket.name
            obj = record.s3.get_object
            key = unquote_plus(obj.key)  # keys arrive URL-encoded in S3 events
            source = f"s3://{bucket}/{key}"
            logger.set_correlation_id(f"{source}#{obj.version_id or obj.get('eTag')}")
            try:
                report = ingest_upload(settings, bucket, key, obj.version_id or obj.get("eTag"))
            except LakeError as e:
                logger.error(
                    "ingest failed",
                    extra={
                        "source": source,
                        "terminal": e.terminal,
                        "error": type(e).__name__,
                        "reason": str(e),
                    },
                )
                metrics.add_metric(name="IngestFailed", unit=MetricUnit.Count, value=1)
                audit.record(
                    "s3",
                    "ingest",
                    type(e).__name__,
                    target=source,
                    detail=str(e),
                    request_id=context.aws_request_id,
                )
                raise
            body = report.to_dict()
            logger.info("ingested", extra=body)
            quality.publish(report, settings)
            for name in ("rows_accepted", "rows_quarantined"):
                metrics.add_metric(
                    name=name.title().replace("_", ""), unit=MetricUnit.Count, value=body.get(name) or 0
                )
            audit.record(
                "s3",
                "ingest",
                "duplicate" if body.get("duplicate") else "ok",
                target=source,
                rows=body.get("rows_accepted"),
                request_id=context.aws_request_id,
            )
            reports.append(body)
    finally:
        audit.flush_quietly(settings, logger)
    return {"reports": reports}
