"""Read-only DuckDB SQL over the catalog, and table metadata.

Each query gets a fresh in-memory DuckDB connection. Every Lake table the query names becomes
a view ``<namespace>.<table>`` over DuckDB's ``iceberg_scan`` of the metadata file the catalog
reports, at the snapshot asked for: DuckDB prunes files by partition and column statistics
and streams them; nothing is globbed and no table is loaded whole. The connection is then
locked: no local files, only the warehouse bucket, no extension loading, settings frozen.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import glob
import importlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from lakehouse.access.auth import LOCAL, Principal
from lakehouse.catalog import get_catalog, list_tables, load_table
from lakehouse.config import Settings
from lakehouse.contracts.validate import ident, literal
from lakehouse.errors import ContractNotFound, Forbidden, QueryFailed, QueryLimitExceeded, SnapshotNotFound
from lakehouse.query import cache
from lakehouse.query.sqlguard import inspect_sql

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
    """A DuckDB connection that can read the warehouse over S3 (not yet locked)."""
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


def lock(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Only the warehouse is readable from now on, and no setting can change."""
    con.execute(f"SET allowed_directories = [{literal(settings.warehouse)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def resolve_snapshot(table: Table, as_of: int | str | None) -> int | None:
    """The snapshot id to read: current, an id the table holds, or the one current at a time."""
    if as_of is None:
        snap = table.current_snapshot()
        return snap.snapshot_id if snap else None
    if isinstance(as_of, int) or (isinstance(as_of, str) and as_of.isdigit()):
        sid = int(as_of)
        if table.snapshot_by_id(sid) is None:
            raise SnapshotNotFound(f"table {'.'.join(table.name())} has no snapshot {sid}")
        return sid
    try:
        when = dt.datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    except ValueError as e:
        raise SnapshotNotFound(f"as_of {as_of!r} is neither a snapshot id nor an ISO-8601 time") from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    snap = table.snapshot_as_of_timestamp(int(when.timestamp() * 1000))
    return snap.snapshot_id if snap else None


def _bind(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    name: str,
    table: Table,
    snapshot_id: int | None,
    row_filter: str | None = None,
) -> None:
    """Define ``<namespace>.<name>`` as the table at ``snapshot_id``, restricted by ``row_filter``."""
    import pyarrow as pa

    view = f"{ident(settings.namespace)}.{ident(name)}"
    where = f" WHERE {row_filter}" if row_filter else ""
    if snapshot_id is None:
        empty = pa.table(table.schema().as_arrow().empty_table())
        con.register(f"__empty_{name}", empty)
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM {ident('__empty_' + name)}{where}")
        return
    con.execute(
        f"CREATE VIEW {view} AS SELECT * FROM iceberg_scan({literal(table.metadata_location)}, "
        f"snapshot_from_id = {snapshot_id}){where}"
    )


def _bind_audit(con: duckdb.DuckDBPyConnection, settings: Settings, catalog: Catalog) -> int | None:
    """``<namespace>.audit``: the audit table (current snapshot) plus the spool not yet folded."""
    import pyarrow as pa
    from pyiceberg.exceptions import NoSuchTableError

    from lakehouse.access.audit import AUDIT_TABLE, SPOOL_PREFIX, audit_schema, folded_files, spool_files

    parts: list[str] = []
    done: set[str] = set()
    snapshot_id = None
    try:
        table = catalog.load_table(f"{settings.namespace}.{AUDIT_TABLE}")
    except NoSuchTableError:
        table = None
    if table is not None and (snap := table.current_snapshot()) is not None:
        snapshot_id = snap.snapshot_id
        scan = f"iceberg_scan({literal(table.metadata_location)}, snapshot_from_id = {snapshot_id})"
        parts.append(f"SELECT * FROM {scan}")
        done = folded_files(table)
    pending = [
        f"s3://{settings.warehouse_bucket}/{k}"
        for k in spool_files(settings)
        if k.removeprefix(SPOOL_PREFIX) not in done
    ]
    if pending:
        parts.append(f"SELECT * FROM read_parquet([{', '.join(literal(p) for p in pending)}])")
    if not parts:
        con.register("__empty_audit", pa.table(audit_schema().as_arrow().empty_table()))
        parts.append("SELECT * FROM __empty_audit")
    view = f"{ident(settings.namespace)}.{ident(AUDIT_TABLE)}"
    con.execute(f"CREATE VIEW {view} AS {' UNION ALL BY NAME '.join(parts)}")
    return snapshot_id


def row_filter(settings: Settings, principal: Principal, name: str) -> str | None:
    """The rows of table ``name`` that ``principal`` may read (None: all), or Forbidden.

    A key bound to a tenant reads only tables whose contract names a ``tenant_column``, and only
    its own rows there; quarantine tables (raw records of every tenant) and the audit table are
    closed to it. The audit table needs an admin key.
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
        raise Forbidden(f"a tenant key cannot read {settings.namespace}.{name}")
    try:
        contract = load_contract(settings, name)
    except ContractNotFound as e:
        raise Forbidden(f"{settings.namespace}.{name} is not tenant-scoped") from e
    if contract.tenant_column is None:
        raise Forbidden(f"{settings.namespace}.{name} is not tenant-scoped")
    return f"{ident(contract.tenant_column)} = {literal(principal.tenant)}"


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


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
        explain: return DuckDB's analysed plan (files read, filters) with the result.
        catalog: an already loaded catalog.
        principal: who asks; a tenant-bound key sees only its tenant's rows.

    Raises:
        ForbiddenSQL, QueryFailed, QueryLimitExceeded, TableNotFound, SnapshotNotFound: terminal
        (HTTP 400/404); Forbidden (403).
    """
    import duckdb

    started = time.perf_counter()
    names, searches = inspect_sql(sql, settings.namespace)
    filters = {name: row_filter(settings, principal, name) for name in names}
    catalog = catalog or get_catalog(settings)
    from lakehouse.access.audit import AUDIT_TABLE

    tables = {name: load_table(catalog, settings, name) for name in names if name != AUDIT_TABLE}
    snapshots = _snapshots(settings, tables, as_of)
    cacheable = settings.query_cache and not explain and AUDIT_TABLE not in names and not searches
    hits = None
    if searches:
        from lakehouse.query.search import vector_hits_table

        hits = vector_hits_table(settings, searches, as_of, principal, catalog)
    key = cache.cache_key(sql, snapshots, filters, settings) if cacheable else ""
    if cacheable and (hit := cache.get(settings, key)) is not None:
        hit.update(cached=True, elapsed_ms=round((time.perf_counter() - started) * 1000, 1))
        return QueryResult(**{k: v for k, v in hit.items() if k != "row_count"})

    con = connect(settings)
    timer = threading.Timer(settings.query_timeout_seconds, con.interrupt)
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(settings.namespace)}")
        for name, table in tables.items():
            _bind(con, settings, name, table, snapshots[f"{settings.namespace}.{name}"], filters[name])
        if AUDIT_TABLE in names:
            snapshots[f"{settings.namespace}.{AUDIT_TABLE}"] = _bind_audit(con, settings, catalog)
        if hits is not None:
            con.register("__lake_vector_hits", hits)
            con.execute(
                f"CREATE MACRO {ident(settings.namespace)}.vector_search(ds, q, n) AS TABLE "
                "SELECT id, score FROM __lake_vector_hits WHERE dataset = ds AND query = q AND k = n "
                "ORDER BY score DESC"
            )
        con.execute(f"SET search_path = {literal(settings.namespace)}")
        lock(con, settings)
        timer.start()
        try:
            plan = None
            if explain:
                explained = con.execute(f"EXPLAIN ANALYZE {sql}").fetchall()
                plan = "\n".join(str(r[-1]) for r in explained)
            data = con.sql(sql).limit(settings.query_max_rows + 1).to_arrow_table()
        except duckdb.InterruptException as e:
            raise QueryLimitExceeded(
                f"the query ran past its time limit of {settings.query_timeout_seconds:g}s"
            ) from e
        except duckdb.Error as e:
            raise QueryFailed(str(e).strip()) from e
    finally:
        timer.cancel()
        con.close()
    truncated = data.num_rows > settings.query_max_rows
    if truncated:
        data = data.slice(0, settings.query_max_rows)
    if data.nbytes > settings.query_max_bytes:
        data = data.slice(0, int(data.num_rows * settings.query_max_bytes / data.nbytes))
        truncated = True
    columns = data.column_names
    pylists = [[_json_value(v) for v in data.column(i).to_pylist()] for i in range(data.num_columns)]
    rows: list[list[Any]] = [list(r) for r in zip(*pylists, strict=True)] if pylists else []
    result = QueryResult(
        columns=columns,
        types=[str(t) for t in data.schema.types],
        rows=rows,
        snapshots=snapshots,
        truncated=truncated,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        plan=plan,
    )
    if cacheable:
        cache.put(settings, key, result.to_dict())
    return result


def _snapshots(
    settings: Settings, tables: dict[str, Table], as_of: int | str | None
) -> dict[str, int | None]:
    """The snapshot each table is read at (see :func:`run_sql` for ``as_of``)."""
    snapshot_id_asked = isinstance(as_of, int) or (isinstance(as_of, str) and as_of.isdigit())
    if snapshot_id_asked:
        owners = [n for n, t in tables.items() if t.snapshot_by_id(int(as_of)) is not None]  # type: ignore[arg-type]
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
    sizes = (
        table.inspect.files(snapshot_id).column("file_size_in_bytes").to_pylist()
        if (snapshot_id or table.current_snapshot()) is not None
        else []
    )
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
                    "partition": {k: _json_value(v) for k, v in (row["partition"] or {}).items()},
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
