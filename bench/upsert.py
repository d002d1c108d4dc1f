"""Upsert bench: Lake's merge by primary key against pyiceberg's own ``Table.upsert``.

Usage::

    python bench/upsert.py [--rows 1000000] [--update-fraction 0.1] [--json]

The bench starts its own local stack in a temporary ``LAKE_HOME`` and builds two identical
month-partitioned tables of ``--rows`` rows (``id`` long key, ``ts``, ``value``, ``note``), one
per contender. The upsert file holds ``--rows`` rows again: ``--update-fraction`` of them
update existing keys (with a later ``ts``), the rest are new keys. Each contender runs in a
fresh interpreter, parsing the same CSV:

* **Lake**: ``ingest_object`` of the uploaded file under a contract with ``primary_key: [id]``
  (validation included);
* **pyiceberg**: ``pyarrow.csv`` typed read of the local file, then
  ``Table.upsert(df, join_cols=["id"])``.

Afterwards both tables must equal the reference computed with DuckDB from the two CSV files
(latest ``ts`` per key); the bench exits 1 when either does not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ingest import bench_settings, peak_rss_mib, stop_stack  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, load_settings  # noqa: E402

DATASET = "upsert_bench"
BASELINE = "upsert_bench_pyiceberg"
CONTRACT = f"""
name: {DATASET}
event_time: ts
primary_key: [id]
columns:
  id:    {{type: long, required: true}}
  ts:    {{type: timestamp, required: true}}
  value: {{type: double}}
  note:  {{type: string}}
"""
SPAN_START = 1_735_689_600  # 2025-01-01
SPAN = 365 * 86_400
TS_TYPE = "{'ts': 'TIMESTAMPTZ'}"


def generate(base: Path, update: Path, rows: int, fraction: float, seed: int = 7) -> int:
    """The initial rows and the upsert file; returns how many rows of the upsert are updates."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)

    def table(ids: Any, seconds: Any) -> pa.Table:
        ts = pc.strftime(pa.array(seconds, pa.timestamp("s", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
        return pa.table(
            {
                "id": pa.array(ids, pa.int64()),
                "ts": ts,
                "value": np.round(rng.normal(0, 100, len(ids)), 3),
                "note": pa.array(rng.choice(["alpha", "beta", "gamma", "delta"], len(ids))),
            }
        )

    first = rng.integers(SPAN_START, SPAN_START + SPAN // 2, rows)
    pacsv.write_csv(table(np.arange(rows), first), str(base))
    updates = int(rows * fraction)
    updated_ids = rng.choice(rows, updates, replace=False)
    ids = np.concatenate([updated_ids, np.arange(rows, rows + rows - updates)])
    later = rng.integers(SPAN_START + SPAN // 2, SPAN_START + SPAN, len(ids))
    pacsv.write_csv(table(ids, later), str(update))
    return updates


def _settings(home: Path, contracts: Path) -> Settings:
    return bench_settings(home).model_copy(update={"contracts_dir": contracts})


def _arrow(path: Path, schema: Any) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {"id": pa.int64(), "ts": pa.timestamp("us", tz="UTC"), "value": pa.float64(), "note": pa.string()}
    data = pacsv.read_csv(str(path), convert_options=pacsv.ConvertOptions(column_types=types))
    return data.select(schema.names).cast(schema)


def phase(args: argparse.Namespace) -> None:
    """Child-process entry: one contender upserts the update file."""
    from pyiceberg.catalog.sql import SqlCatalog  # noqa: F401 - imported before the clock starts

    from lakehouse.catalog import get_catalog

    settings = _settings(Path(args.home), Path(args.contracts))
    catalog = get_catalog(settings)
    if args.phase == "lake":
        from lakehouse.ingest.upload import ingest_object

        started = time.perf_counter()
        report = ingest_object(settings, settings.landing_bucket, f"{DATASET}/update.csv", catalog=catalog)
        seconds = time.perf_counter() - started
        extra = {
            "rows_inserted": report.rows_inserted,
            "rows_updated": report.rows_updated,
            "files_rewritten": report.files_rewritten,
        }
    else:
        table = catalog.load_table(f"{settings.namespace}.{BASELINE}")
        started = time.perf_counter()
        data = _arrow(Path(args.csv), table.schema().as_arrow())
        result = table.upsert(data, join_cols=["id"])
        seconds = time.perf_counter() - started
        extra = {"rows_inserted": result.rows_inserted, "rows_updated": result.rows_updated}
    Path(args.out).write_text(
        json.dumps({"seconds": seconds, "peak_rss_mib": round(peak_rss_mib(), 1), **extra})
    )


def spawn(name: str, home: Path, contracts: Path, csv: Path, out: Path) -> dict[str, Any]:
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--home", str(home)]
    cmd += ["--contracts", str(contracts), "--csv", str(csv), "--out", str(out)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"bench phase {name!r} failed (exit code {proc.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def fingerprint(con: Any, relation: str) -> tuple[int, int]:
    """Rows and an order-independent hash of every (id, ts, value, note)."""
    row = con.execute(
        f"SELECT count(*), sum(hash(id, epoch_us(ts), value, note)::HUGEINT) % 1000000007 FROM {relation}"
    ).fetchone()
    return int(row[0]), int(row[1] or 0)


def run(rows: int, fraction: float) -> dict[str, Any]:
    import duckdb

    from lakehouse.catalog import get_catalog
    from lakehouse.contracts.model import load_contract
    from lakehouse.ingest.upload import ingest_object
    from lakehouse.storage import s3_client

    with tempfile.TemporaryDirectory(prefix="lake-bench-upsert-") as tmp:
        work = Path(tmp)
        contracts = work / "contracts"
        contracts.mkdir()
        (contracts / f"{DATASET}.yaml").write_text(CONTRACT)
        base, update = work / "base.csv", work / "update.csv"
        updates = generate(base, update, rows, fraction)
        stack = load_settings(home=work / "home", contracts_dir=contracts)
        localstack.up(stack)
        try:
            settings = _settings(stack.home, contracts)
            s3 = s3_client(settings)
            s3.upload_file(str(base), settings.landing_bucket, f"{DATASET}/base.csv")
            ingest_object(settings, settings.landing_bucket, f"{DATASET}/base.csv")
            catalog = get_catalog(settings)
            contract = load_contract(settings, DATASET)
            schema = contract.iceberg_schema()
            baseline = catalog.create_table(
                f"{settings.namespace}.{BASELINE}",
                schema=schema,
                partition_spec=contract.partition_spec(schema),
                properties=contract.table_properties(),
            )
            baseline.append(_arrow(base, baseline.schema().as_arrow()))
            s3.upload_file(str(update), settings.landing_bucket, f"{DATASET}/update.csv")
            lake = spawn("lake", stack.home, contracts, update, work / "lake.json")
            pyice = spawn("pyiceberg", stack.home, contracts, update, work / "pyiceberg.json")

            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            con.execute(
                f"CREATE TABLE arrivals AS SELECT *, 0 AS f FROM read_csv('{base}', types={TS_TYPE})"
                f" UNION ALL SELECT *, 1 FROM read_csv('{update}', types={TS_TYPE})"
            )
            con.execute(
                "CREATE TABLE reference AS SELECT id, ts, value, note FROM (SELECT *, row_number() OVER "
                "(PARTITION BY id ORDER BY ts DESC, f DESC) AS r FROM arrivals) WHERE r = 1"
            )
            expected = fingerprint(con, "reference")
            got = {}
            for label, name in (("lake", DATASET), ("pyiceberg", BASELINE)):
                data = catalog.load_table(f"{settings.namespace}.{name}").scan().to_arrow()
                con.register(f"t_{label}", data)
                got[label] = fingerprint(con, f"t_{label}")
        finally:
            stop_stack(stack)
    ratio = pyice["seconds"] / lake["seconds"] if lake["seconds"] else 0.0
    return {
        "rows": rows,
        "upsert_rows": rows,
        "updates": updates,
        "lake_seconds": round(lake["seconds"], 2),
        "pyiceberg_seconds": round(pyice["seconds"], 2),
        "speedup": round(ratio, 2),
        "lake_peak_rss_mib": lake["peak_rss_mib"],
        "pyiceberg_peak_rss_mib": pyice["peak_rss_mib"],
        "lake_rows_updated": lake["rows_updated"],
        "lake_rows_inserted": lake["rows_inserted"],
        "lake_files_rewritten": lake["files_rewritten"],
        "pyiceberg_rows_updated": pyice["rows_updated"],
        "pyiceberg_rows_inserted": pyice["rows_inserted"],
        "reference_rows": expected[0],
        "lake_matches_reference": got["lake"] == expected,
        "pyiceberg_matches_reference": got["pyiceberg"] == expected,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Lake's upsert against pyiceberg's Table.upsert on the same data."
    )
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--update-fraction", type=float, default=0.1)
    p.add_argument("--json", action="store_true")
    for hidden in ("--phase", "--home", "--contracts", "--csv", "--out"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        phase(args)
        return 0
    r = run(args.rows, args.update_fraction)
    if args.json:
        print(json.dumps(r))
    else:
        print(
            f"Upsert of {r['upsert_rows']:,} rows ({r['updates']:,} updates) into {r['rows']:,} rows\n"
            f"  Lake       {r['lake_seconds']:>8.2f} s  peak RSS {r['lake_peak_rss_mib']:,.0f} MiB  "
            f"(files rewritten: {r['lake_files_rewritten']})  "
            f"matches reference: {r['lake_matches_reference']}\n"
            f"  pyiceberg  {r['pyiceberg_seconds']:>8.2f} s  "
            f"peak RSS {r['pyiceberg_peak_rss_mib']:,.0f} MiB  "
            f"matches reference: {r['pyiceberg_matches_reference']}\n"
            f"  speed-up (pyiceberg seconds / Lake seconds): {r['speedup']:.2f}"
        )
    return 0 if r["lake_matches_reference"] else 1


if __name__ == "__main__":
    sys.exit(main())
