"""TPC-H for Lake: the 8 tables of DuckDB's generator (the ``duckdb-extension-tpch`` package)
declared as Lake contracts, the 22 queries in DuckDB's own text, and Lake's answers compared
with DuckDB's. Shared by ``bench/query.py`` and ``tests/test_tpch.py``.

Decimals are ``decimal(15,2)``; ``orders`` and ``lineitem`` are event tables (partitioned by the
year of their date); the six other tables are reference tables without an event time, keyed by
their primary key.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.duck import literal
from lakehouse.query.engine import extension_path

if TYPE_CHECKING:
    import duckdb

TYPES = {
    "BIGINT": "long",
    "INTEGER": "int",
    "DATE": "date",
    "VARCHAR": "string",
    "DECIMAL(15,2)": "decimal(15,2)",
}
KEYS = {
    "region": ["r_regionkey"],
    "nation": ["n_nationkey"],
    "part": ["p_partkey"],
    "supplier": ["s_suppkey"],
    "customer": ["c_custkey"],
    "partsupp": ["ps_partkey", "ps_suppkey"],
}
EVENT_TIMES = {"orders": "o_orderdate", "lineitem": "l_shipdate"}


def generate(sf: float) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding the 8 TPC-H tables at scale factor ``sf``."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"LOAD {literal(extension_path('tpch'))}")
    con.execute(f"CALL dbgen(sf = {float(sf)!r})")
    return con


def tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The generated tables, by name."""
    return [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]


def queries(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """The 22 queries by number (bare table names)."""
    rows = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()
    return {int(n): str(q) for n, q in rows}


def contract(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The Lake contract (YAML) of a generated table, its columns as DuckDB typed them."""
    lines = [f"name: {table}", f"description: TPC-H {table}"]
    if table in EVENT_TIMES:
        lines += [
            f"event_time: {EVENT_TIMES[table]}",
            "retention_months: 1200",
            f"partitioning: ['year({EVENT_TIMES[table]})']",
        ]
    else:
        lines.append(f"primary_key: [{', '.join(KEYS[table])}]")
    lines.append("columns:")
    for name, kind in con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position",
        [table],
    ).fetchall():
        lines.append(f"  {name}: {{type: '{TYPES[kind]}', required: true}}")
    return "\n".join(lines) + "\n"


def json_value(v: Any) -> Any:
    """A DuckDB answer's value as the query API's JSON gives it."""
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def same_value(lake: Any, duck: Any) -> bool:
    """``lake`` (from the query API's JSON) is ``duck`` (a value as :func:`json_value` gives it);
    doubles equal to 1e-9 relative (sums of doubles depend on their order)."""
    if isinstance(duck, float) and isinstance(lake, float | int):
        return math.isclose(lake, duck, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(duck, int) and isinstance(lake, str):  # a HUGEINT sum reaches JSON as a decimal text
        return lake == str(duck)
    return bool(lake == duck)


def first_difference(
    lake: Sequence[Sequence[Any]], duck: Sequence[Sequence[Any]]
) -> tuple[Any, Any] | None:
    """The first pair of rows (Lake's, DuckDB's) that differ, ``(len, len)`` when the counts
    differ, or None when Lake answered what DuckDB answered."""
    if len(lake) != len(duck):
        return len(lake), len(duck)
    for lake_row, duck_row in zip(lake, duck, strict=True):
        want = [json_value(v) for v in duck_row]
        if len(lake_row) != len(want) or not all(
            same_value(a, b) for a, b in zip(lake_row, want, strict=True)
        ):
            return list(lake_row), want
    return None
