"""The rows a request may read, as Arrow, and the DuckDB sessions user SQL runs in.

This is the engine's defence in depth: whatever a statement says, DuckDB can only read what
this module hands it.

* A table is read at a snapshot through the files pyiceberg plans for it (cached per process
  by snapshot: a snapshot's file list never changes), exposed to DuckDB as pyarrow datasets
  (one per file until its files are in the local cache, see :meth:`Session.bind`). Each file
  carries its bounds (partition values and the min/max of integer, date and timestamp columns
  from the manifest) so DuckDB's filters skip files that cannot match. A tenant-bound key's
  row filter is part of the dataset itself: DuckDB never sees another tenant's rows.
* Bytes are read through :class:`lakehouse.query.files.CachedFiles`: only the planned files,
  through a local cache of immutable objects.
* :func:`session` lends a DuckDB connection (one per concurrent request, kept for the life of
  the process) that has no external access at all (no files, no network, no extension
  loading, no Python replacement scans) and locked settings. A request's views are dropped
  when it ends.
* Table metadata is kept per process and revalidated by one cheap read of the catalog's current
  metadata location.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pyarrow as pa

from lakehouse.access.auth import Principal
from lakehouse.catalog import qualify
from lakehouse.config import Settings
from lakehouse.duck import AsOf, epoch_ms, ident, literal, parse_as_of
from lakehouse.errors import ContractNotFound, Forbidden, SnapshotNotFound, TableNotFound
from lakehouse.query.files import CachedFiles, ScanStats, file_cache

T = TypeVar("T")

if TYPE_CHECKING:
    import duckdb
    import pyarrow.dataset as pads
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

# --- who may read what ------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantFilter:
    """The rows of one tenant: ``column = tenant``."""

    column: str
    tenant: str

    def expression(self) -> pads.Expression:
        import pyarrow.dataset as pads

        return pads.field(self.column) == self.tenant

    def sql(self) -> str:
        return f"{ident(self.column)} = {literal(self.tenant)}"


def row_filter(settings: Settings, principal: Principal, name: str) -> TenantFilter | None:
    """The rows of table ``name`` that ``principal`` may read (None: all), or Forbidden.

    A key bound to a tenant reads only tables whose contract names a ``tenant_column``, and only
    its own rows there; quarantine tables (raw records of every tenant) and the audit table are
    closed to it. The audit table needs an admin key. A refusal names no table: a key that may
    not read a table learns nothing about it.
    """
    from lakehouse.access.audit import AUDIT_TABLE
    from lakehouse.contracts.model import load_contract
    from lakehouse.tables.write import QUARANTINE_SUFFIX

    if name == AUDIT_TABLE:
        principal.require("admin")
        if principal.tenant is None:
            return None
    if principal.tenant is None:
        return None
    if name == AUDIT_TABLE or name.endswith(QUARANTINE_SUFFIX):
        raise Forbidden("a tenant key cannot read this table")
    try:
        contract = load_contract(settings, name)
    except ContractNotFound as e:
        raise Forbidden("a tenant key reads tenant-scoped tables only") from e
    if contract.tenant_column is None:
        raise Forbidden("a tenant key reads tenant-scoped tables only")
    return TenantFilter(contract.tenant_column, principal.tenant)


# --- table metadata, per process --------------------------------------------------------------


def current_table(catalog: Catalog, settings: Settings, name: str) -> Table:
    """The table as the catalog has it now; the parsed metadata is reused while the catalog
    still names the same metadata file (:func:`lakehouse.tables.write.load_current_table`)."""
    from pyiceberg.exceptions import NoSuchTableError

    from lakehouse.tables.write import load_current_table

    qualified = qualify(settings, name)
    if any(not part.strip() for part in qualified.split(".")):
        raise TableNotFound(f"{name!r} is not a table name (empty namespace or table segment)")
    try:
        return load_current_table(catalog, qualified)
    except NoSuchTableError as e:
        raise TableNotFound(f"no table {qualified!r} in the catalog") from e


def resolve_snapshot(table: Table, as_of: AsOf) -> int | None:
    """The snapshot id to read: current, an id the table holds, or the one current at a time."""
    when = parse_as_of(as_of)
    if when is None:
        snap = table.current_snapshot()
        return snap.snapshot_id if snap else None
    if isinstance(when, int):
        if table.snapshot_by_id(when) is None:
            raise SnapshotNotFound(f"table {'.'.join(table.name())} has no snapshot {when}")
        return when
    snap = table.snapshot_as_of_timestamp(epoch_ms(when))
    return snap.snapshot_id if snap else None


# --- the files of a snapshot, per process -----------------------------------------------------


@dataclass(frozen=True)
class PlannedFile:
    path: str  # bucket/key
    size: int
    rows: int
    bounds: pads.Expression | None  # true for every row of the file


@dataclass(frozen=True)
class Plan:
    files: list[PlannedFile]
    has_deletes: bool


_plans: OrderedDict[tuple[str, int], Plan] = OrderedDict()
_plans_lock = threading.Lock()
PLANS_KEPT = 256


def _bounds(table: Table, data_file: Any) -> pads.Expression | None:
    """What every row of a data file satisfies: the ranges of its integer, date, timestamp and
    (NaN-free) floating-point columns that hold no null, from the manifest's bounds."""
    import pyarrow.dataset as pads
    from pyiceberg.conversions import from_bytes
    from pyiceberg.types import (
        DateType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        TimestampType,
        TimestamptzType,
    )

    schema = table.schema()
    lower, upper = data_file.lower_bounds or {}, data_file.upper_bounds or {}
    nulls = data_file.null_value_counts or {}
    nans = data_file.nan_value_counts or {}
    out: pads.Expression | None = None
    for field in schema.fields:
        fid, kind = field.field_id, field.field_type
        if fid not in lower or fid not in upper or nulls.get(fid) != 0:
            continue
        if isinstance(kind, IntegerType | LongType):
            typ: pa.DataType = pa.int32() if isinstance(kind, IntegerType) else pa.int64()
        elif isinstance(kind, DateType):
            typ = pa.date32()
        elif isinstance(kind, TimestamptzType):
            typ = pa.timestamp("us", tz="UTC")
        elif isinstance(kind, TimestampType):
            typ = pa.timestamp("us")
        elif isinstance(kind, FloatType | DoubleType) and nans.get(fid) == 0:
            typ = pa.float32() if isinstance(kind, FloatType) else pa.float64()
        else:
            continue
        lo, hi = from_bytes(kind, lower[fid]), from_bytes(kind, upper[fid])
        column = pads.field(field.name)
        cond = (column >= pa.scalar(lo, typ)) & (column <= pa.scalar(hi, typ))
        out = cond if out is None else out & cond
    return out


def plan(table: Table, snapshot_id: int) -> Plan:
    """The data files of the table at ``snapshot_id`` (immutable: kept per process)."""
    key = (table.metadata.table_uuid.hex, snapshot_id)
    with _plans_lock:
        if (found := _plans.get(key)) is not None:
            _plans.move_to_end(key)
            return found
    files: list[PlannedFile] = []
    has_deletes = False
    for task in table.scan(snapshot_id=snapshot_id).plan_files():
        has_deletes = has_deletes or bool(task.delete_files)
        data = task.file
        files.append(
            PlannedFile(
                _bucket_key(data.file_path), data.file_size_in_bytes, data.record_count, _bounds(table, data)
            )
        )
    found = Plan(files, has_deletes)
    with _plans_lock:
        _plans[key] = found
        while len(_plans) > PLANS_KEPT:
            _plans.popitem(last=False)
    return found


def _bucket_key(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("s3", "s3a", "s3n"):
        raise TableNotFound(f"data file {uri!r} is not in an S3 store")
    return rest


def arrow_schema(table: Table) -> pa.Schema:
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    return schema_to_pyarrow(table.schema(), include_field_ids=False)


def table_rows(
    settings: Settings,
    table: Table,
    snapshot_id: int | None,
    tenant: TenantFilter | None,
    stats: ScanStats,
) -> TableRows | pa.Table:
    """The rows of ``table`` at ``snapshot_id`` that a request may read."""

    from lakehouse.storage import arrow_filesystem

    schema = arrow_schema(table)
    if snapshot_id is None:
        return schema.empty_table()
    planned = plan(table, snapshot_id)
    with stats.lock:
        stats.files_planned += len(planned.files)
    if planned.has_deletes:  # merge-on-read deletes: pyiceberg applies them
        scan = table.scan(snapshot_id=snapshot_id, row_filter=_iceberg_filter(tenant))
        return scan.to_arrow()
    if not planned.files:
        return schema.empty_table()
    allowed = {f.path: f.size for f in planned.files}
    handler = CachedFiles(arrow_filesystem(settings), file_cache(settings), allowed, stats)
    where = tenant.expression() if tenant is not None else None
    return TableRows(schema, planned.files, handler, where)


# Up to this many files, a table whose files are not all in the file cache yet is scanned file by
# file, opening only the files its filters need (see Session.bind); a table of more files is
# fetched whole into the file cache first and scanned natively in one piece (hundreds of one-file
# scans exhaust DuckDB's memory).
LAZY_FILES = 32


@dataclass(frozen=True)
class TableRows:
    """The rows of a table that a request may read: its planned files, read through the file
    cache, and the tenant's row filter when the key is bound to one."""

    schema: pa.Schema
    files: list[PlannedFile]
    handler: CachedFiles
    where: pads.Expression | None

    def _dataset(self, fs: pa.fs.FileSystem, files: list[tuple[str, PlannedFile]]) -> pads.Dataset:
        import pyarrow.dataset as pads

        fmt = pads.ParquetFileFormat()
        fragments = [
            fmt.make_fragment(
                path,
                fs,
                partition_expression=f.bounds if f.bounds is not None else pads.scalar(True),
                file_size=f.size,
            )
            for path, f in files
        ]
        dataset = pads.FileSystemDataset(fragments, self.schema, fmt, fs)
        return dataset.filter(self.where) if self.where is not None else dataset

    def dataset(self) -> pads.Dataset:
        """One dataset over every file through the cache's Python filesystem, for scans run
        from Python (pyarrow releases the GIL); never hand it to DuckDB (see
        :meth:`Session.bind`)."""
        return self._dataset(pa.fs.PyFileSystem(self.handler), [(f.path, f) for f in self.files])

    def _all_cached(self) -> bool:
        cache = self.handler.cache
        return cache is not None and all(cache.lookup(f"s3://{f.path}") is not None for f in self.files)

    def parts(self, whole: bool = False) -> list[pads.Dataset]:
        """The datasets DuckDB scans, none of which calls into Python from Arrow's threads:
        one over the local copies when every file is in the cache already (the warm path) or
        when ``whole`` asks for one scan; else one per file through the cache (up to
        ``LAZY_FILES``), else one over local copies fetched now (or over the store itself when
        the cache cannot hold them).

        One dataset rather than a ``UNION ALL`` of one-file scans wherever it can: DuckDB
        estimates no Arrow scan's rows, so the only size its join order sees is how many scans
        a table is made of, and a table of seven files joined to one of a single file can be
        ordered hundreds of times worse (TPC-H 5 at scale factor 1); one native scan of many
        files is also about twice as fast as as many one-file scans. A table read from local
        copies counts every file as read (its filters skip files inside pyarrow)."""
        if len(self.files) <= LAZY_FILES and not whole and not self._all_cached():
            fs = pa.fs.PyFileSystem(self.handler)
            return [self._dataset(fs, [(f.path, f)]) for f in self.files]
        local = self.handler.local_copies([f.path for f in self.files])
        if local is None:
            return [self._dataset(self.handler.store, [(f.path, f) for f in self.files])]
        return [self._dataset(pa.fs.LocalFileSystem(), list(zip(local, self.files, strict=True)))]


def _iceberg_filter(tenant: TenantFilter | None) -> Any:
    from pyiceberg.expressions import AlwaysTrue, EqualTo

    return cast(Any, EqualTo)(tenant.column, tenant.tenant) if tenant is not None else AlwaysTrue()


# --- DuckDB sessions --------------------------------------------------------------------------

# DuckDB threads of one query connection.
QUERY_THREADS = max(1, min(4, os.cpu_count() or 1))
_pool: dict[tuple[Any, ...], list[duckdb.DuckDBPyConnection]] = {}
_workers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="lake-query")
_pool_lock = threading.Lock()


def _open(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A DuckDB database that can reach nothing outside the process and cannot be reconfigured."""
    import duckdb

    con = duckdb.connect(
        config={
            "threads": QUERY_THREADS,
            "memory_limit": settings.query_memory_limit,
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "python_enable_replacements": False,
            "max_expression_depth": settings.query_max_nesting * 4,
        }
    )
    con.execute("SET TimeZone = 'UTC'")
    # A hash join's Bloom filter, pushed through the UNION ALL of a table's files (see
    # Session.bind) into a pyarrow scan, fails the query (DuckDB 1.5.5: "Pushdown Filter Type
    # BLOOM_FILTER is not currently supported in PyArrow Scans").
    con.execute("SET disabled_optimizers = 'join_filter_pushdown'")
    con.execute(f"CREATE SCHEMA {ident(settings.namespace)}")
    con.execute("SET lock_configuration = true")
    return con


@dataclass
class Session:
    """One request's DuckDB connection and the names it defined there."""

    con: duckdb.DuckDBPyConnection
    namespace: str
    views: list[str]
    registered: list[str]
    abandoned: bool = False

    def register(self, name: str, rows: Any) -> None:
        self.con.register(name, rows)
        self.registered.append(name)

    def bind(self, name: str, rows: Any, whole: bool = False) -> None:
        """``<namespace>.<name>`` (and the bare ``<name>``) read ``rows`` (a pyarrow dataset or
        table) and nothing else; ``whole``: as one scan even before its files are in the cache
        (a query that joins tables, see :meth:`TableRows.parts`).

        :class:`TableRows` are bound as the ``UNION ALL`` of their :meth:`TableRows.parts`:
        DuckDB holds the GIL while pyarrow starts a scan, and a scan of several files opens the
        next file from one of Arrow's threads; through the Python filesystem of
        :class:`CachedFiles`, which needs the GIL, the two would wait on each other forever. A
        scan of one file opens it in the thread that starts the scan, and DuckDB still pushes
        the query's filters into every part, so a file whose bounds cannot match is never
        opened. A table of many files is scanned in one piece over native files instead.
        """
        parts = rows.parts(whole) if isinstance(rows, TableRows) else [rows]
        sources = []
        for part in parts:
            sources.append(f"__lake_rows_{len(self.registered)}")
            self.register(sources[-1], part)
        body = " UNION ALL ".join(f"SELECT * FROM {ident(source)}" for source in sources)
        for schema in (self.namespace, "main"):
            qualified = f"{ident(schema)}.{ident(name)}"
            self.con.execute(f"CREATE VIEW {qualified} AS {body}")
            self.views.append(qualified)

    def macro(self, name: str, sql: str, parameters: str) -> None:
        """A table macro ``<name>(parameters)`` (bare and in the namespace) for this request."""
        for schema in (self.namespace, "main"):
            qualified = f"{ident(schema)}.{ident(name)}"
            self.con.execute(f"CREATE MACRO {qualified}({parameters}) AS TABLE {sql}")
            self.views.append(f"MACRO TABLE {qualified}")

    def select(self, sql: str) -> duckdb.DuckDBPyRelation:
        """Run ``sql`` if DuckDB parses it as exactly one SELECT (whatever a gate said)."""
        import duckdb

        from lakehouse.errors import ForbiddenSQL

        statements = duckdb.extract_statements(sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise ForbiddenSQL("only one SELECT statement is allowed")
        return self.con.sql(statements[0].query)

    def run(self, work: Callable[[], T], seconds: float) -> T:
        """``work()`` on this connection, given at most ``seconds``: past them the connection is
        interrupted and :class:`TimeoutError` raised at once, whether or not DuckDB has stopped
        yet (a connection still busy is closed when it stops, never lent again)."""
        def work_then_close() -> T:
            try:
                return work()
            finally:
                if self.abandoned:
                    self.con.close()

        future = _workers.submit(work_then_close)
        try:
            return future.result(timeout=max(seconds, 0.0))
        except FutureTimeout:
            self.abandoned = True  # never lent again; closed when it stops (or collected)
            self.con.interrupt()
            raise TimeoutError(f"the query ran past {seconds:g}s") from None

    def _clear(self) -> None:
        for view in reversed(self.views):
            if view.startswith("MACRO TABLE "):
                self.con.execute(f"DROP MACRO TABLE {view.removeprefix('MACRO TABLE ')}")
            else:
                self.con.execute(f"DROP VIEW {view}")
        for name in self.registered:
            self.con.unregister(name)


@contextmanager
def session(settings: Settings) -> Iterator[Session]:
    """A locked-down DuckDB connection for one request; its views are gone when it ends."""
    key = (settings.namespace, settings.query_memory_limit, settings.query_max_nesting)
    with _pool_lock:
        idle = _pool.setdefault(key, [])
        con = idle.pop() if idle else None
    if con is None:
        con = _open(settings)
    state = Session(con, settings.namespace, [], [])
    try:
        yield state
    finally:
        if not state.abandoned:  # one still running past its time limit is closed when it stops
            _give_back(key, state)


def _give_back(key: tuple[Any, ...], state: Session) -> None:
    try:
        state._clear()
    except Exception:  # noqa: BLE001 - a connection that cannot be cleared is never lent again
        state.con.close()
        return
    with _pool_lock:
        _pool.setdefault(key, []).append(state.con)
