"""Vector search bench: Lake's ANN search (``lakehouse.vectors.ann``) against exact numpy search.

Usage::

    python bench/vectors.py [--rows N] [--dim D] [--queries Q] [--min-rows M] [--json]

Sizes default to ``LAKE_BENCH_VECTORS_ROWS`` / ``_DIM`` / ``_QUERIES`` from the environment,
else 200,000 x 384 and 1,000 queries.

The bench generates ``N`` clustered, unit-length vectors (a fixed seed; a few hundred
centroids, each cluster spread along its own 16-dimensional subspace plus isotropic noise,
like sentence embeddings) and ``Q`` held-out query vectors from the same distribution. It
starts its own local stack in a temporary ``LAKE_HOME``, writes the vectors to a Lance table,
and when the size reaches :data:`lakehouse.vectors.ann.INDEX_MIN_ROWS` (``--min-rows``) builds and
stores the index with :func:`lakehouse.vectors.ann.build_index`, as the ``vectors`` maintenance job
does. Searches then go through :func:`lakehouse.vectors.ann.resident` (the index fetched from the store,
the Lance version's rows checked against it) and ``Resident.search``: the path every vector
search of ``POST /search`` takes. Below the threshold every vector is scored exactly.

Both sides answer the same queries one at a time, interleaved in chunks, so load from other
processes on the machine falls on both alike:

* **numpy (exact)**: ``scores = X @ q`` and ``argpartition``; this is also the ground truth;
* **Lake**: ``Resident.search(q, 10)``.

Printed: rows, dim, index kind and parameters, build seconds (reading the vectors from Lance,
building, storing), the first search's set-up seconds, recall@10 (mean over queries, against the
exact top 10), queries per second of each side, the ratio Lake/numpy, the load average, and
whether the goal (recall@10 >= 0.95 at >= 10x numpy's queries per second) is met.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest import CONTRACTS_DIR, bench_settings, stop_stack  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, load_settings  # noqa: E402
from lakehouse.vectors import ann  # noqa: E402

SEED = 20250101
K = 10
METRIC = "cosine"
GOAL_RECALL = 0.95
GOAL_RATIO = 10.0
CHUNK = 50  # queries per interleaved chunk
DATASET = "bench"


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


def write_lance(folder: Path, vectors: np.ndarray) -> Any:
    """A LanceDB table ``bench`` under ``folder`` with ``_row_id`` (the row number as text) and ``vector``."""
    import lancedb
    import pyarrow as pa

    rows, dim = vectors.shape
    data = pa.table(
        {
            "_row_id": pa.array([str(i) for i in range(rows)], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
        }
    )
    return lancedb.connect(str(folder)).create_table(DATASET, data=data)


# --------------------------------------------------------------------------- searches


def numpy_one(data: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact top ``K`` row numbers for one query (best first)."""
    scores = data @ q
    top = np.argpartition(-scores, K)[:K]
    result: np.ndarray = top[np.argsort(-scores[top])]
    return result


def lake_one(resident: ann.Resident, q: np.ndarray) -> list[int]:
    """Lake's top ``K`` row numbers for one query."""
    return [int(row_id) for row_id, _ in resident.search(q, K)]


def recall(found: Sequence[Any], truth: np.ndarray) -> float:
    """Mean share of the exact top ``K`` that was found."""
    hits = [len(set(map(int, f)) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) if hits else 0.0


def timed(data: np.ndarray, resident: ann.Resident, queries: np.ndarray) -> dict[str, Any]:
    """numpy and Lake, one query at a time, interleaved in chunks; numpy's answers are the truth."""
    truth = np.empty((len(queries), K), dtype=np.int64)
    found: list[list[int]] = []
    t_np = t_lake = 0.0
    for start in range(0, len(queries), CHUNK):
        chunk = queries[start : start + CHUNK]
        t0 = time.perf_counter()
        for i, q in enumerate(chunk):
            truth[start + i] = numpy_one(data, q)
        t1 = time.perf_counter()
        found.extend(lake_one(resident, q) for q in chunk)
        t2 = time.perf_counter()
        t_np += t1 - t0
        t_lake += t2 - t1
    n = len(queries)
    return {"recall": recall(found, truth), "numpy_qps": n / t_np, "lake_qps": n / t_lake}


# --------------------------------------------------------------------------- run and report


def run_bench(rows: int, dim: int, queries: int, min_rows: int | None = None) -> dict[str, Any]:
    """Generate, write, index, search both ways and compare; returns the figures.

    The index is built when ``rows`` reaches ``min_rows`` (default
    :data:`lakehouse.vectors.ann.INDEX_MIN_ROWS`).
    """
    threshold = ann.INDEX_MIN_ROWS if min_rows is None else min_rows
    load_before = os.getloadavg()
    data, qs = generate(rows, dim, queries)
    with tempfile.TemporaryDirectory(prefix="lake-bench-vectors-") as tmp:
        stack_settings = load_settings(home=Path(tmp) / "home", contracts_dir=CONTRACTS_DIR)
        localstack.up(stack_settings)
        try:
            settings: Settings = bench_settings(stack_settings.home)
            table = write_lance(Path(tmp) / "lance", data)
            if rows >= threshold:
                index: dict[str, Any] = ann.build_index(settings, DATASET, table, METRIC)
            else:
                index = {"kind": f"none (every vector scored below {threshold:,} rows)", "params": {}}
                index["seconds"] = 0.0
            index["index_min_rows"] = threshold
            started = time.perf_counter()
            resident = ann.resident(settings, DATASET, table, METRIC)
            setup = time.perf_counter() - started
            for q in qs[: min(20, len(qs))]:  # numpy's BLAS threads, the index's pages
                numpy_one(data, q)
                lake_one(resident, q)
            single = timed(data, resident, qs)
        finally:
            stop_stack(stack_settings)
    load_after = os.getloadavg()
    single["ratio"] = single["lake_qps"] / single["numpy_qps"] if single["numpy_qps"] else 0.0
    single["goal_met"] = bool(single["recall"] >= GOAL_RECALL and single["ratio"] >= GOAL_RATIO)
    for key in ("numpy_qps", "lake_qps", "ratio", "recall"):
        single[key] = round(single[key], 2 if key.endswith("qps") else 4)
    return {
        "rows": rows,
        "dim": dim,
        "queries": queries,
        "metric": METRIC,
        "index": index,
        "first_search_setup_seconds": round(setup, 3),
        "single": single,
        "goal": {"recall": GOAL_RECALL, "ratio": GOAL_RATIO},
        "goal_met": single["goal_met"],
        "load_average": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "cpus": os.cpu_count(),
    }


def render(result: dict[str, Any]) -> str:
    """The human-readable report."""
    index, single = result["index"], result["single"]
    params = ", ".join(f"{k}={v}" for k, v in index.get("params", {}).items()) or "-"
    load = result["load_average"]
    return "\n".join(
        [
            f"Lake vector bench: {result['rows']:,} rows x {result['dim']} dims, "
            f"{result['queries']:,} held-out queries, {result['metric']}, recall@{K} against exact numpy",
            f"index: {index['kind']} ({params}); built and stored in {index['seconds']:.1f} s; "
            f"first search set up in {result['first_search_setup_seconds']:.2f} s",
            "",
            f"{'':<22}{'recall@10':>10}{'numpy q/s':>12}{'Lake q/s':>12}{'ratio':>8}",
            f"{'one query at a time':<22}{single['recall']:>10.3f}{single['numpy_qps']:>12,.1f}"
            f"{single['lake_qps']:>12,.1f}{single['ratio']:>8.2f}",
            "",
            f"goal (recall@{K} >= {GOAL_RECALL} at >= {GOAL_RATIO:.0f}x numpy): "
            f"goal met: {'yes' if result['goal_met'] else 'no'}",
            f"load average {load['before']} -> {load['after']} on {result['cpus']} CPUs "
            "(both sides ran interleaved, so load falls on both)",
        ]
    )


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
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.rows <= K or args.dim < 2 or args.queries < 1:
        parser.error(f"need --rows > {K}, --dim >= 2 and --queries >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print the report."""
    args = parse_args(argv)
    result = run_bench(args.rows, args.dim, args.queries, args.min_rows)
    print(json.dumps(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
