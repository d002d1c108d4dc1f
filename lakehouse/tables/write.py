"""Iceberg tables: creation from contracts, streamed data-file writes and one atomic,
idempotent, retried commit per source object.

pyiceberg's ``append`` needs the whole table in memory; Lake writes the data files of each
batch as it goes (pyiceberg's ``_dataframe_to_data_files``, a private helper: pyiceberg is
pinned to 0.12.x and this module is the only place that uses it) and commits them together.
"""

from __future__ import annotations

import functools
import itertools
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pyarrow as pa

from lakehouse.catalog import current_location
from lakehouse.config import Settings
from lakehouse.contracts.model import Contract
from lakehouse.errors import CommitConflict, StoreUnavailable

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.io import OutputFile, OutputStream
    from pyiceberg.manifest import DataFile
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

QUARANTINE_SUFFIX = "__quarantine"
SOURCE_URI = "lake.source.uri"
SOURCE_VERSION = "lake.source.version"


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): exponential, capped at 2 s, jittered."""
    return min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5)


T = TypeVar("T")


def store_retry(settings: Settings, step: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """Run an idempotent table step again when the object store fails it.

    pyiceberg's Arrow file IO gives up on some failures (a connection dropped mid-read) without
    using its retry strategy; they surface as ``OSError``. After ``LAKE_S3_MAX_ATTEMPTS`` tries
    the failure becomes a transient :class:`StoreUnavailable`.
    """
    for attempt in range(settings.s3_max_attempts):
        try:
            return step()
        except OSError as e:
            if attempt + 1 == settings.s3_max_attempts:
                raise StoreUnavailable(f"the object store kept failing: {e}") from e
            sleep(backoff(attempt))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class SourceRef:
    """The identity of an uploaded object: the idempotency key of its commits."""

    bucket: str
    key: str
    version: str  # S3 version id, else the etag
    version_id: str | None = field(default=None, compare=False)  # what a read pins: the version,
    etag: str | None = field(default=None, compare=False)  # else the ETag

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def resolve_source(
    settings: Settings, bucket: str, key: str, version: str | None, etag: str | None = None
) -> SourceRef:
    """The object's identity and what pins its read.

    ``version`` is the event's version id (or, from callers that know no better, its ETag, which
    is then used as one); ``etag`` the event's ETag. With neither, the store is asked (and the
    read pinned to what it answered).
    """
    etag = etag.strip('"') if etag else None
    if not version and not etag:
        from lakehouse.storage import s3_client

        head = s3_client(settings).head_object(Bucket=bucket, Key=key)
        version, etag = head.get("VersionId"), head["ETag"].strip('"')
    if version and version != etag:
        return SourceRef(bucket=bucket, key=key, version=str(version), version_id=str(version), etag=etag)
    assert etag is not None or version is not None
    tag = str(etag or version).strip('"')
    return SourceRef(bucket=bucket, key=key, version=tag, etag=tag)


def quarantine_schema() -> Schema:
    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        IntegerType,
        ListType,
        LongType,
        NestedField,
        StringType,
        StructType,
        TimestamptzType,
    )

    error = StructType(
        NestedField(11, "column", StringType(), required=False),
        NestedField(12, "rule", StringType(), required=False),
        NestedField(13, "reason", StringType(), required=False),
    )
    return Schema(
        NestedField(1, "quarantined_at", TimestamptzType(), required=True),
        NestedField(2, "source_uri", StringType(), required=True),
        NestedField(3, "source_version", StringType(), required=True),
        NestedField(4, "row_number", LongType(), required=True),
        NestedField(
            5, "column", StringType(), required=False, doc="first failing column (null: unparseable row)"
        ),
        NestedField(6, "rule", StringType(), required=True),
        NestedField(7, "reason", StringType(), required=True, doc="every failure, '; '-separated"),
        NestedField(8, "errors", ListType(10, error, element_required=False), required=True),
        NestedField(9, "record", StringType(), required=False, doc="the raw record as JSON text"),
        NestedField(14, "contract_version", IntegerType(), required=True),
    )


# pyiceberg retries a conflicting commit by re-applying it to the new table state, which would
# append an object's rows a second time when the winner was another delivery of the same object.
# Lake retries itself (StagedWrite.commit), re-checking the idempotency ledger before each attempt.
OWN_RETRIES = {"commit.retry.num-retries": "0"}


# --- table metadata, per process -------------------------------------------------------------

# A metadata file never changes once written, so a table whose catalog pointer still names the
# location loaded before needs no second read and parse of its metadata (the larger part of a
# table load: a GET and a JSON parse that grows with the snapshot log). Bounded, least recently
# used first out.
_METADATA_CACHE_SIZE = 64
_metadata: OrderedDict[str, Table] = OrderedDict()
_metadata_lock = threading.Lock()


@functools.cache
def _single_put_io_class() -> type:
    from pyarrow.fs import S3FileSystem
    from pyiceberg.io import S3_RETRY_STRATEGY_IMPL
    from pyiceberg.io.pyarrow import PyArrowFileIO, _import_retry_strategy

    class SinglePutFileIO(PyArrowFileIO):
        """pyiceberg's Arrow file IO with S3 output streams that open when the first part goes
        up: a file smaller than one part (a small upload's data file, a manifest) is one PUT
        instead of a multipart upload's three requests. Larger files stream as before."""

        def _initialize_s3_fs(self, netloc: str | None) -> Any:
            base = super()._initialize_s3_fs(netloc)
            _, (options,) = base.__reduce__()
            options["allow_delayed_open"] = True
            impl = self.properties.get(S3_RETRY_STRATEGY_IMPL)
            retry = _import_retry_strategy(impl) if impl else None
            if retry is not None:  # not among the options a file system reports
                options["retry_strategy"] = retry
            return S3FileSystem(**options)

        def __reduce__(self) -> Any:  # shipped elsewhere: the plain IO of the same properties
            return (PyArrowFileIO, (dict(self.properties),))

    return SinglePutFileIO


_ios: dict[str, Any] = {}


def _table_io(io: Any) -> Any:
    """The IO a loaded table writes with: one :func:`_single_put_io_class` IO per set of
    properties and process (its S3 connections are reused), for pyiceberg's Arrow IO."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    if type(io) is not PyArrowFileIO:
        return io
    key = repr(sorted(io.properties.items()))
    with _metadata_lock:
        found = _ios.get(key)
        if found is None:
            found = _ios[key] = _single_put_io_class()(dict(io.properties))
    return found


def load_current_table(catalog: Catalog, ident: str) -> Table:
    """``catalog.load_table(ident)``, reusing the parsed metadata while the catalog still points at
    the same metadata file (one catalog read instead of a catalog read, a GET and a parse).

    Each call returns its own :class:`Table`, so a caller's commits never move another's table.
    Raises pyiceberg's ``NoSuchTableError`` for a missing table, as ``load_table`` does.
    """
    from pyiceberg.table import Table

    location, load = current_location(catalog, ident)
    if location is not None:
        with _metadata_lock:
            known = _metadata.get(location)
            if known is not None:
                _metadata.move_to_end(location)
        if known is not None:
            return Table(
                identifier=known.name(),
                metadata=known.metadata,
                metadata_location=location,
                io=_table_io(known.io),
                catalog=catalog,
            )
    table = load()
    if table.metadata_location:
        with _metadata_lock:
            _metadata[table.metadata_location] = table
            while len(_metadata) > _METADATA_CACHE_SIZE:
                _metadata.popitem(last=False)
    return Table(
        identifier=table.name(),
        metadata=table.metadata,
        metadata_location=table.metadata_location,
        io=_table_io(table.io),
        catalog=catalog,
    )


def create_table(
    catalog: Catalog, ident: str, schema: Schema, spec: Any, props: dict[str, str], sort_order: Any = None
) -> Table:
    """Load the table, or create it (a concurrent creator winning the race is fine)."""
    from pyiceberg.exceptions import CommitFailedException, NoSuchTableError, TableAlreadyExistsError
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

    try:
        table = load_current_table(catalog, ident)
    except NoSuchTableError:
        try:
            return catalog.create_table(
                ident,
                schema=schema,
                partition_spec=spec,
                sort_order=sort_order or UNSORTED_SORT_ORDER,
                properties={**props, **OWN_RETRIES},
            )
        except TableAlreadyExistsError:  # a concurrent ingest created it first
            table = load_current_table(catalog, ident)
    for _ in range(20):  # a table from before this rule gets it once, racing writers or not
        if all(table.properties.get(k) == v for k, v in OWN_RETRIES.items()):
            return table
        try:
            with table.transaction() as tx:
                tx.set_properties(OWN_RETRIES)
        except CommitFailedException:
            table = load_current_table(catalog, ident)
    raise CommitConflict(f"{ident}: could not set {OWN_RETRIES} for concurrent commits")


def ensure_tables(catalog: Catalog, settings: Settings, contract: Contract) -> tuple[Table, Table]:
    """The dataset's table and its quarantine table, created on first use."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import MonthTransform

    schema = contract.iceberg_schema()
    main = create_table(
        catalog,
        f"{settings.namespace}.{contract.name}",
        schema,
        contract.partition_spec(schema),
        contract.table_properties(),
        contract.iceberg_sort_order(schema),
    )
    qschema = quarantine_schema()
    qspec = PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=MonthTransform(), name="quarantined_at_month")
    )
    quarantine = create_table(
        catalog,
        f"{settings.namespace}.{contract.name}{QUARANTINE_SUFFIX}",
        qschema,
        qspec,
        {
            "format-version": "2",
            "write.parquet.compression-codec": "zstd",
            "lake.quarantine-of": contract.name,
        },
    )
    return main, quarantine


def committed_snapshot(table: Table, source: SourceRef) -> int | None:
    """The snapshot that already committed ``source``, if any (the idempotency ledger)."""
    for snap in reversed(table.metadata.snapshots):
        summary = snap.summary
        if summary is None:
            continue
        if summary.get(SOURCE_URI) == source.uri and summary.get(SOURCE_VERSION) == source.version:
            return snap.snapshot_id
    return None


def limit_write_workers(workers: int) -> None:
    """Cap the threads pyiceberg writes data files with (its process-wide executor).

    Every concurrent partition write holds a Parquet writer and an upload buffer: on a small
    Lambda the peak memory of an ingest is mostly these, so the cap keeps it bounded.
    """
    from concurrent.futures import ThreadPoolExecutor

    from pyiceberg.utils.concurrent import ExecutorFactory

    current = ExecutorFactory._instance
    if isinstance(current, ThreadPoolExecutor) and current._max_workers == workers:
        return
    ExecutorFactory.get_or_create()  # records the pid
    ExecutorFactory._instance = ThreadPoolExecutor(max_workers=workers)


@dataclass
class StagedWrite:
    """Data files written for one table, not yet visible until :meth:`commit`.

    With ``replace`` the commit is one ``overwrite`` snapshot in which the staged files become
    the whole table (``write_mode: replace``).
    """

    table: Table
    files: list[DataFile] = field(default_factory=list)
    rows: int = 0
    replace: bool = False
    _uuid: uuid.UUID = field(default_factory=uuid.uuid4)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def write(self, data: pa.Table) -> None:
        """Write ``data`` as Parquet data files (one or more per partition), each in the table's
        write order (sort order or z-order)."""
        from pyiceberg.io.pyarrow import _dataframe_to_data_files

        from lakehouse.tables.layout import sort_rows, write_order

        if data.num_rows == 0:
            return
        self.files.extend(
            _dataframe_to_data_files(
                table_metadata=self.table.metadata,
                df=sort_rows(data, write_order(self.table)),
                io=self.table.io,
                write_uuid=self._uuid,
                counter=self._counter,
            )
        )
        self.rows += data.num_rows

    def flush(self) -> None:
        """Finish writing (nothing to do here: every batch is written as it comes)."""

    def commit(
        self,
        source: SourceRef,
        properties: dict[str, str],
        settings: Settings,
        sleep: Callable[[float], None] = time.sleep,
    ) -> tuple[int, bool]:
        """Commit every staged file in one snapshot; returns (snapshot id, already committed).

        A source that a snapshot already carries is not committed again. Conflicts with
        concurrent writers are retried with jittered exponential backoff; when the retries
        run out a transient :class:`CommitConflict` is raised.
        """
        from pyiceberg.exceptions import CommitFailedException, ValidationException

        self.flush()
        summary = {SOURCE_URI: source.uri, SOURCE_VERSION: source.version, **properties}
        for attempt in range(settings.commit_retries + 1):
            self.table.refresh()
            done = committed_snapshot(self.table, source)
            if done is not None:
                return done, True
            try:
                with self.table.transaction() as tx:
                    update = tx.update_snapshot(snapshot_properties=summary)
                    if self.replace:
                        live = (
                            [t.file for t in self.table.scan().plan_files()]
                            if self.table.current_snapshot()
                            else []
                        )
                        with update.overwrite() as overwrite:
                            for data_file in live:
                                overwrite.delete_data_file(data_file)
                            for data_file in self.files:
                                overwrite.append_data_file(data_file)
                    else:
                        with update.fast_append() as append:
                            for data_file in self.files:
                                append.append_data_file(data_file)
            except (CommitFailedException, ValidationException) as e:
                if attempt == settings.commit_retries:
                    raise CommitConflict(
                        f"{self.table.name()}: commit of {source.uri} lost to concurrent writers "
                        f"{attempt + 1} times"
                    ) from e
                sleep(backoff(attempt))
                continue
            except OSError as e:  # the store failed a read or write of the commit: try again
                if attempt == settings.commit_retries:
                    raise StoreUnavailable(f"{self.table.name()}: commit of {source.uri} failed: {e}") from e
                sleep(backoff(attempt))
                continue
            snapshot = self.table.current_snapshot()
            assert snapshot is not None
            return snapshot.snapshot_id, False
        raise AssertionError("unreachable")


# --- table services: streamed rewrites and replace commits (pyiceberg private helpers) --------


def _fetched_io(base: Any, path: str, data: bytes) -> Any:
    """``base`` (a pyiceberg FileIO) with the file at ``path`` served from ``data`` in memory."""
    from pyiceberg.io import FileIO, InputFile, InputStream

    class Fetched(InputFile):
        def __len__(self) -> int:
            return len(data)

        def exists(self) -> bool:
            return True

        def open(self, seekable: bool = True) -> InputStream:
            return cast("InputStream", pa.BufferReader(data))

    class FetchedIO(FileIO):
        def new_input(self, location: str) -> InputFile:
            return Fetched(location) if location == path else base.new_input(location)

        def new_output(self, location: str) -> OutputFile:
            out: OutputFile = base.new_output(location)
            return out

        def delete(self, location: str | InputFile | OutputFile) -> None:
            base.delete(location)

    return FetchedIO(base.properties)


def read_files(
    table: Table,
    files: list[DataFile],
    prefetch: int = 4,
    fetch: Callable[[str], bytes | None] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``files`` in the table's current schema, file by file.

    At most ``prefetch`` files are read ahead (pyiceberg's ``ArrowScan`` materialises one file at
    a time when given one task), so memory stays bounded by a few files, not by their number.
    ``fetch`` (small files only: it returns a whole file's bytes, or None to read it the usual
    way) reads a file in one request instead of the store's size, footer and data reads.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import FileScanTask

    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())

    def read(data_file: DataFile) -> list[pa.RecordBatch]:
        data = fetch(data_file.file_path) if fetch is not None else None
        if data is not None:
            own = ArrowScan(
                table.metadata, _fetched_io(table.io, data_file.file_path, data), table.schema(), AlwaysTrue()
            )
            return list(own.to_record_batches([FileScanTask(data_file)]))
        return list(scan.to_record_batches([FileScanTask(data_file)]))

    with ThreadPoolExecutor(max_workers=max(1, prefetch)) as pool:
        pending: list[Future[list[pa.RecordBatch]]] = []
        queue = iter(files)
        for data_file in itertools.islice(queue, max(1, prefetch)):
            pending.append(pool.submit(read, data_file))
        while pending:
            batches = pending.pop(0).result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(read, nxt))
            yield from batches


class _PartitionPath:
    """The partition key interface pyiceberg's location providers need (``to_path``)."""

    def __init__(self, table: Table, partition: Any, spec_id: int) -> None:
        self._path = table.specs()[spec_id].partition_to_path(partition, table.schema())

    def to_path(self) -> str:
        return self._path


class _SizedStream:
    """An output stream that counts the bytes written through it (a data file's size without
    asking the store for it afterwards)."""

    def __init__(self, inner: OutputStream) -> None:
        self._inner = inner
        self.size = 0

    def write(self, data: bytes) -> int:
        written = self._inner.write(data)
        self.size += written
        return written

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        flush = getattr(self._inner, "flush", None)
        if flush is not None:
            flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return bool(getattr(self._inner, "closed", False))

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> _SizedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SizedOutput:
    """The table IO's output file, handing out a :class:`_SizedStream`."""

    def __init__(self, inner: OutputFile) -> None:
        self._inner = inner
        self.location = inner.location
        self.stream: _SizedStream | None = None

    def create(self, overwrite: bool = False) -> _SizedStream:
        self.stream = _SizedStream(self._inner.create(overwrite=overwrite))
        return self.stream

    def exists(self) -> bool:
        return self._inner.exists()

    def to_input_file(self) -> Any:
        return self._inner.to_input_file()

    def __len__(self) -> int:
        if self.stream is not None and self.stream.closed:
            return self.stream.size
        return len(self._inner)


class DataFileWriter:
    """One Parquet data file of one partition, written from streamed record batches.

    Batches go to the store as row groups as they arrive; :meth:`close` returns the Iceberg
    ``DataFile`` (with column statistics) for a commit. Nothing is visible until committed.
    """

    def __init__(self, table: Table, partition: Any, spec_id: int, suffix: str = "compacted") -> None:
        from pyiceberg.io.pyarrow import FileFormatFactory
        from pyiceberg.manifest import FileFormat
        from pyiceberg.table import TableProperties

        props = dict(table.properties)
        # Row groups follow the data; each file is one target-sized unit.
        props.setdefault(TableProperties.PARQUET_ROW_GROUP_LIMIT, str(1_048_576))
        self._table = table
        self._schema = table.schema()
        self._partition = partition
        self._spec_id = spec_id
        self._model = FileFormatFactory.get(FileFormat.PARQUET)
        name = f"{uuid.uuid4()}-{suffix}.parquet"
        partitioned = bool(table.specs()[spec_id].fields)
        key = cast(Any, _PartitionPath(table, partition, spec_id)) if partitioned else None
        self.path = table.location_provider().new_data_location(data_file_name=name, partition_key=key)
        self._output = _SizedOutput(table.io.new_output(self.path))
        self._writer = self._model.create_writer(cast(Any, self._output), self._schema, props)
        self.rows = 0

    def write_table(self, data: pa.Table) -> None:
        """Write ``data`` (in the table's schema) as one or more row groups."""
        from pyiceberg.io.pyarrow import _to_requested_schema

        if data.num_rows == 0:
            return
        converted = [
            _to_requested_schema(
                requested_schema=self._schema,
                file_schema=self._schema,
                batch=batch,
                include_field_ids=True,
                format_model=self._model,
            )
            for batch in data.to_batches()
        ]
        self._writer.write(pa.Table.from_batches(converted))
        self.rows += data.num_rows

    def close(self) -> DataFile:
        from pyiceberg.manifest import DataFile, DataFileContent, FileFormat

        stats = self._writer.close()
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=self.path,
            file_format=FileFormat.PARQUET,
            partition=self._partition,
            file_size_in_bytes=len(self._output),
            sort_order_id=None,
            spec_id=self._spec_id,
            equality_ids=None,
            key_metadata=None,
            **stats.to_serialized_dict(),
        )


@dataclass
class StreamedWrite(StagedWrite):
    """A :class:`StagedWrite` that keeps one open data file per partition and writes each batch's
    rows into it as row groups, on a background thread while the next batch is read and
    validated. A large upload becomes one file per partition it touches (a new one after
    ``rows_per_file`` rows), however many batches it has, and reading overlaps writing.

    At most ``max_open`` files are open at once (the least recently written is closed first) and
    at most two batches wait for the writer thread, so memory stays bounded. Call :meth:`flush`
    before using :attr:`files`.
    """

    max_open: int = 16
    rows_per_file: int = 8_000_000
    _writers: dict[tuple[Any, ...], DataFileWriter] = field(default_factory=dict)
    _inflight: list[Any] = field(default_factory=list)
    _pool: Any = None

    def write(self, data: pa.Table) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if data.num_rows == 0:
            return
        self.rows += data.num_rows
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="lake-write")
        while len(self._inflight) >= 2:
            self._inflight.pop(0).result()
        self._inflight.append(self._pool.submit(self._write_now, data))

    def _write_now(self, data: pa.Table) -> None:
        from pyiceberg.io.pyarrow import _determine_partitions
        from pyiceberg.typedef import Record

        spec = self.table.spec()
        if spec.is_unpartitioned():  # an empty partition record, as pyiceberg's own writes carry
            parts: list[tuple[Any, pa.Table]] = [(Record(), data)]
        else:
            parts = [
                (p.partition_key.partition, p.arrow_table_partition)
                for p in _determine_partitions(spec=spec, schema=self.table.schema(), arrow_table=data)
            ]
        for partition, part in parts:
            key = tuple(partition[i] for i in range(len(spec.fields)))
            writer = self._writers.pop(key, None)  # re-inserted last: the dict is in LRU order
            if writer is None:
                if len(self._writers) >= self.max_open:
                    oldest = next(iter(self._writers))
                    self.files.append(self._writers.pop(oldest).close())
                writer = DataFileWriter(self.table, partition, spec.spec_id, suffix="data")
            writer.write_table(part)
            if writer.rows >= self.rows_per_file:
                self.files.append(writer.close())
            else:
                self._writers[key] = writer

    def flush(self) -> None:
        """Wait for the writer thread and close every open file."""
        try:
            while self._inflight:
                self._inflight.pop(0).result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        while self._writers:
            self.files.append(self._writers.pop(next(iter(self._writers))).close())


def commit_replace(
    table: Table, removed: list[DataFile], added: list[DataFile], properties: dict[str, str]
) -> int:
    """Swap ``removed`` for ``added`` in one snapshot that changes no rows; returns its id.

    The snapshot is an ``overwrite`` (pyiceberg 0.12 cannot write ``replace`` summaries) whose
    summary carries ``lake.operation``. Validation is snapshot isolation, as for Iceberg's
    RewriteFiles: concurrent appends do not conflict (pyiceberg rebases onto them and retries),
    a concurrent removal of a replaced file does. Raises pyiceberg's ``CommitFailedException``
    or ``ValidationException``; either means nothing was committed.
    """
    with table.transaction() as tx:
        update = tx.update_snapshot(snapshot_properties=properties)
        producer = _replace_files_class()(
            commit_uuid=None,
            operation=_overwrite_operation(),
            transaction=update._transaction,
            io=update._io,
            branch=update._branch,
            snapshot_properties=properties,
        )
        with producer as replace:
            for data_file in removed:
                replace.delete_data_file(data_file)
            for data_file in added:
                replace.append_data_file(data_file)
        snapshot_id = producer.snapshot_id
    return snapshot_id


def _overwrite_operation() -> Any:
    from pyiceberg.table.snapshots import Operation

    return Operation.OVERWRITE


@functools.cache
def _replace_files_class() -> Any:
    from pyiceberg.table.update.snapshot import _OverwriteFiles
    from pyiceberg.table.update.validate import (
        _validate_data_files_exist,
        _validate_no_new_deletes_for_data_files,
    )

    class ReplaceFiles(_OverwriteFiles):
        """An overwrite that rewrites files without changing rows (snapshot isolation)."""

        def _validate_concurrency(self) -> None:
            window = self._commit_window
            if window is None or window.is_empty() or window.head is None:
                return
            table = self._transaction._table
            _validate_data_files_exist(table, window.head, self._deleted_data_files, window.base)
            _validate_no_new_deletes_for_data_files(
                table, window.head, None, self._deleted_data_files, window.base
            )

    return ReplaceFiles


def commit_expiry(table: Table, snapshot_ids: list[int], properties: dict[str, str]) -> None:
    """Remove ``snapshot_ids`` from the metadata and set ``properties``, in one commit that
    fails (``CommitFailedException``) if the current snapshot moved since ``table`` was loaded."""
    from pyiceberg.table.update import AssertRefSnapshotId
    from pyiceberg.table.update.snapshot import ExpireSnapshots

    current = table.metadata.current_snapshot_id
    with table.transaction() as tx:
        ExpireSnapshots(tx).by_ids(snapshot_ids).commit()
        tx.set_properties(properties)
        tx._stage((), (AssertRefSnapshotId(snapshot_id=current, ref="main"),))  # type: ignore[call-arg]
