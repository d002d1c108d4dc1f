"""Table services against the local stack: compaction, expiry + file GC, orphan cleanup,
retention that frees storage, rollback, time travel and the change feed."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.contracts.model import load_contract
from lakehouse.errors import ChangeFeedUnavailable, SnapshotExpired
from lakehouse.maintenance import MaintenanceOptions, run_maintenance
from lakehouse.query.history import changes, rollback
from lakehouse.storage import s3_client
from lakehouse.tables.compaction import CompactionOptions, compact_partition, compact_table, plan
from lakehouse.tables.gc import expire_snapshots, list_table_files, reachable, remove_orphans
from lakehouse.tables.write import SourceRef, StagedWrite, ensure_tables
from tests.conftest import SENSOR_CONTRACT
from tests.test_ingest import month_rows, to_csv

pytestmark = pytest.mark.integration

SMALL = {"compaction_target_bytes": 4 * 2**20, "compaction_min_files": 5}


def services_settings(settings: Settings, **extra: Any) -> Settings:
    return settings.model_copy(update={**SMALL, **extra})


def new_table(settings: Settings, dataset: Callable[[str], str]) -> Any:
    name = dataset(SENSOR_CONTRACT)
    table, _ = ensure_tables(get_catalog(settings), settings, load_contract(settings, name))
    return table


def rows(table: Any, start: int, count: int, month: int = 1) -> pa.Table:
    """``count`` readings in one month of 2026, numbered from ``start`` (sensor_id is unique)."""
    base = dt.datetime(2026, month, 1, tzinfo=dt.UTC)
    return pa.table(
        {
            "ts": [base + dt.timedelta(minutes=i) for i in range(start, start + count)],
            "sensor_id": [f"r{i:05d}" for i in range(start, start + count)],
            "temp_c": [float(i % 50) for i in range(start, start + count)],
            "status": ["ok"] * count,
        }
    ).cast(table.schema().as_arrow())


def read_all(table: Any, snapshot_id: int | None = None) -> list[dict[str, Any]]:
    data = table.scan(snapshot_id=snapshot_id).to_arrow()
    return sorted(data.to_pylist(), key=lambda r: r["sensor_id"])


def data_files(table: Any) -> list[str]:
    return [t.file.file_path for t in table.scan().plan_files()]


def stored(settings: Settings, table: Any) -> set[str]:
    return {f.path for f in list_table_files(settings, table)}


@pytest.mark.slow
def test_a_hundred_one_row_appends_compact_and_gc_keeps_exactly_what_snapshots_need(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    settings = services_settings(settings)
    table = new_table(settings, dataset)
    for i in range(100):
        table.append(rows(table, i, 1))
    before = read_all(table)
    old_snapshots = [s.snapshot_id for s in table.metadata.snapshots]
    assert len(data_files(table)) == 100 and len(before) == 100

    result = compact_table(table, settings)
    assert (result.partitions_compacted, result.files_before, result.files_after) == (1, 100, 1)
    table.refresh()
    assert len(data_files(table)) <= 2
    assert read_all(table) == before  # the same rows, compared row by row
    summary = table.current_snapshot().summary
    assert summary["lake.operation"] == "compaction"
    assert summary["lake.compaction.files-before"] == "100" and summary["lake.compaction.files-after"] == "1"
    assert int(summary["lake.compaction.bytes-rewritten"]) == result.bytes_rewritten > 0
    assert summary["total-records"] == "100"
    for k in (0, 57, 99):  # old snapshots stay readable until they expire
        assert read_all(table, old_snapshots[k]) == before[: k + 1]
    # Nothing to do a second time.
    assert compact_table(table, settings).partitions_compacted == 0

    # Expire everything but the newest three snapshots of the history; GC deletes the rest.
    gc = expire_snapshots(settings, table, retention=dt.timedelta(0), min_snapshots=3)
    assert gc.snapshots_expired == 98 and gc.snapshots_kept == 3
    table.refresh()
    remaining = table.metadata.snapshots
    assert len(remaining) == 3
    needed = reachable(table, remaining, {})
    in_store = {p for p in stored(settings, table) if not p.endswith(".metadata.json")}
    assert in_store == needed  # exactly the referenced files, listed from the store
    assert gc.files_deleted > 90 and gc.bytes_freed > 0
    for snap in remaining:  # every remaining snapshot still reads
        assert len(read_all(table, snap.snapshot_id)) in (99, 100)
    assert read_all(table) == before


def test_compaction_racing_four_appenders_loses_no_row(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    settings = services_settings(settings, commit_retries=20)
    table = new_table(settings, dataset)
    for i in range(8):
        table.append(rows(table, i, 1))
    name = ".".join(table.name())
    parts = plan(table, CompactionOptions.for_table(table, settings))  # planned at snapshot 8
    assert len(parts) == 1
    started = threading.Barrier(5)
    committed: list[str] = []  # the rows whose append commits returned
    errors: list[BaseException] = []

    def appender(worker: int) -> None:
        try:
            own = get_catalog(settings).load_table(name)
            for j in range(6):
                start = 1000 + worker * 100 + j
                staged = StagedWrite(own)
                staged.write(rows(own, start, 1))
                staged.commit(SourceRef("race", f"w{worker}/{j}", "v1"), {}, settings)
                committed.append(f"r{start:05d}")
                if j == 0:
                    started.wait()  # every worker has committed once: the plan is stale
                time.sleep(random.uniform(0.02, 0.15))  # uploads arrive, not back to back
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
            started.abort()

    workers = [threading.Thread(target=appender, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    started.wait()
    # Written and committed while the workers keep appending: the commit must rebase.
    snapshot_id, written = compact_partition(table, parts[0], settings.commit_retries + 1)
    for w in workers:
        w.join()
    assert not errors, errors
    table.refresh()
    compaction = table.snapshot_by_id(snapshot_id)
    parent = table.snapshot_by_id(compaction.parent_snapshot_id)
    assert parent.summary["lake.source.uri"].startswith("s3://race/")  # rebased onto a worker's append
    got = [r["sensor_id"] for r in read_all(table)]
    assert got == sorted([f"r{i:05d}" for i in range(8)] + committed)  # every committed row, once
    assert len(committed) == 24
    after = compact_table(table, settings)  # the next run folds the workers' files in too
    assert after.partitions_compacted == 1
    table.refresh()
    assert [r["sensor_id"] for r in read_all(table)] == got and len(data_files(table)) == 1


def test_orphan_cleanup_removes_a_planted_stray_file_and_nothing_else(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    table = new_table(settings, dataset)
    for i in range(3):
        table.append(rows(table, i, 2))
    bucket, _, prefix = table.location().removeprefix("s3://").partition("/")
    s3 = s3_client(settings)
    stray = f"{prefix}/data/ts_month=2026-01/stray-from-a-failed-write.parquet"
    outside = f"{prefix}-sibling/stray.parquet"  # shares the name prefix, outside the location
    s3.put_object(Bucket=bucket, Key=stray, Body=b"PAR1 not committed")
    s3.put_object(Bucket=bucket, Key=outside, Body=b"not ours")
    before = stored(settings, table)
    now = dt.datetime.now(dt.UTC)

    young = remove_orphans(settings, table, now=now, age=dt.timedelta(days=3))
    assert young.files_found == 0  # the stray is minutes old: kept

    later = now + dt.timedelta(days=4)
    dry = remove_orphans(settings, table, now=later, age=dt.timedelta(days=3), dry_run=True)
    old_metadata = {p for p in dry.orphans if p.endswith(".metadata.json")}
    assert set(dry.orphans) - old_metadata == {f"s3://{bucket}/{stray}"}
    assert dry.files_deleted == 0 and stored(settings, table) == before

    done = remove_orphans(settings, table, now=later, age=dt.timedelta(days=3))
    assert done.files_deleted == len(dry.orphans) and done.bytes_freed > 0
    assert stored(settings, table) == before - set(dry.orphans)
    assert s3.get_object(Bucket=bucket, Key=outside)["Body"].read() == b"not ours"
    assert len(read_all(table)) == 6
    for snap in table.metadata.snapshots:
        assert read_all(table, snap.snapshot_id)


def test_retention_then_expiry_frees_the_bytes_of_dropped_months(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    now = dt.datetime.now(dt.UTC)
    first = now.year * 12 + now.month - 1 - 13
    upload(name, "a.csv", to_csv(month_rows(14, start=(first // 12, first % 12 + 1))))
    table = get_catalog(settings).load_table(f"lake.{name}")
    files = {t.file.file_path: t.file.file_size_in_bytes for t in table.scan().plan_files()}
    assert len(files) == 14

    report = run_maintenance(
        settings,
        MaintenanceOptions(
            jobs=("retention", "expire"),
            tables=(f"lake.{name}",),
            now=now + dt.timedelta(seconds=5),
            snapshot_retention=dt.timedelta(0),
        ),
    )
    retention = report["jobs"]["retention"][0]
    assert (retention["files_dropped"], retention["rows_dropped"]) == (2, 6)
    expiry = report["jobs"]["expire"][0]
    table.refresh()
    kept = {t.file.file_path for t in table.scan().plan_files()}
    dropped = set(files) - kept
    assert len(dropped) == 2
    assert dropped <= set(expiry["deleted"])
    assert report["bytes_freed"] == expiry["bytes_freed"] >= sum(files[p] for p in dropped)
    assert not dropped & stored(settings, table)
    assert len(read_all(table)) == 36


def test_rollback_time_travel_and_the_change_feed(
    settings: Settings,
    dataset: Callable[[str], str],
    client: Any,
    http_client: Any,
) -> None:
    settings = services_settings(settings)
    table = new_table(settings, dataset)
    name = ".".join(table.name())
    short = name.split(".", 1)[1]
    table.append(rows(table, 0, 3))
    first = table.current_snapshot().snapshot_id
    for i in range(5):  # five more appends, then a compaction (changes no rows)
        table.append(rows(table, 10 + i * 2, 2))
    appended = [s.snapshot_id for s in table.metadata.snapshots[1:]]
    assert compact_table(table, settings).partitions_compacted == 1
    table.refresh()
    last = table.current_snapshot().snapshot_id

    # The snapshot list over HTTP.
    listed = http_client.snapshots(short)
    assert listed.status == 200
    ops = [s["operation"] for s in listed.body["snapshots"]]
    assert ops == ["append"] * 6 + ["compaction"]
    assert listed.body["current_snapshot_id"] == last

    # The change feed: exactly the appended rows, each with its snapshot; compaction is no change.
    feed = http_client.changes(short, first)
    assert feed.status == 200, feed.body
    body = feed.body
    sid = body["columns"].index("sensor_id")
    snap_col = body["columns"].index("_snapshot_id")
    assert sorted(r[sid] for r in body["rows"]) == [f"r{10 + i:05d}" for i in range(10)]
    assert body["snapshots"] == appended
    assert {r[snap_col] for r in body["rows"]} == set(appended)
    for r in body["rows"]:
        index = int(r[sid][1:])
        assert r[snap_col] == appended[(index - 10) // 2]
    partial = client.changes(short, appended[1], appended[2]).body
    assert sorted(r[sid] for r in partial["rows"]) == ["r00014", "r00015"]
    assert client.changes(short, last).body["rows"] == []
    assert client.changes(short, last, first).status == 400  # not an ancestor

    # Time travel: the first snapshot's rows, by id and by time.
    sql = f"SELECT sensor_id FROM {name} ORDER BY 1"
    assert [r[0] for r in client.sql(sql, as_of=first).body["rows"]] == ["r00000", "r00001", "r00002"]
    first_time = table.snapshot_by_id(first).timestamp_ms
    at = dt.datetime.fromtimestamp(first_time / 1000, dt.UTC).isoformat()
    assert client.sql(sql, as_of=at).body["row_count"] == 3

    # Rollback to the first snapshot, then forward again.
    back = rollback(settings, name, first)
    assert (back["from_snapshot_id"], back["to_snapshot_id"], back["rows"]) == (last, first, 3)
    assert client.sql(f"SELECT count(*) FROM {name}").body["rows"] == [[3]]
    assert rollback(settings, name, str(last))["rows"] == 13
    assert rollback(settings, name, at)["to_snapshot_id"] == first
    rollback(settings, name, last)

    # A delete in the range: no append-only feed.
    table.refresh()
    table.delete(delete_filter="sensor_id = 'r00000'")
    with pytest.raises(ChangeFeedUnavailable, match="is an overwrite: rows were removed or rewritten"):
        changes(settings, name, first)
    assert http_client.changes(short, first).body["error"] == "ChangeFeedUnavailable"

    # Expired snapshots are refused with a clear error.
    expire_snapshots(settings, table, retention=dt.timedelta(0), min_snapshots=1)
    with pytest.raises(SnapshotExpired, match="expired by maintenance"):
        rollback(settings, name, first)
    with pytest.raises(SnapshotExpired):
        rollback(settings, name, at)
    gone = http_client.changes(short, first)
    assert gone.status == 400 and gone.body["error"] == "SnapshotExpired"


def test_a_compaction_whose_files_were_removed_meanwhile_commits_nothing_and_cleans_up(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    from pyiceberg.exceptions import ValidationException

    settings = services_settings(settings)
    table = new_table(settings, dataset)
    for i in range(6):
        table.append(rows(table, i, 1))
    name = ".".join(table.name())
    parts = plan(table, CompactionOptions.for_table(table, settings))
    assert len(parts) == 1 and len(parts[0].files) == 6
    other = get_catalog(settings).load_table(name)  # a concurrent retention-style delete
    other.delete(delete_filter="sensor_id = 'r00003'")
    before = stored(settings, table)
    with pytest.raises(ValidationException):
        compact_partition(table, parts[0])
    table.refresh()
    assert stored(settings, table) - before <= {
        p for p in stored(settings, table) if p.endswith(".metadata.json")
    }  # the rewritten file was deleted again
    assert table.current_snapshot().summary.operation.value == "delete"
    assert [r["sensor_id"] for r in read_all(table)] == [f"r{i:05d}" for i in (0, 1, 2, 4, 5)]
    result = compact_table(table, settings)  # the next run plans afresh
    assert (result.partitions_compacted, result.files_before) == (1, 5)
