"""Backfill bench: eight CSV objects loaded three ways in one run.

Usage::

    python bench/backfill.py [--rows 1000000] [--objects 8] [--json]

The bench starts its own local stack in a temporary ``LAKE_HOME``, uploads ``--objects`` CSV
objects of ``--rows`` sensor readings each (``bench/ingest.py``'s generator, one seed per
object) under three prefixes, one dataset each (the ``sensor_readings`` contract), and then
measures, each in a fresh interpreter:

* **function**: the baseline: ``lakehouse.ingest.upload.ingest_object`` on each object in turn,
  as eight upload events handled one after another by one function. Its peak RSS (``VmHWM``)
  is the memory of one function ingest.
* **native**: ``lake backfill`` on Daft's native runner (``LAKE_SCALE_WORKERS`` objects at once,
  threads of one process): the process's peak RSS, for all its workers and the driver.
* **ray**: ``lake backfill`` on a local Ray it starts (``num_cpus=2``; or the cluster of
  ``--ray-address``): the peak RSS of each Ray worker process on this machine (sampled from
  ``/proc``), and the driver's.

It prints rows/s of each, the ratios against the function path, the memory figures and the load
average before and after (the machine may be shared: read the ratios, not the absolute rates).
It exits 1 when a table does not hold every row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ingest import CONTRACTS_DIR, bench_settings, generate_csv, peak_rss_mib, stop_stack  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, load_settings  # noqa: E402

PHASES = ("function", "native", "ray")
DATASETS = {"function": "bench_function", "native": "bench_native", "ray": "bench_ray"}


def _contracts(work: Path) -> Path:
    """A contracts folder with one copy of ``sensor_readings`` per phase."""
    folder = work / "contracts"
    folder.mkdir()
    text = (CONTRACTS_DIR / "sensor_readings.yaml").read_text()
    for name in DATASETS.values():
        (folder / f"{name}.yaml").write_text(text.replace("name: sensor_readings", f"name: {name}", 1))
    return folder


def _settings(home: Path, contracts: Path) -> Settings:
    return bench_settings(home).model_copy(update={"contracts_dir": contracts})


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ray_workers_rss() -> dict[int, float]:
    """RSS in MiB of the Ray worker processes of this machine's user (``ray::`` in the title)."""
    found: dict[int, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read(200)
            if not title.startswith(b"ray::"):
                continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        found[int(pid)] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return found


def phase(name: str, settings: Settings, objects: int, ray_address: str | None = None) -> dict[str, Any]:
    """Run one phase in this process; its rows, seconds and memory."""
    dataset = DATASETS[name]
    uri = f"s3://{settings.landing_bucket}/{dataset}/"
    started = time.perf_counter()
    cpu = time.process_time()
    result: dict[str, Any] = {"phase": name}
    if name == "function":
        from lakehouse.ingest.upload import ingest_object

        rows = 0
        for i in range(objects):
            report = ingest_object(
                settings, settings.landing_bucket, f"{dataset}/part-{i}.csv", mode="inline"
            )
            rows += report.rows_read
        result["rows"] = rows
    else:
        from lakehouse.scale.backfill import backfill as run_backfill

        peaks: dict[int, float] = {}
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                for pid, rss in _ray_workers_rss().items():
                    peaks[pid] = max(peaks.get(pid, 0.0), rss)

        sampler = threading.Thread(target=sample, daemon=True)
        if name == "ray":
            sampler.start()
        try:
            done = run_backfill(
                settings, dataset, uri, runner=name, ray_address=ray_address if name == "ray" else None
            )
        finally:
            stop.set()
        result["rows"] = done.rows_read
        result["runner"] = done.runner
        if peaks:
            result["ray_worker_peak_rss_mib"] = round(max(peaks.values()), 1)
            result["ray_workers"] = len(peaks)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["rows_per_second"] = round(result["rows"] / result["seconds"], 1)
    # Cores this process kept busy on average (a Ray phase's workers are other processes).
    result["cores_busy"] = round((time.process_time() - cpu) / result["seconds"], 2)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return result


def spawn(
    name: str, home: Path, contracts: Path, objects: int, out: Path, ray_address: str | None
) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--home", str(home)]
    cmd += ["--contracts", str(contracts), "--objects", str(objects), "--out", str(out)]
    if ray_address:
        cmd += ["--ray-address", ray_address]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"bench phase {name!r} failed (exit code {proc.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def table_rows(settings: Settings, dataset: str) -> int:
    from lakehouse.catalog import get_catalog

    table = get_catalog(settings).load_table(f"{settings.namespace}.{dataset}")
    snap = table.current_snapshot()
    return 0 if snap is None or snap.summary is None else int(snap.summary.get("total-records") or 0)


def run_bench(
    rows: int, objects: int, ray_address: str | None = None, phases: tuple[str, ...] = PHASES
) -> dict[str, Any]:
    from lakehouse.storage import s3_client

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="lake-bench-backfill-") as tmp:
        work = Path(tmp)
        contracts = _contracts(work)
        stack_settings = load_settings(home=work / "home", contracts_dir=contracts)
        endpoint = int(localstack.up(stack_settings)["pid"])
        try:
            settings = _settings(stack_settings.home, contracts)
            s3 = s3_client(settings)
            csv_bytes = 0
            for i in range(objects):
                path = work / f"part-{i}.csv"
                csv_bytes += generate_csv(path, rows, seed=20250101 + i)
                for dataset in DATASETS.values():
                    s3.upload_file(str(path), settings.landing_bucket, f"{dataset}/part-{i}.csv")
                path.unlink()
            results = {}
            for name in phases:
                before = _cpu_seconds(endpoint)
                results[name] = spawn(
                    name, stack_settings.home, contracts, objects, work / f"{name}.json", ray_address
                )
                # The local S3 endpoint is a process of its own: the cores it kept busy meanwhile.
                used = _cpu_seconds(endpoint) - before
                results[name]["endpoint_cores_busy"] = round(used / results[name]["seconds"], 2)
            held = {name: table_rows(settings, DATASETS[name]) for name in phases}
        finally:
            stop_stack(stack_settings)
            shutil.rmtree(work / "home", ignore_errors=True)
    base = results["function"]["rows_per_second"] if "function" in results else 0.0
    base = base or 1.0
    return {
        "objects": objects,
        "rows_per_object": rows,
        "csv_bytes": csv_bytes,
        "scale_workers": settings.scale_workers,
        "phases": results,
        "table_rows": held,
        "complete": all(n == rows * objects for n in held.values()),
        **{
            f"{name}_vs_function": round(results[name]["rows_per_second"] / base, 3)
            for name in ("native", "ray")
            if name in results
        },
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def render(r: dict[str, Any]) -> str:
    p = r["phases"]
    lines = [
        f"backfill bench: {r['objects']} objects x {r['rows_per_object']:,} rows "
        f"({r['csv_bytes'] / 2**20:,.0f} MiB of CSV), LAKE_SCALE_WORKERS={r['scale_workers']}",
        f"  function, one object after another: {p['function']['rows_per_second']:>12,.0f} rows/s  "
        f"peak RSS {p['function']['peak_rss_mib']:,.0f} MiB (one function ingest), "
        f"{p['function']['cores_busy']:.2f} of {os.cpu_count()} cores busy "
        f"(+{p['function']['endpoint_cores_busy']:.2f} by the local S3 endpoint)",
    ]
    if "native" in p:
        lines.append(
            f"  backfill, Daft native runner:       {p['native']['rows_per_second']:>12,.0f} rows/s  "
            f"{r['native_vs_function']:.2f}x  peak RSS {p['native']['peak_rss_mib']:,.0f} MiB "
            f"(driver + workers, one process), {p['native']['cores_busy']:.2f} cores busy "
            f"(+{p['native']['endpoint_cores_busy']:.2f} by the endpoint)"
        )
    if "ray" in p:
        lines.append(
            f"  backfill, {'local Ray (2 CPUs)' if 'local' in p['ray']['runner'] else 'Ray cluster':19s}"
            f"{p['ray']['rows_per_second']:>12,.0f} rows/s  "
            f"{r['ray_vs_function']:.2f}x  driver {p['ray']['peak_rss_mib']:,.0f} MiB, largest worker "
            f"{p['ray'].get('ray_worker_peak_rss_mib', 0):,.0f} MiB"
        )
    lines += [
        f"  every row held: {r['complete']} ({r['table_rows']})",
        f"  load average before {r['load_before']}, after {r['load_after']} (a shared machine skews rates)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Backfill on Daft (native, Ray) against sequential ingests.")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows per object (default 1,000,000)")
    p.add_argument("--objects", type=int, default=8)
    p.add_argument("--ray-address", help="run the Ray phase on this cluster instead of a local Ray it starts")
    p.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="comma-separated subset of function,native,ray (default: all three; function is the baseline)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument("--home", help=argparse.SUPPRESS)
    p.add_argument("--contracts", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        settings = _settings(Path(args.home), Path(args.contracts))
        Path(args.out).write_text(json.dumps(phase(args.phase, settings, args.objects, args.ray_address)))
        return 0
    phases = tuple(name for name in PHASES if name in args.phases.split(","))
    if "function" not in phases:
        p.error("--phases must include function (the baseline)")
    result = run_bench(args.rows, args.objects, args.ray_address, phases)
    print(json.dumps(result) if args.json else render(result), flush=True)
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
