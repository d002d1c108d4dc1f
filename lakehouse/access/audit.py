"""The audit trail: who did what, when, to what, how many rows, and how it ended.

Every ingest, query, maintenance run and key change records a row. Rows are written in
batches as one Parquet object in a spool (:func:`flush`); the maintenance job ``audit`` folds
the spool into the Iceberg table ``<namespace>.audit`` (partitioned by month). Queries of
``<namespace>.audit`` read the table, the spool not yet folded and the rows of their own process
not yet spooled. Only admin keys can read it.

The query function does not wait for the spool: :func:`flush_soon` hands the rows to a
background writer that writes within ``LAKE_AUDIT_FLUSH_SECONDS`` (and at exit), so no answer
waits for an object-store PUT. Each row is also logged as a structured line at once (on AWS,
CloudWatch keeps it even if the instance is recycled before its batch is written).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import json
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakehouse.config import Settings

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

AUDIT_TABLE = "audit"
SPOOL_PREFIX = "_lake/audit-spool/"
FOLDED = "lake.audit.folded"
_pending: list[dict[str, Any]] = []
_lock = threading.Lock()
_log = logging.getLogger("lake.audit")
_flushing = threading.Lock()
_writer: threading.Thread | None = None
_wake = threading.Event()


def audit_schema() -> Schema:
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

    return Schema(
        NestedField(1, "ts", TimestamptzType(), required=True),
        NestedField(2, "principal", StringType(), required=True, doc="key id, IAM ARN or 'local'"),
        NestedField(3, "tenant", StringType(), required=False),
        NestedField(
            4, "action", StringType(), required=True, doc="ingest, query, maintenance, key.create, ..."
        ),
        NestedField(5, "target", StringType(), required=False, doc="table, object or key"),
        NestedField(6, "rows", LongType(), required=False),
        NestedField(7, "outcome", StringType(), required=True, doc="ok or the error class"),
        NestedField(8, "detail", StringType(), required=False),
        NestedField(9, "request_id", StringType(), required=False),
    )


def record(
    principal: str,
    action: str,
    outcome: str = "ok",
    target: str | None = None,
    rows: int | None = None,
    detail: str | None = None,
    tenant: str | None = None,
    request_id: str | None = None,
) -> None:
    """Queue one audit row (written by the next :func:`flush`)."""
    row = {
        "ts": dt.datetime.now(dt.UTC),
        "principal": principal,
        "tenant": tenant,
        "action": action,
        "target": target,
        "rows": rows,
        "outcome": outcome,
        "detail": (detail or "")[:2000] or None,
        "request_id": request_id,
    }
    with _lock:
        _pending.append(row)
    if _log.isEnabledFor(logging.INFO):
        _log.info(json.dumps({"audit": row}, default=str))


def pending() -> int:
    with _lock:
        return len(_pending)


def flush(settings: Settings) -> int:
    """Write the queued rows as one Parquet object in the audit spool; returns how many.

    One PUT, no catalog commit: concurrent functions never contend for the audit table. The
    spool is folded into the Iceberg table by :func:`fold` (a maintenance job), and queries of
    the audit table read the table plus the spool not yet folded.
    """
    import io

    import pyarrow.parquet as pq

    from lakehouse.storage import put_object

    with _flushing:  # one writer at a time; the rows stay queued (and visible) until written
        with _lock:
            rows = list(_pending)
        if not rows:
            return 0
        name = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
        data = pa.Table.from_pylist(rows, schema=audit_schema().as_arrow())
        buffer = io.BytesIO()
        pq.write_table(data, buffer)
        # Arrow's S3 client, which pyiceberg's file IO has set up already: a call that needs no boto3
        # client of its own does not load botocore's S3 model for the trail.
        put_object(settings, settings.warehouse_bucket, f"{SPOOL_PREFIX}{name}", buffer.getvalue())
        with _lock:
            del _pending[: len(rows)]  # rows recorded meanwhile were appended after them
    return len(rows)


def unfolded(settings: Settings) -> tuple[list[str], list[dict[str, Any]]]:
    """The spool objects and this process's rows not yet written, seen at one moment (no row
    is in both, none in neither)."""
    with _flushing:
        keys = spool_files(settings)
        with _lock:
            return keys, list(_pending)


def spool_files(settings: Settings) -> list[str]:
    """Keys of the spool objects, oldest first."""
    from lakehouse.storage import list_objects

    return sorted(key for key, _ in list_objects(settings, settings.warehouse_bucket, SPOOL_PREFIX))


def folded_files(table: Table) -> set[str]:
    """Spool objects that the audit table's snapshots already hold."""
    done: set[str] = set()
    for snap in table.metadata.snapshots:
        listed = snap.summary.get(FOLDED) if snap.summary else None
        if listed:
            done.update(listed.split(","))
    return done


def audit_table(catalog: Catalog, settings: Settings) -> Table:
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import MonthTransform

    from lakehouse.tables.write import create_table

    spec = PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=MonthTransform(), name="ts_month")
    )
    return create_table(
        catalog,
        f"{settings.namespace}.{AUDIT_TABLE}",
        audit_schema(),
        spec,
        {"format-version": "2", "write.parquet.compression-codec": "zstd"},
    )


def fold(settings: Settings, catalog: Catalog | None = None, limit: int = 500) -> dict[str, Any]:
    """Move spooled rows into the audit table: one commit, then the spool objects go.

    The commit lists the objects it folded, so a fold that dies before deleting them never
    folds them twice.
    """
    import pyarrow.parquet as pq

    from lakehouse.catalog import get_catalog
    from lakehouse.storage import arrow_filesystem, s3_client
    from lakehouse.tables.write import SourceRef, StagedWrite

    catalog = catalog or get_catalog(settings)
    table = audit_table(catalog, settings)
    keys = spool_files(settings)
    done = folded_files(table)
    fresh = [k for k in keys if k.removeprefix(SPOOL_PREFIX) not in done][:limit]
    rows = 0
    if fresh:
        fs = arrow_filesystem(settings)
        data = pa.concat_tables(
            [pq.read_table(f"{settings.warehouse_bucket}/{k}", filesystem=fs) for k in fresh]
        )
        staged = StagedWrite(table)
        staged.write(data.cast(table.schema().as_arrow()))
        names = [k.removeprefix(SPOOL_PREFIX) for k in fresh]
        source = SourceRef("audit", "fold", hashlib.sha256(",".join(names).encode()).hexdigest())
        staged.commit(source, {FOLDED: ",".join(names)}, settings)
        rows = data.num_rows
        table.refresh()
        done = folded_files(table)
    gone = [k for k in keys if k.removeprefix(SPOOL_PREFIX) in done]
    s3 = s3_client(settings)
    for start in range(0, len(gone), 1000):
        s3.delete_objects(
            Bucket=settings.warehouse_bucket,
            Delete={"Objects": [{"Key": k} for k in gone[start : start + 1000]]},
        )
    return {
        "table": f"{settings.namespace}.{AUDIT_TABLE}",
        "rows_folded": rows,
        "spool_objects_removed": len(gone),
    }


def fold_job(settings: Settings, options: Any) -> list[dict[str, Any]]:
    """The ``audit`` maintenance job."""
    if getattr(options, "dry_run", False):
        return []
    return [fold(settings)]


def flush_quietly(settings: Settings, logger: Any) -> None:
    """Flush; on failure the rows stay queued for the next flush."""
    try:
        flush(settings)
    except Exception as e:  # noqa: BLE001 - the caller's answer stands; the trail is retried next time
        logger.warning("audit flush failed; rows kept for the next flush", extra={"error": repr(e)})


def flush_soon(settings: Settings, logger: Any) -> None:
    """Have the queued rows written within ``LAKE_AUDIT_FLUSH_SECONDS`` by a background writer
    (0: now, in this call); the caller's answer does not wait for the store."""
    global _writer
    if settings.audit_flush_seconds <= 0:
        flush_quietly(settings, logger)
        return
    with _lock:
        if _writer is None or not _writer.is_alive():
            _writer = threading.Thread(
                target=_write_batches, args=(settings, logger), name="lake-audit", daemon=True
            )
            _writer.start()
            atexit.register(_flush_at_exit, settings)
    _wake.set()


def _flush_at_exit(settings: Settings) -> None:
    # At exit the store may be gone with the process that served it (each row was also logged
    # as a structured line when it was recorded): one quick try, never the retries of a live
    # request, and no waiting long for a background flush still retrying.
    if not _flushing.acquire(timeout=5):
        return
    _flushing.release()
    quick = settings.model_copy(
        update={"s3_max_attempts": 1, "s3_connect_timeout": 2.0, "s3_read_timeout": 10.0}
    )
    with contextlib.suppress(Exception):
        flush(quick)


def _write_batches(settings: Settings, logger: Any) -> None:
    while True:
        _wake.wait()
        time.sleep(settings.audit_flush_seconds)  # gather the requests of the next moment in one object
        _wake.clear()
        if pending():
            flush_quietly(settings, logger)
