"""Vector search bench: Lake's ANN search in process and ``POST /search`` over HTTP, against exact numpy.

Usage::

    python bench/vectors.py [--rows N] [--dim D] [--queries Q] [--min-rows M] [--no-http] [--json]

Sizes default to ``LAKE_BENCH_VECTORS_ROWS`` / ``_DIM`` / ``_QUERIES`` from the environment,
else 200,000 x 384 and 1,000 queries.

The bench generates ``N`` clustered, unit-length vectors (a fixed seed; a few hundred
centroids, each cluster spread along its own 16-dimensional subspace plus isotropic noise,
like sentence embeddings) and ``Q`` held-out query vectors from the same distribution. It
starts its own local stack in a temporary ``LAKE_HOME`` and loads the vectors as users do: a
contract whose ``vectors:`` section takes a supplied ``emb`` column, and a Parquet upload
(``ts``, ``n`` the row number, ``emb``) delivered by Lake's ingest, so the dataset has an Iceberg
table and a Lance dataset. ``lake maintain``'s ``vectors`` job then builds and stores the index
when the size reaches ``--min-rows`` (default :data:`lakehouse.vectors.ann.INDEX_MIN_ROWS`);
below it every vector is scored exactly.

The same held-out queries are answered one at a time, interleaved in chunks, so load from other
processes on the machine falls on every side alike:

* **numpy (exact)**: ``scores = X @ q`` and ``argpartition``; this is also the ground truth;
* **Lake in process**: :func:`lakehouse.vectors.ann.resident` of the version the table's snapshot
  records, and ``Resident.search(q, 10)`` (goal: >= 10x numpy's queries per second);
* **POST /search over HTTP**: a warm ``lake serve`` (API keys required), ``mode: vector``,
  ``k: 10``, the query vector supplied, through :class:`lake.client.LakeClient`; the answer's
  rows (the table's, joined) carry ``n`` (goal: >= 2x numpy's queries per second).

Printed: rows, dim, ingest seconds, index kind and parameters, build seconds, the first search's
set-up seconds (in process, over HTTP), recall@10 (mean over queries, against the exact top 10)
and queries per second of each side, the ratios to numpy, whether each goal (recall@10 >= 0.95
at the ratio) is met, where one warm ``POST /search`` spends its milliseconds (see
:func:`breakdown`), and the load average. ``--no-http`` skips the HTTP side.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest import CONTRACTS_DIR, bench_settings, stop_stack  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, get_settings, load_settings  # noqa: E402
from lakehouse.vectors import ann  # noqa: E402

if TYPE_CHECKING:
    from lake.client import LakeClient

SEED = 20250101
K = 10
METRIC = "cosine"
GOAL_RECALL = 0.95
GOAL_RATIO = 10.0  # Resident.search in process against numpy
GOAL_HTTP_RATIO = 2.0  # POST /search over HTTP against numpy
CHUNK = 50  # queries per interleaved chunk
BREAKDOWN_QUERIES = 50  # queries (at most) timed stage by stage for the breakdown
DATASET = "bench_vectors"
CONTRACT = """
name: {name}
event_time: ts
columns:
  ts: {{type: timestamp, required: true}}
  n: {{type: long, required: true}}
vectors:
  embedding: emb
  embedder: supplied
  dim: {dim}
  metric: {metric}
  index_min_rows: {min_rows}
"""


# --------------------------------------------------------------------------- data


def generate(rows: int, dim: int, queries: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` data vectors and ``queries`` held-out query vectors, float32, unit length.

    A mixture of clusters (about one per 400 rows, 8 to 500): each point is its cluster's
    centroid plus a Gaussian spread along a 16-dimensional subspace of that cluster (scale
    0.4-0.9, per cluster) plus isotropic noise, then normalised. Queries come from the same
    mixture but are not in the data.
    """
    rng = np.random.default_rng(seed)
    clusters = max(8, min(500, rows // 400))
    sub = min(16, dim)
    centroids = rng.standard_normal((clusters, dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    bases = (rng.standard_normal((clusters, sub, dim)) / np.sqrt(dim)).astype(np.float32)
    spread = rng.uniform(0.4, 0.9, size=clusters).astype(np.float32)
    total = rows + queries
    labels = rng.integers(0, clusters, size=total)
    out = np.empty((total, dim), np.float32)
    step = 20_000
    for start in range(0, total, step):
        lab = labels[start : start + step]
        z = rng.standard_normal((len(lab), sub)).astype(np.float32)
        low = np.einsum("ns,nsd->nd", z, bases[lab])
        iso = rng.standard_normal((len(lab), dim)).astype(np.float32) * np.float32(0.35 / np.sqrt(dim))
        out[start : start + step] = centroids[lab] + spread[lab, None] * low + iso
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out[:rows], out[rows:]


def ingest(settings: Settings, folder: Path, vectors: np.ndarray, min_rows: int) -> dict[str, Any]:
    """The vectors as users load them: a contract with a supplied vector column, and a Parquet
    upload (``ts``, spread over three months; ``n``, the row number; ``emb``, the vector)
    delivered by Lake's ingest. Returns the load's seconds and rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.query import ingest_file

    rows, dim = vectors.shape
    (settings.contracts_dir / f"{DATASET}.yaml").write_text(
        CONTRACT.format(name=DATASET, dim=dim, metric=METRIC, min_rows=min_rows)
    )
    path = folder / f"{DATASET}.parquet"
    first = np.datetime64("2025-01-01T00:00:00", "s")
    data = pa.table(
        {
            "ts": pa.array(first + np.arange(rows) * (90 * 86_400 // rows), pa.timestamp("s", "UTC")),
            "n": pa.array(np.arange(rows, dtype=np.int64)),
            "emb": pa.ListArray.from_arrays(
                pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32)), pa.array(vectors.reshape(-1))
            ),
        }
    )
    pq.write_table(data, path, row_group_size=20_000)
    started = time.perf_counter()
    report = ingest_file(settings, DATASET, path)
    path.unlink()
    if report.get("rows_accepted") != rows:
        raise SystemExit(f"ingest accepted {report.get('rows_accepted')} of {rows} rows: {report}")
    return {"seconds": round(time.perf_counter() - started, 3), "rows": rows}


def maintain(settings: Settings, rows: int, threshold: int) -> dict[str, Any]:
    """``lake maintain``'s vectors job for the dataset: it builds and stores the index."""
    from lakehouse.maintenance import MaintenanceOptions, run_maintenance

    started = time.perf_counter()
    report = run_maintenance(
        settings, MaintenanceOptions(jobs=("vectors",), tables=(f"{settings.namespace}.{DATASET}",))
    )
    seconds = time.perf_counter() - started
    mine = [r for r in report["jobs"]["vectors"] if r.get("dataset") == DATASET]
    if not mine or "error" in mine[0]:
        raise SystemExit(f"the vectors job failed: {mine}")
    index: dict[str, Any] | None = mine[0].get("index")
    if index is None:
        if rows >= threshold:
            raise SystemExit(f"the vectors job built no index over {rows} rows: {mine[0]}")
        index = {"kind": f"none (every vector scored below {threshold:,} rows)", "params": {}, "seconds": 0.0}
    index["maintain_seconds"] = round(seconds, 3)
    index["index_min_rows"] = threshold
    return index


def row_numbers(settings: Settings) -> dict[str, int]:
    """Each row's ``_row_id`` in the table, to its row number ``n``."""
    from lakehouse.catalog import get_catalog

    table = get_catalog(settings).load_table(f"{settings.namespace}.{DATASET}")
    found = table.scan(selected_fields=("_row_id", "n")).to_arrow()
    return dict(zip(found["_row_id"].to_pylist(), found["n"].to_pylist(), strict=True))


def searched_version(settings: Settings) -> Any:
    """The dataset's Lance table (local copy) checked out at the version its current snapshot records."""
    from lakehouse.catalog import get_catalog
    from lakehouse.vectors.store import lance_version_at, local_copy

    table = get_catalog(settings).load_table(f"{settings.namespace}.{DATASET}")
    snapshot = table.current_snapshot()
    version = lance_version_at(table, snapshot.snapshot_id if snapshot is not None else None)
    lance = local_copy(settings, DATASET)
    if lance is None or version is None:
        raise SystemExit("the dataset has no Lance data")
    if version < lance.version:
        lance.checkout(version)
    return lance


# --------------------------------------------------------------------------- searches


def numpy_one(data: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact top ``K`` row numbers for one query (best first)."""
    scores = data @ q
    top = np.argpartition(-scores, K)[:K]
    result: np.ndarray = top[np.argsort(-scores[top])]
    return result


def lake_one(resident: ann.Resident, numbers: dict[str, int], q: np.ndarray) -> list[int]:
    """Lake's top ``K`` row numbers for one query, in process."""
    return [numbers[row_id] for row_id, _ in resident.search(q, K)]


def http_one(client: LakeClient, q: np.ndarray) -> tuple[list[int], float]:
    """``POST /search`` for one query: the row numbers of its ``K`` rows, and its ``elapsed_ms``."""
    response = client.search(DATASET, vector=q.tolist(), k=K, mode="vector")
    if response.status != 200:
        raise SystemExit(f"POST /search answered {response.status}: {response.body}")
    at = response.body["columns"].index("n")
    return [int(row[at]) for row in response.body["rows"]], float(response.body["elapsed_ms"])


def recall(found: Sequence[Any], truth: np.ndarray) -> float:
    """Mean share of the exact top ``K`` that was found."""
    hits = [len(set(map(int, f)) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) if hits else 0.0


def timed(
    data: np.ndarray,
    resident: ann.Resident,
    numbers: dict[str, int],
    client: LakeClient | None,
    queries: np.ndarray,
) -> dict[str, Any]:
    """numpy, Lake in process and ``POST /search`` (without ``client``, not), one query at a time,
    interleaved in chunks; numpy's answers are the truth."""
    truth = np.empty((len(queries), K), dtype=np.int64)
    found: list[list[int]] = []
    over_http: list[list[int]] = []
    round_trips: list[float] = []
    engine: list[float] = []
    t_np = t_lake = 0.0
    for start in range(0, len(queries), CHUNK):
        chunk = queries[start : start + CHUNK]
        t0 = time.perf_counter()
        for i, q in enumerate(chunk):
            truth[start + i] = numpy_one(data, q)
        t1 = time.perf_counter()
        found.extend(lake_one(resident, numbers, q) for q in chunk)
        t2 = time.perf_counter()
        t_np += t1 - t0
        t_lake += t2 - t1
        for q in chunk if client is not None else ():
            sent = time.perf_counter()
            rows, elapsed_ms = http_one(client, q)
            round_trips.append(time.perf_counter() - sent)
            engine.append(elapsed_ms)
            over_http.append(rows)
    n = len(queries)
    numpy_qps = n / t_np
    single: dict[str, Any] = {"recall": recall(found, truth), "numpy_qps": numpy_qps, "lake_qps": n / t_lake}
    single["ratio"] = single["lake_qps"] / numpy_qps
    single["goal_met"] = bool(single["recall"] >= GOAL_RECALL and single["ratio"] >= GOAL_RATIO)
    _rounded(single)
    if client is None:
        return {"single": single, "http": None}
    http_qps = n / sum(round_trips)
    http: dict[str, Any] = {
        "recall": recall(over_http, truth),
        "numpy_qps": numpy_qps,
        "http_qps": http_qps,
        "ratio": http_qps / numpy_qps,
        "median_ms": statistics.median(round_trips) * 1000,
        "median_engine_ms": statistics.median(engine),
    }
    http["goal_met"] = bool(http["recall"] >= GOAL_RECALL and http["ratio"] >= GOAL_HTTP_RATIO)
    return {"single": single, "http": _rounded(http)}


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    for key, value in figures.items():
        if isinstance(value, float):
            figures[key] = round(value, 2 if key.endswith(("qps", "ms")) else 4)
    return figures


def breakdown(url: str, key: str, queries: np.ndarray) -> dict[str, float]:
    """Where one warm ``POST /search`` spends its milliseconds (medians over ``queries``).

    ``http_total``: the client's round trip to ``lake serve``, the queries one after another.
    Then the same requests are answered in this process, on the same stack and data, by the
    query function's handler (``handler``), whose search's own stage timings
    (:data:`lakehouse.query.search.STAGES`) are read from its result; the key check (``auth``)
    and the response's JSON encoding (``json``) are timed apart. ``routing_and_validation`` is
    the handler's time outside those (per request), ``http_and_client`` the round trip's median
    beyond the handler's (HTTP, the WSGI server, the client's JSON).
    """
    import lakehouse.query.search as engine
    from functions.query.common import dumps
    from functions.query.handler import lambda_handler
    from lake.client import LakeClient
    from lake.local.events import LambdaContext, function_url_event
    from lakehouse.access.auth import authenticate
    from lakehouse.duck import with_id_strings

    client = LakeClient(url, key=key)
    headers = {"authorization": f"Bearer {key}"}
    served = get_settings()
    samples: dict[str, list[float]] = {}
    answered: list[Any] = []
    original = engine.search

    def recorded(*args: Any, **kwargs: Any) -> Any:
        answered.append(original(*args, **kwargs))
        return answered[-1]

    def note(name: str, ms: float) -> None:
        samples.setdefault(name, []).append(ms)

    for q in queries:  # first the server alone: this process's own searches leave threads spinning
        started = time.perf_counter()
        http_one(client, q)
        note("http_total", (time.perf_counter() - started) * 1000)
    engine.search = recorded  # the handler looks it up on every request
    try:
        for q in queries:
            event = function_url_event(
                "POST",
                "/search",
                {"dataset": DATASET, "vector": q.tolist(), "k": K, "mode": "vector"},
                None,
                headers,
            )
            answered.clear()
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the handler's metrics, printed as on Lambda
                answer = lambda_handler(event, cast(Any, LambdaContext("lake-query", timeout_seconds=60)))
            handler = (time.perf_counter() - started) * 1000
            if answer.get("statusCode") != 200 or len(answered) != 1:
                raise SystemExit(f"the query function answered {answer}")
            result = answered[0]
            started = time.perf_counter()
            authenticate(served, headers)
            auth = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            dumps(with_id_strings(result.to_dict()))
            encode = (time.perf_counter() - started) * 1000
            search_ms = sum(result.timings.values())
            note("handler", handler)
            note("auth", auth)
            note("json", encode)
            note("search", search_ms)
            note("routing_and_validation", max(0.0, handler - search_ms - auth - encode))
            for stage in engine.STAGES:
                note(stage, result.timings.get(stage, 0.0))
    finally:
        engine.search = original
    out = {name: statistics.median(values) for name, values in samples.items()}
    out["http_and_client"] = max(0.0, out["http_total"] - out["handler"])
    return {name: round(value, 2) for name, value in out.items()}


# --------------------------------------------------------------------------- run and report


def _serving_environment(home: Path, contracts: Path) -> None:
    """This process's ``LAKE_*`` environment as ``lake serve``'s: the handler measured in
    process reads the same settings as the server."""
    for name in list(os.environ):
        if name.startswith("LAKE_") and not name.startswith("LAKE_BENCH_"):
            del os.environ[name]
    os.environ.update(
        {
            "LAKE_HOME": str(home),
            "LAKE_CONTRACTS_DIR": str(contracts),
            "LAKE_LOG_LEVEL": "WARNING",
            "LAKE_QUERY_CACHE": "false",
            "LAKE_AUTH": "keys",  # as `lake serve` runs
        }
    )
    get_settings.cache_clear()


def run_bench(
    rows: int, dim: int, queries: int, min_rows: int | None = None, http: bool = True
) -> dict[str, Any]:
    """Generate, ingest, index, search three ways (without ``http``, two) and compare; returns
    the figures.

    The index is built when ``rows`` reaches ``min_rows`` (default
    :data:`lakehouse.vectors.ann.INDEX_MIN_ROWS`).
    """
    import shutil

    from bench.query import start_serve
    from lake.client import LakeClient
    from lakehouse.access.auth import create_key

    threshold = ann.INDEX_MIN_ROWS if min_rows is None else min_rows
    load_before = os.getloadavg()
    data, qs = generate(rows, dim, queries)
    with tempfile.TemporaryDirectory(prefix="lake-bench-vectors-") as tmp:
        home = Path(tmp) / "home"
        contracts = Path(tmp) / "contracts"
        shutil.copytree(CONTRACTS_DIR, contracts)
        _serving_environment(home, contracts)
        localstack.up(load_settings(home=home), owner_pid=os.getpid())
        settings: Settings = bench_settings(home).model_copy(update={"contracts_dir": contracts})
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the functions' metrics, as printed on Lambda
                loaded = ingest(settings, Path(tmp), data, threshold)
                index = maintain(settings, rows, threshold)
            numbers = row_numbers(settings)
            started = time.perf_counter()
            resident = ann.resident(settings, DATASET, searched_version(settings), METRIC)
            setup = time.perf_counter() - started
            served: dict[str, Any] = {}
            if not http:
                for q in qs[: min(20, len(qs))]:  # numpy's BLAS threads, the index's pages
                    numpy_one(data, q)
                    lake_one(resident, numbers, q)
                figures = timed(data, resident, numbers, None, qs)
            else:
                key = create_key(settings, "read", None, "bench")[0]
                proc, url, ready = start_serve(settings, home)
                try:
                    client = LakeClient(url, key=key)
                    started = time.perf_counter()
                    http_one(client, qs[0])  # the server's first search loads the index
                    served["serve_ready_seconds"] = round(ready, 3)
                    served["first_http_search_seconds"] = round(time.perf_counter() - started, 3)
                    for q in qs[: min(20, len(qs))]:  # numpy's BLAS threads, the index's pages
                        numpy_one(data, q)
                        lake_one(resident, numbers, q)
                        http_one(client, q)
                    figures = timed(data, resident, numbers, client, qs)
                    served["breakdown_ms"] = breakdown(url, key, qs[: min(BREAKDOWN_QUERIES, len(qs))])
                finally:
                    proc.terminate()
                    proc.wait(10)
        finally:
            stop_stack(settings)
    load_after = os.getloadavg()
    single, over_http = figures["single"], figures["http"]
    return {
        "rows": rows,
        "dim": dim,
        "queries": queries,
        "metric": METRIC,
        "ingest": loaded,
        "index": index,
        "first_search_setup_seconds": round(setup, 3),
        "serve_ready_seconds": served.get("serve_ready_seconds"),
        "first_http_search_seconds": served.get("first_http_search_seconds"),
        "single": single,
        "http": over_http,
        "breakdown_ms": served.get("breakdown_ms"),
        "goal": {"recall": GOAL_RECALL, "ratio": GOAL_RATIO, "http_ratio": GOAL_HTTP_RATIO},
        "goal_met": bool(single["goal_met"] and (over_http is None or over_http["goal_met"])),
        "load_average": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "cpus": os.cpu_count(),
    }


BREAKDOWN_LABELS = (
    ("http_and_client", "HTTP, WSGI server, client JSON (round trip outside the handler)"),
    ("routing_and_validation", "routing, body validation, audit (handler outside the rest)"),
    ("auth", "API key check"),
    ("request", "contract, request checks, query vector"),
    ("snapshot", "table and snapshot, its Lance version"),
    ("lance", "Lance files: listing, local copy, checkout"),
    ("resident", "index listing, version's row-id checks"),
    ("candidates", "ANN search"),
    ("join", "join to the table (rows by id; DuckDB for a filter)"),
    ("rows", "rows as Python values"),
    ("json", "JSON encoding of the response"),
)


def render(result: dict[str, Any]) -> str:
    """The human-readable report."""
    index, single, http, spent = result["index"], result["single"], result["http"], result["breakdown_ms"]
    params = ", ".join(f"{k}={v}" for k, v in index.get("params", {}).items()) or "-"
    load = result["load_average"]
    lines = [
        f"Lake vector bench: {result['rows']:,} rows x {result['dim']} dims, "
        f"{result['queries']:,} held-out queries, {result['metric']}, recall@{K} against exact numpy",
        f"ingested in {result['ingest']['seconds']:.1f} s; index: {index['kind']} ({params}); "
        f"built and stored in {index['seconds']:.1f} s (vectors job {index['maintain_seconds']:.1f} s); "
        f"first search set up in {result['first_search_setup_seconds']:.2f} s in process"
        + (f", {result['first_http_search_seconds']:.2f} s over HTTP" if http else ""),
        "",
        f"{'one query at a time':<24}{'recall@10':>10}{'numpy q/s':>12}{'Lake q/s':>12}{'ratio':>8}"
        f"{'goal':>8}{'met':>5}",
        f"{'Resident.search':<24}{single['recall']:>10.3f}{single['numpy_qps']:>12,.1f}"
        f"{single['lake_qps']:>12,.1f}{single['ratio']:>8.2f}{GOAL_RATIO:>7.0f}x"
        f"{'yes' if single['goal_met'] else 'no':>5}",
    ]
    if http is not None:
        lines.append(
            f"{'POST /search over HTTP':<24}{http['recall']:>10.3f}{http['numpy_qps']:>12,.1f}"
            f"{http['http_qps']:>12,.1f}{http['ratio']:>8.2f}{GOAL_HTTP_RATIO:>7.0f}x"
            f"{'yes' if http['goal_met'] else 'no':>5}"
        )
    lines += [
        f"goal: recall@{K} >= {GOAL_RECALL} at the ratio shown; goal met: "
        f"{'yes' if result['goal_met'] else 'no'}",
    ]
    if http is not None and spent is not None:
        lines += [
            "",
            f"one warm POST /search: {http['median_ms']:.2f} ms median round trip "
            f"(the response's elapsed_ms {http['median_engine_ms']:.2f}); where the time goes "
            f"(medians over {min(BREAKDOWN_QUERIES, result['queries'])} queries, ms):",
        ]
        lines += [f"  {label:<64}{spent.get(name, 0.0):>8.2f}" for name, label in BREAKDOWN_LABELS]
        lines.append(
            f"  {'(medians of that sample: round trip, handler, search)':<64}"
            f"{spent['http_total']:>8.2f}{spent['handler']:>8.2f}{spent['search']:>8.2f}"
        )
    lines += [
        "",
        f"load average {load['before']} -> {load['after']} on {result['cpus']} CPUs "
        "(the sides ran interleaved, so load falls on all alike)",
    ]
    return "\n".join(lines)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark Lake's ANN search against exact numpy search.")
    parser.add_argument("--rows", type=int, default=_env_int("LAKE_BENCH_VECTORS_ROWS", 200_000))
    parser.add_argument("--dim", type=int, default=_env_int("LAKE_BENCH_VECTORS_DIM", 384))
    parser.add_argument("--queries", type=int, default=_env_int("LAKE_BENCH_VECTORS_QUERIES", 1_000))
    parser.add_argument(
        "--min-rows",
        type=int,
        default=None,
        help="build the index from this many rows (default: lakehouse.vectors.ann.INDEX_MIN_ROWS)",
    )
    parser.add_argument(
        "--no-http", action="store_true", help="skip POST /search over HTTP (no `lake serve`)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.rows <= K or args.dim < 2 or args.queries < 1:
        parser.error(f"need --rows > {K}, --dim >= 2 and --queries >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print the report."""
    args = parse_args(argv)
    result = run_bench(args.rows, args.dim, args.queries, args.min_rows, not args.no_http)
    print(json.dumps(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
