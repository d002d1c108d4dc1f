"""``lake sql --engine daft``: one read-only query over the catalog's tables, on Daft.

For questions bigger than one function: Daft plans the scan from the Iceberg metadata
(``daft.read_iceberg``, partition pruning included) and runs it in process or on Ray. The
statement passes the same gate as ``POST /sql`` (:mod:`lakehouse.query.sqlguard`: one SELECT over
Lake tables, nothing else); only the tables it names are given to Daft, under their plain and
their ``<namespace>.``-qualified names.

Dialect: Daft's SQL is close to DuckDB's for SELECT/WHERE/GROUP BY/ORDER BY/JOIN/CTEs and common
aggregates; what differs is documented in the README (section "Bigger than one function").
``vector_search(...)`` is a query function feature and is refused here.
"""

from __future__ import annotations

import time
from typing import Any

from lakehouse.catalog import get_catalog, load_table
from lakehouse.config import Settings
from lakehouse.duck import arrow_rows
from lakehouse.errors import ForbiddenSQL, QueryFailed, TableNotFound


def run_sql(
    settings: Settings,
    sql: str,
    runner: str = "native",
    ray_address: str | None = None,
    out: str | None = None,
) -> dict[str, Any]:
    """Run ``sql`` on Daft; the body ``POST /sql`` would answer (columns, rows, ...).

    With ``out`` (``s3://bucket/key.parquet``) the whole result is written there as one Parquet
    file instead, and the body carries no rows (``row_count`` and ``out`` say what was written).

    Raises:
        ForbiddenSQL: the statement is not one read-only query over Lake tables.
        QueryFailed: Daft could not plan or run it (its message says why).
        TableNotFound: a table it names does not exist.
    """
    from lakehouse.query.sqlguard import lake_names, parse
    from lakehouse.scale.runner import io_config, require_daft
    from lakehouse.scale.runner import runner as run_on

    started = time.perf_counter()
    statement = parse(sql, settings.query_max_sql_chars, settings.query_max_nesting)
    if statement.searches:
        raise ForbiddenSQL("vector_search() runs in the query function only (POST /sql), not on Daft")
    if out is not None and not (out.startswith("s3://") and out.endswith(".parquet")):
        raise ForbiddenSQL(f"--out takes s3://bucket/key.parquet, not {out!r}")
    daft = require_daft()
    catalog = get_catalog(settings)
    qualified = {name for schema, name in statement.names if schema}
    tables = {}
    for name in lake_names(statement, settings.namespace):  # a bare name may be a CTE
        try:
            tables[name] = load_table(catalog, settings, name)
        except TableNotFound:
            if name in qualified:
                raise
    snapshots: dict[str, int | None] = {}
    with run_on(settings, runner, ray_address):  # type: ignore[arg-type]
        frames = {}
        for name, table in tables.items():
            snap = table.current_snapshot()
            snapshots[f"{settings.namespace}.{name}"] = snap.snapshot_id if snap else None
            frames[name] = daft.read_iceberg(table, io_config=io_config(settings))
        try:
            # Bound under the plain and the namespace-qualified name: `lake.t` and `t` both resolve.
            # (An attached Daft catalog would also resolve them, but then Daft looks functions
            # such as count() up in that catalog and fails.)
            bindings = {**frames, **{f"{settings.namespace}.{n}": f for n, f in frames.items()}}
            df = daft.sql(sql, register_globals=False, **bindings)
            data = df.to_arrow()
        except Exception as e:  # Daft raises its own planning/runtime errors; the message says why
            raise QueryFailed(f"daft: {e}".strip()) from e
    body: dict[str, Any] = {"columns": data.column_names, "types": [str(t) for t in data.schema.types]}
    if out is not None:
        _write_parquet(settings, data, out)
        body.update(rows=[], row_count=data.num_rows, out=out)
    else:
        body["rows"] = arrow_rows(data)
        body["row_count"] = data.num_rows
    body.update(
        snapshots=snapshots,
        truncated=False,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        engine="daft",
    )
    return body


def _write_parquet(settings: Settings, data: Any, out: str) -> None:
    """Write the result as one Parquet file (a whole-object PUT: no partial file is visible)."""
    import pyarrow.parquet as pq

    from lakehouse.storage import arrow_filesystem

    pq.write_table(data, out.removeprefix("s3://"), filesystem=arrow_filesystem(settings), compression="zstd")
