"""The audit trail: who did what, when, to what, how many rows, and how it ended.

Every ingest, query, maintenance run and key change records a row; the rows of one invocation
are committed together to the Iceberg table ``<namespace>.audit`` (partitioned by month) when
the function finishes (:func:`flush`). Only admin keys can read it.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakehouse.config import Settings

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.schema import Schema

AUDIT_TABLE = "audit"
_pending: list[dict[str, Any]] = []
_lock = threading.Lock()


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


def pending() -> int:
    with _lock:
        return len(_pending)


def flush(settings: Settings, catalog: Catalog | None = None) -> int:
    """Commit the queued rows in one snapshot; returns how many were written."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import MonthTransform

    from lakehouse.catalog import get_catalog
    from lakehouse.tables import SourceRef, StagedWrite, create_table

    with _lock:
        rows = list(_pending)
        _pending.clear()
    if not rows:
        return 0
    catalog = catalog or get_catalog(settings)
    schema = audit_schema()
    spec = PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=MonthTransform(), name="ts_month")
    )
    table = create_table(
        catalog,
        f"{settings.namespace}.{AUDIT_TABLE}",
        schema,
        spec,
        {"format-version": "2", "write.parquet.compression-codec": "zstd"},
    )
    staged = StagedWrite(table)
    staged.write(pa.Table.from_pylist(rows, schema=schema.as_arrow()))
    staged.commit(
        SourceRef("audit", "audit", uuid.uuid4().hex), {"lake.audit.rows": str(len(rows))}, settings
    )
    return len(rows)


def flush_quietly(settings: Settings, logger: Any) -> None:
    """Flush at the end of an invocation; on failure keep the rows queued for the next one."""
    with _lock:
        saved = list(_pending)
    try:
        flush(settings)
    except Exception as e:  # noqa: BLE001 - the caller's answer stands; the trail is retried next time
        with _lock:
            _pending[:0] = [r for r in saved if r not in _pending]
        logger.warning("audit flush failed; rows kept for the next flush", extra={"error": repr(e)})
