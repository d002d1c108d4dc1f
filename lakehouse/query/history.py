"""Table history: the snapshot list, rollback, and the change feed (rows appended between two
snapshots, each with the snapshot it came from).

Time travel itself is ``POST /sql`` with ``as_of``. Rollback moves the table's current snapshot
back (a metadata-only commit); the snapshots after it stay until expiry, so a rollback can be
undone by rolling "back" to a later snapshot. A snapshot that maintenance expired is refused
with :class:`~lakehouse.errors.SnapshotExpired`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from lakehouse.access.auth import LOCAL, Principal
from lakehouse.catalog import get_catalog, load_table
from lakehouse.config import Settings
from lakehouse.duck import epoch_ms, json_value, parse_as_of, snapshot_id
from lakehouse.errors import (
    BadRequest,
    ChangeFeedUnavailable,
    CommitConflict,
    Forbidden,
    SnapshotExpired,
    SnapshotNotFound,
)
from lakehouse.tables.compaction import OPERATION
from lakehouse.tables.gc import EXPIRED_IDS_PROPERTY, EXPIRED_THROUGH_PROPERTY

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

SNAPSHOT_COLUMN = "_snapshot_id"
COMMITTED_COLUMN = "_committed_at"


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def _name(table: Table) -> str:
    return ".".join(table.name())


def _operation(snapshot: Snapshot) -> str | None:
    if snapshot.summary is None:
        return None
    if snapshot.summary.get(OPERATION) == "compaction":
        return "compaction"
    return str(snapshot.summary.operation.value)


def snapshot_list(table: Table) -> list[dict[str, Any]]:
    """Every snapshot of the table, oldest first, marked current / in the current history."""
    from pyiceberg.table.snapshots import ancestors_of

    metadata = table.metadata
    current = metadata.current_snapshot()
    history = {s.snapshot_id for s in ancestors_of(current, metadata)}
    out = []
    for snap in sorted(metadata.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number or 0)):
        summary = snap.summary
        props = dict(summary.additional_properties) if summary else {}
        out.append(
            {
                "snapshot_id": snap.snapshot_id,
                "parent_id": snap.parent_snapshot_id,
                "timestamp": _iso(snap.timestamp_ms),
                "operation": _operation(snap),
                "current": current is not None and snap.snapshot_id == current.snapshot_id,
                "in_current_history": snap.snapshot_id in history,
                "added_rows": int(props.get("added-records", 0) or 0),
                "deleted_rows": int(props.get("deleted-records", 0) or 0),
                "total_rows": int(props.get("total-records", 0) or 0),
                "total_files": int(props.get("total-data-files", 0) or 0),
                "summary": props,
            }
        )
    return out


def authorize(settings: Settings, principal: Principal, name: str) -> None:
    """Snapshots and changes span every tenant: a tenant-bound key is refused, and the
    table's own read rules apply (the audit table needs an admin key)."""
    from lakehouse.query.scan import row_filter

    if principal.tenant is not None:
        raise Forbidden("snapshots and changes span every tenant; a tenant key cannot read them")
    row_filter(settings, principal, name.split(".", 1)[-1])


def list_snapshots(
    settings: Settings, name: str, catalog: Catalog | None = None, principal: Principal = LOCAL
) -> dict[str, Any]:
    """``GET /tables/{name}/snapshots``."""
    authorize(settings, principal, name)
    table = load_table(catalog or get_catalog(settings), settings, name)
    current = table.current_snapshot()
    return {
        "table": _name(table),
        "current_snapshot_id": current.snapshot_id if current else None,
        "snapshots": snapshot_list(table),
    }


def _missing(table: Table, what: str, snapshot_id: int | None = None, at_ms: int | None = None) -> Exception:
    """SnapshotExpired when maintenance expired what was asked for, else SnapshotNotFound."""
    props = table.properties
    expired_ids = {int(x) for x in props.get(EXPIRED_IDS_PROPERTY, "").split(",") if x}
    through = int(props.get(EXPIRED_THROUGH_PROPERTY, 0) or 0)
    if (snapshot_id is not None and snapshot_id in expired_ids) or (at_ms is not None and at_ms <= through):
        return SnapshotExpired(
            f"{_name(table)}: {what} was expired by maintenance (snapshots up to {_iso(through)} are "
            "gone); pick one listed by `lake snapshots`"
        )
    return SnapshotNotFound(f"{_name(table)}: no {what}; pick one listed by `lake snapshots`")


def resolve(table: Table, target: int | str) -> int:
    """The snapshot id meant by ``target``: an id the table holds, or the snapshot of the current
    history that was current at an ISO-8601 time."""
    from pyiceberg.table.snapshots import latest_ancestor_before_timestamp

    when = parse_as_of(target, "target")
    if when is None:
        raise BadRequest("give a snapshot id or an ISO-8601 time")
    if isinstance(when, int):
        if table.snapshot_by_id(when) is None:
            raise _missing(table, f"snapshot {when}", snapshot_id=when)
        return when
    at_ms = epoch_ms(when)
    snap = latest_ancestor_before_timestamp(table.metadata, at_ms + 1)
    if snap is None:
        raise _missing(table, f"snapshot at or before {_iso(at_ms)}", at_ms=at_ms)
    return snap.snapshot_id


def rollback(
    settings: Settings, name: str, target: int | str, catalog: Catalog | None = None
) -> dict[str, Any]:
    """Make ``target`` (a snapshot id or a time) the table's current snapshot again."""
    from pyiceberg.exceptions import CommitFailedException

    table = load_table(catalog or get_catalog(settings), settings, name)
    before = table.current_snapshot()
    snapshot_id = resolve(table, target)
    if before is None or before.snapshot_id != snapshot_id:
        try:
            table.manage_snapshots().set_current_snapshot(snapshot_id=snapshot_id).commit()
        except CommitFailedException as e:  # a writer committed since the table was loaded
            raise CommitConflict(f"{_name(table)}: a concurrent commit won; run the rollback again") from e
    table.refresh()
    after = table.current_snapshot()
    summary = after.summary if after and after.summary else {}
    return {
        "table": _name(table),
        "from_snapshot_id": before.snapshot_id if before else None,
        "to_snapshot_id": snapshot_id,
        "rows": int(summary.get("total-records", 0) or 0),
    }


def change_range(table: Table, from_id: int, to_id: int | None) -> list[Snapshot]:
    """The snapshots after ``from_id`` up to ``to_id`` (default: current), oldest first.

    Raises:
        SnapshotNotFound/SnapshotExpired: either end is unknown.
        BadRequest: ``from`` is not an ancestor of ``to``.
        ChangeFeedUnavailable: a delete or overwrite lies in the range (compactions do not count:
            they change no rows).
    """
    from pyiceberg.table.snapshots import ancestors_of

    if table.snapshot_by_id(from_id) is None:
        raise _missing(table, f"snapshot {from_id}", snapshot_id=from_id)
    if to_id is None:
        current = table.current_snapshot()
        if current is None:
            raise SnapshotNotFound(f"{_name(table)} has no snapshot yet")
        to_id = current.snapshot_id
    end = table.snapshot_by_id(to_id)
    if end is None:
        raise _missing(table, f"snapshot {to_id}", snapshot_id=to_id)
    chain: list[Snapshot] = []
    for snap in ancestors_of(end, table.metadata):
        if snap.snapshot_id == from_id:
            break
        chain.append(snap)
    else:
        raise BadRequest(f"{_name(table)}: snapshot {from_id} is not an ancestor of snapshot {to_id}")
    chain.reverse()
    for snap in chain:
        operation = _operation(snap)
        if operation not in ("append", "compaction"):
            raise ChangeFeedUnavailable(
                f"{_name(table)}: snapshot {snap.snapshot_id} ({_iso(snap.timestamp_ms)}) is "
                f"{'an' if str(operation)[:1] in 'aeiou' else 'a'} {operation}: "
                "rows were removed or rewritten between the two snapshots, so an append-only change feed "
                "cannot describe the range; query both snapshots with as_of instead"
            )
    return chain


def changes(
    settings: Settings,
    name: str,
    from_id: int | str,
    to_id: int | str | None = None,
    catalog: Catalog | None = None,
    max_rows: int | None = None,
    principal: Principal = LOCAL,
) -> dict[str, Any]:
    """``GET /tables/{name}/changes?from=&to=``: rows appended after ``from`` up to ``to``.

    Each row carries ``_snapshot_id`` (the append that added it) and ``_committed_at``. Rows
    stop at ``max_rows`` (default ``LAKE_QUERY_MAX_ROWS``, then ``truncated`` is true).
    """
    import pyarrow as pa

    authorize(settings, principal, name)
    table = load_table(catalog or get_catalog(settings), settings, name)
    start = _snapshot_arg(from_id, "from")
    end = None if to_id is None else _snapshot_arg(to_id, "to")
    limit = settings.query_max_rows if max_rows is None else max_rows
    chain = change_range(table, start, end)
    schema = table.schema().as_arrow()
    columns = [f.name for f in schema] + [SNAPSHOT_COLUMN, COMMITTED_COLUMN]
    rows: list[list[Any]] = []
    truncated = False
    for snap in chain:
        if _operation(snap) != "append" or truncated:
            continue
        scan = table.incremental_append_scan(
            from_snapshot_id_exclusive=snap.parent_snapshot_id, to_snapshot_id_inclusive=snap.snapshot_id
        )
        committed = _iso(snap.timestamp_ms)
        for batch in scan.to_arrow_batch_reader():
            data = pa.Table.from_batches([batch]).select([f.name for f in schema])
            for row in data.to_pylist():
                if len(rows) >= limit:
                    truncated = True
                    break
                rows.append([json_value(v) for v in row.values()] + [snap.snapshot_id, committed])
            if truncated:
                break
    return {
        "table": _name(table),
        "from_snapshot_id": start,
        "to_snapshot_id": chain[-1].snapshot_id if chain else start,
        "snapshots": [s.snapshot_id for s in chain if _operation(s) == "append"],
        "columns": columns,
        "types": [str(f.type) for f in schema] + ["int64", "string"],
        "rows": rows,
        "row_count": len(rows),
        "truncated": truncated,
    }


def _snapshot_arg(value: int | str, what: str) -> int:
    found = snapshot_id(value)
    if found is None:
        raise BadRequest(f"{what}={value!r} is not a snapshot id")
    return found


# --- activity: ingests, quality and maintenance over time ------------------------------------

BUCKETS = {"hour": 3_600_000, "day": 86_400_000}


def _int(props: dict[str, str], key: str) -> int:
    return int(props.get(key, 0) or 0)


def activity(
    settings: Settings,
    bucket: str = "day",
    catalog: Catalog | None = None,
    principal: Principal = LOCAL,
) -> dict[str, Any]:
    """``GET /activity``: per dataset and hour (or day), the rows ingested and quarantined and the
    quality score (good rows / rows read), from the ingests' snapshot summaries; the maintenance
    snapshots (compaction, retention) with what they rewrote or dropped. (The maintenance runs
    themselves: :func:`lakehouse.maintenance.recorded_runs`.)

    Counts span every tenant, so a tenant-bound key is refused.
    """
    from lakehouse.catalog import list_tables
    from lakehouse.query.scan import row_filter
    from lakehouse.tables.write import QUARANTINE_SUFFIX

    if bucket not in BUCKETS:
        raise BadRequest(f"bucket must be one of {', '.join(BUCKETS)}")
    if principal.tenant is not None:
        raise Forbidden("activity spans every tenant; a tenant key cannot read it")
    width = BUCKETS[bucket]
    catalog = catalog or get_catalog(settings)
    series: dict[tuple[str, int], dict[str, int]] = {}
    events: list[dict[str, Any]] = []
    for qualified in list_tables(catalog, settings):
        name = qualified.split(".", 1)[1]
        try:
            row_filter(settings, principal, name)
        except Forbidden:
            continue
        table = catalog.load_table(qualified)
        for snap in table.metadata.snapshots:
            props = dict(snap.summary.additional_properties) if snap.summary else {}
            if "lake.rows.accepted" in props and not name.endswith(QUARANTINE_SUFFIX):
                point = series.setdefault((name, snap.timestamp_ms // width * width), {})
                for key, column in (
                    ("lake.rows.accepted", "rows_accepted"),
                    ("lake.rows.quarantined", "rows_quarantined"),
                ):
                    point[column] = point.get(column, 0) + _int(props, key)
                point["ingests"] = point.get("ingests", 0) + 1
            operation = _operation(snap)
            if operation == "compaction" or "lake.retention.cutoff" in props:
                rewritten = _int(props, "lake.compaction.bytes-rewritten")
                written = _int(props, "lake.compaction.bytes-written")
                events.append(
                    {
                        "table": qualified,
                        "timestamp": _iso(snap.timestamp_ms),
                        "snapshot_id": snap.snapshot_id,
                        "job": "compact" if operation == "compaction" else "retention",
                        "files_removed": _int(props, "deleted-data-files"),
                        "files_added": _int(props, "added-data-files"),
                        "rows_removed": _int(props, "deleted-records") if operation != "compaction" else 0,
                        "bytes_released": (rewritten - written)
                        if operation == "compaction"
                        else _int(props, "removed-files-size"),
                    }
                )
    points = []
    for (dataset, start), point in sorted(series.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        accepted, quarantined = point.get("rows_accepted", 0), point.get("rows_quarantined", 0)
        read = accepted + quarantined
        points.append(
            {
                "dataset": dataset,
                "bucket_start": _iso(start),
                **point,
                "rows_quarantined": quarantined,
                "quality_score": round(accepted / read, 6) if read else None,
            }
        )
    return {"bucket": bucket, "series": points, "maintenance": sorted(events, key=lambda e: e["timestamp"])}
