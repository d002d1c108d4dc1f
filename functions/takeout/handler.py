"""Takeout function: SQS messages, one member range of a Takeout archive each → lakehouse.takeout.

The ingest function splits a zip larger than ``LAKE_TAKEOUT_RANGE_BYTES`` into member ranges
and queues one message per range; this function ingests each range (one commit per product
table per range, idempotent, so a message seen twice adds nothing). A tgz is queued whole: this
function streams it in chunks of about ``LAKE_TAKEOUT_RANGE_BYTES``, commits each, and when the
next chunk would not fit in the time it has left, queues the rest for itself (the next
invocation reads past the committed chunks). A failed range is reported back as a partial batch
failure: SQS redelivers it, and after ``maxReceiveCount`` receives it goes to the Takeout
dead-letter queue.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.observability import function_logger
from lakehouse.config import get_settings
from lakehouse.errors import LakeError
from lakehouse.takeout import ingest_range_message

logger = function_logger("lake-takeout")
processor = BatchProcessor(event_type=EventType.SQS)
# Seconds kept back from the invocation's time: the commit of a chunk and the continuation message.
RESERVE_SECONDS = 60.0


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> dict[str, Any]:
    deadline = None
    if lambda_context is not None:
        left = lambda_context.get_remaining_time_in_millis() / 1000
        deadline = time.monotonic() + max(left - RESERVE_SECONDS, 0.0)
    try:
        report = ingest_range_message(get_settings(), record.body, deadline)
    except LakeError as e:
        logger.error(
            "takeout range failed",
            extra={
                "message_id": record.message_id,
                "terminal": e.terminal,
                "error": type(e).__name__,
                "reason": str(e),
            },
        )
        raise
    body = report.to_dict()
    logger.info("takeout range ingested", extra=body)
    return body


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
