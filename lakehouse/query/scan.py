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
    bounds_sql: str | None = None  # the same, as a DuckDB condition


@dataclass(frozen=True)
class Plan:
    files: list[PlannedFile]
    has_deletes: bool


_plans: OrderedDict[tuple[str, int], Plan] = OrderedDict()
_plans_lock = threading.Lock()
PLANS_KEPT = 256


def _bounds(table: Table, data_file: Any) -> tuple[pads.Expression | None, str | None]:
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
    sql: list[str] = []
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
        lo, hi = pa.scalar(from_bytes(kind, lower[fid]), typ), pa.scalar(from_bytes(kind, upper[fid]), typ)
        column = pads.field(field.name)
        cond = (column >= lo) & (column <= hi)
        out = cond if out is None else out & cond
        try:
            sql.append(f"{ident(field.name)} BETWEEN {_sql_value(lo)} AND {_sql_value(hi)}")
        except (ValueError, OverflowError):  # a time Python cannot hold: this bound stays Arrow's
            continue
    return out, " AND ".join(sql) or None


_SQL_TYPES = {
    "int32": "INTEGER",
    "int64": "BIGINT",
    "date32[day]": "DATE",
    "float": "FLOAT",
    "double": "DOUBLE",
}


def _sql_value(value: pa.Scalar) -> str:
    """A bound as a typed DuckDB literal (exact: integers and ISO times as written, floats by
    their shortest round-trip text)."""
    typ = value.type
    if pa.types.is_timestamp(typ):
        name = "TIMESTAMPTZ" if typ.tz is not None else "TIMESTAMP"
        return f"CAST({literal(value.as_py().isoformat())} AS {name})"
    return f"CAST({literal(str(value.as_py()))} AS {_SQL_TYPES[str(typ)]})"


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
        bounds, bounds_sql = _bounds(table, data)
        files.append(
            PlannedFile(
                _bucket_key(data.file_path), data.file_size_in_bytes, data.record_count, bounds, bounds_sql
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
        return self.cached_copies() is not None

    def cached_copies(self) -> list[str] | None:
        """The local copy of every planned file, when each is in the file cache now (nothing is
        fetched); None otherwise."""
        cache = self.handler.cache
        if cache is None:
            return None
        copies = []
        for f in self.files:
            if (local := cache.lookup(f"s3://{f.path}")) is None:
                return None
            copies.append(str(local))
        return copies

    def prefetch(self) -> None:
        """Fetch the planned files missing from the file cache, in the background, when they
        all fit in a quarter of it: a table scanned file by file (only the files its filters
        need) is whole in the cache for the next request (see :func:`native_session`)."""
        cache = self.handler.cache
        if cache is None or sum(f.size for f in self.files) > cache.max_bytes // 4:
            return
        key = tuple(f.path for f in self.files)
        with _prefetch_lock:
            if key in _prefetching:
                return
            _prefetching.add(key)
        quiet = CachedFiles(self.handler.store, cache, self.handler.allowed, ScanStats())

        def fetch() -> None:
            try:
                quiet.local_copies(list(key))
            except Exception:  # noqa: BLE001 - best effort: the next request fetches what it needs
                pass
            finally:
                with _prefetch_lock:
                    _prefetching.discard(key)

        _prefetcher.submit(fetch)

    def parts(self, whole: bool = False, lazy: bool = False) -> list[pads.Dataset]:
        """The datasets DuckDB scans, none of which calls into Python from Arrow's threads:
        one over the local copies when every file is in the cache already (the warm path) or
        when ``whole`` asks for one scan; else one per file through the cache (up to
        ``LAZY_FILES``), else one over local copies fetched now (or over the store itself when
        the cache cannot hold them). ``lazy``: one per file (up to ``LAZY_FILES``, unless
        ``whole``) even when all are cached, so that the files a run opens are counted as it
        opens them (an EXPLAIN ANALYZE's stats).

        One dataset rather than a ``UNION ALL`` of one-file scans wherever it can: DuckDB
        estimates no Arrow scan's rows, so the only size its join order sees is how many scans
        a table is made of, and a table of seven files joined to one of a single file can be
        ordered hundreds of times worse (TPC-H 5 at scale factor 1); one native scan of many
        files is also about twice as fast as as many one-file scans. A table read from local
        copies counts every file as read (its filters skip files inside pyarrow)."""
        if len(self.files) <= LAZY_FILES and not whole and (lazy or not self._all_cached()):
            fs = pa.fs.PyFileSystem(self.handler)
            return [self._dataset(fs, [(f.path, f)]) for f in self.files]
        local = self.handler.local_copies([f.path for f in self.files])
        if local is None:
            return [self._dataset(self.handler.store, [(f.path, f) for f in self.files])]
        return [self._dataset(pa.fs.LocalFileSystem(), list(zip(local, self.files, strict=True)))]


_prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake-prefetch")
_prefetching: set[tuple[str, ...]] = set()
_prefetch_lock = threading.Lock()


def _iceberg_filter(tenant: TenantFilter | None) -> Any:
    from pyiceberg.expressions import AlwaysTrue, EqualTo

    return cast(Any, EqualTo)(tenant.column, tenant.tenant) if tenant is not None else AlwaysTrue()


# --- DuckDB sessions --------------------------------------------------------------------------

# DuckDB threads of one query connection.
QUERY_THREADS = max(1, min(4, os.cpu_count() or 1))
_pool: dict[tuple[Any, ...], list[duckdb.DuckDBPyConnection]] = {}
_workers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="lake-query")
_pool_lock = threading.Lock()


def _config(settings: Settings) -> dict[str, Any]:
    """What every query connection is opened with: its threads and memory, no extension loading,
    no replacement scans of Python objects, bounded expression depth."""
    return {
        "threads": QUERY_THREADS,
        "memory_limit": settings.query_memory_limit,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "python_enable_replacements": False,
        "max_expression_depth": settings.query_max_nesting * 4,
    }


def _open(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A DuckDB database that can reach nothing outside the process and cannot be reconfigured."""
    import duckdb

    con = duckdb.connect(config={**_config(settings), "enable_external_access": False})
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
    spoiled: bool = False  # never lent again (a native connection whose file went missing)

    def register(self, name: str, rows: Any) -> None:
        self.con.register(name, rows)
        self.registered.append(name)

    def bind(self, name: str, rows: Any, whole: bool = False, lazy: bool = False) -> None:
        """``<namespace>.<name>`` (and the bare ``<name>``) read ``rows`` (a pyarrow dataset or
        table) and nothing else; ``whole``: as one scan even before its files are in the cache
        (a query that joins tables), ``lazy``: file by file even once cached (see
        :meth:`TableRows.parts`).

        :class:`TableRows` are bound as the ``UNION ALL`` of their :meth:`TableRows.parts`:
        DuckDB holds the GIL while pyarrow starts a scan, and a scan of several files opens the
        next file from one of Arrow's threads; through the Python filesystem of
        :class:`CachedFiles`, which needs the GIL, the two would wait on each other forever. A
        scan of one file opens it in the thread that starts the scan, and DuckDB still pushes
        the query's filters into every part, so a file whose bounds cannot match is never
        opened. A table of many files is scanned in one piece over native files instead.
        """
        parts = rows.parts(whole, lazy) if isinstance(rows, TableRows) else [rows]
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


def _cleared(state: Session) -> bool:
    """Drop the request's views and registrations; False, with the connection closed, when that
    fails (a connection that cannot be cleared is never lent again)."""
    try:
        state._clear()
        return True
    except Exception:  # noqa: BLE001
        state.con.close()
        return False


def _give_back(key: tuple[Any, ...], state: Session) -> None:
    if not _cleared(state):
        return
    with _pool_lock:
        _pool.setdefault(key, []).append(state.con)


# --- native scans of cached files -------------------------------------------------------------
#
# A request by a key bound to no tenant, over tables whose planned files are all in the file
# cache, can let DuckDB read those local copies itself (its own Parquet reader is about three
# times faster than an Arrow scan). Its connection is a DuckDB database of its own whose
# ``allowed_paths`` are exactly those files (no directory, no other file: DuckDB refuses any other
# path, ``..`` included, before it opens it), locked like every query connection, with a view per
# table that lists the table's columns (so neither ``filename`` nor any other virtual column of
# the scan is reachable). A view is the ``UNION ALL`` of one scan per file, each under the bounds
# of its rows from the manifest: DuckDB drops the scan of a file whose bounds contradict the
# query's filters while it plans, so the plan's scans are the files the query reads. Such
# connections are kept per set of files and views, a few at a time. A tenant-bound key never
# gets one: its rows are filtered in the Arrow scan.

# Idle native connections kept in all (each a DuckDB database of its own).
NATIVE_KEPT = 16
# Tables of more files than this are read through Arrow.
NATIVE_FILES = LAZY_FILES
# The scans a native connection's plans may hold besides the Arrow ones.
NATIVE_SCANS = frozenset({"READ_PARQUET", "PARQUET_SCAN"})
_native_pool: OrderedDict[tuple[Any, ...], list[duckdb.DuckDBPyConnection]] = OrderedDict()
_native_refused: OrderedDict[tuple[Any, ...], None] = OrderedDict()


@dataclass(frozen=True)
class NativeTable:
    """A view ``name`` over the local copies ``paths`` (each with the bounds of its rows, see
    :func:`_bounds`) with the columns of ``schema``."""

    name: str
    schema: pa.Schema
    paths: tuple[str, ...]
    bounds: tuple[str | None, ...]
    sizes: tuple[int, ...]


def native_tables(tables: dict[str, Any]) -> tuple[NativeTable, ...] | None:
    """The request's tables as native views, when every one is :class:`TableRows` without a row
    filter whose planned files are all in the file cache now; None otherwise. The caller decides
    that the key is bound to no tenant."""
    out = []
    for name, rows in tables.items():
        if not isinstance(rows, TableRows) or rows.where is not None or len(rows.files) > NATIVE_FILES:
            return None
        copies = rows.cached_copies()
        if copies is None:
            return None
        out.append(
            NativeTable(
                name,
                rows.schema,
                tuple(copies),
                tuple(f.bounds_sql for f in rows.files),
                tuple(f.size for f in rows.files),
            )
        )
    return tuple(out) if out else None


def _describe(con: duckdb.DuckDBPyConnection, source: str) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]


def _open_native(settings: Settings, tables: tuple[NativeTable, ...]) -> duckdb.DuckDBPyConnection | None:
    """A locked connection that may open exactly the tables' local copies, with their views;
    None when DuckDB would not read a file with the columns and types of the Arrow scan (an
    older schema), or a copy is gone."""
    import duckdb

    con = duckdb.connect(config=_config(settings))  # external access goes off once paths are set
    try:
        allowed = sorted({path for table in tables for path in table.paths})
        con.execute(f"SET allowed_paths = [{', '.join(literal(p) for p in allowed)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET parquet_metadata_cache = true")  # the copies are immutable
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE SCHEMA {ident(settings.namespace)}")
        for table in tables:
            con.register("__lake_expected", table.schema.empty_table())
            expected = _describe(con, "__lake_expected")
            con.unregister("__lake_expected")
            if any(_describe(con, f"read_parquet({literal(path)})") != expected for path in table.paths):
                con.close()
                return None
            columns = ", ".join(ident(f.name) for f in table.schema)
            body = " UNION ALL ".join(
                f"SELECT {columns} FROM read_parquet({literal(path)})"
                + (f" WHERE {bounds}" if bounds else "")
                for path, bounds in zip(table.paths, table.bounds, strict=True)
            )
            for schema in (settings.namespace, "main"):
                con.execute(f"CREATE VIEW {ident(schema)}.{ident(table.name)} AS {body}")
        con.execute("SET lock_configuration = true")
    except (duckdb.Error, OSError):
        con.close()
        return None
    return con


@contextmanager
def native_session(settings: Settings, tables: tuple[NativeTable, ...]) -> Iterator[Session | None]:
    """A native connection for ``tables`` (see above), or None when their files cannot be read
    natively (then bind them to :func:`session`)."""
    key = (
        settings.namespace,
        settings.query_memory_limit,
        settings.query_max_nesting,
        tuple((t.name, str(t.schema), t.paths) for t in tables),
    )
    con = None
    with _pool_lock:
        if key in _native_refused:
            refused = True
        else:
            refused = False
            idle = _native_pool.get(key)
            con = idle.pop() if idle else None
    if refused:
        yield None
        return
    if con is None:
        con = _open_native(settings, tables)
    if con is None:
        if all(os.path.exists(path) for table in tables for path in table.paths):  # not a copy gone
            with _pool_lock:
                _native_refused[key] = None
                while len(_native_refused) > PLANS_KEPT:
                    _native_refused.popitem(last=False)
        yield None
        return
    state = Session(con, settings.namespace, [], [])
    try:
        yield state
    finally:
        if not state.abandoned and not state.spoiled:
            _give_back_native(key, state)
        elif not state.abandoned:
            state.con.close()


def _give_back_native(key: tuple[Any, ...], state: Session) -> None:
    if not _cleared(state):
        return
    closing = []
    with _pool_lock:
        _native_pool.setdefault(key, []).append(state.con)
        _native_pool.move_to_end(key)
        idle = sum(len(cons) for cons in _native_pool.values())
        while idle > NATIVE_KEPT:  # the least recently returned first
            oldest = next(k for k, cons in _native_pool.items() if cons)
            closing.append(_native_pool[oldest].pop(0))
            idle -= 1
        for empty in [k for k, cons in _native_pool.items() if not cons]:
            del _native_pool[empty]
    for con in closing:
        con.close()
