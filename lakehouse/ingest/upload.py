"""Ingest: one uploaded object → validated rows in ``<ns>.<dataset>``, rejected rows in
``<ns>.<dataset>__quarantine``, at most one commit per table, idempotent per object version.

The object is streamed in record batches (memory bounded by ``LAKE_BATCH_ROWS``); each batch
is validated in one DuckDB statement and written as Parquet data files at once. Contracts with
a ``primary_key`` stage the accepted rows in DuckDB instead and merge them at commit
(:mod:`lakehouse.ingest.upsert`). State that outlives a batch (``unique`` values, upsert staging) sits
in DuckDB, which spills to disk past ``LAKE_INGEST_MEMORY_LIMIT``.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.contracts.model import RAW, ROW, Contract, load_contract
from lakehouse.contracts.validate import ERROR_TYPE, ERRORS, Validator, validation_connection
from lakehouse.errors import BadObjectKey, FileRejected, TerminalError, UnreadableFile
from lakehouse.ingest import progress
from lakehouse.ingest.evolution import Change, evolve, extra_columns
from lakehouse.ingest.readers import MalformedRow, detect_format, read_batches
from lakehouse.ingest.upsert import MergeWrite
from lakehouse.storage import ObjectReader, open_object
from lakehouse.tables.committer import (
    CommitRequest,
    commit_pending,
    encode_file,
    notify,
    stage,
    wait_committed,
)
from lakehouse.tables.layout import evolve_layout, write_order
from lakehouse.tables.ledger import Entry, Ledger, SourceId
from lakehouse.tables.write import (
    SourceRef,
    StagedWrite,
    StreamedWrite,
    committed_snapshot,
    ensure_tables,
    limit_write_workers,
    resolve_source,
    store_retry,
)

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table
    from pyiceberg.types import IcebergType

    from lakehouse.takeout import TakeoutReport
    from lakehouse.vectors.store import VectorStage


@dataclass
class IngestReport:
    """What one ingest did."""

    dataset: str
    source: str
    version: str
    table: str
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    files_written: int
    snapshot_id: int | None
    quarantine_snapshot_id: int | None
    duplicate: bool
    seconds: float
    rows_per_second: float
    bytes_read: int = 0
    quality_score: float = 1.0
    rule_failures: dict[str, int] = field(default_factory=dict)
    pii_detected: dict[str, int] = field(default_factory=dict)
    schema_changes: list[str] = field(default_factory=list)
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_superseded: int | None = None
    files_rewritten: int | None = None
    vectors_written: int | None = None
    lance_version: int | None = None
    status: str = "committed"  # or "staged": a committer commits it (LAKE_COMMIT_MODE)
    content_hash: str | None = None
    duplicate_of: str | None = None  # the version that holds the same bytes
    batch: str | None = None  # the committer batch that committed it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dataset_of(key: str) -> str:
    """The dataset is the key's first path segment: ``<dataset>/<file>``."""
    parts = key.split("/", 1)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise BadObjectKey(f"key {key!r} does not name a dataset; upload to <dataset>/<file>")
    return parts[0]


def _malformed_table(malformed: list[MalformedRow]) -> pa.Table:
    return pa.table(
        {
            ROW: pa.array([m.row for m in malformed], pa.int64()),
            ERRORS: pa.array(
                [[{"column": None, "rule": "parse", "reason": m.reason}] for m in malformed], ERROR_TYPE
            ),
            RAW: pa.array([m.raw for m in malformed], pa.string()),
        }
    )


def quarantine_rows(
    con: duckdb.DuckDBPyConnection,
    rejected: pa.Table,
    source: SourceRef,
    contract: Contract,
    now: dt.datetime,
    target: pa.Schema,
) -> pa.Table:
    """Quarantine rows (the ``__quarantine`` table's schema) from rejected rows, in one statement."""
    con.register("__lake_rejected", rejected.select([ROW, ERRORS, RAW]))
    try:
        out = con.execute(
            f"SELECT ?::TIMESTAMPTZ AS quarantined_at, ? AS source_uri, ? AS source_version, "
            f"{ROW} AS row_number, {ERRORS}[1]['column'] AS \"column\", {ERRORS}[1]['rule'] AS rule, "
            f"array_to_string(list_transform({ERRORS}, e -> coalesce(e['column'], 'row') || ': ' || "
            f"e['reason']), '; ') AS reason, {ERRORS} AS errors, {RAW} AS record, "
            f"?::INTEGER AS contract_version FROM __lake_rejected",
            [now, source.uri, source.version, contract.version],
        ).to_arrow_table()
    finally:
        con.unregister("__lake_rejected")
    return out.cast(target)


@dataclass
class _Tally:
    rows_read: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    pii: Counter[str] = field(default_factory=Counter)
    changes: list[str] = field(default_factory=list)


EvolveStep = Callable[["Table", Contract, Settings, "dict[str, IcebergType] | None"], "list[Change]"]


@dataclass
class WrittenObject:
    """The data files one object version became, not committed yet (see :func:`write_object`)."""

    good: StagedWrite | MergeWrite
    bad: StagedWrite
    tally: _Tally
    bytes_read: int
    content_hash: str

    def report(self, contract: Contract, source: SourceRef, started: float) -> IngestReport:
        """The ingest report of the object, before its commit."""
        good, bad = self.good, self.bad
        report = _report(
            contract, source, good.table, self.tally, good.rows, bad.rows, len(good.files) + len(bad.files),
            None, None, False, started,
        )
        report.bytes_read = self.bytes_read
        report.content_hash = self.content_hash
        return report

    def properties(self, contract: Contract) -> dict[str, str]:
        """The snapshot summary properties of the object's commit."""
        return {
            "lake.dataset": contract.name,
            "lake.contract.version": str(contract.version),
            "lake.rows.accepted": str(self.good.rows),
            "lake.rows.quarantined": str(self.bad.rows),
            **quality_properties(self.tally.rows_read, self.bad.rows, self.tally.failures, self.tally.pii),
        }


def write_object(
    settings: Settings,
    contract: Contract,
    main: Table,
    quarantine: Table,
    source: SourceRef,
    con: duckdb.DuckDBPyConnection,
    vec: VectorStage | None = None,
    evolve_step: EvolveStep = evolve,
) -> WrittenObject:
    """Read one object version, validate it and write its rows as data files (no commit).

    The reader, validator and writers of every ingest: the ingest function runs it and commits
    the result; a backfill runs it on workers (with tables built from shipped metadata) and
    commits on the driver. ``evolve_step`` applies the schema changes an upload's extra columns
    ask for (``evolution: add_columns``); a worker passes one that refuses to commit.
    """
    tally = _Tally()
    fmt = detect_format(source.key)
    # Evolution needs every column of the file; otherwise read only the contract's.
    wanted = (
        None
        if contract.evolution != "ignore"
        else list(contract.columns) + (vec.wanted_fields if vec else [])
    )
    qtarget = quarantine.schema().as_arrow()
    bad = StagedWrite(quarantine)
    good: StagedWrite | MergeWrite | None = None
    validator: Validator | None = None
    malformed: list[MalformedRow] = []
    now = dt.datetime.now(dt.UTC)
    listener = progress.current()
    try:
        with open_object(
            settings, source.bucket, source.key, version_id=source.version_id, etag=source.etag
        ) as f:
            exact = [name for name, column in contract.columns.items() if "decimal" in column.type]
            for batch in read_batches(f, fmt, wanted, settings.batch_rows, malformed, exact):
                if validator is None:
                    extras = extra_columns(contract, batch.schema)
                    tally.changes += [
                        f"{c.kind} {c.column}" for c in evolve_step(main, contract, settings, extras)
                    ]
                    validator = Validator(
                        con,
                        contract,
                        main.schema().as_arrow(),
                        salt=settings.pii_salt,
                        now=now,
                        extras=list(extras),
                    )
                    good = table_writer(main, contract, con)
                assert good is not None
                tally.rows_read += batch.num_rows
                screened = None
                if vec is not None:
                    batch, screened = vec.screen(con, batch)
                checked = validator.check(batch)
                tally.failures.update(checked.failures)
                tally.pii.update(checked.pii)
                accepted = checked.accepted
                if vec is not None:
                    accepted = vec.add(accepted, checked.accepted_rows, batch)
                if isinstance(good, MergeWrite):
                    good.write(accepted, checked.accepted_rows)
                else:
                    good.write(accepted)
                rejected = checked.rejected
                if screened is not None:
                    rejected = pa.concat_tables([rejected, screened.cast(rejected.schema)])
                    tally.failures["vector"] += screened.num_rows
                if malformed:
                    rejected = pa.concat_tables([rejected, _malformed_table(malformed)])
                    tally.failures["parse"] += len(malformed)
                    tally.rows_read += len(malformed)
                    malformed.clear()
                if rejected.num_rows:
                    bad.write(quarantine_rows(con, rejected, source, contract, now, qtarget))
                if listener is not None:
                    listener.update(f.tell(), tally.rows_read)
            if malformed:
                bad.write(quarantine_rows(con, _malformed_table(malformed), source, contract, now, qtarget))
                tally.failures["parse"] += len(malformed)
                tally.rows_read += len(malformed)
            raw = cast(ObjectReader, f.raw)
            content_hash = raw.content_hash()  # reads whatever the reader skipped
            bytes_read = raw.size  # every byte, now hashed (a reader's position can lag behind)
            if listener is not None:
                listener.update(bytes_read, tally.rows_read)
    except FileNotFoundError as e:
        raise UnreadableFile(f"{source.uri} does not exist") from e
    if good is None:
        good = table_writer(main, contract, con)
    if isinstance(good, StagedWrite):
        good.flush()
    bad.flush()
    return WrittenObject(good, bad, tally, bytes_read, content_hash)


def ingest_object(
    settings: Settings,
    bucket: str,
    key: str,
    version: str | None = None,
    catalog: Catalog | None = None,
    etag: str | None = None,
    mode: str | None = None,
) -> IngestReport:
    """Ingest one object version from the store.

    The object is read at ``version`` (else while its ETag is ``etag``), validated and written as
    data files; then a commit request is staged (:mod:`lakehouse.tables.committer`) and, by
    ``mode`` (default ``LAKE_COMMIT_MODE``): ``inline`` commits the table's pending requests now
    and returns the committed report; ``staged`` leaves them to a running committer, ``queue``
    asks the committer function; both return the report with ``status`` ``staged``. A version or
    content the ledger (:mod:`lakehouse.tables.ledger`) already holds is a duplicate. Contracts
    with a primary key or vectors commit on their own, as before, and record the ledger too.

    Raises:
        TerminalError: no contract, unreadable or unsupported file, a refused schema change, or
            too many bad rows under ``on_error: reject_file`` (send the event to the DLQ);
            ``SourceVersionGone`` when the version asked for no longer exists.
        TransientError: commit conflicts or store failures that outlasted the retries.
    """
    started = time.perf_counter()
    dataset = dataset_of(key)
    contract = load_contract(settings, dataset)
    source = resolve_source(settings, bucket, key, version, etag)
    mode = mode or settings.commit_mode
    ledger = Ledger(settings, dataset)
    known = ledger.lookup(source.key, source.version)
    if known is not None and known.state == "claimed" and mode == "inline":
        known = _wait(settings, contract.name, source, catalog)
    if known is not None and known.state != "claimed":
        return _duplicate(contract.name, source, settings, known, started)
    catalog = catalog or get_catalog(settings)
    main, quarantine = ensure_tables(catalog, settings, contract)

    done = committed_snapshot(main, source)  # committed before the ledger existed
    if done is not None:
        return _report(
            contract,
            source,
            main,
            _Tally(),
            0,
            0,
            0,
            done,
            committed_snapshot(quarantine, source),
            True,
            started,
        )

    limit_write_workers(settings.write_workers)
    changes = [f"{c.kind} {c.column}" for c in evolve(main, contract, settings)]
    evolve_layout(main, contract, settings)
    vec = None
    if contract.vectors is not None:
        from lakehouse.vectors.store import VectorStage

        vec = VectorStage(settings, contract, source)
    con = validation_connection(settings)
    try:
        written = write_object(settings, contract, main, quarantine, source, con, vec=vec)
        good, bad, tally = written.good, written.bad, written.tally
        tally.changes[:0] = changes
        bytes_read, content_hash = written.bytes_read, written.content_hash
        enforce_on_error(contract, source, tally, bad.rows, [good, bad])
        props = written.properties(contract)
        if vec is None and isinstance(good, StagedWrite) and not good.replace:
            held = ledger.lookup_content(source.key, content_hash)
            if held is not None and held.state != "claimed" and held.version != source.version:
                discard(good)
                discard(bad)
                return _duplicate(contract.name, source, settings, held, started)
            report = written.report(contract, source, started)
            return _stage(settings, catalog, report, source, content_hash, good, bad, props, mode, started)
        # Vectors first: without them there is no table commit (the event is retried).
        vector_props = vec.commit() if vec is not None else {}
        # Quarantine first: the main table's snapshot is the ledger that says "this object is done".
        qsnap = bad.commit(source, props, settings)[0] if bad.rows else None
        commit_good = functools.partial(good.commit, source, {**props, **vector_props}, settings)
        snap, duplicate = vec.settle(commit_good) if vec is not None else commit_good()
    except FileNotFoundError as e:
        raise UnreadableFile(f"{source.uri} does not exist") from e
    finally:
        con.close()
        if vec is not None:
            vec.close()
    report = _report(
        contract,
        source,
        main,
        tally,
        good.rows,
        bad.rows,
        len(good.files) + len(bad.files),
        snap,
        qsnap,
        duplicate,
        started,
    )
    report.bytes_read = bytes_read
    report.content_hash = content_hash
    if isinstance(good, MergeWrite):
        report.rows_inserted = good.stats.rows_inserted
        report.rows_updated = good.stats.rows_updated
        report.rows_superseded = good.stats.rows_superseded
        report.files_rewritten = good.stats.files_rewritten
    if vec is not None:
        report.vectors_written = 0 if duplicate else vec.rows
        report.lance_version = None if duplicate else vec.version
    _record(ledger, source, content_hash, report)
    return report


def commit_request(
    report: IngestReport,
    source: SourceRef,
    content_hash: str,
    good: StagedWrite,
    bad: StagedWrite,
    props: dict[str, str],
) -> CommitRequest:
    """The committer's request for one written object version (its data files and report)."""
    return CommitRequest(
        dataset=report.dataset,
        bucket=source.bucket,
        key=source.key,
        version=source.version,
        content_hash=content_hash,
        main_files=[encode_file(good.table, f) for f in good.files],
        quarantine_files=[encode_file(bad.table, f) for f in bad.files],
        report=report.to_dict(),
        properties={
            k: v for k, v in props.items() if k.startswith(("lake.quality.", "lake.pii.", "lake.contract"))
        },
    )


def _stage(
    settings: Settings,
    catalog: Catalog,
    report: IngestReport,
    source: SourceRef,
    content_hash: str,
    good: StagedWrite,
    bad: StagedWrite,
    props: dict[str, str],
    mode: str,
    started: float,
) -> IngestReport:
    """Stage the commit request of an ingest; commit it now when ``mode`` is inline.

    Two deliveries of one version stage the same request (the later one's files win); the one
    whose files were committed reports ``duplicate`` False, the other True.
    """
    attempt = uuid.uuid4().hex
    request = commit_request(report, source, content_hash, good, bad, props)
    request.report["attempt"] = attempt
    stage(settings, request)
    if mode == "queue":
        notify(settings, report.dataset)
    if mode != "inline":
        report.status = "staged"
        return report
    entry = _wait(settings, report.dataset, source, catalog)
    mine = entry.state == "committed" and (entry.report or {}).get("attempt") == attempt
    if not mine:
        return _duplicate(report.dataset, source, settings, entry, started)
    return _report_of(entry, source, duplicate=False, started=started)


def _wait(settings: Settings, dataset: str, source: SourceRef, catalog: Catalog | None) -> Entry:
    """Commit the dataset's pending requests here until ``source`` is committed (or another
    committer has done it)."""
    return wait_committed(
        settings,
        dataset,
        source.key,
        source.version,
        commit=functools.partial(commit_pending, settings, dataset, catalog),
    )


def _report_of(entry: Entry, source: SourceRef, duplicate: bool, started: float) -> IngestReport:
    fields = IngestReport.__dataclass_fields__
    report = IngestReport(**{k: v for k, v in (entry.report or {}).items() if k in fields})
    report.version = source.version
    report.duplicate = duplicate
    report.status = "committed"
    report.seconds = round(time.perf_counter() - started, 3)
    if report.seconds and report.rows_read:
        report.rows_per_second = round(report.rows_read / report.seconds, 1)
    return report


def _duplicate(
    dataset: str, source: SourceRef, settings: Settings, entry: Entry, started: float
) -> IngestReport:
    """The report of a version (or content) the ledger already holds: nothing added."""
    return IngestReport(
        dataset=dataset,
        source=source.uri,
        version=source.version,
        table=f"{settings.namespace}.{dataset}",
        rows_read=0,
        rows_accepted=0,
        rows_quarantined=0,
        files_written=0,
        snapshot_id=entry.snapshot_id,
        quarantine_snapshot_id=entry.quarantine_snapshot_id,
        duplicate=True,
        seconds=round(time.perf_counter() - started, 3),
        rows_per_second=0.0,
        content_hash=entry.content_hash,
        duplicate_of=entry.of or (entry.version if entry.version != source.version else None),
    )


def _record(ledger: Ledger, source: SourceRef, content_hash: str, report: IngestReport) -> None:
    """Ledger entries of an ingest that committed on its own (primary key, vectors)."""
    if report.duplicate:
        return
    ident = SourceId(source.key, source.version, content_hash)
    batch = f"direct-{report.snapshot_id}"
    won = ledger.claim(ident, batch)
    if won.batch == batch:
        ledger.settle(
            ident,
            Entry(
                "committed",
                batch,
                source.key,
                source.version,
                content_hash,
                snapshot_id=report.snapshot_id,
                quarantine_snapshot_id=report.quarantine_snapshot_id,
                report=report.to_dict(),
            ),
        )


def table_writer(
    table: Table, contract: Contract, con: duckdb.DuckDBPyConnection
) -> StagedWrite | MergeWrite:
    """The writer of the contract's ``write_mode``: a merge by primary key (upsert, or replace
    keeping one row per key), else plain data files (append, or replace)."""
    if contract.primary_key and contract.mode in ("upsert", "replace"):
        return MergeWrite(table, contract, con, replace=contract.mode == "replace")
    if contract.mode == "replace" or write_order(table):
        return StagedWrite(table, replace=contract.mode == "replace")
    return StreamedWrite(table)  # appends without a write order stream one file per partition


def enforce_on_error(
    contract: Contract, source: SourceRef, tally: _Tally, bad_rows: int, staged: list[Any]
) -> None:
    """``on_error: reject_file``: refuse the whole object when too many rows failed."""
    if contract.mode == "replace" and tally.rows_read and bad_rows == tally.rows_read:
        for write in staged:
            if isinstance(write, StagedWrite):
                discard(write)
        raise FileRejected(
            f"{source.uri}: none of its {tally.rows_read} rows passed the contract; write_mode: replace "
            "would empty the table, so nothing was committed"
        )
    if contract.on_error != "reject_file" or not tally.rows_read:
        return
    fraction = bad_rows / tally.rows_read
    if fraction <= contract.max_bad_fraction:
        return
    for write in staged:
        if isinstance(write, StagedWrite):
            discard(write)
    worst = ", ".join(f"{rule} ×{n}" for rule, n in tally.failures.most_common(5))
    raise FileRejected(
        f"{source.uri}: {bad_rows} of {tally.rows_read} rows failed ({fraction:.1%}), more than "
        f"max_bad_fraction {contract.max_bad_fraction:g} allows; nothing committed. Failures: {worst}"
    )


def discard(write: StagedWrite) -> None:
    """Delete the data files of a write that will never be committed (best effort)."""
    for data_file in write.files:
        try:
            write.table.io.delete(data_file.file_path)
        except OSError:
            pass  # an unreferenced file; orphan cleanup removes it later
    write.files.clear()


def quality_properties(rows: int, bad: int, failures: Counter[str], pii: Counter[str]) -> dict[str, str]:
    """The quality figures of an ingest as snapshot summary properties."""
    props = {"lake.quality.score": f"{quality_score(rows, bad):.6f}"}
    props.update({f"lake.quality.rule.{rule}": str(n) for rule, n in sorted(failures.items())})
    props.update({f"lake.pii.{kind}": str(n) for kind, n in sorted(pii.items())})
    return props


def quality_score(rows: int, bad: int) -> float:
    """Good rows over all rows (1.0 for an empty file)."""
    return 1.0 if rows == 0 else round((rows - bad) / rows, 6)


def _report(
    contract: Contract,
    source: SourceRef,
    main: Table,
    tally: _Tally,
    accepted: int,
    quarantined: int,
    files: int,
    snap: int | None,
    qsnap: int | None,
    duplicate: bool,
    started: float,
) -> IngestReport:
    seconds = time.perf_counter() - started
    read = tally.rows_read
    return IngestReport(
        dataset=contract.name,
        source=source.uri,
        version=source.version,
        table=".".join(main.name()),
        rows_read=read,
        rows_accepted=accepted,
        rows_quarantined=quarantined,
        files_written=files,
        snapshot_id=snap,
        quarantine_snapshot_id=qsnap,
        duplicate=duplicate,
        seconds=round(seconds, 3),
        rows_per_second=round(read / seconds, 1) if seconds > 0 and read else 0.0,
        quality_score=quality_score(read, quarantined),
        rule_failures=dict(sorted(tally.failures.items())),
        pii_detected=dict(sorted(tally.pii.items())),
        schema_changes=tally.changes,
    )


def ingest_upload(
    settings: Settings, bucket: str, key: str, version: str | None = None, etag: str | None = None
) -> IngestReport | TakeoutReport:
    """Route an upload: Takeout archives under ``takeout/`` to :mod:`lakehouse.takeout`, the rest here."""
    from lakehouse.takeout import ingest_archive, is_takeout_key

    if is_takeout_key(key):
        return ingest_archive(settings, bucket, key, version or etag)
    # An ingest is idempotent (the ledger), so a store failure pyiceberg's IO gave up on is retried whole.
    try:
        step = functools.partial(ingest_object, settings, bucket, key, version, etag=etag)
        return store_retry(settings, step)
    except TerminalError as e:
        if "/" in key and (version or etag):  # remembered: GET /ingest/{id}, and no second delivery
            ident = str(version or etag).strip('"')
            Ledger(settings, key.split("/", 1)[0]).fail(key, ident, type(e).__name__, str(e))
        raise
