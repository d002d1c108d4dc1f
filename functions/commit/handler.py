"""Commit function: one committer per table → lakehouse.tables.committer.

Ingest functions stage commit requests and send one message per request to a FIFO queue with
the dataset as message group: SQS hands one group to one invocation at a time, so each table has
one committer, and the queue's delay (the commit interval) lets the requests of a few seconds
gather into one batch. A message names a table to drain; one invocation commits each table it
names once. A schedule sweeps every table with staged requests (requests whose message was lost
to a failed run are not left behind).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.observability import function_logger
from lakehouse.config import get_settings
from lakehouse.tables.committer import commit_pending, datasets_with_requests

logger = function_logger("lake-commit")
processor = SqsFifoPartialProcessor()
_drained: set[str] = set()  # tables committed in this invocation: later messages are no-ops


def record_handler(record: SQSRecord) -> dict[str, Any]:
    dataset = json.loads(record.body)["dataset"]
    if dataset in _drained:
        return {"dataset": dataset, "batches": []}
    batches = [asdict(b) for b in commit_pending(get_settings(), dataset)]
    _drained.add(dataset)
    logger.info("committed", extra={"dataset": dataset, "batches": batches})
    return {"dataset": dataset, "batches": batches}


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _drained.clear()
    if "Records" not in event:  # the schedule: every table with staged requests
        settings = get_settings()
        done = {d: len(commit_pending(settings, d)) for d in datasets_with_requests(settings)}
        logger.info("sweep", extra={"batches": done})
        return {"batches": done}
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
