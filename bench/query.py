"""Query bench: ``POST /sql`` on a warm ``lake serve`` against DuckDB on the same files.

Usage::

    python bench/query.py [--rows N] [--repeat R] [--sf SF] [--json]

Sizes default to ``LAKE_BENCH_QUERY_ROWS`` / ``LAKE_BENCH_QUERY_SF`` from the environment, else
2,000,000 sensor readings over the 12 months of 2025 and TPC-H scale factor 1. At sf 1 the
TPC-H load (generate 8.7 million rows, ingest the 8 tables with Lake, copy Lake's data files to
local disk) takes about 2 minutes on 2 cores (ingest alone about 50 s) and the whole run about
5; ``--sf 0.01`` takes seconds.

One run, on a local stack of its own (a temporary ``LAKE_HOME``):

1. **One month**: a ``GROUP BY`` over one month of the readings table, through ``POST /sql`` over
   HTTP (a different statement each time, and ``LAKE_QUERY_CACHE=false``, so no result cache
   answers), against DuckDB's ``read_parquet`` on exactly the data files pyiceberg plans for that
   month, read from the same S3 endpoint. Warm: the median of ``R`` runs after one (the bench's
   key is bound to no tenant: once the first request's background fetch has put the table's
   files in the file cache, Lake reads them with DuckDB's own Parquet reader); cold: the first
   request of a fresh ``lake serve`` process (and DuckDB's first read on a new connection,
   extensions loaded). Goal: warm ratio <= 1.5.
2. **TPC-H**: the 8 tables generated with the ``duckdb-extension-tpch`` package, declared as
   contracts by :mod:`bench.tpch` (as ``tests/test_tpch.py`` declares them) and ingested by Lake;
   the 22 queries through ``POST /sql`` against DuckDB in process (as many threads as a Lake
   query connection) over Lake's own data files copied to local disk. Each query runs once on
   both sides to warm them, then ``R`` times; the medians count. Every answer is compared.
   Goal: total <= 2x warm.

Both phases ask the same ``lake serve``, started once the data is in (with a row limit that
holds TPC-H 16's answer). Also printed: where a warm request's time goes (the response's
``elapsed_ms`` is the engine's share; the rest is HTTP, authentication and JSON), the file
cache's figures and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import tpch  # noqa: E402
from bench.ingest import CONTRACTS_DIR, bench_settings, generate_csv, stop_stack  # noqa: E402
from lake.client import LakeClient  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lake.local.serve import deliver  # noqa: E402
from lakehouse.config import Settings, get_settings, load_settings  # noqa: E402

GOAL_MONTH = 1.5
GOAL_TPCH = 2.0
MONTH_SQL = (
    "SELECT sensor_id, count(*) AS n, avg(temp_c) AS mean_c, max(humidity) AS top_h FROM {t} "
    "WHERE ts >= TIMESTAMPTZ '2025-03-01' AND ts < TIMESTAMPTZ '2025-04-01' AND temp_c > {floor} "
    "GROUP BY sensor_id ORDER BY sensor_id"
)
# Lake's own answers must hold the largest TPC-H result (Q16: about 18,000 rows at sf 1).
MAX_ROWS = 1_000_000


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start_serve(settings: Settings, home: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """A fresh ``lake serve`` (keys required, no result cache); its URL and seconds to ready."""
    env = {
        **os.environ,
        "LAKE_HOME": str(home),
        "LAKE_CONTRACTS_DIR": str(settings.contracts_dir),
        "LAKE_QUERY_CACHE": "false",
        "LAKE_QUERY_MAX_ROWS": str(MAX_ROWS),
        "LAKE_LOG_LEVEL": "WARNING",
    }
    out = home / f"serve-{time.monotonic_ns()}.out"
    started = time.perf_counter()
    with out.open("w") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lake.cli.main", "serve", "--port", "0", "--no-watch", "--no-maintain"],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        )
    while not out.read_text().strip():
        if proc.poll() is not None or time.perf_counter() - started > 120:
            raise SystemExit("lake serve did not start")
        time.sleep(0.02)
    return proc, json.loads(out.read_text().splitlines()[0])["serving"], time.perf_counter() - started


def ingest_file(settings: Settings, dataset: str, path: Path) -> dict[str, Any]:
    from lakehouse.storage import s3_client

    key = f"{dataset}/{path.name}"
    s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=path.read_bytes())
    report: dict[str, Any] = deliver(settings, settings.landing_bucket, key)["reports"][0]
    return report


def planned_files(settings: Settings, table: str, row_filter: Any = None) -> list[str]:
    from lakehouse.catalog import get_catalog

    loaded = get_catalog(settings).load_table(f"{settings.namespace}.{table}")
    scan = loaded.scan(row_filter=row_filter) if row_filter is not None else loaded.scan()
    return [task.file.file_path for task in scan.plan_files()]


def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def month_phase(url: str, ready: float, settings: Settings, key: str, repeat: int) -> dict[str, Any]:
    """The one-month query: cold and warm, over HTTP and on DuckDB's read_parquet. ``url`` is a
    ``lake serve`` that has answered no request yet (its first request is the cold one)."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    from lakehouse.query.engine import connect

    month = And(
        GreaterThanOrEqual("ts", "2025-03-01T00:00:00+00:00"), LessThan("ts", "2025-04-01T00:00:00+00:00")
    )
    files = planned_files(settings, "sensor_readings", month)
    scan = "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"

    def duck(con: Any, i: int) -> list[Any]:
        rows: list[Any] = con.execute(MONTH_SQL.format(t=scan, floor=-1000 - i)).fetchall()
        return rows

    cold_duck, con = timed(lambda: connect(settings))
    first, rows = timed(lambda: duck(con, 0))
    cold_duck += first
    try:
        client = LakeClient(url, key=key)
        cold_http, response = timed(
            lambda: client.sql(MONTH_SQL.format(t="lake.sensor_readings", floor=-1000))
        )
        assert response.status == 200, response.body
        lake_rows = response.body["rows"]
        assert len(lake_rows) == len(rows), (len(lake_rows), len(rows))
        http: list[float] = []
        engine: list[float] = []
        baseline: list[float] = []
        stats: dict[str, Any] = {}
        for i in range(1, repeat + 2):  # the first of these warms both sides
            took, response = timed(
                lambda i=i: client.sql(MONTH_SQL.format(t="lake.sensor_readings", floor=-1000 - i))
            )
            assert response.status == 200, response.body
            base, _ = timed(lambda i=i: duck(con, i))
            if i > 1:
                http.append(took)
                engine.append(response.body["elapsed_ms"] / 1000)
                baseline.append(base)
                stats = response.body["stats"]
    finally:
        con.close()
    warm_http, warm_duck = statistics.median(http), statistics.median(baseline)
    return {
        "files_planned": len(files),
        "rows_out": len(rows),
        "serve_ready_s": round(ready, 3),
        "cold_http_ms": round(cold_http * 1000, 1),
        "cold_duckdb_ms": round(cold_duck * 1000, 1),
        "cold_ratio": round(cold_http / cold_duck, 2),
        "warm_http_ms": round(warm_http * 1000, 1),
        "warm_engine_ms": round(statistics.median(engine) * 1000, 1),
        "warm_duckdb_ms": round(warm_duck * 1000, 1),
        "warm_ratio": round(warm_http / warm_duck, 2),
        "warm_stats": stats,
        "goal_met": warm_http / warm_duck <= GOAL_MONTH,
    }


def tpch_load(settings: Settings, home: Path, sf: float) -> tuple[dict[int, str], Any, dict[str, Any]]:
    """Generate the 8 TPC-H tables and ingest each with Lake (:mod:`bench.tpch` declares them);
    returns the 22 queries, a DuckDB connection with a view of each table over Lake's data files
    copied to local disk, and what the load took."""
    import duckdb

    from lakehouse.query.scan import QUERY_THREADS
    from lakehouse.storage import arrow_filesystem

    work = home / "tpch"
    work.mkdir()
    started = time.perf_counter()
    gen = tpch.generate(sf)
    generated = time.perf_counter() - started
    rows: dict[str, int] = {}
    files: dict[str, int] = {}
    ingest_s = 0.0
    for table in tpch.tables(gen):
        (settings.contracts_dir / f"{table}.yaml").write_text(tpch.contract(gen, table))
        path = work / f"{table}.parquet"
        gen.execute(f"COPY {table} TO '{path}' (FORMAT parquet)")
        counted = gen.execute(f"SELECT count(*) FROM {table}").fetchone()
        took, report = timed(lambda table=table, path=path: ingest_file(settings, table, path))
        ingest_s += took
        path.unlink()
        if counted is None or report.get("rows_accepted") != counted[0] or report.get("rows_quarantined"):
            raise SystemExit(f"TPC-H {table}: Lake accepted {report.get('rows_accepted')} of {counted}")
        rows[table] = counted[0]
    queries = tpch.queries(gen)
    gen.close()
    # DuckDB in process, as many threads as a Lake query connection has.
    local = duckdb.connect(config={"threads": QUERY_THREADS})
    fs = arrow_filesystem(settings)
    for table in rows:  # Lake's own data files, copied to local disk
        folder = work / f"lake-{table}"
        folder.mkdir()
        planned = planned_files(settings, table)
        files[table] = len(planned)
        for i, uri in enumerate(planned):
            with (
                fs.open_input_stream(uri.removeprefix("s3://")) as src,
                open(folder / f"{i}.parquet", "wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
        local.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{folder}/*.parquet')")
    load = {
        "generate_s": round(generated, 1),
        "ingest_s": round(ingest_s, 1),
        "load_s": round(time.perf_counter() - started, 1),
        "rows": rows,
        "files": files,
    }
    return queries, local, load


def tpch_phase(
    url: str, key: str, queries: dict[int, str], local: Any, sf: float, repeat: int, load: dict[str, Any]
) -> dict[str, Any]:
    """The 22 TPC-H queries through POST /sql against DuckDB over the same Parquet on local
    disk: each once on both sides to warm them, then the median of ``repeat`` runs of each."""
    per_query: dict[int, dict[str, Any]] = {}
    try:
        client = LakeClient(url, key=key)
        for n, sql in sorted(queries.items()):
            first = client.sql(sql)
            assert first.status == 200, (n, first.body)
            expected = local.execute(sql).fetchall()
            http, engine, base = [], [], []
            for _ in range(repeat):
                took, response = timed(lambda sql=sql: client.sql(sql))
                assert response.status == 200, (n, response.body)
                http.append(took)
                engine.append(response.body["elapsed_ms"] / 1000)
                base.append(timed(lambda sql=sql: local.execute(sql).fetchall())[0])
            difference = tpch.first_difference(response.body["rows"], expected)
            per_query[n] = {
                "http_ms": round(statistics.median(http) * 1000, 1),
                "engine_ms": round(statistics.median(engine) * 1000, 1),
                "duckdb_ms": round(statistics.median(base) * 1000, 1),
                "rows": len(expected),
                "equal": difference is None,
                **({"difference": repr(difference)[:300]} if difference is not None else {}),
            }
    finally:
        local.close()
    total_http = sum(q["http_ms"] for q in per_query.values())
    total_duck = sum(q["duckdb_ms"] for q in per_query.values())
    return {
        "sf": sf,
        "load": load,
        "queries": per_query,
        "total_http_ms": round(total_http, 1),
        "total_duckdb_ms": round(total_duck, 1),
        "ratio": round(total_http / total_duck, 2),
        "all_equal": len(per_query) == 22 and all(q["equal"] for q in per_query.values()),
        "goal_met": total_http / total_duck <= GOAL_TPCH,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("LAKE_BENCH_QUERY_ROWS", 2_000_000)))
    parser.add_argument("--sf", type=float, default=float(os.environ.get("LAKE_BENCH_QUERY_SF", 1)))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lake-bench-query-") as tmp:
        home = Path(tmp)
        contracts = home / "contracts"
        shutil.copytree(CONTRACTS_DIR, contracts)
        for name in list(os.environ):
            if name.startswith("LAKE_") and not name.startswith("LAKE_BENCH_"):
                del os.environ[name]
        os.environ["LAKE_HOME"] = str(home)  # the handlers read the one settings object
        os.environ["LAKE_CONTRACTS_DIR"] = str(contracts)
        os.environ["LAKE_LOG_LEVEL"] = "WARNING"
        get_settings.cache_clear()
        localstack.up(load_settings(home=home), owner_pid=os.getpid())
        settings = bench_settings(home).model_copy(update={"contracts_dir": contracts})
        try:
            from lakehouse.access.auth import create_key

            csv = home / "readings.csv"
            generate_csv(csv, args.rows)
            ingest_file(settings, "sensor_readings", csv)
            csv.unlink()
            key = create_key(settings, "read", None, "bench")[0]
            queries, local, load = tpch_load(settings, home, args.sf)
            # One fresh `lake serve` for both phases: the month's first request is its cold one.
            proc, url, ready = start_serve(settings, home)
            try:
                report = {
                    "rows": args.rows,
                    "month": month_phase(url, ready, settings, key, args.repeat),
                    "tpch": tpch_phase(url, key, queries, local, args.sf, args.repeat, load),
                    "load_average": load_average(),
                }
            finally:
                proc.terminate()
                proc.wait(10)
        finally:
            stop_stack(settings)
    if args.json:
        print(json.dumps(report))
        return 0
    m, t = report["month"], report["tpch"]
    print(
        f"one month of {args.rows:,} readings ({m['files_planned']} files planned), "
        "POST /sql vs DuckDB read_parquet:"
    )
    print(
        f"  warm  {m['warm_http_ms']:8.1f} ms (engine {m['warm_engine_ms']} ms) "
        f"vs {m['warm_duckdb_ms']:8.1f} ms"
        f"  = {m['warm_ratio']}x  (goal <= {GOAL_MONTH}x: {'met' if m['goal_met'] else 'NOT met'})"
    )
    print(f"  cold  {m['cold_http_ms']:8.1f} ms vs {m['cold_duckdb_ms']:8.1f} ms  = {m['cold_ratio']}x")
    print(f"  stats of a warm request: {m['warm_stats']}")
    load = t["load"]
    print(
        f"TPC-H sf {t['sf']}: 8 tables ingested by Lake in {load['ingest_s']} s "
        f"(generated in {load['generate_s']} s, load {load['load_s']} s in all; data files "
        + ", ".join(f"{name} {n}" for name, n in load["files"].items())
        + "); the 22 queries, POST /sql (engine) vs DuckDB on the same Parquet on local disk:"
    )
    for n, q in t["queries"].items():
        print(
            f"  Q{n:<3} {q['http_ms']:8.1f} ms ({q['engine_ms']:8.1f}) vs {q['duckdb_ms']:8.1f} ms  "
            f"= {q['http_ms'] / q['duckdb_ms']:5.2f}x  rows {q['rows']}  equal {q['equal']}"
            + (f"  {q['difference']}" if "difference" in q else "")
        )
    print(
        f"  total {t['total_http_ms']:8.1f} ms vs {t['total_duckdb_ms']:8.1f} ms = {t['ratio']}x  "
        f"(goal <= {GOAL_TPCH}x: {'met' if t['goal_met'] else 'NOT met'}); all equal: {t['all_equal']}"
    )
    print(f"load average: {report['load_average']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
