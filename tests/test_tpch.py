"""TPC-H end to end: DuckDB's generator makes the 8 tables (scale factor 0.01), each is declared
as a contract (decimals as decimal(15,2); the six tables without a date are reference tables
without an event time), uploaded through the ingest function, and the 22 TPC-H queries (DuckDB's
own text, bare table names) run through POST /sql must answer exactly what DuckDB answers over
the generated data."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakehouse.config import Settings
from lakehouse.duck import literal
from lakehouse.query.engine import extension_path

pytestmark = pytest.mark.integration

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
FORMATS = {"lineitem": "parquet", "orders": "parquet", "region": "ndjson", "nation": "ndjson"}  # others CSV


def _contract(con: duckdb.DuckDBPyConnection, table: str) -> str:
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


def _value(v: Any) -> Any:
    """A DuckDB answer's value as the query API's JSON gives it."""
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def _same(lake: Any, duck: Any) -> bool:
    if isinstance(duck, float) and isinstance(lake, float | int):
        return math.isclose(lake, duck, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(duck, int) and isinstance(lake, str):  # a HUGEINT sum reaches JSON as a decimal text
        return lake == str(duck)
    return bool(lake == duck)


@pytest.mark.slow
def test_the_22_tpch_queries_answer_as_duckdb_does(
    settings: Settings, upload: Callable[..., dict[str, Any]], client: Any, tmp_path: Path
) -> None:
    con = duckdb.connect()
    con.execute(f"LOAD {literal(extension_path('tpch'))}")
    con.execute("CALL dbgen(sf = 0.01)")
    tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
    assert len(tables) == 8
    for table in tables:
        (settings.contracts_dir / f"{table}.yaml").write_text(_contract(con, table))
        fmt = FORMATS.get(table, "csv")
        path = tmp_path / f"{table}.{fmt}"
        option = {"csv": "FORMAT csv, HEADER", "parquet": "FORMAT parquet", "ndjson": "FORMAT json"}[fmt]
        con.execute(f"COPY {table} TO {literal(str(path))} ({option})")
        report = upload(table, path.name, path)
        expected = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert expected is not None and report.get("rows_accepted") == expected[0], report
        assert report["rows_quarantined"] == 0

    queries = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()
    assert len(queries) == 22
    for number, sql in queries:
        answer = client.sql(sql)
        assert answer.status == 200, (number, answer.body)
        want = [[_value(v) for v in row] for row in con.execute(sql).fetchall()]
        got = answer.body["rows"]
        assert len(got) == len(want) > 0, (number, got[:3], want[:3])
        for lake_row, duck_row in zip(got, want, strict=True):
            assert all(_same(a, b) for a, b in zip(lake_row, duck_row, strict=True)), (
                number,
                lake_row,
                duck_row,
            )
