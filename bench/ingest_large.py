"""Bounded-memory ingest bench: a CSV many times larger than the memory Lake may use.

Usage::

    python bench/ingest_large.py [--gb 2.0] [--rss-limit-mib 512] [--json]

The bench starts its own local stack in a temporary ``LAKE_HOME``, generates a CSV of at least
``--gb`` GiB in the ``sensor_readings`` shape (in chunks of one million rows, so the generator
stays small too), uploads it, and then measures in fresh interpreters:

* **Lake**: ``lakehouse.ingest.upload.ingest_object`` on the uploaded object (streamed over the S3
  HTTP endpoint, validated, written as data files per batch, one commit). Its peak RSS is
  the phase process's own high-water mark (``VmHWM``). The phase runs with the ingest
  function's allocator environment (``template.yaml``: ``ARROW_DEFAULT_MEMORY_POOL=system``,
  ``MALLOC_ARENA_MAX=2``, ``MALLOC_MMAP_THRESHOLD_=131072``).
* **baseline**: a bare pyiceberg ``Table.append`` of the first one-million-row slice
  (``bench/ingest.py``'s baseline phase), the reference rows/s of the same machine and run.

It prints rows/s of both, their ratio, and Lake's peak RSS against ``--rss-limit-mib``; it
exits 1 when the table does not hold every row or the peak RSS is over the limit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ingest import (  # noqa: E402
    COMMON_MODULES,
    CONTRACTS_DIR,
    DATASET,
    LAKE_MODULES,
    bench_settings,
    generate_csv,
    peak_rss_mib,
    phase_baseline,
    stop_stack,
    warm_imports,
)
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, load_settings  # noqa: E402

KEY = f"{DATASET}/large.csv"
# The ingest function's allocator settings (template.yaml): Arrow on the system allocator, large
# buffers unmapped when freed, two malloc arenas. They must be set before the process starts.
ALLOCATOR_ENV = {
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": "131072",
}
CHUNK_ROWS = 1_000_000


def generate_large_csv(path: Path, target_bytes: int, chunk_rows: int, work: Path) -> tuple[int, int, Path]:
    """Append chunks of generated rows to ``path`` until it holds ``target_bytes``.

    Returns (bytes, rows, first chunk): the first chunk is the baseline's slice.
    """
    rows = 0
    first = work / "slice.csv"
    with path.open("wb") as out:
        seed = 1
        while out.tell() < target_bytes:
            chunk = work / "chunk.csv"
            generate_csv(chunk, chunk_rows, seed=seed)
            with chunk.open("rb") as src:
                if seed > 1:
                    src.readline()  # header once
                shutil.copyfileobj(src, out, 8 << 20)
            if seed == 1:
                chunk.replace(first)
            rows += chunk_rows
            seed += 1
        size = out.tell()
    return size, rows, first


def phase_lake(settings: Settings) -> dict[str, Any]:
    from lakehouse.ingest.upload import ingest_object

    warm_imports(COMMON_MODULES + LAKE_MODULES)
    started = time.perf_counter()
    report = ingest_object(settings, settings.landing_bucket, KEY)
    return {
        "rows": report.rows_accepted,
        "rows_quarantined": report.rows_quarantined,
        "seconds": time.perf_counter() - started,
        "files_written": report.files_written,
        "bytes_read": report.bytes_read,
    }


def run_phase(args: argparse.Namespace) -> None:
    settings = bench_settings(Path(args.home))
    result = phase_lake(settings) if args.phase == "lake" else phase_baseline(settings, Path(args.csv))
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    Path(args.out).write_text(json.dumps(result))


def spawn(phase: str, home: Path, csv: Path, out: Path) -> dict[str, Any]:
    import os
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--home", str(home)]
    cmd += ["--csv", str(csv), "--out", str(out)]
    env = {**os.environ, **ALLOCATOR_ENV} if phase == "lake" else None
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False, env=env)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"bench phase {phase!r} failed (exit code {proc.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def table_rows(settings: Settings) -> int:
    from lakehouse.catalog import get_catalog

    table = get_catalog(settings).load_table(f"{settings.namespace}.{DATASET}")
    return sum(t.file.record_count for t in table.scan().plan_files())


def run_bench(target_bytes: int, chunk_rows: int, rss_limit: float, workdir: str | None) -> dict[str, Any]:
    from lakehouse.storage import s3_client

    with tempfile.TemporaryDirectory(prefix="lake-bench-large-", dir=workdir) as tmp:
        work = Path(tmp)
        csv = work / "large.csv"
        stack = load_settings(home=work / "home", contracts_dir=CONTRACTS_DIR)
        localstack.up(stack)
        try:
            settings = bench_settings(stack.home)
            started = time.perf_counter()
            size, rows, first = generate_large_csv(csv, target_bytes, chunk_rows, work)
            generated = time.perf_counter() - started
            s3_client(settings).upload_file(str(csv), settings.landing_bucket, KEY)
            csv.unlink()  # the store has it now
            lake = spawn("lake", stack.home, first, work / "lake.json")
            stored = table_rows(settings)
            base = spawn("baseline", stack.home, first, work / "baseline.json")
        finally:
            stop_stack(stack)
    lake_rps = rows / lake["seconds"] if lake["seconds"] else 0.0
    base_rps = base["rows"] / base["seconds"] if base["seconds"] else 0.0
    return {
        "csv_bytes": size,
        "csv_gib": round(size / 2**30, 3),
        "rows": rows,
        "rows_stored": stored,
        "generate_seconds": round(generated, 1),
        "batch_rows": settings.batch_rows,
        "lake_seconds": round(lake["seconds"], 2),
        "lake_rows_per_second": round(lake_rps, 1),
        "lake_mib_per_second": round(size / 2**20 / lake["seconds"], 1) if lake["seconds"] else 0.0,
        "lake_peak_rss_mib": lake["peak_rss_mib"],
        "lake_files_written": lake["files_written"],
        "rss_limit_mib": rss_limit,
        "rss_ok": lake["peak_rss_mib"] < rss_limit,
        "lake_env": ALLOCATOR_ENV,
        "baseline_rows": base["rows"],
        "baseline_seconds": round(base["seconds"], 2),
        "baseline_rows_per_second": round(base_rps, 1),
        "baseline_peak_rss_mib": base["peak_rss_mib"],
        "ratio": round(lake_rps / base_rps, 3) if base_rps else 0.0,
    }


def render(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Large ingest: {r['csv_gib']:.2f} GiB CSV, {r['rows']:,} rows, "
            f"{r['batch_rows']:,} rows per batch",
            f"  Lake ingest_object  {r['lake_rows_per_second']:>12,.0f} rows/s  {r['lake_seconds']:>8.1f} s  "
            f"peak RSS {r['lake_peak_rss_mib']:,.0f} MiB (limit {r['rss_limit_mib']:,.0f}: "
            f"{'ok' if r['rss_ok'] else 'OVER'})",
            f"  baseline append     {r['baseline_rows_per_second']:>12,.0f} rows/s  "
            f"{r['baseline_seconds']:>8.1f} s  "
            f"({r['baseline_rows']:,}-row slice, peak RSS {r['baseline_peak_rss_mib']:,.0f} MiB)",
            f"  ratio Lake/baseline (rows/s): {r['ratio']:.2f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Ingest a CSV many times larger than memory; peak RSS and rows/s."
    )
    p.add_argument("--gb", type=float, default=2.0, help="CSV size in GiB (default 2)")
    p.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="rows per generated chunk")
    p.add_argument("--rss-limit-mib", type=float, default=512.0)
    p.add_argument("--workdir", help="where the CSV is generated (default: the system temp folder)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--phase", choices=["lake", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--home", help=argparse.SUPPRESS)
    p.add_argument("--csv", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        run_phase(args)
        return 0
    result = run_bench(int(args.gb * 2**30), args.chunk_rows, args.rss_limit_mib, args.workdir)
    print(json.dumps(result) if args.json else render(result))
    ok = result["rows_stored"] == result["rows"] and result["rss_ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
