"""The ingest dead-letter queue: failed ObjectCreated events, listed and re-driven after a fix.

In AWS the queue is the ingest function's on-failure destination (``IngestDLQ`` in
template.yaml: messages carry ``requestPayload`` and ``responsePayload``); locally ``lake up``
creates the same queue on the local endpoint and ``lake put`` / ``lake serve`` send failed events
to it in the same shape. ``LAKE_DLQ_URL`` names the queue.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lakehouse.config import Settings
from lakehouse.errors import LakeError, TerminalError
from lakehouse.storage import sqs_client


@dataclass
class DeadLetter:
    message_id: str
    sources: list[str]
    error_type: str
    error: str
    failed_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _queue(settings: Settings) -> str:
    if not settings.dlq_url:
        raise TerminalError(
            "no dead-letter queue configured: set LAKE_DLQ_URL (or start the stack with `lake up`)"
        )
    return settings.dlq_url


def send(settings: Settings, event: dict[str, Any], error: LakeError, function: str = "lake-ingest") -> None:
    """Park a failed event, in the shape of a Lambda on-failure destination record."""
    record = {
        "version": "1.0",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 1,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)},
    }
    sqs_client(settings).send_message(QueueUrl=_queue(settings), MessageBody=json.dumps(record))


def _event_of(body: dict[str, Any]) -> dict[str, Any]:
    """The original event: a destination record wraps it; a plain DLQ message is the event."""
    payload = body.get("requestPayload", body)
    return payload if isinstance(payload, dict) else {}


def _entry(message: dict[str, Any]) -> DeadLetter:
    body = json.loads(message["Body"])
    event = _event_of(body)
    sources = [
        f"s3://{r['s3']['bucket']['name']}/{r['s3']['object']['key']}" for r in event.get("Records", [])
    ]
    response = body.get("responsePayload") or {}
    return DeadLetter(
        message["MessageId"],
        sources,
        response.get("errorType", "?"),
        response.get("errorMessage", ""),
        body.get("timestamp", ""),
    )


def _receive(settings: Settings, visibility: int) -> list[dict[str, Any]]:
    sqs, url = sqs_client(settings), _queue(settings)
    seen: dict[str, dict[str, Any]] = {}
    while True:
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility, WaitTimeSeconds=0
        ).get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in seen]
        if not fresh:
            return list(seen.values())
        seen.update({m["MessageId"]: m for m in fresh})


def list_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every parked event (they stay in the queue)."""
    return [_entry(m) for m in _receive(settings, visibility=0)]


def replay(
    settings: Settings, handler: Callable[[dict[str, Any]], Any], message_id: str | None = None
) -> list[dict[str, Any]]:
    """Re-drive parked events through ``handler``; a message is deleted only when it succeeds."""
    sqs, url = sqs_client(settings), _queue(settings)
    results = []
    for message in _receive(settings, visibility=60):
        if message_id and message["MessageId"] != message_id:
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
            continue
        entry = _entry(message)
        try:
            response = handler(_event_of(json.loads(message["Body"])))
        except LakeError as e:
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
            results.append(
                {**entry.to_dict(), "replayed": False, "error_type": type(e).__name__, "error": str(e)}
            )
            continue
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        results.append({**entry.to_dict(), "replayed": True, "response": response})
    return results
