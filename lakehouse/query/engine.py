"""Read-only DuckDB SQL over the catalog, and table metadata.

A query runs in three steps, each able to stop it on its own:

1. :func:`lakehouse.query.sqlguard.parse`: one SELECT within the length and nesting limits,
   calling allowed functions only; the Lake names it may read.
2. Each Lake table it names is read at its snapshot as Arrow over exactly the files pyiceberg
   plans (:mod:`lakehouse.query.scan`), a tenant key's row filter applied before DuckDB sees a
   row, and bound as a view ``<namespace>.<table>`` on a DuckDB connection that has no external
   access at all.
3. :func:`lakehouse.query.sqlguard.check_plan`: DuckDB binds and plans the statement; every scan
   in the plan must be one of the request's views. Then it runs, within the time limit counted
   from the start of the request, and its result within the row, byte and nesting limits.
"""

from __future__ import annotations

import datetime as dt
import glob
import importlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa

from lakehouse.access.audit import AUDIT_TABLE
from lakehouse.access.auth import LOCAL, Principal
from lakehouse.catalog import get_catalog, list_tables, load_table
from lakehouse.config import Settings
from lakehouse.duck import arrow_rows, json_value, literal, parse_as_of
from lakehouse.errors import (
    Forbidden,
    ForbiddenSQL,
    QueryFailed,
    QueryLimitExceeded,
    SnapshotNotFound,
    TableNotFound,
)
from lakehouse.query import cache
from lakehouse.query.files import ScanStats
from lakehouse.query.scan import (
    NATIVE_SCANS,
    NativeTable,
    Session,
    TableRows,
    TenantFilter,
    current_table,
    native_session,
    native_tables,
    plan,
    resolve_snapshot,
    row_filter,
    session,
    table_rows,
)
from lakehouse.query.sqlguard import VECTOR_SEARCH, Statement, check_plan, lake_names, parse

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

EXTENSIONS = ("httpfs", "avro", "iceberg")


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    snapshots: dict[str, int | None]
    truncated: bool = False
    elapsed_ms: float = 0.0
    plan: str | None = None
    cached: bool = False
    stats: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "columns": self.columns,
            "types": self.types,
            "rows": self.rows,
            "snapshots": self.snapshots,
            "row_count": len(self.rows),
            "truncated": self.truncated,
            "elapsed_ms": self.elapsed_ms,
            "cached": self.cached,
            "stats": self.stats,
        }
        if self.plan is not None:
            body["plan"] = self.plan
        return body


def extension_path(name: str) -> str:
    """The DuckDB extension shipped by the ``duckdb-extension-<name>`` PyPI package."""
    import duckdb

    module = importlib.import_module(f"duckdb_extension_{name}")
    root = Path(module.__file__ or "").parent / "extensions" / f"v{duckdb.__version__}"
    found = glob.glob(str(root / f"{name}.duckdb_extension"))
    if not found:
        raise QueryFailed(f"DuckDB extension {name} for DuckDB {duckdb.__version__} is not installed")
    return found[0]


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A trusted DuckDB connection with Lake's extensions and an S3 secret, for Lake's own
    statements (rollup materialisation, checks); user SQL never runs on it (see :func:`run_sql`)."""
    import duckdb

    home = settings.duckdb_home or Path(tempfile.gettempdir()) / "lake-duckdb"
    home.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        config={
            "threads": max(1, min(4, os.cpu_count() or 1)),
            "memory_limit": settings.query_memory_limit,
            "home_directory": str(home),
            "extension_directory": str(home / "extensions"),
            "temp_directory": str(home / "spill"),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    for name in EXTENSIONS:
        con.execute(f"LOAD {literal(extension_path(name))}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET http_retries = {settings.s3_max_attempts}")
    con.execute("SET http_retry_wait_ms = 50")
    con.execute(f"SET http_timeout = {int(settings.s3_read_timeout)}")
    parts = [f"TYPE s3, REGION {literal(settings.region)}, URL_STYLE 'path'"]
    if settings.s3_endpoint:
        url = urlparse(settings.s3_endpoint)
        parts.append(
            f"ENDPOINT {literal(url.netloc)}, USE_SSL {'true' if url.scheme == 'https' else 'false'}"
        )
    if settings.access_key_id and settings.secret_access_key:
        parts.append(
            f"KEY_ID {literal(settings.access_key_id)}, SECRET {literal(settings.secret_access_key)}"
        )
    else:
        parts.append("PROVIDER credential_chain")
    con.execute(f"CREATE SECRET lake_s3 ({', '.join(parts)})")
    return con


def _tables_of(
    settings: Settings, catalog: Catalog, statement: Statement, principal: Principal
) -> tuple[dict[str, Table], dict[str, TenantFilter | None], bool]:
    """The Lake tables the statement may read, each one's row filter, and whether it reads audit.

    The row filter is decided before anything is loaded: a key that may not read a table gets a
    403 that says nothing about it. A bare name that is no table is left to the binder (a CTE).
    """
    names = lake_names(statement, settings.namespace)
    qualified = {name for schema, name in statement.names if schema}
    filters: dict[str, TenantFilter | None] = {}
    tables: dict[str, Table] = {}
    reads_audit = False
    for name in names:
        if name == AUDIT_TABLE:
            filters[name] = row_filter(settings, principal, name)
            reads_audit = True
            continue
        if name in qualified:  # refused before its existence shows
            filters[name] = row_filter(settings, principal, name)
        try:
            table = current_table(catalog, settings, name)
        except TableNotFound:
            if name in qualified:
                raise
            continue
        filters[name] = row_filter(settings, principal, name)
        tables[name] = table
    return tables, filters, reads_audit


def _audit_rows(settings: Settings, catalog: Catalog, stats: ScanStats) -> tuple[pa.Table, int | None]:
    """``<namespace>.audit``: the audit table (current snapshot), the spool not yet folded, and
    this process's rows not yet spooled."""
    import pyarrow.dataset as pads
    from pyiceberg.exceptions import NoSuchTableError

    from lakehouse.access.audit import SPOOL_PREFIX, audit_schema, folded_files, unfolded
    from lakehouse.storage import arrow_filesystem

    schema = audit_schema().as_arrow()
    parts: list[pa.Table] = []
    done: set[str] = set()
    snapshot_id = None
    try:
        table = current_table(catalog, settings, AUDIT_TABLE)
    except (TableNotFound, NoSuchTableError):
        table = None
    if table is not None and (snap := table.current_snapshot()) is not None:
        snapshot_id = snap.snapshot_id
        rows = table_rows(settings, table, snapshot_id, None, stats)
        parts.append(rows.dataset().to_table() if isinstance(rows, TableRows) else rows)
        done = folded_files(table)
    keys, queued = unfolded(settings)
    pending = [f"{settings.warehouse_bucket}/{k}" for k in keys if k.removeprefix(SPOOL_PREFIX) not in done]
    if pending:
        parts.append(
            pads.dataset(pending, format="parquet", filesystem=arrow_filesystem(settings)).to_table()
        )
    parts.append(pa.Table.from_pylist(queued, schema=schema))
    return pa.concat_tables([p.cast(schema) for p in parts]), snapshot_id


def _left(settings: Settings, started: float) -> float:
    """Seconds left of the request's time limit, counted from its start."""
    return settings.query_timeout_seconds - (time.perf_counter() - started)


def _too_slow(settings: Settings) -> QueryLimitExceeded:
    return QueryLimitExceeded(f"the query ran past its time limit of {settings.query_timeout_seconds:g}s")


_PATHS = re.compile(r"(?:s3a?|file|https?|gs|az)://\S+|/[\w.-]+(?:/[\w.=-]+)+")


def type_depth(typ: Any, limit: int) -> int:
    """How deep a DuckDB result type nests (a list of lists is 2), counted up to ``limit + 1``."""
    children = (
        getattr(typ, "children", None) if typ.id in ("list", "array", "struct", "map", "union") else None
    )
    if not children or limit < 0:
        return 0
    inner = [c[1] if isinstance(c, tuple) else c for c in children]
    inner = [c for c in inner if hasattr(c, "id")]
    return 1 + max((type_depth(c, limit - 1) for c in inner), default=0)


def run_sql(
    settings: Settings,
    sql: str,
    as_of: int | str | None = None,
    explain: bool = False,
    catalog: Catalog | None = None,
    principal: Principal = LOCAL,
) -> QueryResult:
    """Run one read-only query.

    Args:
        settings: Lake settings.
        sql: one SELECT/WITH statement over ``<namespace>.<table>`` names.
        as_of: a snapshot id (applies to the table that holds it; others are read at their
            current snapshot) or an ISO-8601 time (every table as of that time).
        explain: return DuckDB's analysed plan (operators, rows, time; never object paths).
        catalog: an already loaded catalog.
        principal: who asks; a tenant-bound key sees only its tenant's rows.

    Raises:
        ForbiddenSQL, QueryFailed, QueryLimitExceeded, TableNotFound, BadRequest: terminal
        (HTTP 400/404); SnapshotNotFound (404); Forbidden (403).
    """
    started = time.perf_counter()
    statement = parse(sql, settings.query_max_sql_chars, settings.query_max_nesting)
    when = parse_as_of(as_of)
    catalog = catalog or get_catalog(settings)
    tables, filters, reads_audit = _tables_of(settings, catalog, statement, principal)
    snapshots = _snapshots(settings, tables, when)
    cacheable = settings.query_cache and not explain and not reads_audit and not statement.searches
    shown = {n: (f.sql() if f else None) for n, f in filters.items()}
    key = cache.cache_key(sql, snapshots, shown, settings) if cacheable else ""
    if cacheable and (hit := cache.get(settings, key)) is not None:
        hit.update(cached=True, elapsed_ms=round((time.perf_counter() - started) * 1000, 1))
        hit.pop("row_count", None)
        hit.pop("snapshots_str", None)
        return QueryResult(**hit)

    stats = ScanStats()
    rows_of = {
        name: table_rows(settings, table, snapshots[f"{settings.namespace}.{name}"], filters[name], stats)
        for name, table in tables.items()
    }
    # A key bound to no tenant reads tables whose files are all in the file cache natively
    # (see lakehouse.query.scan.native_session); EXPLAIN shows the Arrow path's plan.
    untenanted = principal.tenant is None and all(f is None for f in filters.values())
    native = (
        native_tables(rows_of)
        if untenanted and not explain and not reads_audit and not statement.searches
        else None
    )
    answer: tuple[pa.Table, str | None] | None = None
    if native is not None:
        with native_session(settings, native) as con:
            if con is not None:
                answer = _run_native(settings, con, sql, native, stats, started)
        if answer is None:  # a copy went missing: the Arrow scans count afresh
            stats = ScanStats()
            rows_of = {
                name: table_rows(settings, table, snapshots[f"{settings.namespace}.{name}"], None, stats)
                for name, table in tables.items()
            }
    if answer is None:
        answer = _run_arrow(
            settings,
            catalog,
            statement,
            sql,
            as_of,
            principal,
            explain,
            started,
            rows_of,
            stats,
            snapshots,
            reads_audit,
        )
        if untenanted and not explain:  # the next request reads them natively
            for rows in rows_of.values():
                if isinstance(rows, TableRows) and rows.cached_copies() is None:
                    rows.prefetch()
    data, plan = answer
    if time.perf_counter() - started > settings.query_timeout_seconds:
        raise _too_slow(settings)
    truncated = data.num_rows > settings.query_max_rows
    if truncated:
        data = data.slice(0, settings.query_max_rows)
    if data.nbytes > settings.query_max_bytes:
        data = data.slice(0, int(data.num_rows * settings.query_max_bytes / data.nbytes))
        truncated = True
    try:
        rows = arrow_rows(data)
    except (pa.ArrowException, RecursionError) as e:
        raise QueryLimitExceeded(f"the result cannot be returned as JSON: {e}") from e
    result = QueryResult(
        columns=data.column_names,
        types=[str(t) for t in data.schema.types],
        rows=rows,
        snapshots=snapshots,
        truncated=truncated,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        plan=plan,
        stats=stats.to_dict(),
    )
    if cacheable:
        cache.put(settings, key, result.to_dict())
    return result


class _CopyGone(Exception):
    """A local copy a native connection reads left the file cache (evicted) after it was looked up."""


def check_native_plan(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """:func:`lakehouse.query.sqlguard.check_plan` on a native connection (see
    :func:`lakehouse.query.scan.native_session`), whose views scan Parquet: the same operators
    and scans are allowed, and Parquet scans (DuckDB opens no file but the request's planned
    copies). Returns how many Parquet scans the plan holds: the files the query reads.

    Raises:
        ForbiddenSQL, QueryFailed: as ``check_plan``.
    """
    import duckdb

    from lakehouse.query.sqlguard import allowed_steps

    try:
        rows = con.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()
    except duckdb.PermissionException as e:
        raise ForbiddenSQL("queries read Lake tables only") from e
    except duckdb.IOException as e:
        raise _CopyGone() from e
    except duckdb.Error as e:
        raise QueryFailed(_PATHS.sub("<path>", str(e).strip())) from e
    return allowed_steps(rows, NATIVE_SCANS)


def _fetch(settings: Settings, con: Session, sql: str, started: float, native: bool) -> pa.Table:
    """The statement's answer (one row past the row limit at most), within the time limit."""
    import duckdb

    try:
        relation = con.select(sql)
        depth = max((type_depth(t, settings.query_max_nesting) for t in relation.types), default=0)
        if depth > settings.query_max_nesting:
            raise QueryLimitExceeded(
                f"result values nest {depth} deep or more; the limit is {settings.query_max_nesting} "
                "(query_max_nesting)"
            )
        limited = relation.limit(settings.query_max_rows + 1)
        data: pa.Table = con.run(limited.to_arrow_table, _left(settings, started))
        return data
    except (TimeoutError, duckdb.InterruptException) as e:
        raise _too_slow(settings) from e
    except duckdb.PermissionException as e:
        raise ForbiddenSQL("queries read Lake tables only") from e
    except duckdb.IOException as e:
        if native:
            raise _CopyGone() from e
        raise QueryFailed(str(e).strip()) from e
    except duckdb.Error as e:
        raise QueryFailed(_PATHS.sub("<path>", str(e).strip()) if native else str(e).strip()) from e
    except (pa.ArrowException, OSError) as e:
        raise QueryFailed(f"reading the table failed: {e}") from e


def _run_native(
    settings: Settings,
    con: Session,
    sql: str,
    native: tuple[NativeTable, ...],
    stats: ScanStats,
    started: float,
) -> tuple[pa.Table, str | None] | None:
    """The answer on a native connection; None when a local copy went missing meanwhile (the
    connection is not lent again)."""
    try:
        try:
            scans = check_native_plan(con.con, sql)
            data = _fetch(settings, con, sql, started, native=True)
        except ForbiddenSQL:  # DuckDB refuses a missing copy's path too (as a folder to list)
            if all(os.path.exists(path) for table in native for path in table.paths):
                raise
            raise _CopyGone() from None
    except _CopyGone:
        con.spoiled = True
        return None
    files = sum(len(t.paths) for t in native)
    read = min(scans, files)
    with stats.lock:  # the scanned files' share of the copies' bytes
        stats.files_read += read
        stats.bytes_from_cache += round(sum(sum(t.sizes) for t in native) * read / files)
    return data, None


def _run_arrow(
    settings: Settings,
    catalog: Catalog,
    statement: Statement,
    sql: str,
    as_of: int | str | None,
    principal: Principal,
    explain: bool,
    started: float,
    rows_of: dict[str, TableRows | pa.Table],
    stats: ScanStats,
    snapshots: dict[str, int | None],
    reads_audit: bool,
) -> tuple[pa.Table, str | None]:
    """The answer on a pooled connection with no external access, every table bound as Arrow."""
    import duckdb

    from lakehouse.query.search import vector_hits_table

    plan = None
    with session(settings) as con:
        for name, rows in rows_of.items():
            # A join of tables is ordered well only if no table is a UNION ALL of one-file scans.
            # An EXPLAIN ANALYZE's stats count the files its run opens.
            con.bind(name, rows, whole=len(rows_of) > 1, lazy=explain)
        if reads_audit:
            audit_rows, audit_snapshot = _audit_rows(settings, catalog, stats)
            snapshots[f"{settings.namespace}.{AUDIT_TABLE}"] = audit_snapshot
            con.bind(AUDIT_TABLE, audit_rows)
        if statement.searches:  # planned over no hits first: the gate speaks before any search runs
            con.register("__lake_vector_hits", vector_hits_table(settings, [], as_of, principal, catalog))
            con.macro(
                VECTOR_SEARCH,
                "SELECT id, score FROM __lake_vector_hits WHERE dataset = ds AND query = q AND k = n "
                "ORDER BY score DESC",
                "ds, q, n",
            )
        check_plan(con.con, sql)
        if statement.searches:
            con.con.unregister("__lake_vector_hits")
            con.con.register(
                "__lake_vector_hits",
                vector_hits_table(settings, statement.searches, as_of, principal, catalog),
            )
        if explain:
            try:
                explained = con.run(
                    lambda: con.con.execute(f"EXPLAIN ANALYZE {sql}").fetchall(), _left(settings, started)
                )
            except (TimeoutError, duckdb.InterruptException) as e:
                raise _too_slow(settings) from e
            except duckdb.PermissionException as e:
                raise ForbiddenSQL("queries read Lake tables only") from e
            except duckdb.Error as e:
                raise QueryFailed(str(e).strip()) from e
            except (pa.ArrowException, OSError) as e:
                raise QueryFailed(f"reading the table failed: {e}") from e
            plan = _PATHS.sub("<path>", "\n".join(str(r[-1]) for r in explained))
            with stats.lock:  # the stats describe the answer's own run
                stats.files_read = stats.bytes_from_cache = stats.bytes_from_store = 0
        return _fetch(settings, con, sql, started, native=False), plan


def _snapshots(
    settings: Settings, tables: dict[str, Table], as_of: int | dt.datetime | None
) -> dict[str, int | None]:
    """The snapshot each table is read at (see :func:`run_sql` for ``as_of``)."""
    if isinstance(as_of, int):
        owners = [n for n, t in tables.items() if t.snapshot_by_id(as_of) is not None]
        if not owners:
            raise SnapshotNotFound(f"no table in the query has snapshot {as_of}")
        return {
            f"{settings.namespace}.{name}": resolve_snapshot(table, as_of if name in owners else None)
            for name, table in tables.items()
        }
    return {f"{settings.namespace}.{name}": resolve_snapshot(table, as_of) for name, table in tables.items()}


def _quality_score(table: Table) -> float | None:
    """The quality score of the newest ingest in the current history (``lake.quality.score``)."""
    from pyiceberg.table.snapshots import ancestors_of

    for snap in ancestors_of(table.current_snapshot(), table.metadata):
        score = snap.summary.get("lake.quality.score") if snap.summary else None
        if score is not None:
            return float(score)
    return None


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def tables_overview(
    settings: Settings, catalog: Catalog | None = None, principal: Principal = LOCAL, health: bool = False
) -> list[dict[str, Any]]:
    """Every table the principal may read: name, current snapshot, rows, files, last commit and
    quality score; with ``health``, also its small data files (read from the manifests)."""
    catalog = catalog or get_catalog(settings)
    out: list[dict[str, Any]] = []
    for qualified in list_tables(catalog, settings):
        try:
            row_filter(settings, principal, qualified.split(".", 1)[1])
        except Forbidden:
            continue
        if principal.tenant is not None:  # counts span every tenant
            out.append({"name": qualified})
            continue
        table = catalog.load_table(qualified)
        snap = table.current_snapshot()
        summary = snap.summary if snap and snap.summary else None
        entry: dict[str, Any] = {
            "name": qualified,
            "current_snapshot_id": snap.snapshot_id if snap else None,
            "rows": int(summary.get("total-records", 0)) if summary else 0,
            "files": int(summary.get("total-data-files", 0)) if summary else 0,
            "bytes": int(summary.get("total-files-size", 0)) if summary else 0,
            "snapshots": len(table.metadata.snapshots),
            "last_commit": _iso(snap.timestamp_ms) if snap else None,
            "quality_score": _quality_score(table),
        }
        if health:
            entry.update(small_files(table, settings))
        out.append(entry)
    return out


def small_files(table: Table, settings: Settings, snapshot_id: int | None = None) -> dict[str, Any]:
    """How many data files are below the table's small-file size (compaction's threshold)."""
    from lakehouse.tables.compaction import CompactionOptions

    below = CompactionOptions.for_table(table, settings).small_below
    snap = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else table.current_snapshot()
    # The planned files (kept per snapshot) rather than `inspect.files`, which fails on a
    # snapshot without manifests (every row deleted).
    sizes = [f.size for f in plan(table, snap.snapshot_id).files] if snap is not None else []
    small = sum(1 for size in sizes if size < below)
    return {
        "small_file_bytes": below,
        "small_files": small,
        "small_file_share": round(small / len(sizes), 4) if sizes else 0.0,
    }


def describe_table(
    settings: Settings,
    name: str,
    catalog: Catalog | None = None,
    max_files: int = 1000,
    principal: Principal = LOCAL,
    as_of: int | str | None = None,
) -> dict[str, Any]:
    """Schema, partition spec, properties, snapshots, files and row count of one table, at its
    current snapshot or ``as_of`` one (an id or an ISO-8601 time; ``snapshot_id`` says which).

    Row counts and files span every tenant, so a tenant-bound key is refused.
    """
    if principal.tenant is not None:
        raise Forbidden("table details span every tenant; a tenant key cannot read them")
    row_filter(settings, principal, name.split(".", 1)[-1])
    catalog = catalog or get_catalog(settings)
    table = load_table(catalog, settings, name)
    current = table.current_snapshot()
    snapshot_id = resolve_snapshot(table, as_of)
    snap = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    schema = (
        table.schemas().get(snap.schema_id, table.schema())
        if snap and snap.schema_id is not None
        else (table.schema())
    )
    summary = snap.summary if snap and snap.summary else None
    files: list[dict[str, Any]] = []
    if snap is not None:
        inspected = table.inspect.files(snap.snapshot_id).select(
            ["file_path", "partition", "record_count", "file_size_in_bytes"]
        )
        for row in inspected.slice(0, max_files).to_pylist():
            files.append(
                {
                    "path": row["file_path"],
                    "partition": {k: json_value(v) for k, v in (row["partition"] or {}).items()},
                    "rows": row["record_count"],
                    "bytes": row["file_size_in_bytes"],
                }
            )
    return {
        "name": ".".join(table.name()),
        "location": table.location(),
        "metadata_location": table.metadata_location,
        "schema": [
            {
                "id": f.field_id,
                "name": f.name,
                "type": str(f.field_type),
                "required": f.required,
                "doc": f.doc,
            }
            for f in schema.fields
        ],
        "partition_spec": [
            {"name": p.name, "source": schema.find_column_name(p.source_id), "transform": str(p.transform)}
            for p in table.spec().fields
        ],
        "properties": dict(table.properties),
        "current_snapshot_id": current.snapshot_id if current else None,
        "snapshot_id": snapshot_id,
        "snapshot_time": _iso(snap.timestamp_ms) if snap else None,
        "rows": int(summary.get("total-records", 0)) if summary else 0,
        "bytes": int(summary.get("total-files-size", 0)) if summary else 0,
        "snapshots": [
            {
                "snapshot_id": s.snapshot_id,
                "parent_id": s.parent_snapshot_id,
                "timestamp": _iso(s.timestamp_ms),
                "operation": str(s.summary.operation.value) if s.summary else None,
                "summary": dict(s.summary.additional_properties) if s.summary else {},
            }
            for s in table.metadata.snapshots
        ],
        "files": files,
        "file_count": int(summary.get("total-data-files", 0)) if summary else 0,
        **(small_files(table, settings, snap.snapshot_id) if snap else {}),
    }


def health(settings: Settings) -> dict[str, Any]:
    """Readiness: the catalog answers and the warehouse bucket is reachable, within seconds."""
    from lakehouse.storage import s3_client

    quick = {"s3_max_attempts": 1, "s3_connect_timeout": 2.0, "s3_read_timeout": 5.0}
    settings = settings.model_copy(update=quick)
    checks: dict[str, Any] = {}
    try:
        catalog = get_catalog(settings)
        checks["catalog"] = {"ok": True, "tables": len(list_tables(catalog, settings))}
    except Exception as e:  # noqa: BLE001 - readiness reports any failure
        checks["catalog"] = {"ok": False, "error": str(e)}
    try:
        s3_client(settings).head_bucket(Bucket=settings.warehouse_bucket)
        checks["store"] = {"ok": True, "bucket": settings.warehouse_bucket}
    except Exception as e:  # noqa: BLE001
        checks["store"] = {"ok": False, "error": str(e)}
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}
