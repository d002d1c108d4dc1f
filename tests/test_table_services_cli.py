"""Table services from the outside: the `lake` commands (subprocess, local stack), the
maintenance function's event, the local schedules, and the pieces that need no store."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, cast

import pytest

from functions.maintenance.handler import MaintenanceEvent
from lake.cli.main import main
from lake.local.events import LambdaContext
from lake.local.schedule import MaintenanceScheduler
from lakehouse import maintenance
from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.errors import BadRequest
from lakehouse.maintenance import MaintenanceOptions, register_job, registered_jobs, run_maintenance
from lakehouse.tables.compaction import pack
from tests.conftest import SENSOR_CONTRACT
from tests.test_ingest import month_rows, to_csv


class FakeFile:
    def __init__(self, size: int) -> None:
        self.file_size_in_bytes = size


def test_pack_fills_bins_to_the_target_and_never_rewrites_a_lone_file() -> None:
    files = cast(Any, [FakeFile(s) for s in (40, 40, 40, 40, 40, 10)])
    bins = pack(files, 100)
    assert [[f.file_size_in_bytes for f in b] for b in bins] == [[40, 40], [40, 40], [40, 10]]
    assert pack(cast(Any, [FakeFile(40)]), 100) == []
    lone_last = pack(cast(Any, [FakeFile(60), FakeFile(30), FakeFile(90)]), 100)
    assert [[f.file_size_in_bytes for f in b] for b in lone_last] == [[60, 30, 90]]


def test_extra_jobs_register_and_unknown_jobs_are_refused(settings: Settings) -> None:
    seen: list[tuple[str, ...]] = []

    def lance_upkeep(s: Settings, options: MaintenanceOptions) -> list[dict[str, Any]]:
        seen.append(options.jobs)
        return [{"dataset": "vectors", "bytes_freed": 7}]

    register_job("test_lance", lance_upkeep)
    try:
        assert registered_jobs()[-1] == "test_lance"
        report = run_maintenance(settings, MaintenanceOptions(jobs=("test_lance",), tables=()))
        assert report["jobs"] == {"test_lance": [{"dataset": "vectors", "bytes_freed": 7}]}
        assert report["bytes_freed"] == 7 and seen == [("test_lance",)]
        with pytest.raises(ValueError, match="built-in"):
            register_job("compact", lance_upkeep)
    finally:
        maintenance._EXTRA_JOBS.pop("test_lance")
    with pytest.raises(BadRequest, match="unknown maintenance job"):
        run_maintenance(settings, MaintenanceOptions(jobs=("defragment",)))


def test_the_schedule_events_choose_the_jobs() -> None:
    hourly = MaintenanceEvent.model_validate({"jobs": ["compact"]})
    assert hourly.jobs == ["compact"] and not hourly.dry_run
    plain = MaintenanceEvent.model_validate({"version": "0", "detail-type": "Scheduled Event", "detail": {}})
    assert tuple(plain.jobs) == registered_jobs()  # every job, the built-in ones first
    assert tuple(plain.jobs)[: len(maintenance.JOBS)] == maintenance.JOBS


def test_serve_runs_each_schedule_when_it_is_due(settings: Settings) -> None:
    now = [0.0]
    runs: list[tuple[str, ...]] = []

    def fake_run(s: Settings, options: MaintenanceOptions) -> dict[str, Any]:
        runs.append(options.jobs)
        return {"bytes_freed": 0, "jobs": {}}

    timed = settings.model_copy(update={"compaction_interval_seconds": 10, "cleanup_interval_seconds": 25})
    scheduler = MaintenanceScheduler(timed, run=fake_run, clock=lambda: now[0])
    assert scheduler.run_due() == 0
    now[0] = 10
    assert scheduler.run_due() == 1 and runs == [("compact",)]
    now[0] = 26
    scheduler.run_due()
    assert runs == [("compact",), ("compact",), ("retention", "expire", "orphans")]
    off = settings.model_copy(update={"compaction_interval_seconds": 0, "cleanup_interval_seconds": 0})
    assert MaintenanceScheduler(off, run=fake_run).schedules == []


@pytest.mark.integration
def test_maintain_snapshots_changes_and_rollback_commands(
    settings: Settings,
    dataset: Callable[[str], str],
    upload: Callable[..., dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def lake(*args: str, check: bool = True) -> Any:
        """`lake ARGS` in process: (exit code, stdout, stderr)."""
        capsys.readouterr()  # drop what the uploads printed (metrics)
        code = main(list(args))
        out = capsys.readouterr()
        if check:
            assert code == 0, out.err
        return type("Run", (), {"returncode": code, "stdout": out.out, "stderr": out.err})

    name = dataset(SENSOR_CONTRACT)
    qualified = f"lake.{name}"
    first = upload(name, "a.csv", to_csv(month_rows(1, per_month=2)))["snapshot_id"]
    for i in range(5):  # five more small files in the same month
        rows = month_rows(1, per_month=2)
        for r in rows:
            r["sensor_id"] = f"x{i}{r['sensor_id']}"
        upload(name, f"b{i}.csv", to_csv(rows))

    listed = json.loads(lake("snapshots", name, "--json").stdout)
    assert [s["operation"] for s in listed["snapshots"]] == ["append"] * 6

    feed = json.loads(lake("changes", name, "--from", str(first), "--json").stdout)
    assert feed["row_count"] == 10 and len(feed["snapshots"]) == 5

    monkeypatch.setenv("LAKE_COMPACTION_MIN_FILES", "5")
    dry = json.loads(lake("maintain", "--compact", "--dry-run", "--table", qualified, "--json").stdout)
    planned = dry["jobs"]["compact"][0]
    assert dry["dry_run"] is True and planned["dry_run"] is True
    assert (planned["partitions_compacted"], planned["files_before"], planned["files_after"]) == (1, 6, 1)
    assert (
        planned["snapshot_ids"] == []
        and len(json.loads(lake("snapshots", name, "--json").stdout)["snapshots"]) == 6
    )
    report = json.loads(lake("maintain", "--compact", "--table", qualified, "--json").stdout)
    compacted = report["jobs"]["compact"][0]
    assert (compacted["files_before"], compacted["files_after"]) == (6, 1)
    text = lake("maintain", "--orphans", "--expire", "--table", qualified, "--dry-run").stdout
    assert "expire (dry run)" in text and "orphans (dry run)" in text and "would free" in text

    back = lake("rollback", name, "--to", str(first))
    assert f"→ {first} (2 rows)" in back.stdout
    table = get_catalog(settings).load_table(qualified)
    assert table.current_snapshot().snapshot_id == first
    missing = lake("rollback", name, "--to", "12345", check=False)
    assert missing.returncode == 2 and "SnapshotNotFound" in missing.stderr
    with pytest.raises(SystemExit, match="not a snapshot id"):
        lake("changes", name, "--from", "abc")


@pytest.mark.integration
def test_the_maintenance_function_runs_the_jobs_its_schedule_sends(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]]
) -> None:
    from functions.maintenance.handler import lambda_handler

    name = dataset(SENSOR_CONTRACT)
    upload(name, "a.csv", to_csv(month_rows(2)))
    context = cast(Any, LambdaContext("lake-maintenance", timeout_seconds=900))
    report = lambda_handler({"jobs": ["orphans"], "dry_run": True}, context)
    assert set(report["jobs"]) == {"orphans"} and report["dry_run"] is True
    mine = [r for r in report["jobs"]["orphans"] if r["table"] == f"lake.{name}"]
    assert mine and mine[0]["files_deleted"] == 0
    assert dt.datetime.fromisoformat(report["started"]).tzinfo is not None


@pytest.mark.integration
def test_one_failing_table_does_not_stop_the_others(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    upload(name, "a.csv", to_csv(month_rows(1)))
    options = MaintenanceOptions(
        jobs=("orphans",), tables=("lake.no_such_table", f"lake.{name}"), dry_run=True
    )
    report = run_maintenance(settings, options)
    missing, present = report["jobs"]["orphans"]
    assert (missing["error"], missing["terminal"]) == ("TableNotFound", True)
    assert present["table"] == f"lake.{name}" and "error" not in present
    assert report["failures"] == 1
