"""Layout benchmark: how many data files a 1 % bounding-box query over a location table reads
before and after z-order clustering, measured in the same run.

Usage::

    python bench/layout.py [--points N] [--files F] [--json]

The bench starts its own local stack in a temporary ``LAKE_HOME`` and creates
``lake.bench_layout``, a Takeout location table (time, lat, lon, accuracy, member) whose
contract says ``cluster_by: zorder(lat, lon)``. ``N`` points (default 1,000,000) around 40
cities plus 10 % spread worldwide, all in one month, are written as ``F`` uploads would write
them (default 24 files through Lake's staged writer, one commit each): every file spans the
whole map. Then:

* **before**: ``SELECT count(*) ... WHERE lat BETWEEN ... AND lon BETWEEN ...`` over boxes of
  1 % of the data's extent (a tenth of its latitude span by a tenth of its longitude span),
  one centred on each of ``--boxes`` cities (default 10), through
  :func:`lakehouse.query.engine.run_sql` (the answer); the files read are the data files
  Iceberg's manifest column statistics plan for the box (pyiceberg's scan planning, as
  pyiceberg, Daft and Athena read it), with the files Lake's own query engine opened
  (``files_read`` of the answer's ``stats``) printed beside;
* **compaction**: :func:`lakehouse.tables.compaction.compact_table` rewrites the month as one
  z-ordered run cut into about ``F`` files;
* **after**: the same query; it must give the same count.

The ratio is the mean number of files a box reads after over the mean before (goal ≤ 0.2);
the worst box is reported too. Exit code 1 when an answer differs or clustering did not run.
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

from bench.ingest import bench_settings, stop_stack  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, load_settings  # noqa: E402

TABLE = "bench_layout"
CONTRACT = f"""
name: {TABLE}
description: Takeout location points, z-ordered by position
event_time: time
retention_months: 1200
cluster_by: zorder(lat, lon)
columns:
  time:     {{type: timestamp, required: true}}
  lat:      {{type: double, required: true, min: -90, max: 90}}
  lon:      {{type: double, required: true, min: -180, max: 180}}
  accuracy: {{type: double}}
  member:   {{type: string, required: true}}
"""
SEED = 20260115
CITIES = 40


def points(n: int, seed: int) -> Any:
    """``n`` location points: 90 % around ``CITIES`` cities (a few km), 10 % anywhere (lat -60..70)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    centres = np.column_stack([rng.uniform(-45, 65, CITIES), rng.uniform(-170, 170, CITIES)])
    city = rng.integers(0, CITIES, n)
    near = rng.random(n) < 0.9
    lat = np.where(near, centres[city, 0] + rng.normal(0, 0.05, n), rng.uniform(-60, 70, n))
    lon = np.where(near, centres[city, 1] + rng.normal(0, 0.08, n), rng.uniform(-180, 180, n))
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    seconds = rng.integers(0, 30 * 86400, n)
    return pa.table(
        {
            "time": pa.array(
                [start + dt.timedelta(seconds=int(s)) for s in seconds], pa.timestamp("us", "UTC")
            ),
            "lat": np.clip(lat, -90, 90),
            "lon": np.clip(lon, -180, 180),
            "accuracy": rng.uniform(3, 50, n),
            "member": pa.array(["me"] * n),
        }
    ), centres


def write_uploads(settings: Settings, data: Any, files: int) -> Any:
    """The table, with ``data`` written as ``files`` uploads (one staged write and commit each)."""
    from lakehouse.catalog import get_catalog
    from lakehouse.contracts.model import load_contract
    from lakehouse.tables.write import SourceRef, StagedWrite, ensure_tables

    (settings.contracts_dir / f"{TABLE}.yaml").write_text(CONTRACT)
    table, _ = ensure_tables(get_catalog(settings), settings, load_contract(settings, TABLE))
    target = table.schema().as_arrow()
    step = -(-data.num_rows // files)
    for i in range(files):
        staged = StagedWrite(table)
        staged.write(data.slice(i * step, step).cast(target))
        staged.commit(SourceRef(settings.landing_bucket, f"{TABLE}/{i}.parquet", "1"), {}, settings)
    return table


def box_sql(centre: tuple[float, float], extent: tuple[float, float, float, float]) -> str:
    """A box of 1 % of the extent's area (a tenth of each span) around ``centre``."""
    lat0, lat1, lon0, lon1 = extent
    half_lat, half_lon = (lat1 - lat0) / 20, (lon1 - lon0) / 20
    lat, lon = centre
    return (
        f"SELECT count(*) AS n FROM lake.{TABLE} WHERE lat BETWEEN {lat - half_lat!r} AND {lat + half_lat!r} "
        f"AND lon BETWEEN {lon - half_lon!r} AND {lon + half_lon!r}"
    )


def files_read(settings: Settings, table: Any, sql: str) -> tuple[int, int, int, int]:
    """(answer, files DuckDB read, files pyiceberg plans, files in the table)."""
    from lakehouse.query.engine import run_sql

    result = run_sql(settings, sql)
    # The engine's own count of the data files the query opened (response ``stats``).
    duck = int((result.stats or {}).get("files_read", -1))
    where = sql.split(" WHERE ", 1)[1]
    table.refresh()
    planned = len(list(table.scan(row_filter=where).plan_files()))
    total = len(list(table.scan().plan_files()))
    return int(result.rows[0][0]), duck, planned, total


def run_bench(n: int, files: int, boxes: int = 10) -> dict[str, Any]:
    """Start a private stack, build the table, measure, cluster, measure, stop."""
    from lakehouse.tables.compaction import TARGET_PROPERTY, compact_table

    data, centres = points(n, SEED)
    extent = (
        float(min(data["lat"].to_numpy())),
        float(max(data["lat"].to_numpy())),
        float(min(data["lon"].to_numpy())),
        float(max(data["lon"].to_numpy())),
    )
    queries = [box_sql((float(lat), float(lon)), extent) for lat, lon in centres[:boxes]]
    with tempfile.TemporaryDirectory(prefix="lake-bench-") as tmp:
        home = Path(tmp) / "home"
        contracts = Path(tmp) / "contracts"
        contracts.mkdir()
        stack_settings = load_settings(home=home, contracts_dir=contracts)
        localstack.up(stack_settings)
        try:
            settings = bench_settings(home).model_copy(
                update={"contracts_dir": contracts, "query_cache": False, "compaction_min_files": 2}
            )
            started = time.perf_counter()
            table = write_uploads(settings, data, files)
            write_seconds = time.perf_counter() - started
            before = [files_read(settings, table, sql) for sql in queries]
            size = sum(t.file.file_size_in_bytes for t in table.scan().plan_files())
            with table.transaction() as tx:  # about as many files after as before
                tx.set_properties({TARGET_PROPERTY: str(max(1, size // files))})
            started = time.perf_counter()
            result = compact_table(table, settings)
            compact_seconds = time.perf_counter() - started
            after = [files_read(settings, table, sql) for sql in queries]
        finally:
            stop_stack(stack_settings)
    problems = [
        f"answers differ for {sql}: {b[0]} rows before, {a[0]} after"
        for sql, b, a in zip(queries, before, after, strict=True)
        if a[0] != b[0]
    ]
    if result.partitions_compacted != 1:
        problems.append(f"clustering did not run: {result.to_dict()}")
    # The files a box needs, as Iceberg's manifest statistics plan them (what pyiceberg, Daft and
    # Athena read). Lake's own engine opens every planned file of a double column whose NaN count
    # the manifest does not record (pyiceberg writes none): its figures are printed beside.
    counted_by = "pyiceberg"
    read_before = [b[2] for b in before]
    read_after = [a[2] for a in after]
    mean_before, mean_after = sum(read_before) / len(queries), sum(read_after) / len(queries)
    return {
        "points": n,
        "boxes": len(queries),
        "rows_in_boxes": sum(b[0] for b in before),
        "files_before": before[0][3],
        "files_after": after[0][3],
        "read_before": round(mean_before, 2),
        "read_after": round(mean_after, 2),
        "worst_after": max(read_after),
        "planned_before": round(sum(b[2] for b in before) / len(queries), 2),
        "planned_after": round(sum(a[2] for a in after) / len(queries), 2),
        "ratio": round(mean_after / mean_before, 3) if mean_before else 0.0,
        "write_seconds": round(write_seconds, 2),
        "cluster_seconds": round(compact_seconds, 2),
        "counted_by": counted_by,
        "engine_read_before": round(sum(b[1] for b in before) / len(queries), 2),
        "engine_read_after": round(sum(a[1] for a in after) / len(queries), 2),
        "problems": problems,
    }


def render(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Lake layout bench: {r['points']:,} points; {r['boxes']} bounding boxes of 1 % of the map "
            f"({r['rows_in_boxes']:,} rows in all), files read per box ({r['counted_by']} counts)",
            "",
            f"before clustering  {r['read_before']:>6.2f} of {r['files_before']:>3} files "
            f"(pyiceberg plans {r['planned_before']})",
            f"after zorder       {r['read_after']:>6.2f} of {r['files_after']:>3} files "
            f"(pyiceberg plans {r['planned_after']}; worst box {r['worst_after']})",
            f"ratio after/before {r['ratio']:.3f} (goal ≤ 0.2)   written in {r['write_seconds']:.1f} s, "
            f"clustered in {r['cluster_seconds']:.1f} s",
        ]
        + [f"PROBLEM: {p}" for p in r["problems"]]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Files a bounding-box query reads before/after z-order.")
    parser.add_argument("--points", type=int, default=1_000_000, help="location points (default 1,000,000)")
    parser.add_argument(
        "--files", type=int, default=24, help="uploads written before clustering (default 24)"
    )
    parser.add_argument("--boxes", type=int, default=10, help="boxes, one per city (default 10, at most 40)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.points < 100 or args.files < 2 or not 1 <= args.boxes <= CITIES:
        parser.error(f"--points must be at least 100, --files at least 2, --boxes 1..{CITIES}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run_bench(args.points, args.files, args.boxes)
    print(json.dumps(result) if args.json else render(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
