"""Compaction benchmark: query time before and after compaction, and compaction throughput
against a plain pyarrow read + write of the same bytes, measured in the same run.

Usage::

    python bench/compaction.py [--files N] [--rows-per-file R] [--repeat K] [--json]

The bench starts its own local stack in a temporary ``LAKE_HOME`` and writes ``N`` small data
files (``R`` rows each, ``sensor_readings`` shape, one month partition) into
``lake.bench_compaction`` through Lake's own staged writer, committed in one snapshot. Then:

* **query before**: a full-scan aggregate through :func:`lakehouse.query.engine.run_sql` (DuckDB's
  ``iceberg_scan`` over the S3 endpoint), best of ``K`` runs;
* **baseline rewrite**: the same ``N`` files read with ``pyarrow.dataset`` from the same
  endpoint and written back as one zstd Parquet file with ``pyarrow.parquet`` (no Iceberg
  metadata, no commit), outside the table's location;
* **compaction**: :func:`lakehouse.tables.compaction.compact_table` on the table (stream, write, one
  atomic replace commit);
* **query after**: the same query, best of ``K`` runs, and the same answer or the bench fails;
* **GC**: snapshot expiry with file GC frees the replaced files; the bytes freed are reported.

Ratios: ``query_speedup`` = before / after (goal ≥ 3), ``throughput_ratio`` = compaction MiB/s
over baseline MiB/s (goal ≥ 0.5). Exit code 1 when the answers differ or compaction did not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `bench` and `lakehouse` importable
    sys.path.insert(0, str(REPO))

from bench.ingest import CONTRACTS_DIR, bench_settings, stop_stack  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, load_settings  # noqa: E402

TABLE = "bench_compaction"
DATASET = "sensor_readings"
QUERY = (
    f"SELECT count(*) AS n, round(sum(temp_c), 2) AS temp, count(DISTINCT sensor_id) AS sensors, "
    f"min(ts)::VARCHAR AS first, max(ts)::VARCHAR AS last FROM lake.{TABLE}"
)
SEED = 20260101


def small_files(settings: Settings, files: int, rows_per_file: int) -> Any:
    """Create the table and write ``files`` small data files into one month, in one commit."""
    import numpy as np
    import pyarrow as pa

    from lakehouse.catalog import get_catalog
    from lakehouse.contracts.model import load_contract
    from lakehouse.tables.write import SourceRef, StagedWrite, create_table

    contract = load_contract(settings, DATASET)
    schema = contract.iceberg_schema()
    table = create_table(
        get_catalog(settings),
        f"{settings.namespace}.{TABLE}",
        schema,
        contract.partition_spec(schema),
        contract.table_properties(),
    )
    arrow_schema = table.schema().as_arrow()
    rng = np.random.default_rng(SEED)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()
    staged = StagedWrite(table)
    for _ in range(files):
        seconds = np.sort(rng.integers(int(start), int(start) + 28 * 86400, size=rows_per_file))
        staged.write(
            pa.table(
                {
                    "ts": pa.array(seconds * 1_000_000, pa.timestamp("us", tz="UTC")),
                    "sensor_id": [f"sensor-{i:02d}" for i in rng.integers(0, 8, size=rows_per_file)],
                    "temp_c": np.round(rng.normal(15.0, 10.0, size=rows_per_file), 2),
                    "humidity": np.round(rng.uniform(0.0, 100.0, size=rows_per_file), 1),
                    "status": ["ok"] * rows_per_file,
                }
            ).cast(arrow_schema)
        )
    staged.commit(SourceRef("bench", "compaction", "1"), {}, settings)
    table.refresh()
    return table


def best_query(settings: Settings, repeat: int) -> tuple[float, list[Any]]:
    """The fastest of ``repeat`` runs of the full-scan query (seconds) and its answer."""
    from lakehouse.query.engine import run_sql

    best, answer = float("inf"), []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run_sql(settings, QUERY)
        best = min(best, time.perf_counter() - started)
        answer = result.rows
    return best, answer


def baseline_rewrite(settings: Settings, paths: list[str]) -> float:
    """Read ``paths`` with pyarrow.dataset and write them as one Parquet file; seconds."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from pyarrow import fs

    from lakehouse.storage import s3_client

    endpoint = settings.s3_endpoint or ""
    s3 = fs.S3FileSystem(
        access_key=settings.access_key_id,
        secret_key=settings.secret_access_key,
        region=settings.region,
        endpoint_override=endpoint.split("://", 1)[-1],
        scheme=endpoint.split("://", 1)[0] if "://" in endpoint else "https",
    )
    target = f"{settings.warehouse_bucket}/bench-baseline/rewrite.parquet"
    started = time.perf_counter()
    data = ds.dataset([p.removeprefix("s3://") for p in paths], format="parquet", filesystem=s3).to_table()
    pq.write_table(data, target, filesystem=s3, compression="zstd")
    seconds = time.perf_counter() - started
    s3_client(settings).delete_object(Bucket=settings.warehouse_bucket, Key="bench-baseline/rewrite.parquet")
    return seconds


def run_bench(files: int, rows_per_file: int, repeat: int) -> dict[str, Any]:
    """Start a private stack, build the table, measure, verify, stop."""
    from lakehouse.tables.compaction import compact_table
    from lakehouse.tables.gc import expire_snapshots

    with tempfile.TemporaryDirectory(prefix="lake-bench-") as tmp:
        stack_settings = load_settings(home=Path(tmp) / "home", contracts_dir=CONTRACTS_DIR)
        localstack.up(stack_settings)
        try:
            settings = bench_settings(stack_settings.home).model_copy(
                # No result cache: every query run reads the table.
                update={
                    "compaction_target_bytes": 128 * 2**20,
                    "compaction_min_files": 2,
                    "query_cache": False,
                }
            )
            table = small_files(settings, files, rows_per_file)
            tasks = list(table.scan().plan_files())
            paths = [t.file.file_path for t in tasks]
            bytes_before = sum(t.file.file_size_in_bytes for t in tasks)

            query_before, answer_before = best_query(settings, repeat)
            baseline_seconds = baseline_rewrite(settings, paths)
            result = compact_table(table, settings)
            query_after, answer_after = best_query(settings, repeat)
            table.refresh()
            files_after = len(list(table.scan().plan_files()))
            gc = expire_snapshots(settings, table, retention=dt.timedelta(0), min_snapshots=1)
            query_gc, answer_gc = best_query(settings, 1)
        finally:
            stop_stack(stack_settings)

    problems = []
    if answer_after != answer_before or answer_gc != answer_before:
        problems.append(f"answers differ: before {answer_before}, after {answer_after}, after GC {answer_gc}")
    if result.partitions_compacted != 1:
        problems.append(f"compaction did not run: {result.to_dict()}")
    mib = bytes_before / 2**20
    compaction_rate = mib / result.seconds if result.seconds else 0.0
    baseline_rate = mib / baseline_seconds if baseline_seconds else 0.0
    return {
        "files": files,
        "rows": files * rows_per_file,
        "bytes_before": bytes_before,
        "files_after": files_after,
        "bytes_after": result.bytes_written,
        "query_before_ms": round(query_before * 1000, 1),
        "query_after_ms": round(query_after * 1000, 1),
        "query_speedup": round(query_before / query_after, 2) if query_after else 0.0,
        "compaction_seconds": result.seconds,
        "compaction_mib_per_s": round(compaction_rate, 2),
        "baseline_seconds": round(baseline_seconds, 3),
        "baseline_mib_per_s": round(baseline_rate, 2),
        "throughput_ratio": round(compaction_rate / baseline_rate, 3) if baseline_rate else 0.0,
        "snapshots_expired": gc.snapshots_expired,
        "files_freed": gc.files_deleted,
        "bytes_freed": gc.bytes_freed,
        "repeat": repeat,
        "problems": problems,
    }


def render(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Lake compaction bench: {r['files']} files, {r['rows']:,} rows, "
            f"{r['bytes_before'] / 2**20:.2f} MiB in one partition → {r['files_after']} file(s)",
            "",
            f"full-scan query   before {r['query_before_ms']:>9.1f} ms   after {r['query_after_ms']:>8.1f} ms"
            f"   speedup {r['query_speedup']:.2f}x (goal ≥ 3)",
            f"rewrite           Lake compaction {r['compaction_mib_per_s']:>7.2f} MiB/s "
            f"({r['compaction_seconds']:.2f} s)   plain pyarrow {r['baseline_mib_per_s']:>7.2f} MiB/s "
            f"({r['baseline_seconds']:.2f} s)   ratio {r['throughput_ratio']:.2f} (goal ≥ 0.5)",
            f"expiry + GC       {r['snapshots_expired']} snapshot(s) expired, {r['files_freed']} files, "
            f"{r['bytes_freed']:,} bytes freed",
        ]
        + [f"PROBLEM: {p}" for p in r["problems"]]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark Lake's compaction (query time, throughput).")
    parser.add_argument("--files", type=int, default=240, help="small files to write (default 240)")
    parser.add_argument("--rows-per-file", type=int, default=2000, help="rows per file (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="query runs; the fastest counts (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.files < 2:
        parser.error("--files must be at least 2")
    if args.rows_per_file < 1 or args.repeat < 1:
        parser.error("--rows-per-file and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run_bench(args.files, args.rows_per_file, args.repeat)
    print(json.dumps(result) if args.json else render(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
