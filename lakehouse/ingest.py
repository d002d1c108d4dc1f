"""Ingest: one uploaded object → validated rows in ``<ns>.<dataset>``, rejected rows in
``<ns>.<dataset>__quarantine``, at most one commit per table, idempotent per object version."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.contracts import Contract, load_contract
from lakehouse.errors import BadObjectKey, UnreadableFile
from lakehouse.readers import RAW, ROW, MalformedRow, detect_format, read_batches
from lakehouse.storage import filesystem, s3_client
from lakehouse.tables import SourceRef, StagedWrite, committed_snapshot, ensure_tables
from lakehouse.validate import ERRORS, check_batch

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from lakehouse.takeout import TakeoutReport


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dataset_of(key: str) -> str:
    """The dataset is the key's first path segment: ``<dataset>/<file>``."""
    parts = key.split("/", 1)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise BadObjectKey(f"key {key!r} does not name a dataset; upload to <dataset>/<file>")
    return parts[0]


def resolve_source(settings: Settings, bucket: str, key: str, version: str | None) -> SourceRef:
    """The object's identity; asks the store when the event carried no version or etag."""
    if not version:
        head = s3_client(settings).head_object(Bucket=bucket, Key=key)
        version = head.get("VersionId") or head["ETag"].strip('"')
    return SourceRef(bucket=bucket, key=key, version=str(version))


def _quarantine_rows(
    rejected: pa.Table,
    malformed: list[MalformedRow],
    source: SourceRef,
    contract: Contract,
    now: dt.datetime,
    target: pa.Schema,
) -> pa.Table:
    errors = rejected[ERRORS].to_pylist()
    rows = rejected[ROW].to_pylist() + [m.row for m in malformed]
    errs = errors + [[{"column": None, "rule": "parse", "reason": m.reason}] for m in malformed]
    records = rejected[RAW].to_pylist() + [m.raw for m in malformed]
    n = len(rows)
    return pa.table(
        {
            "quarantined_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "source_uri": [source.uri] * n,
            "source_version": [source.version] * n,
            "row_number": pa.array(rows, pa.int64()),
            "column": [e[0]["column"] for e in errs],
            "rule": [e[0]["rule"] for e in errs],
            "reason": ["; ".join(f"{x['column'] or 'row'}: {x['reason']}" for x in e) for e in errs],
            "errors": errs,
            "record": records,
            "contract_version": pa.array([contract.version] * n, pa.int32()),
        }
    ).cast(target)


def ingest_object(
    settings: Settings, bucket: str, key: str, version: str | None = None, catalog: Catalog | None = None
) -> IngestReport:
    """Ingest one object from the store.

    Raises:
        TerminalError: no contract, unreadable or unsupported file (send the event to the DLQ).
        TransientError: commit conflicts or store failures that outlasted the retries.
    """
    import duckdb

    started = time.perf_counter()
    dataset = dataset_of(key)
    contract = load_contract(settings, dataset)
    source = resolve_source(settings, bucket, key, version)
    catalog = catalog or get_catalog(settings)
    main, quarantine = ensure_tables(catalog, settings, contract)

    done = committed_snapshot(main, source)
    if done is not None:
        return _report(
            contract, source, main, 0, 0, 0, 0, done, committed_snapshot(quarantine, source), True, started
        )

    fmt = detect_format(key)
    target = main.schema().as_arrow()
    qtarget = quarantine.schema().as_arrow()
    good, bad = StagedWrite(main), StagedWrite(quarantine)
    malformed: list[MalformedRow] = []
    rows_read = 0
    now = dt.datetime.now(dt.UTC)
    con = duckdb.connect(config={"threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    fs = filesystem(settings)
    path = f"{bucket}/{key}"
    try:
        with fs.open(path, "rb", block_size=8 << 20) as f:
            for batch in read_batches(f, fmt, list(contract.columns), settings.batch_rows, malformed):
                rows_read += batch.num_rows
                checked = check_batch(con, batch, contract, target)
                good.write(checked.accepted)
                if checked.rejected.num_rows or malformed:
                    bad.write(_quarantine_rows(checked.rejected, malformed, source, contract, now, qtarget))
                    rows_read += len(malformed)
                    malformed.clear()
        if malformed:
            bad.write(_quarantine_rows(_empty_rejected(), malformed, source, contract, now, qtarget))
            rows_read += len(malformed)
    except FileNotFoundError as e:
        raise UnreadableFile(f"s3://{path} does not exist") from e
    finally:
        con.close()

    props = {
        "lake.dataset": dataset,
        "lake.contract.version": str(contract.version),
        "lake.rows.accepted": str(good.rows),
        "lake.rows.quarantined": str(bad.rows),
    }
    # Quarantine first: the main table's snapshot is the ledger that says "this object is done".
    qsnap = bad.commit(source, props, settings)[0] if bad.rows else None
    snap, duplicate = good.commit(source, props, settings)
    return _report(
        contract,
        source,
        main,
        rows_read,
        good.rows,
        bad.rows,
        len(good.files) + len(bad.files),
        snap,
        qsnap,
        duplicate,
        started,
    )


def _empty_rejected() -> pa.Table:
    from lakehouse.validate import ERROR_TYPE

    return pa.table(
        {ROW: pa.array([], pa.int64()), ERRORS: pa.array([], ERROR_TYPE), RAW: pa.array([], pa.string())}
    )


def _report(
    contract: Contract,
    source: SourceRef,
    main: Table,
    read: int,
    accepted: int,
    quarantined: int,
    files: int,
    snap: int | None,
    qsnap: int | None,
    duplicate: bool,
    started: float,
) -> IngestReport:
    seconds = time.perf_counter() - started
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
    )


def ingest_upload(
    settings: Settings, bucket: str, key: str, version: str | None = None
) -> IngestReport | TakeoutReport:
    """Route an upload: Takeout archives under ``takeout/`` to :mod:`lakehouse.takeout`, the rest here."""
    from lakehouse.takeout import ingest_archive, is_takeout_key

    if is_takeout_key(key):
        return ingest_archive(settings, bucket, key, version)
    return ingest_object(settings, bucket, key, version)
