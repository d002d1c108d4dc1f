"""Ingest function: an S3 ObjectCreated event → lakehouse.ingest, one report per record.

A terminal error (no contract, unreadable file) fails the invocation so the event goes to the
DLQ after Lambda's retries; a transient one (commit conflicts, throttling) fails it so it is
retried.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from lakehouse.config import get_settings
from lakehouse.errors import LakeError
from lakehouse.ingest import ingest_object
from lakehouse.logs import function_logger

logger = function_logger("lake-ingest")


@logger.inject_lambda_context
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    reports = []
    for record in event.records:
        bucket = record.s3.bucket.name
        obj = record.s3.get_object
        key = unquote_plus(obj.key)  # keys arrive URL-encoded in S3 events
        try:
            report = ingest_object(settings, bucket, key, obj.version_id or obj.get("eTag"))
        except LakeError as e:
            logger.error(
                "ingest failed",
                extra={
                    "source": f"s3://{bucket}/{key}",
                    "terminal": e.terminal,
                    "error": type(e).__name__,
                    "reason": str(e),
                },
            )
            raise
        logger.info("ingested", extra=report.to_dict())
        reports.append(report.to_dict())
    return {"reports": reports}
