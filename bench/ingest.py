"""Ingest benchmark: Lake's ``ingest_object`` against a bare pyiceberg append of the same rows.

Usage::

    python bench/ingest.py [--rows N] [--json] [--repeat K] [--time-ordered]

The bench starts its own local stack in a temporary ``LAKE_HOME``, generates a CSV of ``N``
rows in the ``sensor_readings`` shape (12 months of readings from a handful of sensors) and
uploads it to the landing bucket. It then measures, each phase in a fresh interpreter so that
peak RSS belongs to that phase alone:

* **Lake**: ``lakehouse.ingest.upload.ingest_object`` on the uploaded object. This reads the object
  over the S3 HTTP endpoint, validates and casts every row against the contract and writes
  the good rows in one commit.
* **baseline**: the same rows read from the local CSV with ``pyarrow.csv`` (typed, no rule
  checks) and written with ``Table.append`` into ``<ns>.bench_baseline``, a table with the same
  schema, partition spec and properties in the same catalog.

Both timings include parsing the CSV, loading the catalog and creating the tables; neither
includes interpreter start-up or imports. Afterwards both tables are read back and must hold
exactly ``N`` rows, otherwise the bench exits non-zero. Peak RSS is the phase process's own
high-water mark (see :func:`peak_rss_mib`); ``ru_maxrss`` is reported next to it in ``--json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lake.local import stack as localstack
from lakehouse.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = REPO / "catalog" / "datasets"
DATASET = "sensor_readings"
KEY = f"{DATASET}/bench.csv"
BASELINE_TABLE = "bench_baseline"
TABLES = {"lake": DATASET, "baseline": BASELINE_TABLE}  # the table each phase writes
SEED = 20250101
# Readings span the 12 months of 2025 (UTC).
SPAN_START = 1_735_689_600  # 2025-01-01T00:00:00Z
SPAN_END = 1_767_225_600  # 2026-01-01T00:00:00Z
STATUSES = ("ok", "degraded", "failed")
STATUS_WEIGHTS = (0.95, 0.04, 0.01)


# --------------------------------------------------------------------------- settings


def bench_settings(home: Path) -> Settings:
    """Settings pinned to the stack running under ``home``.

    Every connection setting is passed explicitly, so ``LAKE_*`` variables of the calling
    shell cannot point the bench at another store or catalog; tuning settings such as
    ``LAKE_BATCH_ROWS`` still apply.
    """
    state = localstack.require(load_settings(home=home))
    return load_settings(
        home=home,
        contracts_dir=CONTRACTS_DIR,
        s3_endpoint=state["endpoint"],
        access_key_id=state["access_key_id"],
        secret_access_key=state["secret_access_key"],
        region=state["region"],
        landing_bucket=state["landing_bucket"],
        warehouse_bucket=state["warehouse_bucket"],
        catalog_type="sql",
        catalog_uri=state["catalog_uri"],
        catalog_properties={},
    )


def stop_stack(settings: Settings) -> None:
    """Stop the stack this process started (``localstack.down`` reaps its own child)."""
    localstack.down(settings)


def ru_maxrss_mib() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MiB (the kernel reports KiB on Linux, bytes on macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024


def peak_rss_mib() -> float:
    """Peak resident set size of this process image so far, in MiB.

    Linux carries ``ru_maxrss`` across ``exec``: a freshly started phase process would report
    at least the peak of the process that launched it (the one that generated the data). The
    ``VmHWM`` line of ``/proc/self/status`` is the peak of this image alone, so it is used
    where it exists; elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return ru_maxrss_mib()


# --------------------------------------------------------------------------- data


def generate_csv(path: Path, rows: int, time_ordered: bool = False, seed: int = SEED) -> int:
    """Write ``rows`` sensor readings as CSV to ``path``; returns the file size in bytes.

    Columns follow the ``sensor_readings`` contract: ``ts`` (ISO-8601, UTC, ``Z`` suffix),
    ``sensor_id`` (4 to 8 distinct sensors), ``temp_c``, ``humidity`` and ``status``. Every
    row satisfies the contract, so an ingest accepts all of them. Rows are in random time
    order (every batch touches every month) unless ``time_ordered``.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    sensors = pa.array([f"sensor-{i:02d}" for i in range(1, int(rng.integers(4, 9)) + 1)])
    seconds = rng.integers(SPAN_START, SPAN_END, size=rows, dtype=np.int64)
    if time_ordered:
        seconds.sort()
    ts = pc.strftime(pa.array(seconds, pa.timestamp("s", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    table = pa.table(
        {
            "ts": ts,
            "sensor_id": sensors.take(pa.array(rng.integers(0, len(sensors), size=rows))),
            "temp_c": np.round(np.clip(rng.normal(15.0, 10.0, size=rows), -90.0, 60.0), 2),
            "humidity": np.round(rng.uniform(0.0, 100.0, size=rows), 1),
            "status": pa.array(STATUSES).take(
                pa.array(rng.choice(len(STATUSES), size=rows, p=STATUS_WEIGHTS))
            ),
        }
    )
    pacsv.write_csv(table, str(path))
    return path.stat().st_size


# --------------------------------------------------------------------------- phases (child processes)

# Modules a phase imports lazily; imported before its clock starts, so neither timing counts imports.
COMMON_MODULES = ("pyarrow.csv", "pyiceberg.catalog.sql", "pyiceberg.io.pyarrow", "pyiceberg.table")
LAKE_MODULES = ("duckdb", "lakehouse.ingest.upload")


def warm_imports(modules: tuple[str, ...]) -> None:
    """Import ``modules`` now, so the measured phase does not pay for them."""
    for name in modules:
        importlib.import_module(name)


def phase_lake(settings: Settings) -> dict[str, Any]:
    """Ingest the uploaded object with Lake; returns timing and what the ingest reported."""
    from lakehouse.ingest.upload import ingest_object

    warm_imports(COMMON_MODULES + LAKE_MODULES)
    rss_imports = peak_rss_mib()
    started = time.perf_counter()
    report = ingest_object(settings, settings.landing_bucket, KEY)
    seconds = time.perf_counter() - started
    return {
        "rows": report.rows_accepted,
        "rows_quarantined": report.rows_quarantined,
        "seconds": seconds,
        "files_written": report.files_written,
        "rss_imports_mib": rss_imports,
    }


def phase_baseline(settings: Settings, csv_path: Path) -> dict[str, Any]:
    """Parse the local CSV with pyarrow and ``append`` it with pyiceberg into a fresh table."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from lakehouse.catalog import get_catalog
    from lakehouse.contracts.model import load_contract

    warm_imports(COMMON_MODULES)
    contract = load_contract(settings, DATASET)
    schema = contract.iceberg_schema()
    column_types = {
        "ts": pa.timestamp("us", tz="UTC"),
        "sensor_id": pa.string(),
        "temp_c": pa.float64(),
        "humidity": pa.float64(),
        "status": pa.string(),
    }
    rss_imports = peak_rss_mib()
    started = time.perf_counter()
    catalog = get_catalog(settings)
    table = catalog.create_table(
        f"{settings.namespace}.{BASELINE_TABLE}",
        schema=schema,
        partition_spec=contract.partition_spec(schema),
        properties=contract.table_properties(),
    )
    data = pacsv.read_csv(str(csv_path), convert_options=pacsv.ConvertOptions(column_types=column_types))
    # Required Iceberg fields need non-nullable Arrow fields: cast to the table's own schema.
    data = data.cast(table.schema().as_arrow())
    table.append(data)
    seconds = time.perf_counter() - started
    snapshot = table.current_snapshot()
    added = int(snapshot.summary["added-data-files"] or 0) if snapshot and snapshot.summary else 0
    return {
        "rows": data.num_rows,
        "rows_quarantined": 0,
        "seconds": seconds,
        "files_written": added,
        "rss_imports_mib": rss_imports,
    }


def run_phase(args: argparse.Namespace) -> None:
    """Child-process entry: run one phase and write its result (with peak RSS) as JSON."""
    settings = bench_settings(Path(args.home))
    if args.phase == "lake":
        result = phase_lake(settings)
    else:
        result = phase_baseline(settings, Path(args.csv))
    result["phase"] = args.phase
    result["seconds"] = round(result["seconds"], 3)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    result["ru_maxrss_mib"] = round(ru_maxrss_mib(), 1)
    result["rss_imports_mib"] = round(result["rss_imports_mib"], 1)
    Path(args.out).write_text(json.dumps(result))


def spawn_phase(phase: str, home: Path, csv_path: Path, out: Path) -> dict[str, Any]:
    """Run one phase in a fresh interpreter and return its result (passed back through ``out``)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phase",
        phase,
        "--home",
        str(home),
        "--csv",
        str(csv_path),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"bench phase {phase!r} failed (exit code {proc.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --------------------------------------------------------------------------- verification and report


def table_facts(settings: Settings, name: str) -> dict[str, int]:
    """Rows and data files of a table: from its planned files, and rows read back from the store."""
    from lakehouse.catalog import get_catalog, load_table

    table = load_table(get_catalog(settings), settings, name)
    tasks = list(table.scan().plan_files())
    rows_read = table.scan(selected_fields=("sensor_id",)).to_arrow().num_rows
    return {
        "data_files": len(tasks),
        "rows_planned": sum(t.file.record_count for t in tasks),
        "rows_read": rows_read,
    }


def render(result: dict[str, Any]) -> str:
    """The human-readable table."""
    lake, base = result["lake"], result["baseline"]
    order = "time-ordered" if result["time_ordered"] else "random order"
    lines = [
        f"Lake ingest bench: {result['rows']:,} rows of {DATASET} "
        f"({result['csv_bytes'] / 2**20:.1f} MiB CSV, {order}), "
        f"{result['batch_rows']:,} rows per batch"
        + (f", best of {result['repeat']} runs" if result["repeat"] > 1 else ""),
        "",
        f"{'':<22}{'rows/s':>12}{'seconds':>10}{'peak RSS MiB':>14}{'data files':>12}",
    ]
    for label, row in (("Lake ingest_object", lake), ("baseline append", base)):
        lines.append(
            f"{label:<22}{row['rows_per_second']:>12,.0f}{row['seconds']:>10.2f}"
            f"{row['peak_rss_mib']:>14.0f}{row['data_files']:>12,}"
        )
    lines += ["", f"ratio Lake/baseline (rows/s): {result['ratio']:.2f}"]
    return "\n".join(lines)


def run_round(
    settings: Settings, csv_path: Path, work: Path, rows: int, index: int
) -> dict[str, dict[str, Any]]:
    """Run both phases once into empty tables, then check that each table holds exactly ``rows`` rows."""
    results: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for phase, name in TABLES.items():
        res = spawn_phase(phase, settings.home, csv_path, work / f"{phase}-{index}.json")
        res.update(table_facts(settings, name))
        res["table"] = f"{settings.namespace}.{name}"
        for what in ("rows", "rows_planned", "rows_read"):
            if res[what] != rows:
                problems.append(f"{res['table']}: {what} = {res[what]:,}, expected {rows:,}")
        results[phase] = res
    if problems:
        raise SystemExit("row counts do not match:\n  " + "\n  ".join(problems))
    return results


def drop_tables(settings: Settings) -> None:
    """Drop the tables both phases write, so the next round starts from empty tables."""
    from pyiceberg.exceptions import NoSuchTableError

    from lakehouse.catalog import get_catalog
    from lakehouse.tables.write import QUARANTINE_SUFFIX

    catalog = get_catalog(settings)
    for name in (DATASET, DATASET + QUARANTINE_SUFFIX, BASELINE_TABLE):
        try:
            catalog.drop_table(f"{settings.namespace}.{name}")
        except NoSuchTableError:
            pass
    # The ledger outlives tables: forget the upload, or the next round would be a duplicate.
    from lakehouse.storage import list_objects, s3_client

    keys = [k for k, _ in list_objects(settings, settings.warehouse_bucket, f"_lake/ledger/{DATASET}/")]
    if keys:
        s3_client(settings).delete_objects(
            Bucket=settings.warehouse_bucket, Delete={"Objects": [{"Key": k} for k in keys]}
        )


def summarise(rounds: list[dict[str, dict[str, Any]]], phase: str, rows: int) -> dict[str, Any]:
    """One phase over every round: the fastest round's figures, the highest peak RSS, every time."""
    runs = [r[phase] for r in rounds]
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["seconds_all"] = [r["seconds"] for r in runs]
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    best["rows_per_second"] = round(rows / best["seconds"], 1) if best["seconds"] > 0 else 0.0
    return best


def run_bench(rows: int, time_ordered: bool = False, repeat: int = 1) -> dict[str, Any]:
    """Start a private stack, generate and upload the data, run and verify both phases, stop.

    With ``repeat`` above 1 both phases run that many times (into freshly dropped tables) and
    the fastest run of each counts.
    """
    from lakehouse.storage import s3_client

    with tempfile.TemporaryDirectory(prefix="lake-bench-") as tmp:
        work = Path(tmp)
        csv_path = work / "bench.csv"
        stack_settings = load_settings(home=work / "home", contracts_dir=CONTRACTS_DIR)
        localstack.up(stack_settings)
        try:
            settings = bench_settings(stack_settings.home)
            csv_bytes = generate_csv(csv_path, rows, time_ordered)
            s3_client(settings).upload_file(str(csv_path), settings.landing_bucket, KEY)
            rounds: list[dict[str, dict[str, Any]]] = []
            for index in range(repeat):
                if index:
                    drop_tables(settings)
                rounds.append(run_round(settings, csv_path, work, rows, index))
        finally:
            stop_stack(stack_settings)

    lake, base = summarise(rounds, "lake", rows), summarise(rounds, "baseline", rows)
    ratio = lake["rows_per_second"] / base["rows_per_second"] if base["rows_per_second"] else 0.0
    return {
        "rows": rows,
        "csv_bytes": csv_bytes,
        "time_ordered": time_ordered,
        "batch_rows": settings.batch_rows,
        "repeat": repeat,
        "lake": lake,
        "baseline": base,
        "ratio": round(ratio, 3),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Lake's ingest against a bare pyiceberg append of the same rows."
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate (default 1,000,000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run both phases this many times; the fastest run counts"
    )
    parser.add_argument(
        "--time-ordered",
        action="store_true",
        help="write the rows sorted by ts (default: random order, so every batch spans every month)",
    )
    # Internal: run one measured phase in this (fresh) process.
    parser.add_argument("--phase", choices=["lake", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.phase and not (args.home and args.csv and args.out):
        parser.error("--phase needs --home, --csv and --out")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench (or, with the internal ``--phase``, one measured phase)."""
    args = parse_args(argv)
    if args.phase:
        run_phase(args)
        return 0
    result = run_bench(args.rows, args.time_ordered, args.repeat)
    print(json.dumps(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
