"""Small-uploads benchmark: a stream of 100-row CSV uploads (readings of one month, as an app or a
device fleet sends them) into one table, through Lake's staged writers and one committer, next
to the same stream through DuckLake.

Usage::

    python bench/small_uploads.py [--seconds 300] [--writers 1,8] [--rows 100] [--interval 2] [--json]

The bench starts its own local stack in a temporary ``LAKE_HOME``. For each writer count it runs
that many writer processes (forked from a server that has imported Lake once) for ``--seconds``:
each uploads a CSV of ``--rows`` rows to the landing bucket and runs the ingest function's work
on it (``ingest_object`` in ``staged`` mode: read that version, validate, write data files, stage
a commit request). One committer thread
(:class:`lakehouse.tables.committer.Committer`, ``LAKE_COMMIT_INTERVAL_SECONDS`` = ``--interval``)
commits the table. Printed per writer count:

* uploads/s committed (uploads over the time from the first upload to the last commit);
* p50/p95 upload-to-queryable latency: from the start of the upload's PUT to the ledger entry
  the committer writes right after the snapshot that holds it;
* snapshots made (committer batches), metadata.json size at the end;
* a batch's mean size and its seconds per step (``BatchResult.phases``: reading the requests,
  ledger claims, coalescing, the commits, ledger settles, deleting the requests, expiry);
* per-upload cost at the 100th and the last upload (5,000th in a five-minute run with 8 writers):
  the writer's seconds for the upload (median of the 21 uploads around it) plus the committer's
  seconds per upload of the batch that committed it;
* lost and duplicated uploads, from the rows read back (every upload's rows carry its tag).

The anchor: the same stream (one writer process per writer, each its own DuckDB connection,
``INSERT … SELECT * FROM read_csv('s3://…')`` of each uploaded object) into a DuckLake table
(``duckdb-extension-ducklake``, SQLite catalog, data files on the same S3 endpoint, data inlining
on). DuckLake's SQLite catalog takes one writer process at a time (a busy catalog fails a commit,
which is retried), so its 8-writer run measures that retry loop, as it would be deployed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/small_uploads.py` from the checkout
    sys.path.insert(0, str(REPO))

from bench.ingest import CONTRACTS_DIR, bench_settings, stop_stack  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, load_settings  # noqa: E402

DATASET = "sensor_readings"


# Writer processes come from a fork server that has imported Lake and DuckDB once; each writer
# still makes its own first upload (clients, catalog, DuckDB) before the clock starts.
PRELOAD = (
    "__main__",
    "lakehouse.ingest.upload",
    "lakehouse.tables.ledger",
    "lakehouse.query.engine",
    "duckdb",
)
_CONTEXT: Any = None
_START: Any = None  # in a writer process: the barrier every writer and the clock wait on


def writer_context() -> Any:
    """The multiprocessing context of the writer processes (one fork server per bench run)."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = mp.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(list(PRELOAD))
    return _CONTEXT


def _hold(start: Any) -> None:
    """Writer process initializer: keep the run's start barrier."""
    global _START
    _START = start


def batch_csv(tag: str, rows: int) -> bytes:
    lines = ["ts,sensor_id,temp_c,status"] + [
        f"2025-06-{1 + i % 28:02d}T{i % 24:02d}:00:00Z,{tag},{i % 40}.5,ok" for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------- Lake


def lake_writer(settings: Settings, writer: int, rows: int, seconds: float) -> list[dict[str, Any]]:
    """One writer process: upload and stage for ``seconds`` once every writer is ready."""
    from lakehouse.ingest.upload import ingest_object
    from lakehouse.storage import s3_client

    s3 = s3_client(settings)
    # Warm up (imports, catalog, DuckDB) with one upload before the clock starts; it counts as rows.
    warm = s3.put_object(
        Bucket=settings.landing_bucket,
        Key=f"{DATASET}/w{writer}/warm.csv",
        Body=batch_csv(f"w{writer}-warm", rows),
    )
    ingest_object(
        settings,
        settings.landing_bucket,
        f"{DATASET}/w{writer}/warm.csv",
        warm.get("VersionId"),
        etag=warm["ETag"],
        mode="staged",
    )
    _START.wait()
    until = time.time() + seconds
    done = []
    i = 0
    while time.time() < until:
        key = f"{DATASET}/w{writer}/{i:06d}.csv"
        started = time.time()
        put = s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=batch_csv(f"w{writer}-{i}", rows))
        t0 = time.perf_counter()
        ingest_object(
            settings, settings.landing_bucket, key, put.get("VersionId"), etag=put["ETag"], mode="staged"
        )
        done.append(
            {
                "key": key,
                "version": put.get("VersionId"),
                "started": started,
                "write_s": time.perf_counter() - t0,
            }
        )
        i += 1
    return done


def _committed_at(settings: Settings, uploads: list[dict[str, Any]]) -> None:
    """Each upload's commit time and batch, from the ledger (read in parallel)."""
    from lakehouse.tables.ledger import Ledger

    ledger = Ledger(settings, DATASET)

    def look(u: dict[str, Any]) -> None:
        entry = ledger.lookup(u["key"], u["version"])
        u["committed"] = None if entry is None else _epoch(entry.at)
        u["batch"] = None if entry is None else entry.batch

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(look, uploads))


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()


def _cost(uploads: list[dict[str, Any]], index: int, batch_seconds: dict[str, float]) -> float | None:
    """Seconds one upload costs around the ``index``-th (1-based) upload: its writer time plus its
    share of the committer's time for its batch (median of the 21 uploads around it)."""
    if not uploads:
        return None
    ordered = sorted(uploads, key=lambda u: u["started"])
    i = min(max(index - 1, 0), len(ordered) - 1)
    window = ordered[max(0, i - 10) : i + 11]
    return statistics.median(u["write_s"] + batch_seconds.get(u.get("batch") or "", 0.0) for u in window)


def run_lake(settings: Settings, writers: int, seconds: float, rows: int, interval: float) -> dict[str, Any]:
    from lakehouse.catalog import get_catalog
    from lakehouse.ingest.upload import ingest_object
    from lakehouse.storage import s3_client
    from lakehouse.tables.committer import BatchResult, Committer, pending_requests

    lake = settings.model_copy(update={"commit_interval_seconds": interval, "commit_mode": "staged"})
    # The tables exist before the clock starts (a first upload creates them).
    first = s3_client(lake).put_object(
        Bucket=lake.landing_bucket, Key=f"{DATASET}/first.csv", Body=batch_csv("first", rows)
    )
    ingest_object(
        lake,
        lake.landing_bucket,
        f"{DATASET}/first.csv",
        first.get("VersionId"),
        etag=first["ETag"],
        mode="inline",
    )
    table = get_catalog(lake).load_table(f"{lake.namespace}.{DATASET}")
    snapshots_before = len(table.metadata.snapshots)
    batches: list[BatchResult] = []
    lock = threading.Lock()

    def on_batch(result: BatchResult) -> None:
        with lock:
            batches.append(result)

    committer = Committer(lake, on_batch=on_batch)
    committer.start()
    context = writer_context()
    ready = context.Barrier(writers + 1)  # the clock starts when every writer has warmed up
    with ProcessPoolExecutor(writers, mp_context=context, initializer=_hold, initargs=(ready,)) as pool:
        futures = [pool.submit(lake_writer, lake, w, rows, seconds) for w in range(writers)]
        ready.wait()
        start = time.time()
        uploads = [u for f in futures for u in f.result()]
    deadline = time.monotonic() + 120 + 10 * interval
    while pending_requests(lake, DATASET) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(interval / 5)
    committer.stop_event.set()
    committer.join(60)
    _committed_at(lake, uploads)
    committed = [u for u in uploads if u["committed"] is not None]
    latencies = sorted(u["committed"] - u["started"] for u in committed)
    end = max((u["committed"] for u in committed), default=time.time())
    table.refresh()
    tags = Counter(table.scan(selected_fields=("sensor_id",)).to_arrow().column("sensor_id").to_pylist())
    expected = {f"w{u['key'].split('/')[1][1:]}-{int(u['key'].rsplit('/', 1)[1][:6])}" for u in uploads}
    expected |= {f"w{w}-warm" for w in range(writers)}
    lost = sum(1 for t in expected if tags.get(t, 0) == 0)
    duplicated = sum(1 for t in expected if tags.get(t, 0) > rows)
    batch_seconds = {b.batch: b.seconds / max(1, b.sources) for b in batches}
    made = [b for b in batches if b.sources]
    phases: dict[str, float] = {}
    for b in made:
        for name, value in b.phases.items():
            phases[name] = phases.get(name, 0.0) + value / len(made)
    meta_size = int(
        s3_client(lake).head_object(
            Bucket=lake.warehouse_bucket, Key=table.metadata_location.split("/", 3)[3]
        )["ContentLength"]
    )
    last = len(uploads)
    return {
        "writers": writers,
        "seconds": seconds,
        "uploads": len(uploads),
        "committed": len(committed),
        "uploads_per_second": round(len(committed) / max(end - start, 1e-9), 2),
        "latency_p50_s": round(_percentile(latencies, 50), 3),
        "latency_p95_s": round(_percentile(latencies, 95), 3),
        "snapshots_made": len(made),
        "sources_per_batch": round(sum(b.sources for b in made) / max(1, len(made)), 1),
        "batch_phases_s": {name: round(value, 3) for name, value in phases.items()},
        "snapshots_kept": len(table.metadata.snapshots),
        "snapshots_before": snapshots_before,
        "metadata_json_bytes": meta_size,
        "cost_at_100_s": _round(_cost(uploads, 100, batch_seconds)),
        "cost_at_last_s": _round(_cost(uploads, last, batch_seconds)),
        "last_upload": last,
        "lost": lost,
        "duplicated": duplicated,
        "committer_errors": committer.errors[:3],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    k = (len(values) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# --------------------------------------------------------------------------- DuckLake


def _ducklake(settings: Settings, catalog_path: str) -> Any:
    from urllib.parse import urlparse

    import duckdb

    from lakehouse.query.engine import extension_path

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("httpfs", "sqlite_scanner", "ducklake"):
        con.execute(f"LOAD '{extension_path(name)}'")
    url = urlparse(settings.s3_endpoint or "")
    con.execute(
        f"CREATE SECRET (TYPE s3, KEY_ID '{settings.access_key_id}', SECRET '{settings.secret_access_key}', "
        f"REGION '{settings.region}', ENDPOINT '{url.netloc}', USE_SSL false, URL_STYLE 'path')"
    )
    con.execute(
        f"ATTACH 'ducklake:sqlite:{catalog_path}' AS dl "
        f"(DATA_PATH 's3://{settings.warehouse_bucket}/ducklake/', DATA_INLINING_ROW_LIMIT 1000)"
    )
    return con


def ducklake_writer(
    settings: Settings, catalog_path: str, writer: int, rows: int, seconds: float
) -> list[dict[str, Any]]:
    from lakehouse.storage import s3_client

    s3 = s3_client(settings)
    con = _ducklake(settings, catalog_path)
    _START.wait()
    until = time.time() + seconds
    done = []
    i = 0
    while time.time() < until:
        key = f"ducklake/w{writer}/{i:06d}.csv"
        started = time.time()
        s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=batch_csv(f"w{writer}-{i}", rows))
        for attempt in range(100):
            try:
                con.execute(
                    f"INSERT INTO dl.readings SELECT * FROM read_csv('s3://{settings.landing_bucket}/{key}', "
                    "header=true, columns={'ts': 'TIMESTAMPTZ', 'sensor_id': 'VARCHAR', 'temp_c': 'DOUBLE', "
                    "'status': 'VARCHAR'})"
                )
                break
            except Exception as e:  # noqa: BLE001 - a busy SQLite catalog or a conflict: try again
                if attempt == 99:
                    raise RuntimeError(f"DuckLake insert kept failing: {e}") from e
                time.sleep(min(1.0, 0.01 * 2**attempt))
        done.append({"started": started, "committed": time.time()})
        i += 1
    con.close()
    return done


def run_ducklake(settings: Settings, writers: int, seconds: float, rows: int, work: Path) -> dict[str, Any]:
    catalog_path = str(work / f"ducklake-{writers}.sqlite")
    con = _ducklake(settings, catalog_path)
    con.execute("CREATE TABLE dl.readings (ts TIMESTAMPTZ, sensor_id VARCHAR, temp_c DOUBLE, status VARCHAR)")
    con.close()
    context = writer_context()
    ready = context.Barrier(writers + 1)
    with ProcessPoolExecutor(writers, mp_context=context, initializer=_hold, initargs=(ready,)) as pool:
        futures = [
            pool.submit(ducklake_writer, settings, catalog_path, w, rows, seconds) for w in range(writers)
        ]
        ready.wait()
        start = time.time()
        uploads = [u for f in futures for u in f.result()]
    end = max((u["committed"] for u in uploads), default=time.time())
    latencies = sorted(u["committed"] - u["started"] for u in uploads)
    con = _ducklake(settings, catalog_path)
    count = con.execute("SELECT count(*), count(DISTINCT sensor_id) FROM dl.readings").fetchone()
    snaps = con.execute("SELECT count(*) FROM dl.snapshots()").fetchone()
    con.close()
    return {
        "writers": writers,
        "uploads": len(uploads),
        "uploads_per_second": round(len(uploads) / max(end - start, 1e-9), 2),
        "latency_p50_s": round(_percentile(latencies, 50), 3),
        "latency_p95_s": round(_percentile(latencies, 95), 3),
        "rows": count[0] if count else 0,
        "lost_or_duplicated": (count[0] if count else 0) != len(uploads) * rows,
        "snapshots": snaps[0] if snaps else 0,
    }


# --------------------------------------------------------------------------- the run


def run_bench(seconds: float, writer_counts: list[int], rows: int, interval: float) -> dict[str, Any]:
    import os

    with tempfile.TemporaryDirectory(prefix="lake-small-") as tmp:
        work = Path(tmp)
        stack_settings = load_settings(home=work / "home", contracts_dir=CONTRACTS_DIR)
        localstack.up(stack_settings)
        try:
            settings = bench_settings(stack_settings.home)
            lake = []
            for writers in writer_counts:
                lake.append(run_lake(settings, writers, seconds, rows, interval))
                _reset(settings)
            ducklake = [run_ducklake(settings, writers, seconds, rows, work) for writers in writer_counts]
        finally:
            stop_stack(stack_settings)
    return {
        "seconds": seconds,
        "rows_per_upload": rows,
        "commit_interval_s": interval,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "lake": lake,
        "ducklake": ducklake,
    }


def _reset(settings: Settings) -> None:
    """Drop the dataset's tables and its ledger, so the next writer count starts afresh."""
    from lakehouse.catalog import get_catalog
    from lakehouse.storage import list_objects, s3_client

    catalog = get_catalog(settings)
    for name in (DATASET, f"{DATASET}__quarantine"):
        catalog.drop_table(f"{settings.namespace}.{name}")
    s3 = s3_client(settings)
    for prefix in (f"_lake/ledger/{DATASET}/", f"_lake/batches/{DATASET}/"):
        keys = [k for k, _ in list_objects(settings, settings.warehouse_bucket, prefix)]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(
                Bucket=settings.warehouse_bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]}
            )


def render(result: dict[str, Any]) -> str:
    lines = [
        f"small uploads: {result['rows_per_upload']} rows each, {result['seconds']:g} s per run, "
        f"commit interval {result['commit_interval_s']:g} s, load average "
        + ", ".join(f"{x:.2f}" for x in result["load_average"]),
        "",
        f"{'':10}{'writers':>8}{'uploads/s':>11}{'p50 s':>8}{'p95 s':>8}{'snapshots':>11}"
        f"{'meta KiB':>10}{'cost@100':>10}{'cost@last':>11}{'(last #)':>10}{'lost':>6}{'dup':>5}",
    ]
    for r in result["lake"]:
        lines.append(
            f"{'Lake':10}{r['writers']:>8}{r['uploads_per_second']:>11.2f}{r['latency_p50_s']:>8.2f}"
            f"{r['latency_p95_s']:>8.2f}{r['snapshots_made']:>11}{r['metadata_json_bytes'] / 1024:>10.1f}"
            f"{r['cost_at_100_s'] or 0:>10.4f}{r['cost_at_last_s'] or 0:>11.4f}{r['last_upload']:>10}"
            f"{r['lost']:>6}{r['duplicated']:>5}"
        )
    for r in result["ducklake"]:
        lines.append(
            f"{'DuckLake':10}{r['writers']:>8}{r['uploads_per_second']:>11.2f}{r['latency_p50_s']:>8.2f}"
            f"{r['latency_p95_s']:>8.2f}{r['snapshots']:>11}{'':>10}{'':>10}{'':>11}{'':>10}"
            f"{'yes' if r['lost_or_duplicated'] else 0:>6}"
        )
    for r in result["lake"]:
        steps = ", ".join(f"{name} {value:.2f}" for name, value in r["batch_phases_s"].items())
        lines.append(
            f"Lake {r['writers']} writer(s): a batch of {r['sources_per_batch']:g} uploads on average, "
            f"seconds per step: {steps}"
        )
    for r in result["lake"]:
        ratio = (r["cost_at_last_s"] or 0) / (r["cost_at_100_s"] or 1)
        lines.append(
            f"Lake {r['writers']} writer(s): cost at upload {r['last_upload']} / at upload 100 "
            f"= {ratio:.2f}; "
            f"p95 goal {2 * result['commit_interval_s'] + 2:g} s"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Many small uploads into one table: Lake and DuckLake.")
    parser.add_argument(
        "--seconds", type=float, default=300.0, help="seconds of uploads per run (default 300)"
    )
    parser.add_argument("--writers", default="1,8", help="writer counts, comma-separated (default 1,8)")
    parser.add_argument("--rows", type=int, default=100, help="rows per upload (default 100)")
    parser.add_argument("--interval", type=float, default=2.0, help="commit interval in seconds (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    args.writer_counts = [int(w) for w in args.writers.split(",") if w.strip()]
    if args.seconds <= 0 or not args.writer_counts or min(args.writer_counts) < 1 or args.rows < 1:
        parser.error("--seconds, --writers and --rows must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run_bench(args.seconds, args.writer_counts, args.rows, args.interval)
    print(json.dumps(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
