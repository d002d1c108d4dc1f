"""Backfill: every object under a prefix into a dataset, on Daft (in process or on Ray).

The same reader, validator and data-file writer as the ingest function
(:func:`lakehouse.ingest.upload.write_object`) run on Daft's workers, one object per task; the
driver commits through Lake's committer and ledger (:mod:`lakehouse.tables.committer`). So
quarantine rows carry the same row numbers and reasons as a function ingest, an object the
ledger holds is skipped, and a later upload event for a backfilled version is a duplicate.

Steps::

    driver   list the prefix (latest versions) → manifest _lake/backfills/<dataset>/<id>.json
             (immutable: its id is the hash of its (key, version, size) list); finish the
             batches and requests an earlier run left; drop objects the ledger holds
    workers  (a Daft UDF, ``LAKE_SCALE_WORKERS`` at once per runner) read → validate → write
             Parquet data files with tables built from shipped ``table.metadata`` (a Table does
             not pickle); put a progress marker
    sink     ``write()`` hands each object's pyiceberg DataFiles on; ``finalize()`` on the driver
             stages one commit request per object and runs the committer: one snapshot per
             table per batch of ``LAKE_COMMIT_MAX_FILES`` objects, the ledger settled

A crash anywhere leaves either nothing (data files nobody references: orphans), staged requests
or a pending batch; the rerun commits those first, then skips what the ledger holds.

Objects whose extra columns need a schema change (``evolution: add_columns``) are ingested by the
driver after the fan-out (workers cannot commit a schema). Contracts with a primary key (a merge
at commit) or vectors (a Lance write per ingest) are refused: ingest them with the function, or
backfill the rows and run ``lake vectors reembed``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.contracts.model import Contract, load_contract
from lakehouse.errors import BackfillRefused, LakeError, StoreUnavailable
from lakehouse.storage import list_objects, put_if_absent, s3_client
from lakehouse.tables.ledger import Ledger, short_hash
from lakehouse.tables.write import SourceRef, StagedWrite, ensure_tables

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadata

BACKFILLS = "_lake/backfills"

Progress = Callable[[int, int, int], None]  # (objects done, objects to do, rows read)


@dataclass(frozen=True)
class Listed:
    """One object of a backfill's manifest."""

    key: str
    version: str  # the version id, else the ETag (what the ledger and events call it)
    size: int
    etag: str
    version_id: str | None = None

    def source(self, bucket: str) -> SourceRef:
        return SourceRef(bucket, self.key, self.version, version_id=self.version_id, etag=self.etag)


@dataclass
class BackfillReport:
    """What one backfill run did."""

    dataset: str
    source: str
    manifest: str
    runner: str
    objects_listed: int
    objects_skipped: int  # already in the ledger
    objects_loaded: int = 0
    objects_duplicate: int = 0  # the same bytes under another version, or loaded meanwhile
    objects_failed: int = 0
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    batches: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    dry_run: bool = False
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix)."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise BackfillRefused(f"{uri!r} is not an s3://bucket/prefix URI")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise BackfillRefused(f"{uri!r} names no bucket")
    return bucket, prefix


def list_sources(settings: Settings, bucket: str, prefix: str) -> list[Listed]:
    """The latest version of every object under ``prefix`` (deleted keys and folder markers left out)."""
    from botocore.exceptions import BotoCoreError, ClientError

    found: list[Listed] = []
    try:
        pages = (
            s3_client(settings).get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
        )
        for page in pages:
            for v in page.get("Versions", []):
                if not v.get("IsLatest") or v["Key"].endswith("/"):
                    continue
                vid = v.get("VersionId")
                etag = str(v["ETag"]).strip('"')
                vid = None if vid in (None, "null") else str(vid)
                found.append(Listed(v["Key"], vid or etag, int(v["Size"]), etag, vid))
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "AccessDenied", "403", "404"):
            raise BackfillRefused(f"cannot list s3://{bucket}/{prefix}: {code}") from e
        raise StoreUnavailable(f"listing s3://{bucket}/{prefix} failed: {e}") from e
    except BotoCoreError as e:
        raise StoreUnavailable(f"listing s3://{bucket}/{prefix} failed: {e}") from e
    return sorted(found, key=lambda o: o.key)


def write_manifest(settings: Settings, dataset: str, bucket: str, prefix: str, objects: list[Listed]) -> str:
    """Write the run's manifest once (its name is the hash of its contents); its URI."""
    entries = [{"key": o.key, "version": o.version, "size": o.size} for o in objects]
    body = json.dumps({"dataset": dataset, "bucket": bucket, "prefix": prefix, "objects": entries}).encode()
    key = f"{BACKFILLS}/{dataset}/{hashlib.sha256(body).hexdigest()[:32]}.json"
    put_if_absent(settings, settings.warehouse_bucket, key, body)  # already there: the same bytes
    return f"s3://{settings.warehouse_bucket}/{key}"


# --- workers -------------------------------------------------------------------------------


class NeedsEvolution(Exception):
    """An object's extra columns need a schema commit, which only the driver makes."""


def _refuse_evolution(table: Table, contract: Contract, settings: Settings, extras: Any) -> list[Any]:
    from lakehouse.ingest.evolution import plan

    if plan(table.schema(), contract, extras):
        raise NeedsEvolution()
    return []


@dataclass
class ObjectResult:
    """What a worker made of one object: its data files and report, or why not."""

    key: str
    version: str
    version_id: str | None
    etag: str
    status: str  # written | evolve | failed
    content_hash: str | None = None
    main_files: list[DataFile] = field(default_factory=list)
    quarantine_files: list[DataFile] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    error: str = ""
    reason: str = ""

    @property
    def rows(self) -> int:
        return int(self.report.get("rows_read") or 0)


@dataclass
class Job:
    """Everything a worker needs, all picklable: settings, the contract and the tables' metadata."""

    settings: Settings
    contract: Contract
    bucket: str
    main: TableMetadata
    quarantine: TableMetadata
    io_properties: dict[str, str]
    progress_prefix: str

    def table(self, metadata: TableMetadata, name: str) -> Table:
        from pyiceberg.catalog.noop import NoopCatalog
        from pyiceberg.io import load_file_io
        from pyiceberg.table import Table

        io = load_file_io(self.io_properties, metadata.location)
        return Table((self.settings.namespace, name), metadata, "", io, NoopCatalog("lake-worker"))

    def run(self, obj: Listed) -> ObjectResult:
        """Read, validate and write one object (no commit)."""
        from lakehouse.contracts.validate import validation_connection
        from lakehouse.ingest.upload import enforce_on_error, write_object
        from lakehouse.tables.write import QUARANTINE_SUFFIX, limit_write_workers

        started = time.perf_counter()
        settings, contract = self.settings, self.contract
        result = ObjectResult(obj.key, obj.version, obj.version_id, obj.etag, "written")
        source = obj.source(self.bucket)
        main = self.table(self.main, contract.name)
        quarantine = self.table(self.quarantine, f"{contract.name}{QUARANTINE_SUFFIX}")
        limit_write_workers(settings.write_workers)
        con = validation_connection(settings)
        try:
            written = write_object(
                settings, contract, main, quarantine, source, con, evolve_step=_refuse_evolution
            )
            enforce_on_error(contract, source, written.tally, written.bad.rows, [written.good, written.bad])
        except NeedsEvolution:
            result.status = "evolve"
            return result
        except LakeError as e:
            if not e.terminal:
                raise
            result.status, result.error, result.reason = "failed", type(e).__name__, str(e)
            return result
        finally:
            con.close()
        assert isinstance(written.good, StagedWrite)
        result.content_hash = written.content_hash
        result.main_files = list(written.good.files)
        result.quarantine_files = list(written.bad.files)
        result.report = written.report(contract, source, started).to_dict()
        result.properties = written.properties(contract)
        self._mark(obj, result.rows)
        return result

    def _mark(self, obj: Listed, rows: int) -> None:
        """A progress marker the driver counts (objects, rows)."""
        key = f"{self.progress_prefix}{short_hash(obj.key + obj.version)[:24]}-{rows}"
        s3_client(self.settings).put_object(Bucket=self.settings.warehouse_bucket, Key=key, Body=b"")


def _process(job: Job) -> Any:
    """The Daft UDF class that runs :meth:`Job.run` per object, ``LAKE_SCALE_WORKERS`` at once."""
    import daft
    from daft import DataType

    @daft.cls(max_concurrency=job.settings.scale_workers)
    class Ingest:
        def __init__(self, job: Job) -> None:
            self.job = job

        @daft.method(return_dtype=DataType.python())
        def __call__(
            self, key: str, version: str, size: int, etag: str, version_id: str | None
        ) -> ObjectResult:
            return self.job.run(Listed(key, version, size, etag, version_id))

    return Ingest(job)


def _sink(driver: Driver) -> Any:
    """The Daft sink: ``write()`` hands on the workers' data files, ``finalize()`` commits."""
    import daft
    import pyarrow as pa
    from daft.io.sink import DataSink, WriteResult
    from daft.recordbatch import MicroPartition

    class LakeCommitSink(DataSink[ObjectResult]):
        """Daft ships the sink to the workers with the plan and calls ``finalize()`` on the
        driver's own instance: only that one holds the driver (catalog, ledger: not picklable)."""

        def __init__(self, driver: Driver) -> None:
            self.driver: Driver | None = driver

        def __getstate__(self) -> dict[str, Any]:
            return {}  # write() needs nothing of the driver

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.driver = None

        def name(self) -> str:
            return "Lake commit"

        def schema(self) -> daft.Schema:
            return daft.Schema.from_pyarrow_schema(pa.schema([("key", pa.string()), ("status", pa.string())]))

        def write(self, micropartitions: Iterator[MicroPartition]) -> Iterator[WriteResult[ObjectResult]]:
            for part in micropartitions:
                for result in part.to_pydict()["result"]:
                    files = result.main_files + result.quarantine_files
                    yield WriteResult(
                        result=result,
                        bytes_written=sum(f.file_size_in_bytes for f in files),
                        rows_written=result.rows,
                    )

        def finalize(self, write_results: list[WriteResult[ObjectResult]]) -> MicroPartition:
            assert self.driver is not None, "finalize() runs on the driver"
            statuses = self.driver.commit([w.result for w in write_results])
            return MicroPartition.from_pydict({"key": list(statuses), "status": list(statuses.values())})

    return LakeCommitSink(driver)


# --- driver --------------------------------------------------------------------------------


class Driver:
    """The driver side of one backfill: plans, commits, reports."""

    def __init__(self, settings: Settings, dataset: str, uri: str) -> None:
        self.settings = settings
        self.dataset = dataset
        self.bucket, self.prefix = parse_uri(uri)
        self.contract = load_contract(settings, dataset)
        if self.contract.primary_key:
            raise BackfillRefused(
                f"dataset {dataset} has a primary key (rows merge at commit): ingest its files with the "
                "function (`lake put`, uploads) instead"
            )
        if self.contract.vectors is not None:
            raise BackfillRefused(
                f"dataset {dataset} has vectors: ingest its files with the function, or backfill a "
                "dataset without vectors and run `lake vectors reembed`"
            )
        self.catalog = get_catalog(settings)
        self.ledger = Ledger(settings, dataset)
        self.report = BackfillReport(dataset, uri, "", "", 0, 0)
        self.run_id = f"{time.time_ns():020d}"

    @property
    def progress_prefix(self) -> str:
        return f"{BACKFILLS}/{self.dataset}/runs/{self.run_id}/"

    def plan(self) -> list[Listed]:
        """List, write the manifest, finish earlier runs; the objects still to load."""
        from lakehouse.ingest.evolution import evolve

        listed = list_sources(self.settings, self.bucket, self.prefix)
        if not listed:
            raise BackfillRefused(f"no objects under s3://{self.bucket}/{self.prefix}")
        self.report.objects_listed = len(listed)
        self.report.manifest = write_manifest(self.settings, self.dataset, self.bucket, self.prefix, listed)
        self.main, self.quarantine = ensure_tables(self.catalog, self.settings, self.contract)
        evolve(self.main, self.contract, self.settings)  # the contract's own columns, once
        self._commit_pending()  # what an earlier run staged
        todo = [o for o in listed if self.ledger.lookup(o.key, o.version) is None]
        self.report.objects_skipped = len(listed) - len(todo)
        return todo

    def _commit_pending(self) -> None:
        """Commit the staged requests. The workers wrote each object's files as one function ingest
        would: the committer does not coalesce them, which would read and write the whole backfill
        again on the driver (compaction merges small files later)."""
        from lakehouse.tables.committer import commit_pending

        whole = self.settings.model_copy(update={"commit_coalesce_bytes": 0})
        self.report.batches += len(commit_pending(whole, self.dataset, self.catalog))

    def job(self) -> Job:
        self.main.refresh()
        self.quarantine.refresh()
        return Job(
            self.settings,
            self.contract,
            self.bucket,
            self.main.metadata,
            self.quarantine.metadata,
            dict(self.main.io.properties),
            self.progress_prefix,
        )

    def commit(self, results: list[ObjectResult]) -> dict[str, str]:
        """Stage a commit request per written object, run the committer; each object's status."""
        from lakehouse.ingest.upload import IngestReport, commit_request, ingest_object
        from lakehouse.tables.committer import stage

        status: dict[str, str] = {}
        self.main.refresh()
        self.quarantine.refresh()
        for r in results:
            if r.status == "failed":
                self.ledger.fail(r.key, r.version, r.error, r.reason)
                self.report.objects_failed += 1
                self.report.failures.append({"key": r.key, "error": r.error, "reason": r.reason})
                status[r.key] = "failed"
                continue
            if r.status == "evolve":  # a schema change first: the driver ingests it (staged)
                ingest_object(
                    self.settings, self.bucket, r.key, r.version_id, self.catalog, etag=r.etag, mode="staged"
                )
                status[r.key] = "staged"
                continue
            report = IngestReport(**r.report)
            good = StagedWrite(self.main, r.main_files, report.rows_accepted)
            bad = StagedWrite(self.quarantine, r.quarantine_files, report.rows_quarantined)
            source = SourceRef(self.bucket, r.key, r.version, r.version_id, r.etag)
            assert r.content_hash is not None
            stage(self.settings, commit_request(report, source, r.content_hash, good, bad, r.properties))
            status[r.key] = "staged"
        self._commit_pending()
        for r in results:
            if status[r.key] == "failed":
                continue
            entry = self.ledger.lookup(r.key, r.version)
            if entry is None or entry.state == "claimed":
                status[r.key] = "pending"
                continue
            if entry.state == "duplicate":
                status[r.key] = "duplicate"
                self.report.objects_duplicate += 1
                continue
            status[r.key] = "loaded"
            got = entry.report or {}
            self.report.objects_loaded += 1
            self.report.rows_read += int(got.get("rows_read") or 0)
            self.report.rows_accepted += int(got.get("rows_accepted") or 0)
            self.report.rows_quarantined += int(got.get("rows_quarantined") or 0)
        return status

    def watch(self, total: int, on_progress: Progress, stop: threading.Event) -> None:
        """Report progress from the workers' markers until ``stop`` is set."""
        while not stop.wait(0.5):
            try:
                marks = [
                    k
                    for k, _ in list_objects(
                        self.settings, self.settings.warehouse_bucket, self.progress_prefix
                    )
                ]
            except Exception:  # noqa: BLE001 - progress is best effort; the job goes on
                continue
            on_progress(len(marks), total, sum(int(k.rsplit("-", 1)[1]) for k in marks))

    def drop_markers(self) -> None:
        keys = [
            k for k, _ in list_objects(self.settings, self.settings.warehouse_bucket, self.progress_prefix)
        ]
        s3 = s3_client(self.settings)
        for i in range(0, len(keys), 1000):
            s3.delete_objects(
                Bucket=self.settings.warehouse_bucket,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )


def backfill(
    settings: Settings,
    dataset: str,
    uri: str,
    runner: str = "native",
    ray_address: str | None = None,
    dry_run: bool = False,
    on_progress: Progress | None = None,
) -> BackfillReport:
    """Load every object under ``uri`` into ``dataset`` on Daft; see the module docstring.

    Raises:
        BackfillRefused: no such prefix or objects, or a contract a backfill cannot load.
        ScaleUnavailable: the ``lake[scale]`` extra is not installed.
        TransientError: store or commit failures that outlasted the retries; run it again.
    """
    from lakehouse.scale.runner import require_daft
    from lakehouse.scale.runner import runner as run_on

    started = time.perf_counter()
    daft = require_daft()
    driver = Driver(settings, dataset, uri)
    todo = driver.plan()
    report = driver.report
    report.dry_run = dry_run
    if dry_run or not todo:
        report.runner = runner
        report.seconds = round(time.perf_counter() - started, 3)
        return report
    stop = threading.Event()
    watcher = None
    if on_progress is not None:
        on_progress(0, len(todo), 0)
        watcher = threading.Thread(target=driver.watch, args=(len(todo), on_progress, stop), daemon=True)
        watcher.start()
    try:
        with run_on(settings, runner, ray_address) as where:  # type: ignore[arg-type]
            report.runner = where
            columns: dict[str, list[Any]] = {
                "key": [o.key for o in todo],
                "version": [o.version for o in todo],
                "size": [o.size for o in todo],
                "etag": [o.etag for o in todo],
                "version_id": [o.version_id for o in todo],
            }
            df = daft.from_pydict(columns)
            if runner == "ray":
                df = df.into_partitions(len(todo))  # one object per task
            ingest = _process(driver.job())
            df = df.select(
                ingest(df["key"], df["version"], df["size"], df["etag"], df["version_id"]).alias("result")
            )
            df.write_sink(_sink(driver)).collect()
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
        driver.drop_markers()
    report.seconds = round(time.perf_counter() - started, 3)
    if report.seconds and report.rows_read:
        report.rows_per_second = round(report.rows_read / report.seconds, 1)
    if on_progress is not None:
        on_progress(len(todo), len(todo), report.rows_read)
    return report
