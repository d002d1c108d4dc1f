"""Small batches over HTTP: ``POST /ingest/{dataset}`` stores an NDJSON or CSV body in the landing
bucket under ``<dataset>/_api/<hex>.<ext>``; from there it is an upload like any other (the
bucket's ObjectCreated event, the same validation, quarantine, ledger and committer).

A batch id is ``<dataset>.<hex>``; its status comes from the ledger: ``committed`` (with the
ingest report, or ``duplicate``), ``failed`` (the terminal error that sent it to the DLQ) or
``pending`` (stored, not yet committed).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lakehouse.config import Settings
from lakehouse.contracts.model import load_contract
from lakehouse.errors import BadRequest, NotFound, PayloadTooLarge, RateLimited, UnsupportedFormat
from lakehouse.storage import list_objects, s3_client
from lakehouse.tables.ledger import Ledger

API_FOLDER = "_api"
FORMATS = {  # content type (without parameters) → file suffix
    "text/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json": "ndjson",
}
_ID = re.compile(r"^(?P<dataset>[A-Za-z0-9_\-]+)\.(?P<hex>[0-9a-f]{32})$")


def format_of(content_type: str | None) -> str:
    """The file suffix for a request's content type (CSV or NDJSON)."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in FORMATS:
        raise UnsupportedFormat(
            f"content type {content_type or '(none)'!r} is not taken: send text/csv or application/x-ndjson"
        )
    return FORMATS[kind]


def submit(settings: Settings, dataset: str, body: bytes, content_type: str | None) -> dict[str, Any]:
    """Store one batch for ingest; its id and object key. Nothing is stored for a bad request."""
    load_contract(settings, dataset)  # ContractNotFound (404) before anything is written
    if len(body) > settings.ingest_api_max_bytes:
        raise PayloadTooLarge(
            f"the body has {len(body)} bytes; at most {settings.ingest_api_max_bytes} are taken"
        )
    if not body.strip():
        raise BadRequest("the body is empty: send NDJSON lines or a CSV with a header row")
    suffix = format_of(content_type)
    hexid = uuid.uuid4().hex
    key = f"{dataset}/{API_FOLDER}/{hexid}.{suffix}"
    put = s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=body)
    return {"id": f"{dataset}.{hexid}", "key": key, "version": put.get("VersionId") or put["ETag"].strip('"')}


def status(settings: Settings, batch_id: str) -> dict[str, Any]:
    """``pending``, ``committed`` (with the report) or ``failed`` (with the reason)."""
    match = _ID.match(batch_id)
    if match is None:
        raise NotFound(f"{batch_id!r} is not an ingest id (<dataset>.<32 hex digits>)")
    dataset, hexid = match["dataset"], match["hex"]
    keys = [k for k, _ in list_objects(settings, settings.landing_bucket, f"{dataset}/{API_FOLDER}/{hexid}.")]
    if not keys:
        raise NotFound(f"no ingest {batch_id}")
    key = keys[0]
    head = s3_client(settings).head_object(Bucket=settings.landing_bucket, Key=key)
    version = head.get("VersionId") or head["ETag"].strip('"')
    ledger = Ledger(settings, dataset)
    entry = ledger.lookup(key, version)
    if entry is not None and entry.state != "claimed":
        report = dict(entry.report or {})
        report.pop("attempt", None)
        return {
            "id": batch_id,
            "status": "committed",
            "duplicate": entry.state == "duplicate",
            "report": report,
        }
    failure = ledger.failure(key, version)
    if failure is not None:
        return {"id": batch_id, "status": "failed", "error": failure["error"], "reason": failure["reason"]}
    return {"id": batch_id, "status": "pending"}


@dataclass
class RateLimiter:
    """A token bucket per API key: ``rate`` requests a second, bursts of ``burst``.

    Per process (a warm function instance, or `lake serve`): a key spread over many instances
    gets up to ``rate`` on each; the function's reserved concurrency bounds the total.
    """

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str) -> None:
        """Spend one token of ``key``; raises :class:`RateLimited` (with ``retry_after``) if none."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            wait = (1 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            raise RateLimited(
                f"more than {self.rate:g} ingest requests a second for this key", max(1, round(wait + 0.5))
            )
        self._buckets[key] = (tokens - 1, now)
