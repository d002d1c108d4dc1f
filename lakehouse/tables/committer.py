"""One committer per table: staged commit requests become one Iceberg snapshot per batch.

How a file becomes rows::

    writer (ingest function, a `lake serve` worker, a Daft backfill)
        reads the object version, validates, writes Parquet data files
        └─ stage(settings, CommitRequest)  →  _lake/requests/<dataset>/<h(key)>-<h(version)>.json
    committer (one per table: the FIFO queue's message group on AWS, a thread in `lake serve`)
        commit_pending(settings, dataset)
        1. recover: finish every batch a crashed run left under _lake/pending/<dataset>/
        2. plan a batch of up to LAKE_COMMIT_MAX_FILES requests → _lake/batches/<dataset>/<B>.json
           (the batch's list of sources, kept: snapshot summaries point at it)
        3. claim each source in the ledger for B (lakehouse.tables.ledger: one conditional PUT
           of its content entry): a source another batch holds is a duplicate (its data files
           are deleted, its request dropped)
        4. coalesce small files of one partition into one (LAKE_COMMIT_COALESCE_BYTES; each
           fetched whole, files in the table's current schema read by Arrow's Parquet reader)
        5. one snapshot on the quarantine table, then one on the main table, each carrying
           ``lake.batch`` = B (a crashed batch is found by it and never committed twice)
        6. settle the ledger entries (one PUT of each source's version entry: committed, with
           the snapshot ids and its report), delete the requests and the pending marker; expire
           committer snapshots beyond LAKE_COMMIT_KEEP_SNAPSHOTS

A batch's store round trips per source: one GET of its request, one claim, one GET of each small
data file, one settle; the rest (listing, the batch document, deletes, the commits) is per batch.
``BatchResult.phases`` has the seconds of each step.

A crash anywhere leaves the pending marker; the next run repeats the batch from the step it
reached (claims and the snapshot lookup are idempotent). Two committers running at once on the
same table (``lake put`` committing inline beside ``lake serve``) are safe: the ledger claim
decides which batch owns a source, Iceberg's optimistic commit orders the snapshots.

API for writers that bring their own data files (a backfill on Daft writes files on workers)::

    request = CommitRequest(dataset=..., bucket=..., key=..., version=..., content_hash=...,
                            main_files=[encode_file(table, f) for f in files],
                            quarantine_files=[...], report={...})
    stage(settings, request)              # idempotent per (key, version)
    commit_pending(settings, dataset)     # or leave it to the running committer
    wait_committed(settings, dataset, key, version)  # the ledger entry once it is committed

Contracts with a primary key (a merge at commit) and vectors (a Lance write settled by the
table commit) still commit on their own, and record the ledger the same way.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.errors import CommitConflict, StoreUnavailable
from lakehouse.storage import list_objects, s3_client
from lakehouse.tables.ledger import Entry, Ledger, SourceId, short_hash
from lakehouse.tables.write import (
    QUARANTINE_SUFFIX,
    SOURCE_URI,
    SOURCE_VERSION,
    DataFileWriter,
    backoff,
    commit_expiry,
    load_current_table,
    read_files,
)

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

log = logging.getLogger("lake.committer")

REQUESTS = "_lake/requests"
PENDING = "_lake/pending"
BATCHES = "_lake/batches"
BATCH = "lake.batch"
BATCH_SOURCES = "lake.batch.sources"
BATCH_SIZE = "lake.batch.size"
COMMITTER = "lake.committer"

# Committer tables merge manifests (one manifest per commit would grow the manifest list) and
# keep a short metadata log (metadata.json would grow by one entry per commit).
TABLE_PROPERTIES = {
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "16",
    "write.metadata.previous-versions-max": "20",
}


# --- data files as JSON ---------------------------------------------------------------------


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def encode_file(table: Table, data_file: DataFile) -> dict[str, Any]:
    """A data file as JSON (partition values in Iceberg's single-value binary form)."""
    from pyiceberg.conversions import to_bytes

    # Files of pyiceberg's writer carry no spec id: they were written with the default spec.
    found: int | None = getattr(data_file, "_spec_id", None)
    spec_id = table.metadata.default_spec_id if found is None else found
    spec = table.specs()[spec_id]
    ptype = spec.partition_type(table.schema())
    values = [data_file.partition[i] for i in range(len(ptype.fields))]
    partition = [
        None if value is None else _b64(to_bytes(f.field_type, value))  # type: ignore[arg-type]
        for f, value in zip(ptype.fields, values, strict=True)
    ]

    def ints(d: dict[int, int] | None) -> dict[str, int] | None:
        return None if d is None else {str(k): int(v) for k, v in d.items()}

    def blobs(d: dict[int, bytes] | None) -> dict[str, str | None] | None:
        return None if d is None else {str(k): _b64(v) for k, v in d.items()}

    return {
        "file_path": data_file.file_path,
        "spec_id": spec_id,
        "partition": partition,
        "record_count": data_file.record_count,
        "file_size_in_bytes": data_file.file_size_in_bytes,
        "column_sizes": ints(data_file.column_sizes),
        "value_counts": ints(data_file.value_counts),
        "null_value_counts": ints(data_file.null_value_counts),
        "nan_value_counts": ints(data_file.nan_value_counts),
        "lower_bounds": blobs(data_file.lower_bounds),
        "upper_bounds": blobs(data_file.upper_bounds),
        "split_offsets": data_file.split_offsets,
        "sort_order_id": data_file.sort_order_id,
    }


def decode_file(table: Table, data: dict[str, Any]) -> DataFile:
    """The data file :func:`encode_file` encoded, for ``table``."""
    from pyiceberg.conversions import from_bytes
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    spec = table.specs()[data["spec_id"]]
    ptype = spec.partition_type(table.schema())
    values = [
        None if raw is None else from_bytes(f.field_type, base64.b64decode(raw))  # type: ignore[arg-type]
        for f, raw in zip(ptype.fields, data["partition"], strict=True)
    ]

    def ints(d: dict[str, int] | None) -> dict[int, int] | None:
        return None if d is None else {int(k): v for k, v in d.items()}

    def blobs(d: dict[str, str] | None) -> dict[int, bytes] | None:
        return None if d is None else {int(k): base64.b64decode(v) for k, v in d.items()}

    data_file = DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=data["file_path"],
        file_format=FileFormat.PARQUET,
        partition=Record(*values),
        record_count=data["record_count"],
        file_size_in_bytes=data["file_size_in_bytes"],
        column_sizes=ints(data["column_sizes"]),
        value_counts=ints(data["value_counts"]),
        null_value_counts=ints(data["null_value_counts"]),
        nan_value_counts=ints(data["nan_value_counts"]),
        lower_bounds=blobs(data["lower_bounds"]),
        upper_bounds=blobs(data["upper_bounds"]),
        key_metadata=None,
        split_offsets=data["split_offsets"],
        equality_ids=None,
        sort_order_id=data["sort_order_id"],
    )
    data_file.spec_id = data["spec_id"]
    return data_file


# --- requests ---------------------------------------------------------------------------------


def request_id(key: str, version: str) -> str:
    """The name of a source version's request: a redelivery rewrites the same object."""
    return f"{short_hash(key)[:20]}-{short_hash(version)[:20]}"


@dataclass
class CommitRequest:
    """What a writer hands the committer: a source's data files and its ingest report."""

    dataset: str
    bucket: str
    key: str
    version: str
    content_hash: str | None
    main_files: list[dict[str, Any]] = field(default_factory=list)
    quarantine_files: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    staged_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        return request_id(self.key, self.version)

    @property
    def source(self) -> SourceId:
        return SourceId(self.key, self.version, self.content_hash)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommitRequest:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _request_key(dataset: str, rid: str) -> str:
    return f"{REQUESTS}/{dataset}/{rid}.json"


def stage(settings: Settings, request: CommitRequest) -> str:
    """Record a commit request (idempotent per source version); its object key."""
    key = _request_key(request.dataset, request.id)
    s3_client(settings).put_object(
        Bucket=settings.warehouse_bucket, Key=key, Body=request.to_json(), ContentType="application/json"
    )
    return key


def _read_json(settings: Settings, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        body = s3_client(settings).get_object(Bucket=settings.warehouse_bucket, Key=key)["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise StoreUnavailable(f"read of s3://{settings.warehouse_bucket}/{key} failed: {e}") from e
    data: dict[str, Any] = json.loads(body)
    return data


def _put_json(settings: Settings, key: str, data: dict[str, Any]) -> None:
    s3_client(settings).put_object(
        Bucket=settings.warehouse_bucket,
        Key=key,
        Body=json.dumps(data).encode(),
        ContentType="application/json",
    )


def _delete(settings: Settings, keys: list[str], bucket: str | None = None) -> None:
    """Delete ``keys`` of ``bucket`` (the warehouse's by default), 1,000 per request."""
    s3 = s3_client(settings)
    for i in range(0, len(keys), 1000):
        chunk = keys[i : i + 1000]
        if chunk:
            s3.delete_objects(
                Bucket=bucket or settings.warehouse_bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )


def pending_requests(settings: Settings, dataset: str) -> list[str]:
    """Object keys of the dataset's staged requests."""
    return [k for k, _ in list_objects(settings, settings.warehouse_bucket, f"{REQUESTS}/{dataset}/")]


def datasets_with_requests(settings: Settings) -> dict[str, int]:
    """Datasets with staged requests or unfinished batches, and how many requests each has."""
    counts: dict[str, int] = defaultdict(int)
    for key, _ in list_objects(settings, settings.warehouse_bucket, f"{REQUESTS}/"):
        counts[key.split("/")[2]] += 1
    for key, _ in list_objects(settings, settings.warehouse_bucket, f"{PENDING}/"):
        counts[key.split("/")[2]] += 0
    return dict(counts)


# --- batches ----------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What one committed batch did."""

    batch: str
    dataset: str
    sources: int
    duplicates: int
    snapshot_id: int | None
    quarantine_snapshot_id: int | None
    files_before: int = 0
    files_after: int = 0
    expired: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step of the batch


T = TypeVar("T")
R = TypeVar("R")


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _parallel(fn: Callable[[T], R], items: list[T]) -> list[R]:
    """``fn`` over ``items`` on a few threads (store round trips of a batch's sources), in order.

    The threads are the process's committer pool (16), started once: a batch's claims, reads and
    settles each go through it. ``fn`` must not call :func:`_parallel` itself.
    """
    global _pool
    if len(items) < 2:
        return [fn(item) for item in items]
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(16, thread_name_prefix="lake-commit")
        pool = _pool
    return list(pool.map(fn, items))


def _delete_files(settings: Settings, table: Table, paths: list[str]) -> None:
    """Delete data files nobody will commit, best effort (an orphan left here is orphan cleanup's):
    one multi-object delete per 1,000 files of a bucket rather than a round trip per file."""
    from botocore.exceptions import BotoCoreError, ClientError

    by_bucket: dict[str, list[str]] = defaultdict(list)
    elsewhere: list[str] = []
    for path in paths:
        where = _s3_path(path)
        if where is not None:
            by_bucket[where[0]].append(where[1])
        else:
            elsewhere.append(path)
    for bucket, keys in by_bucket.items():
        try:
            _delete(settings, keys, bucket)
        except (BotoCoreError, ClientError) as e:
            log.info("could not delete %d unreferenced files in %s: %s", len(keys), bucket, e)
    for path in elsewhere:
        try:
            table.io.delete(path)
        except OSError:
            pass


def _batch_id() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _tables(catalog: Catalog, settings: Settings, dataset: str) -> tuple[Table, Table]:
    main = load_current_table(catalog, f"{settings.namespace}.{dataset}")
    quarantine = load_current_table(catalog, f"{settings.namespace}.{dataset}{QUARANTINE_SUFFIX}")
    return main, quarantine


def _committed_batch(table: Table, batch: str) -> int | None:
    for snap in reversed(table.metadata.snapshots):
        if snap.summary is not None and snap.summary.get(BATCH) == batch:
            return snap.snapshot_id
    return None


def _prepare(table: Table) -> Table:
    """Give a table the committer's properties (once)."""
    if all(table.properties.get(k) == v for k, v in TABLE_PROPERTIES.items()):
        return table
    from pyiceberg.exceptions import CommitFailedException

    try:
        with table.transaction() as tx:
            tx.set_properties(TABLE_PROPERTIES)
    except CommitFailedException:
        table.refresh()
    return table


def _commit_files(
    settings: Settings, table: Table, batch: str, files: list[dict[str, Any]], summary: dict[str, str]
) -> tuple[int, bool]:
    """Append ``files`` in one snapshot tagged with the batch, unless the table has it already."""
    from pyiceberg.exceptions import CommitFailedException

    for attempt in range(settings.commit_retries + 1):
        done = _committed_batch(table, batch)
        if done is not None:
            return done, False
        try:
            with table.transaction() as tx:
                with tx.update_snapshot(
                    snapshot_properties={**summary, BATCH: batch}
                ).merge_append() as append:
                    for data in files:
                        append.append_data_file(decode_file(table, data))
        except CommitFailedException as e:
            if attempt == settings.commit_retries:
                raise CommitConflict(f"{table.name()}: batch {batch} lost {attempt + 1} commits") from e
            time.sleep(backoff(attempt))
            table.refresh()
            continue
        except OSError as e:
            if attempt == settings.commit_retries:
                raise StoreUnavailable(f"{table.name()}: commit of batch {batch} failed: {e}") from e
            time.sleep(backoff(attempt))
            table.refresh()
            continue
        snapshot = table.current_snapshot()
        assert snapshot is not None
        return snapshot.snapshot_id, True
    raise AssertionError("unreachable")


def _s3_path(path: str) -> tuple[str, str] | None:
    """(bucket, key) of an ``s3://`` path, else None."""
    scheme, _, rest = path.partition("://")
    bucket, _, key = rest.partition("/")
    return (bucket, key) if scheme in ("s3", "s3a", "s3n") and bucket and key else None


def _fetcher(settings: Settings) -> Callable[[str], bytes | None]:
    """A whole small data file in one GET (None: read it the usual way, which reports the error)."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = s3_client(settings)

    def fetch(path: str) -> bytes | None:
        where = _s3_path(path)
        if where is None:
            return None
        try:
            body: bytes = s3.get_object(Bucket=where[0], Key=where[1])["Body"].read()
        except (BotoCoreError, ClientError):
            return None
        return body

    return fetch


COALESCE_ROW_GROUP_BYTES = 4 << 20  # batches held in memory before they are written as a row group


def _write_batches(writer: DataFileWriter, batches: list[Any]) -> None:
    """Write record batches (in the table's schema, from one scan) as one row group."""
    import pyarrow as pa

    if batches:
        writer.write_table(pa.Table.from_batches(batches, schema=batches[0].schema))


COALESCE_READ_AHEAD = 16  # small files fetched at once while coalescing


def _in_schema(table: Table, file_schema: Any) -> bool:
    """Whether a data file's Arrow schema is the table's current schema: the same field ids under
    the same names, with the same types (so reading it by name is reading it by field id)."""
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.schema import Schema, index_by_id, index_name_by_id

    def layout(schema: Schema) -> dict[int, tuple[str, str]]:
        names = index_name_by_id(schema)
        return {
            i: (names[i], str(f.field_type) if f.field_type.is_primitive else type(f.field_type).__name__)
            for i, f in index_by_id(schema).items()
        }

    try:
        written = pyarrow_to_schema(file_schema)
    except (ValueError, TypeError, KeyError):  # no field ids, or a type Iceberg has not
        return False
    return layout(written) == layout(table.schema())


def _given(data: bytes | None, _path: str) -> bytes | None:
    """A fetch that returns bytes already fetched."""
    return data


def _read_small(table: Table, files: list[DataFile], fetch: Callable[[str], bytes | None]) -> Iterator[Any]:
    """Record batches of small data files in the table's current schema, file by file.

    Files are fetched whole, ``COALESCE_READ_AHEAD`` at a time. The first file written in the
    table's current schema (every field id under the same name and type) goes through
    pyiceberg's scan (projection by field id); every later file whose Parquet schema is that
    file's (field ids and schema metadata included) is read by Arrow's Parquet reader and cast
    to what the scan made of the first: the same projection, without the scan's per-file
    planning. Any other file (an older schema, say) goes through the scan.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    file_schema: Any = None  # the Parquet schema of the first file read through the scan
    scan_schema: Any = None  # what the scan made of it
    for i in range(0, len(files), COALESCE_READ_AHEAD):
        chunk = files[i : i + COALESCE_READ_AHEAD]
        for data_file, data in zip(chunk, _parallel(lambda f: fetch(f.file_path), chunk), strict=True):
            if data is not None and scan_schema is not None:
                parquet = pq.ParquetFile(pa.BufferReader(data))
                if parquet.schema_arrow.equals(file_schema, check_metadata=True):
                    try:
                        read = parquet.read().cast(scan_schema)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                        read = None  # a value the plain cast refuses: the scan decides
                    if read is not None:
                        yield from read.to_batches()
                        continue
            batches = list(read_files(table, [data_file], prefetch=1, fetch=functools.partial(_given, data)))
            if data is not None and scan_schema is None and batches:
                first = pq.ParquetFile(pa.BufferReader(data)).schema_arrow
                if first.names == batches[0].schema.names and _in_schema(table, first):
                    file_schema, scan_schema = first, batches[0].schema
            yield from batches


def _coalesce(
    settings: Settings, table: Table, files: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rewrite the small files of each partition as one; (files to commit, files replaced)."""
    limit = settings.commit_coalesce_bytes
    if limit <= 0 or len(files) < 2:
        return files, []
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for data in files:
        groups[json.dumps([data["spec_id"], data["partition"]])].append(data)
    out: list[dict[str, Any]] = []
    replaced: list[str] = []
    for group in groups.values():
        small = [d for d in group if d["file_size_in_bytes"] < limit]
        out += [d for d in group if d["file_size_in_bytes"] >= limit]
        if len(small) < 2:
            out += small
            continue
        decoded = [decode_file(table, d) for d in small]
        writer = DataFileWriter(table, decoded[0].partition, decoded[0].spec_id)
        # The batches of many small files go out as a few row groups, not one per file.
        held: list[Any] = []
        size = 0
        for batch in _read_small(table, decoded, _fetcher(settings)):
            held.append(batch)
            size += batch.nbytes
            if size >= COALESCE_ROW_GROUP_BYTES:
                _write_batches(writer, held)
                held, size = [], 0
        _write_batches(writer, held)
        out.append(encode_file(table, writer.close()))
        replaced += [d["file_path"] for d in small]
    return out, replaced


def _summary(sources: list[dict[str, Any]], table_kind: str, batch_uri: str) -> dict[str, str]:
    accepted = sum(int(s["report"].get("rows_accepted") or 0) for s in sources)
    quarantined = sum(int(s["report"].get("rows_quarantined") or 0) for s in sources)
    props = {
        COMMITTER: "true",
        BATCH_SOURCES: batch_uri,
        BATCH_SIZE: str(len(sources)),
        "lake.rows.accepted": str(accepted),
        "lake.rows.quarantined": str(quarantined),
    }
    if len(sources) == 1:  # one source: name it, as a commit of its own would
        props.update({SOURCE_URI: sources[0]["uri"], SOURCE_VERSION: sources[0]["version"]})
        props.update(sources[0].get("properties") or {})
    if table_kind == "main" and sources:
        props["lake.dataset"] = sources[0]["dataset"]
    return props


class _Batch:
    def __init__(self, settings: Settings, catalog: Catalog, dataset: str, doc: dict[str, Any]) -> None:
        self.settings = settings
        self.catalog = catalog
        self.dataset = dataset
        self.doc = doc
        self.id: str = doc["batch"]
        self.doc_key = f"{BATCHES}/{dataset}/{self.id}.json"
        self.pending_key = f"{PENDING}/{dataset}/{self.id}"
        self.uri = f"s3://{settings.warehouse_bucket}/{self.doc_key}"
        self.tables: tuple[Table, Table] | None = None  # as the batch left them (for expiry)

    def open(self) -> None:
        _put_json(self.settings, self.doc_key, self.doc)
        _put_json(self.settings, self.pending_key, {"batch": self.id})

    def complete(self, ledger: Ledger) -> BatchResult:
        started = mark = time.perf_counter()
        phases: dict[str, float] = {}

        def lap(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            phases[name] = phases.get(name, 0.0) + now - mark
            mark = now

        main, quarantine = _tables(self.catalog, self.settings, self.dataset)
        self.tables = (main, quarantine)
        lap("load")
        ours: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        sources = self.doc["sources"]
        claims = _parallel(
            lambda src: ledger.claim(SourceId(src["key"], src["version"], src.get("content_hash")), self.id),
            sources,
        )
        for src, won in zip(sources, claims, strict=True):
            (ours if won.batch == self.id and won.state != "duplicate" else dropped).append(src)
        lap("claim")
        files_before = sum(len(s["main_files"]) + len(s["quarantine_files"]) for s in ours)
        replaced: list[str] = []
        if self.doc.get("planned") is None:
            good = [f for s in ours for f in s["main_files"]]
            bad = [f for s in ours for f in s["quarantine_files"]]
            if len(ours) > 1:  # the files of one upload are already as large as its writer made them
                good, r1 = _coalesce(self.settings, main, good)
                bad, r2 = _coalesce(self.settings, quarantine, bad)
                replaced = r1 + r2
            self.doc["planned"] = {"main": good, "quarantine": bad, "sources": [s["id"] for s in ours]}
            _put_json(self.settings, self.doc_key, self.doc)
        lap("coalesce")
        planned = self.doc["planned"]
        kept = set(planned["sources"])
        ours = [s for s in ours if s["id"] in kept]
        qsnap = snap = None
        if ours and planned["quarantine"]:
            qsnap, _ = _commit_files(
                self.settings,
                _prepare(quarantine),
                self.id,
                planned["quarantine"],
                _summary(ours, "quarantine", self.uri),
            )
        if ours:  # the main table's snapshot names every source of the batch, rows or not
            snap, _ = _commit_files(
                self.settings, _prepare(main), self.id, planned["main"], _summary(ours, "main", self.uri)
            )
        lap("commit")

        def settle(src: dict[str, Any]) -> None:
            report = {**src["report"], "snapshot_id": snap, "batch": self.id}
            report["quarantine_snapshot_id"] = qsnap if src["quarantine_files"] else None
            entry = Entry(
                "committed",
                self.id,
                src["key"],
                src["version"],
                src.get("content_hash"),
                snapshot_id=report["snapshot_id"],
                quarantine_snapshot_id=report["quarantine_snapshot_id"],
                report=report,
            )
            ledger.settle(SourceId(src["key"], src["version"], src.get("content_hash")), entry)

        _parallel(settle, ours)
        lap("settle")
        # Files nobody will commit: the coalesced originals and the duplicates' (best effort).
        _delete_files(self.settings, main, replaced + self._unheld(dropped, claims))
        _delete(self.settings, [_request_key(self.dataset, s["id"]) for s in self.doc["sources"]])
        _delete(self.settings, [self.pending_key])
        lap("delete")
        return BatchResult(
            self.id,
            self.dataset,
            len(ours),
            len(dropped),
            snap,
            qsnap,
            files_before,
            len(planned["main"]) + len(planned["quarantine"]),
            seconds=time.perf_counter() - started,
            phases=phases,
        )

    def _unheld(self, dropped: list[dict[str, Any]], claims: list[Entry]) -> list[str]:
        """The data files of the dropped sources that no other batch holds.

        A source another batch won may have been read by both batches from the same request,
        its files then being the very files the other batch commits (two committers on one
        table, or a redelivery's committer beside the first): those are kept. Files of a batch
        whose document cannot be read are kept too; orphan cleanup removes what stays unused.
        """
        winners = {won.batch for won in claims if won.batch != self.id}
        held: set[str] = set()
        for batch in winners:
            doc = _read_json(self.settings, f"{BATCHES}/{self.dataset}/{batch}.json")
            if doc is None:
                return []
            for src in doc["sources"]:
                held.update(f["file_path"] for f in src["main_files"] + src["quarantine_files"])
        files = [f["file_path"] for s in dropped for f in s["main_files"] + s["quarantine_files"]]
        return [path for path in files if path not in held]


def _recover(settings: Settings, catalog: Catalog, dataset: str) -> list[_Batch]:
    """The batches a crashed run left (to be completed first, oldest first)."""
    batches = []
    for key, _ in sorted(list_objects(settings, settings.warehouse_bucket, f"{PENDING}/{dataset}/")):
        batch_id = key.rsplit("/", 1)[1]
        doc = _read_json(settings, f"{BATCHES}/{dataset}/{batch_id}.json")
        if doc is None:  # crashed before the batch document was written: nothing was claimed
            _delete(settings, [key])
            continue
        log.info("completing batch %s of %s left by an earlier run", batch_id, dataset)
        batches.append(_Batch(settings, catalog, dataset, doc))
    return batches


def _expire(settings: Settings, tables: tuple[Table, Table]) -> int:
    """Expire the oldest committer snapshots beyond ``LAKE_COMMIT_KEEP_SNAPSHOTS`` (in steps of a
    quarter of that, so expiry runs every few batches, not after each). ``tables`` are as the
    last batch left them: no second load of their metadata."""
    from pyiceberg.exceptions import CommitFailedException

    keep = settings.commit_keep_snapshots
    expired = 0
    for table in tables:
        snaps = table.metadata.snapshots
        if len(snaps) <= keep + max(1, keep // 4):
            continue
        current = table.metadata.current_snapshot_id
        old = [
            s.snapshot_id
            for s in snaps[: len(snaps) - keep]
            if s.snapshot_id != current and s.summary is not None and s.summary.get(COMMITTER) == "true"
        ]
        if not old:
            continue
        try:
            commit_expiry(table, old, {})
            expired += len(old)
        except CommitFailedException:
            pass  # a concurrent commit: the next batch expires them
    return expired


def commit_pending(
    settings: Settings, dataset: str, catalog: Catalog | None = None, max_batches: int | None = None
) -> list[BatchResult]:
    """Commit the dataset's staged requests, in batches of at most ``LAKE_COMMIT_MAX_FILES``.

    Finishes the batches an earlier (crashed) run left first. Raises the transient errors of the
    store or of commits that kept conflicting; the requests stay staged for the next run.
    """
    catalog = catalog or get_catalog(settings)
    ledger = Ledger(settings, dataset)
    batches = _recover(settings, catalog, dataset)
    results = [b.complete(ledger) for b in batches]
    while max_batches is None or len(results) < max_batches:
        started = time.perf_counter()
        keys = sorted(pending_requests(settings, dataset))[: settings.commit_max_files]
        if not keys:
            break
        sources = []
        for data in _parallel(lambda key: _read_json(settings, key), keys):
            if data is None:
                continue
            req = CommitRequest.from_dict(data)
            sources.append({**vars(req), "id": req.id, "uri": req.uri})  # no deep copy of the files
        if not sources:
            break
        batch = _Batch(
            settings, catalog, dataset, {"batch": _batch_id(), "dataset": dataset, "sources": sources}
        )
        batch.open()
        read = time.perf_counter() - started
        result = batch.complete(ledger)
        result.phases = {"read": read, **result.phases}
        results.append(result)
        batches.append(batch)
    last = batches[-1].tables if batches else None
    if last is not None:
        started = time.perf_counter()
        results[-1].expired = _expire(settings, last)
        results[-1].phases["expire"] = time.perf_counter() - started
    return results


def wait_committed(
    settings: Settings,
    dataset: str,
    key: str,
    version: str,
    timeout: float = 300.0,
    poll: float = 0.1,
    commit: Callable[[], object] | None = None,
) -> Entry:
    """The ledger entry of a staged source once it is committed (or a duplicate).

    ``commit`` (e.g. a :func:`commit_pending` call) runs before each look; without it another
    committer is expected to commit. Raises :class:`CommitConflict` (transient) on timeout.
    """
    ledger = Ledger(settings, dataset)
    deadline = time.monotonic() + timeout
    while True:
        if commit is not None:
            commit()
        entry = ledger.lookup(key, version)
        if entry is not None and entry.state != "claimed":
            return entry
        if time.monotonic() > deadline:
            raise CommitConflict(f"s3://…/{key} version {version}: not committed within {timeout:g} s")
        time.sleep(poll)


def notify(settings: Settings, dataset: str) -> None:
    """Ask the committer function to commit ``dataset`` (``LAKE_COMMIT_QUEUE_URL``, a FIFO queue:
    one message group per table, so one committer runs per table; messages within one commit
    interval share a deduplication id and collapse into one)."""
    from lakehouse.storage import sqs_client

    assert settings.commit_queue_url
    window = int(time.time() / settings.commit_interval_seconds)
    sqs_client(settings).send_message(
        QueueUrl=settings.commit_queue_url,
        MessageBody=json.dumps({"dataset": dataset}),
        MessageGroupId=dataset,
        MessageDeduplicationId=f"{dataset}-{window}",
    )


class Committer(threading.Thread):
    """The committer loop of ``lake serve``: every dataset with staged requests is committed at
    least every ``LAKE_COMMIT_INTERVAL_SECONDS``, sooner when ``LAKE_COMMIT_MAX_FILES`` are
    waiting (checked every tenth of the interval). One thread: one committer per table."""

    def __init__(self, settings: Settings, on_batch: Callable[[BatchResult], None] | None = None) -> None:
        super().__init__(name="lake-committer", daemon=True)
        self.settings = settings
        self.on_batch = on_batch
        self.stop_event = threading.Event()
        self.last: dict[str, float] = {}
        self.errors: list[str] = []

    def run_once(self, force: bool = False) -> list[BatchResult]:
        results: list[BatchResult] = []
        now = time.monotonic()
        for dataset, count in datasets_with_requests(self.settings).items():
            due = now - self.last.get(dataset, 0.0) >= self.settings.commit_interval_seconds
            if not (force or due or count >= self.settings.commit_max_files):
                continue
            self.last[dataset] = now
            try:
                batch = commit_pending(self.settings, dataset)
            except Exception as e:  # noqa: BLE001 - the requests stay staged; the next pass retries
                log.warning("commit of %s failed: %s", dataset, e)
                self.errors.append(f"{dataset}: {type(e).__name__}: {e}")
                continue
            for result in batch:
                if self.on_batch is not None:
                    self.on_batch(result)
            results += batch
        return results

    def run(self) -> None:
        tick = self.settings.commit_interval_seconds / 10
        while not self.stop_event.is_set():
            try:
                self.run_once()
            except Exception as e:  # noqa: BLE001 - keep committing; the store may come back
                log.warning("committer pass failed: %s", e)
            self.stop_event.wait(tick)
