"""The query function over real HTTP (`lake serve`), against the local stack."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from tests.conftest import SENSOR_CONTRACT, native_runs
from tests.test_ingest import month_rows, to_csv

pytestmark = pytest.mark.integration

FORBIDDEN = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_parquet('s3://lake-warehouse/lake/x/data/a.parquet')",
    "SELECT * FROM read_json('http://127.0.0.1:1/x.json')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM 'data.csv'",
    "SELECT * FROM iceberg_scan('s3://lake-warehouse/lake/t/metadata/v1.metadata.json')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT current_setting('s3_secret_access_key')",
    "SELECT getenv('HOME')",
    "COPY (SELECT 1) TO '{tmp}/copied.csv'",
    "EXPORT DATABASE '{tmp}/exported'",
    "ATTACH '{tmp}/attached.db' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "PRAGMA database_list",
    "CREATE TABLE t AS SELECT 1",
    "DROP VIEW lake.sensor_readings",
    "DELETE FROM lake.sensor_readings",
    "SELECT 1; SELECT 2",
    "SELECT 1; COPY (SELECT 1) TO '{tmp}/second.csv'",
    "CALL pragma_version()",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM other.main.t",
    "",
    "SELECT 1 -- harmless\n; COPY (SELECT 1) TO '{tmp}/hidden.csv'",
    "SELECT 1 /* ; */; ATTACH '{tmp}/hidden.db'",
    "/* comment */ INSTALL iceberg",
    "SELECT * FROM read_csv(['/etc/passwd', '/etc/hosts'])",
    "SELECT * FROM parquet_scan('/tmp/x.parquet')",
    "SELECT * FROM parquet_metadata('s3://lake-warehouse/x.parquet')",
    "SELECT * FROM read_ndjson_objects('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM iceberg_metadata('s3://lake-warehouse/lake/x')",
    "SELECT * FROM iceberg_snapshots('s3://lake-warehouse/lake/x')",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM pragma_table_info('lake.sensor_readings')",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('lake.sensor_readings')",
    "SELECT * FROM sqlite_scan('{tmp}/x.db', 't')",
    "SELECT * FROM 's3://lake-warehouse/lake/sensor_readings/data/x.parquet'",
    "SELECT * FROM 'https://example.com/data.csv'",
    "WITH x AS (SELECT * FROM read_blob('/etc/passwd')) SELECT * FROM x",
    "SELECT * FROM lake.sensor_readings WHERE ts IN (SELECT ts FROM read_csv('/etc/passwd'))",
    "SELECT 1 UNION ALL SELECT * FROM glob('/etc/*')",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "DROP SECRET lake_s3",
    "CHECKPOINT",
    "DETACH memory",
    "USE memory",
    "SET VARIABLE x = 1",
    "SELECT * FROM duckdb_secrets(redact := false)",
    "SELECT * FROM which_secret('s3://lake-warehouse/x', 's3')",
    "VACUUM",
    "ANALYZE",
    "CREATE MACRO m(x) AS x",
    "INSERT INTO lake.sensor_readings VALUES (1)",
    "UPDATE lake.sensor_readings SET temp_c = 0",
    "ALTER VIEW lake.sensor_readings RENAME TO x",
    "SELECT * FROM read_csv_auto('s3://lake-landing/sensor_readings/x.csv')",
    "EXPLAIN SELECT 1",
    "CALL duckdb_settings()",
    "SELECT * FROM memory.main.t",
]


def test_the_hostile_corpus_is_large() -> None:
    assert len(FORBIDDEN) >= 50


@pytest.mark.parametrize("sql", FORBIDDEN)
def test_forbidden_sql_is_refused_with_400_and_runs_nothing(
    http_client: Any, sql: str, tmp_path: Path
) -> None:
    response = (
        http_client.sql(sql.format(tmp=tmp_path)) if sql else http_client.request("POST", "/sql", {"sql": ""})
    )
    assert response.status == 400, response.body
    assert response.body["message"]
    assert list(tmp_path.iterdir()) == []


def test_sql_response_shape_and_json_types(
    http_client: Any, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    report = upload(name, "a.csv", to_csv(month_rows(2)))
    body = http_client.sql(
        f"SELECT sensor_id, count(*) AS n, min(ts) AS first FROM lake.{name} GROUP BY 1 ORDER BY 1"
    ).body
    assert body["columns"] == ["sensor_id", "n", "first"]
    assert body["rows"][0] == ["s0", 2, "2025-01-01T12:00:00+00:00"]
    assert body["snapshots"] == {f"lake.{name}": report["snapshot_id"]}
    assert body["truncated"] is False


def test_as_of_reads_an_earlier_snapshot_by_id_and_by_time(
    http_client: Any, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    first = upload(name, "a.csv", to_csv(month_rows(1)))
    time.sleep(0.05)
    between = dt.datetime.now(dt.UTC).isoformat()
    time.sleep(0.05)
    upload(name, "b.csv", to_csv(month_rows(2)))
    count = f"SELECT count(*) FROM lake.{name}"
    assert http_client.sql(count).body["rows"] == [[9]]
    by_id = http_client.sql(count, as_of=first["snapshot_id"]).body
    assert by_id["rows"] == [[3]] and by_id["snapshots"] == {f"lake.{name}": first["snapshot_id"]}
    assert http_client.sql(count, as_of=between).body["rows"] == [[3]]
    before_any = http_client.sql(count, as_of="2000-01-01T00:00:00Z").body
    assert before_any["rows"] == [[0]]
    missing = http_client.sql(count, as_of=12345)
    assert missing.status == 400 and "12345" in missing.body["message"]


def test_bad_requests_are_400(http_client: Any) -> None:
    assert http_client.request("POST", "/sql", {"query": "SELECT 1"}).status == 400
    assert http_client.request("POST", "/sql", ["SELECT 1"]).status == 400
    assert http_client.sql("SELEC 1").status == 400
    assert http_client.sql("SELECT * FROM lake.no_such_table").status == 404
    assert http_client.sql("SELECT no_such_column FROM range(1)").status == 400
    assert http_client.request("GET", "/nowhere").status == 404


def test_tables_describe_and_health(
    http_client: Any, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    report = upload(name, "a.csv", to_csv(month_rows(3)))
    listed = {t["name"]: t for t in http_client.tables().body["tables"]}
    assert listed[f"lake.{name}"]["rows"] == 9 and listed[f"lake.{name}"]["files"] == 3
    assert f"lake.{name}__quarantine" in listed
    d = http_client.describe(name).body
    assert [f["name"] for f in d["schema"]] == ["ts", "sensor_id", "temp_c", "status"]
    assert d["partition_spec"] == [{"name": "ts_month", "source": "ts", "transform": "month"}]
    assert d["rows"] == 9 and d["current_snapshot_id"] == report["snapshot_id"]
    assert len(d["files"]) == 3 and all(f["path"].startswith("s3://") for f in d["files"])
    assert d["snapshots"][0]["summary"]["lake.source.uri"].endswith(f"{name}/a.csv")
    assert http_client.describe("no_such_table").status == 404
    assert http_client.health("live").body == {"live": True}
    ready = http_client.health("ready")
    assert ready.status == 200 and ready.body["ready"] is True


def test_an_independent_reader_sees_the_same_rows(
    settings: Settings, http_client: Any, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]]
) -> None:
    """DuckDB's own iceberg extension, given only the metadata location, reads what Lake wrote."""
    from lakehouse.query.engine import connect

    name = dataset(SENSOR_CONTRACT)
    upload(name, "a.csv", to_csv(month_rows(14)) + b"bad,row,1,ok\n")
    sql = "SELECT ts, sensor_id, temp_c, status FROM {t} ORDER BY ts, sensor_id"
    lake_rows = http_client.sql(sql.format(t=f"lake.{name}")).body["rows"]
    catalog = get_catalog(settings)
    for table_name, expected in ((name, lake_rows), (f"{name}__quarantine", None)):
        table = catalog.load_table(f"lake.{table_name}")
        con = connect(settings)  # a plain DuckDB connection with the extensions and an S3 secret
        scan = f"iceberg_scan('{table.metadata_location}')"
        if expected is None:
            got = con.execute(f"SELECT row_number, reason FROM {scan}").fetchall()
            lake = http_client.sql(f"SELECT row_number, reason FROM lake.{table_name}").body["rows"]
            assert [list(r) for r in got] == lake and len(got) == 1
            continue
        got = con.execute(sql.format(t=scan)).fetchall()
        assert [[r[0].isoformat(), r[1], r[2], r[3]] for r in got] == expected
        # pyiceberg's own reader agrees too.
        assert table.scan().to_arrow().num_rows == len(expected) == 42


def test_expensive_queries_are_bounded_in_time_rows_and_bytes(settings: Settings) -> None:
    from lakehouse.errors import QueryLimitExceeded
    from lakehouse.query.engine import run_sql

    tight = settings.model_copy(update={"query_timeout_seconds": 1.0, "query_max_rows": 100,
                                        "query_max_bytes": 64 * 1024})
    started = time.monotonic()
    with pytest.raises(QueryLimitExceeded, match="time limit of 1s"):
        run_sql(tight, "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b")
    assert time.monotonic() - started < 15
    many = run_sql(tight, "SELECT * FROM range(1000000000)")
    assert many.truncated and len(many.rows) == 100
    wide = run_sql(tight, "SELECT repeat('x', 10000) AS s FROM range(50)")
    assert wide.truncated and 0 < len(wide.rows) < 10


def test_results_are_cached_until_a_commit_changes_the_snapshot(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    from lakehouse.query.cache import PREFIX
    from lakehouse.storage import s3_client

    name = dataset(SENSOR_CONTRACT)
    upload(name, "a.csv", to_csv(month_rows(1)))
    sql = f"SELECT count(*) FROM lake.{name}"
    first, second = client.sql(sql).body, client.sql(sql).body
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["rows"] == first["rows"] == [[3]] and second["snapshots"] == first["snapshots"]
    listed = s3_client(settings).list_objects_v2(Bucket=settings.warehouse_bucket, Prefix=PREFIX)
    assert listed["KeyCount"] >= 1  # shared with other instances through the warehouse
    upload(name, "b.csv", to_csv(month_rows(2)))
    third = client.sql(sql).body
    assert third["cached"] is False and third["rows"] == [[9]] and third["snapshots"] != first["snapshots"]
    assert client.sql(sql).body["cached"] is True


def test_cached_files_are_read_natively_with_the_arrow_scans_answer(
    settings: Settings,
    dataset: Callable[[str], str],
    upload: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a table's files are all in the file cache (fetched in the background after a first
    read), a key bound to no tenant reads them with DuckDB's own Parquet reader: the same
    columns, types and rows as the Arrow scan, only the files the filters need counted as read,
    and a copy that leaves the cache meanwhile answered through the Arrow scan."""
    from lakehouse.query import engine, scan
    from lakehouse.query.engine import run_sql

    name = dataset(SENSOR_CONTRACT)
    upload(name, "year.csv", to_csv(month_rows(14)))
    plain = settings.model_copy(update={"query_cache": False})
    natives = native_runs(monkeypatch)
    month = (
        f"SELECT sensor_id, count(*) AS n, min(ts) AS first, max(temp_c) AS top, any_value(status) AS s "
        f"FROM lake.{name} WHERE ts >= '2025-03-01' AND ts < '2025-04-01' GROUP BY 1 ORDER BY 1"
    )
    every = f"SELECT * FROM lake.{name} ORDER BY ts, sensor_id"
    cold = run_sql(plain, month)
    assert cold.stats["files_read"] == 1 and not natives
    scan._prefetcher.submit(lambda: None).result()  # the background fetch of the others is done
    warm = run_sql(plain, month)
    assert natives, "a warm read by a key bound to no tenant is native"
    assert (warm.columns, warm.types, warm.rows) == (cold.columns, cold.types, cold.rows)
    assert warm.rows == [[f"s{i}", 1, f"2025-03-0{1 + i}T12:00:00+00:00", 12.0, "ok"] for i in range(3)]
    assert warm.stats["files_read"] == 1 and warm.stats["files_planned"] == 14
    assert warm.stats["bytes_from_store"] == 0 and warm.stats["bytes_from_cache"] > 0
    native_all = run_sql(plain, every)
    assert native_all.stats["files_read"] == 14
    monkeypatch.setattr(engine, "native_tables", lambda rows: None)
    arrow_all = run_sql(plain, every)
    assert (native_all.columns, native_all.types, native_all.rows) == (
        arrow_all.columns,
        arrow_all.types,
        arrow_all.rows,
    )
    assert len(arrow_all.rows) == 42

    # A copy evicted after it was looked up: the request is answered through the Arrow scan.
    def then_evict(rows: dict[str, Any]) -> Any:
        found = scan.native_tables(rows)
        assert found is not None
        Path(found[0].paths[2]).unlink()
        return found

    monkeypatch.setattr(engine, "native_tables", then_evict)
    natives.clear()
    again = run_sql(plain, month)
    assert natives and again.rows == cold.rows
    assert again.stats["bytes_from_store"] > 0  # the evicted copy was fetched again
