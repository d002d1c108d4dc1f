"""Unit tests: contracts, readers, validation, the SQL gate and settings, with no services."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from lakehouse.config import Settings, load_settings
from lakehouse.contracts.model import ROW, load_contract, parse_contract
from lakehouse.contracts.validate import check_batch
from lakehouse.errors import ContractInvalid, ContractNotFound, ForbiddenSQL, QueryFailed, UnsupportedFormat
from lakehouse.ingest.readers import MalformedRow, detect_format, read_batches
from lakehouse.query.sqlguard import lake_names, parse

CONTRACT = """
name: readings
event_time: ts
columns:
  ts:    {type: timestamp, required: true}
  n:     {type: int, min: 0, max: 10}
  kind:  {type: string, enum: [a, b]}
  day:   {type: date}
  flag:  {type: boolean}
"""


def test_contract_becomes_schema_partition_spec_and_properties() -> None:
    contract = parse_contract(CONTRACT, "t")
    schema = contract.iceberg_schema()
    assert [(f.name, str(f.field_type), f.required) for f in schema.fields] == [
        ("ts", "timestamptz", True),
        ("n", "int", False),
        ("kind", "string", False),
        ("day", "date", False),
        ("flag", "boolean", False),
    ]
    spec = contract.partition_spec(schema)
    assert [(f.name, str(f.transform), f.source_id) for f in spec.fields] == [("ts_month", "month", 1)]
    assert contract.table_properties()["lake.retention-months"] == "12"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nevent_time: ts\ncolumns: {ts: {type: timestamp}, a: {type: strin}}", "columns.a.type"),
        ("name: x\nevent_time: when\ncolumns: {ts: {type: timestamp}}", "event_time 'when' is not one of"),
        ("name: x\nevent_time: ts\ncolumns: {ts: {type: string}}", "must be a timestamp or date"),
        ("name: x\nevent_time: ts\ncolumns: {ts: {type: timestamp}, a: {type: string, min: 1}}", "numeric"),
        ("name: x\nevent_time: ts\ncolumns: {ts: {type: timestamp}}\nretension: 3", "retension"),
        ("name: Bad-Name\nevent_time: ts\ncolumns: {ts: {type: timestamp}}", "name"),
        ("[1, 2]", "a YAML mapping"),
        ("name: x\n  bad: indent: here", "not valid YAML"),
    ],
)
def test_bad_contracts_are_refused_with_the_field_named(text: str, message: str) -> None:
    with pytest.raises(ContractInvalid, match=message):
        parse_contract(text, "x.yaml")


def test_contracts_are_read_from_the_folder_each_time(tmp_path: Path) -> None:
    settings = Settings(contracts_dir=tmp_path)
    with pytest.raises(ContractNotFound, match="lake contract infer"):
        load_contract(settings, "readings")
    (tmp_path / "readings.yaml").write_text(CONTRACT)
    assert load_contract(settings, "readings").name == "readings"
    (tmp_path / "other.yaml").write_text(CONTRACT)
    with pytest.raises(ContractInvalid, match="does not match the file name"):
        load_contract(settings, "other")


def test_detect_format() -> None:
    assert detect_format("d/x.csv.gz").kind == "csv" and detect_format("d/x.csv.gz").gzip
    assert detect_format("d/x.tsv").delimiter == "\t"
    assert detect_format("d/x.jsonl").kind == "ndjson"
    with pytest.raises(UnsupportedFormat, match="'txt'"):
        detect_format("d/x.txt")
    with pytest.raises(UnsupportedFormat, match="gzipped Parquet"):
        detect_format("d/x.parquet.gz")


def _read(
    data: bytes, key: str, columns: list[str] | None = None, batch_rows: int = 100
) -> tuple[pa.Table, list[MalformedRow]]:
    malformed: list[MalformedRow] = []
    batches = list(read_batches(io.BytesIO(data), detect_format(key), columns, batch_rows, malformed))
    return pa.Table.from_batches(batches), malformed


def test_csv_rows_carry_their_line_numbers_across_malformed_lines_and_batches() -> None:
    lines = ["a,b"] + [f"{i},x" if i % 7 else f"{i}" for i in range(1, 60)]
    table, malformed = _read(("\n".join(lines) + "\n").encode(), "d/f.csv", batch_rows=5)
    assert [m.row for m in malformed] == [8, 15, 22, 29, 36, 43, 50, 57]
    assert all(m.reason == "expected 2 fields, found 1" for m in malformed)
    # Every good row's number is the line it stands on.
    assert table[ROW].to_pylist() == [i + 1 for i in range(1, 60) if i % 7]
    assert table["a"].to_pylist()[:2] == ["1", "2"] and table.schema.field("a").type == pa.string()


def test_csv_delimiter_bom_and_empty_values() -> None:
    table, _ = _read("\ufeffa;b\n1;\n".encode(), "d/f.csv")
    assert table.column_names == ["a", "b", ROW] and table["b"].to_pylist() == [None]


def test_ndjson_reports_bad_lines_and_keeps_good_ones() -> None:
    data = b'{"a": 1, "b": "x"}\n\nnot json\n[1, 2]\n{"a": 2.5, "b": {"nested": true}}\n{"a": null}'
    table, malformed = _read(gzip.compress(data), "d/f.ndjson.gz", ["a", "b"])
    assert [(m.row, m.reason) for m in malformed] == [(3, "malformed JSON"), (4, "not a JSON object")]
    assert table[ROW].to_pylist() == [1, 5, 6]
    assert table["a"].to_pylist() == ["1", "2.5", None]
    assert json.loads(table["b"].to_pylist()[1]) == {"nested": True}


def test_validation_casts_and_explains_every_failure() -> None:
    contract = parse_contract(CONTRACT, "t")
    batch = pa.RecordBatch.from_pydict(
        {
            "ts": ["2025-01-01T00:00:00Z", "2025-01-02", None, "2025-01-03T00:00:00+01:00"],
            "n": ["1", "11", "2.5", None],
            "kind": ["a", "c", "b", None],
            "day": ["2025-01-01", None, "2025-01-01T10:00:00", None],
            "flag": ["true", "0", "maybe", None],
            ROW: pa.array([2, 3, 4, 5], pa.int64()),
        }
    )
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    checked = check_batch(con, batch, contract, contract.iceberg_schema().as_arrow())
    assert checked.accepted.num_rows == 2
    assert [str(v) for v in checked.accepted["ts"].to_pylist()] == [
        "2025-01-01 00:00:00+00:00",
        "2025-01-02 23:00:00+00:00",
    ]
    errors = {
        row: [(e["column"], e["rule"]) for e in errs]
        for row, errs in zip(
            checked.rejected[ROW].to_pylist(), checked.rejected["__lake_errors"].to_pylist(), strict=True
        )
    }
    assert errors == {
        3: [("n", "max"), ("kind", "enum")],
        4: [("ts", "required"), ("n", "type"), ("day", "type"), ("flag", "type")],
    }
    raw = json.loads(checked.rejected["__lake_raw"].to_pylist()[0])
    assert raw == {"ts": "2025-01-02", "n": "11", "kind": "c", "day": None, "flag": "0"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_parquet('x')",
        "SELECT * FROM 'x.parquet'",
        "PRAGMA version",
        "SET a = 1",
        "SELECT 1; SELECT 1",
        "SELECT * FROM pg_catalog.pg_tables",
        "SELECT getenv('HOME')",
        "WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM x",
        "SELECT (SELECT count(*) FROM glob('/*'))",
        "SELECT * FROM lake.t UNION SELECT * FROM read_csv('f')",
    ],
)
def test_sql_gate_refuses(sql: str) -> None:
    with pytest.raises(ForbiddenSQL):
        check_sql(sql, "lake")


def test_sql_gate_names_the_tables_read() -> None:
    sql = (
        "WITH recent AS (SELECT * FROM lake.events WHERE ts > now() - INTERVAL 1 DAY) "
        "SELECT e.*, r.n FROM recent e JOIN (SELECT count(*) n FROM sensors) r ON true, range(2)"
    )
    # The CTE's name is a candidate too: the engine binds only names that are Lake tables, and
    # DuckDB's binder resolves the rest in their own scope (see tests/test_isolation.py).
    assert sorted(check_sql(sql, "lake")) == ["events", "recent", "sensors"]
    with pytest.raises(QueryFailed, match="syntax error"):
        check_sql("SELEC 1", "lake")


def check_sql(sql: str, namespace: str) -> list[str]:
    return lake_names(parse(sql, 100_000, 64), namespace)


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "stack.json").write_text(
        json.dumps(
            {
                "endpoint": "http://127.0.0.1:9",
                "access_key_id": "k",
                "secret_access_key": "s",
                "region": "eu-west-1",
                "landing_bucket": "l",
                "warehouse_bucket": "w",
                "catalog_uri": "sqlite:///c.db",
            }
        )
    )
    monkeypatch.setenv("LAKE_HOME", str(home))
    from_stack = load_settings()
    assert from_stack.s3_endpoint == "http://127.0.0.1:9" and from_stack.warehouse_bucket == "w"
    monkeypatch.setenv("LAKE_WAREHOUSE_BUCKET", "from-env")
    assert load_settings().warehouse_bucket == "from-env"
    assert load_settings(warehouse_bucket="explicit").warehouse_bucket == "explicit"
    monkeypatch.setenv("LAKE_CATALOG_TYPE", "glue")
    assert load_settings().s3_endpoint is None  # a configured AWS deployment ignores the local stack
