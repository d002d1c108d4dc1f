"""Table upkeep run on a schedule: one entry point, :func:`run_maintenance`, for the jobs

* ``retention``: whole months older than a contract's ``retention_months`` are dropped; where
  the partitioning (month, day, hour of the event time; year at a year's end) lines up with
  the cutoff the delete is metadata-only (no data file is rewritten). Tables without an event
  time keep every row;
* ``compact``: small files bin-packed per partition (:mod:`lakehouse.tables.compaction`);
* ``expire``: snapshots past the retention expired and the files only they reached deleted
  (:mod:`lakehouse.tables.gc`), which is what frees the bytes retention and compaction let go of;
* ``orphans``: unreferenced files older than ``LAKE_ORPHAN_AGE_DAYS`` deleted;

then the bundled jobs, imported only when they run (:func:`bundled_job`):

* ``audit``: the audit spool folded into the audit table;
* ``vectors``: Lance upkeep (strays, fragment compaction, old versions, vector indexes);
* ``rollups``: materialised rollups refreshed;

and last any job added with :func:`register_job`. This module is the one table of jobs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.contracts.model import Contract, loadable_contracts
from lakehouse.errors import LakeError
from lakehouse.tables.write import store_retry

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


@dataclass
class RetentionResult:
    table: str
    cutoff: str
    files_dropped: int
    rows_dropped: int
    files_rewritten: int
    snapshot_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retention_cutoff(now: dt.datetime, months: int) -> dt.datetime:
    """The first instant kept: the start of the month ``months - 1`` before ``now``'s month.

    With 12 months, on 2026-11-24 the cutoff is 2025-12-01: December 2025 to November 2026 stay.
    """
    index = now.year * 12 + (now.month - 1) - (months - 1)
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def apply_retention(
    settings: Settings,
    catalog: Catalog | None = None,
    now: dt.datetime | None = None,
    datasets: list[str] | None = None,
    problems: list[dict[str, Any]] | None = None,
) -> list[RetentionResult]:
    """Drop expired months from every dataset table that exists (or only from ``datasets``).

    A contract that does not load, or a table whose retention fails, is skipped and added to
    ``problems`` (``table``, ``error``, ``message``; ``file`` for a contract): the others still run.
    """
    from pyiceberg.exceptions import NoSuchTableError

    catalog = catalog or get_catalog(settings)
    now = now or dt.datetime.now(dt.UTC)
    results = []
    found = problems if problems is not None else []
    contracts, broken = loadable_contracts(settings)
    if datasets is not None:  # tables without a contract have no retention
        contracts = [c for c in contracts if c.name in datasets]
        broken = [b for b in broken if b["dataset"] in datasets]
    found.extend({"table": f"{settings.namespace}.{b['dataset']}", **b} for b in broken)
    for contract in [c for c in contracts if c.months_kept is not None]:  # no event time: no age

        def retain(contract: Contract = contract) -> RetentionResult | None:
            try:
                table = catalog.load_table(f"{settings.namespace}.{contract.name}")
            except NoSuchTableError:
                return None
            return _retain(table, contract, retention_cutoff(now, contract.months_kept or 0))

        try:
            result = store_retry(settings, retain)
        except LakeError as e:
            found.append(_failure(f"{settings.namespace}.{contract.name}", e))
            continue
        if result is not None:
            results.append(result)
    return results


def _retain(table: Any, contract: Contract, cutoff: dt.datetime) -> RetentionResult:
    column = contract.event_time
    assert column is not None
    bound = cutoff.date().isoformat() if contract.columns[column].type == "date" else cutoff.isoformat()
    name = ".".join(table.name())
    expired = f"{column} < '{bound}'"
    if not list(table.scan(row_filter=expired).plan_files()):
        return RetentionResult(name, cutoff.isoformat(), 0, 0, 0, None)
    table.delete(delete_filter=expired, snapshot_properties={"lake.retention.cutoff": cutoff.isoformat()})
    snap = table.current_snapshot()
    summary = snap.summary if snap and snap.summary else {}
    return RetentionResult(
        table=name,
        cutoff=cutoff.isoformat(),
        files_dropped=int(summary.get("deleted-data-files", 0) or 0),
        rows_dropped=int(summary.get("deleted-records", 0) or 0),
        files_rewritten=int(summary.get("added-data-files", 0) or 0),
        snapshot_id=snap.snapshot_id if snap else None,
    )


# --- the scheduled run ------------------------------------------------------------------------

JOBS = ("retention", "compact", "expire", "orphans")  # built-in jobs, in the order they run


@dataclass
class MaintenanceOptions:
    """What one maintenance run does."""

    jobs: tuple[str, ...] = JOBS
    dry_run: bool = False
    tables: tuple[str, ...] | None = None  # qualified names; None: every table in the namespace
    now: dt.datetime | None = None
    snapshot_retention: dt.timedelta | None = None  # None: table property, else the setting
    orphan_age: dt.timedelta | None = None  # None: LAKE_ORPHAN_AGE_DAYS
    deadline: float | None = None  # time.monotonic() after which no new partition is compacted


ExtraJob = Callable[[Settings, MaintenanceOptions], list[dict[str, Any]]]
BUNDLED_JOBS = ("audit", "vectors", "rollups")  # after the built-in ones, in this order
_EXTRA_JOBS: dict[str, ExtraJob] = {}


def register_job(name: str, job: ExtraJob) -> None:
    """Add a maintenance job that runs after the built-in ones (and alone with ``jobs=(name,)``).

    A job gets the settings and the run's options and returns one JSON-able dict per item it
    kept (with ``bytes_freed`` where it frees storage), as the bundled jobs do.
    """
    if name in JOBS + BUNDLED_JOBS:
        raise ValueError(f"{name!r} is a built-in maintenance job")
    _EXTRA_JOBS[name] = job


def registered_jobs() -> tuple[str, ...]:
    """Every job name a run accepts: the built-in ones, the bundled ones, then the registered ones."""
    return JOBS + BUNDLED_JOBS + tuple(_EXTRA_JOBS)


def run_maintenance(
    settings: Settings, options: MaintenanceOptions | None = None, catalog: Catalog | None = None
) -> dict[str, Any]:
    """Run the chosen jobs over every table; returns a JSON-able report with bytes freed.

    Raises:
        BadRequest: an unknown job name.
    """
    from lakehouse.catalog import list_tables, load_table
    from lakehouse.errors import BadRequest, StoreUnavailable
    from lakehouse.tables.compaction import CompactionResult, compact_table
    from lakehouse.tables.gc import ExpiryResult, OrphanResult, expire_snapshots, remove_orphans
    from lakehouse.tables.write import QUARANTINE_SUFFIX

    options = options or MaintenanceOptions()
    unknown = sorted(set(options.jobs) - set(registered_jobs()))
    if unknown:
        raise BadRequest(f"unknown maintenance job(s) {unknown}; known: {list(registered_jobs())}")
    catalog = catalog or get_catalog(settings)
    now = options.now or dt.datetime.now(dt.UTC)
    names = list(options.tables) if options.tables is not None else list_tables(catalog, settings)
    report: dict[str, Any] = {"started": now.isoformat(), "dry_run": options.dry_run, "jobs": {}}
    jobs = [j for j in registered_jobs() if j in options.jobs]
    for job in jobs:
        if job == "retention":
            # Retention has no dry run: a dry run skips it.
            datasets = None
            if options.tables is not None:
                prefix = f"{settings.namespace}."
                datasets = [n.removeprefix(prefix) for n in names if n.startswith(prefix)]
                datasets = [d for d in datasets if not d.endswith(QUARANTINE_SUFFIX)]
            problems: list[dict[str, Any]] = []
            dropped = [] if options.dry_run else apply_retention(settings, catalog, now, datasets, problems)
            results = [r.to_dict() for r in dropped] + problems
        elif job in ("compact", "expire", "orphans"):
            results = []
            for name in names:
                # One table's failure is reported and the others still get their upkeep.
                try:
                    table = load_table(catalog, settings, name)
                    done: CompactionResult | ExpiryResult | OrphanResult
                    if job == "compact":
                        done = compact_table(table, settings, options.deadline, dry_run=options.dry_run)
                    elif job == "expire":
                        done = expire_snapshots(
                            settings, table, now, options.snapshot_retention, dry_run=options.dry_run
                        )
                    else:
                        done = remove_orphans(settings, table, now, options.orphan_age, options.dry_run)
                    results.append(done.to_dict())
                except LakeError as e:
                    results.append(_failure(name, e))
                except OSError as e:  # the store, reached through pyarrow or s3fs
                    results.append(_failure(name, StoreUnavailable(f"{name}: {e}")))
        else:
            results = (_EXTRA_JOBS[job] if job in _EXTRA_JOBS else bundled_job(job))(settings, options)
        report["jobs"][job] = results
    report["bytes_freed"] = sum(
        int(r.get("bytes_freed", 0) or 0) for results in report["jobs"].values() for r in results
    )
    report["failures"] = sum(1 for results in report["jobs"].values() for r in results if "error" in r)
    if not options.dry_run:
        record_run(settings, report)
    return report


RUNS_DOC = "maintenance-runs.json"
RUNS_KEPT = 200


def record_run(settings: Settings, report: dict[str, Any]) -> None:
    """Append a summary of a maintenance run (jobs, results per job, bytes freed, failures) to
    ``_lake/maintenance-runs.json``, which keeps the newest :data:`RUNS_KEPT` runs."""
    from lakehouse.access.docstore import update_json

    summary = {
        "started": report["started"],
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "jobs": {
            job: {
                "results": len(results),
                "bytes_freed": sum(int(r.get("bytes_freed", 0) or 0) for r in results),
            }
            for job, results in report["jobs"].items()
        },
        "bytes_freed": report["bytes_freed"],
        "failures": report["failures"],
    }

    def add(doc: Any) -> Any:
        doc = doc or {"runs": []}
        doc["runs"] = (doc["runs"] + [summary])[-RUNS_KEPT:]
        return doc

    update_json(settings, RUNS_DOC, add)


def recorded_runs(settings: Settings) -> list[dict[str, Any]]:
    """The recorded maintenance runs, oldest first (see :func:`record_run`)."""
    from lakehouse.access.docstore import read_json

    doc, _ = read_json(settings, RUNS_DOC)
    runs: list[dict[str, Any]] = (doc or {"runs": []})["runs"]
    return runs


def _failure(table: str, error: LakeError) -> dict[str, Any]:
    return {"table": table, **error.to_dict()}


def bundled_job(name: str) -> ExtraJob:
    """The jobs Lake ships beside the built-in table services, imported when they run."""
    if name == "audit":  # fold the audit spool into the audit table
        from lakehouse.access.audit import fold_job

        return fold_job
    if name == "vectors":  # Lance upkeep: strays, compaction, old versions, indexes
        from lakehouse.vectors.store import vectors_job

        return vectors_job
    if name == "rollups":  # refresh materialised rollups
        from lakehouse.query.rollups import rollups_job

        return rollups_job
    raise KeyError(name)
