"""Vector search bench: Lake's ANN index (``lakehouse.ann``) against exact numpy search.

Usage::

    python bench/vectors.py [--rows N] [--dim D] [--queries Q] [--batch B] [--min-rows M] [--json]

Sizes default to ``LAKE_BENCH_VECTORS_ROWS`` / ``_DIM`` / ``_QUERIES`` / ``_BATCH`` from the
environment, else 200,000 x 384, 1,000 queries, batches of 100.

The bench generates ``N`` clustered, unit-length vectors (a fixed seed; a few hundred
centroids, each cluster spread along its own 16-dimensional subspace plus isotropic noise,
like sentence embeddings) and ``Q`` held-out query vectors from the same distribution. It
writes the vectors to a Lance dataset on local disk (Lake serves searches from a local
read-through copy of the warehouse's immutable Lance files), builds the index with
:func:`lakehouse.ann.build_index` when the size reaches :data:`lakehouse.ann.INDEX_MIN_ROWS`
(below it Lake searches flat, and so does the bench) and then runs the same queries through:

* **numpy (exact)**, one query at a time: ``scores = X @ q`` and ``argpartition``; this is
  also the ground truth;
* **Lance**, one query at a time: ``ann.tune(table.search(q)...)``, only ``_row_id`` and
  ``_distance`` fetched; and the same query through LanceDB's async API
  (``AsyncTable.query().nearest_to(q)``), which makes fewer hops between threads per query;
* **batched**, both sides given the same ``B`` queries at once: numpy ``Q_b @ X.T`` with a
  row-wise ``argpartition``, and Lance's multi-vector query (``table.search([q1, q2, ...])``).

The sides of each comparison run interleaved, chunk by chunk, so load from other
processes on the machine falls on both alike. Printed: rows, dim, index kind and parameters,
build seconds, recall@10 (mean over queries, against the exact top 10), queries per second of
each side, the ratio Lance/numpy, the load average, and whether the goal (recall@10 >= 0.95 at
>= 10x numpy's queries per second) is met.
"""

from __future__ import annotations

import argparse
import asyncio
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

from lakehouse import ann  # noqa: E402

SEED = 20250101
K = 10
METRIC = "cosine"
GOAL_RECALL = 0.95
GOAL_RATIO = 10.0
CHUNK = 50  # queries per interleaved chunk


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
    return lancedb.connect(str(folder)).create_table("bench", data=data)


# --------------------------------------------------------------------------- searches


def numpy_one(data: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact top ``K`` row numbers for one query (best first)."""
    scores = data @ q
    top = np.argpartition(-scores, K)[:K]
    result: np.ndarray = top[np.argsort(-scores[top])]
    return result


def numpy_batch(data: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Exact top ``K`` row numbers for a batch of queries (one row per query, unordered)."""
    scores = qs @ data.T
    result: np.ndarray = np.argpartition(-scores, K, axis=1)[:, :K]
    return result


def lance_query(table: Any, q: Any, rows: int) -> Any:
    """The query Lake runs: metric, only id and distance, top ``K``, tuned by ``lakehouse.ann``."""
    builder = table.search(q, vector_column_name="vector").distance_type(METRIC)
    return ann.tune(builder.select(["_row_id", "_distance"]).limit(K), rows=rows)


def lance_one(table: Any, q: np.ndarray, rows: int) -> list[int]:
    """Lance's top ``K`` row numbers for one query."""
    found = lance_query(table, q, rows).to_arrow()
    return [int(i) for i in found["_row_id"].to_pylist()]


def lance_batch(table: Any, qs: np.ndarray, rows: int) -> list[list[int]]:
    """Lance's top ``K`` row numbers for each query of a batch (one multi-vector query)."""
    found = lance_query(table, list(qs), rows).to_arrow()
    out: list[list[int]] = [[] for _ in range(len(qs))]
    for qi, rid in zip(found["query_index"].to_pylist(), found["_row_id"].to_pylist(), strict=True):
        out[qi].append(int(rid))
    return out


def recall(found: Sequence[Any], truth: np.ndarray) -> float:
    """Mean share of the exact top ``K`` that was found."""
    hits = [len(set(map(int, f)) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) if hits else 0.0


class AsyncSearcher:
    """The same query through LanceDB's async API, on one event loop kept for the whole run."""

    def __init__(self, folder: Path, rows: int) -> None:
        import lancedb

        self.rows = rows
        self.loop = asyncio.new_event_loop()
        db = self.loop.run_until_complete(lancedb.connect_async(str(folder)))
        self.table = self.loop.run_until_complete(db.open_table("bench"))

    async def _one(self, q: np.ndarray) -> Any:
        query = self.table.query().nearest_to(q).column("vector").distance_type(METRIC)
        tuned = ann.tune(query.select(["_row_id", "_distance"]).limit(K), rows=self.rows, limit=K)
        return await tuned.to_arrow()

    def one(self, q: np.ndarray) -> list[int]:
        """Lance's top ``K`` row numbers for one query."""
        found = self.loop.run_until_complete(self._one(q))
        return [int(i) for i in found["_row_id"].to_pylist()]

    def close(self) -> None:
        self.loop.close()


def timed_single(
    data: np.ndarray, table: Any, searcher: AsyncSearcher, queries: np.ndarray, rows: int
) -> dict[str, Any]:
    """numpy, Lance (sync API) and Lance (async API), one query at a time, interleaved in chunks.

    The numpy answers are the truth.
    """
    truth = np.empty((len(queries), K), dtype=np.int64)
    lance: list[list[int]] = []
    lance_async: list[list[int]] = []
    t_np = t_lance = t_async = 0.0
    for start in range(0, len(queries), CHUNK):
        chunk = queries[start : start + CHUNK]
        t0 = time.perf_counter()
        for i, q in enumerate(chunk):
            truth[start + i] = numpy_one(data, q)
        t1 = time.perf_counter()
        lance.extend(lance_one(table, q, rows) for q in chunk)
        t2 = time.perf_counter()
        lance_async.extend(searcher.one(q) for q in chunk)
        t3 = time.perf_counter()
        t_np += t1 - t0
        t_lance += t2 - t1
        t_async += t3 - t2
    n = len(queries)
    return {
        "truth": truth,
        "single": {"recall": recall(lance, truth), "numpy_qps": n / t_np, "lance_qps": n / t_lance},
        "single_async": {
            "recall": recall(lance_async, truth),
            "numpy_qps": n / t_np,
            "lance_qps": n / t_async,
        },
    }


def timed_batched(
    data: np.ndarray, table: Any, queries: np.ndarray, rows: int, batch: int, truth: np.ndarray
) -> dict[str, Any]:
    """Both sides given ``batch`` queries at a time, interleaved batch by batch."""
    found_np: list[np.ndarray] = []
    found_lance: list[list[int]] = []
    t_np = t_lance = 0.0
    for start in range(0, len(queries), batch):
        qs = queries[start : start + batch]
        t0 = time.perf_counter()
        found_np.extend(numpy_batch(data, qs))
        t1 = time.perf_counter()
        found_lance.extend(lance_batch(table, qs, rows))
        t2 = time.perf_counter()
        t_np += t1 - t0
        t_lance += t2 - t1
    n = len(queries)
    return {
        "batch": batch,
        "numpy_recall": recall(found_np, truth),
        "recall": recall(found_lance, truth),
        "numpy_qps": n / t_np,
        "lance_qps": n / t_lance,
    }


# --------------------------------------------------------------------------- run and report


def run_bench(rows: int, dim: int, queries: int, batch: int, min_rows: int | None = None) -> dict[str, Any]:
    """Generate, write, index, search both ways and compare; returns the figures.

    The index is built when ``rows`` reaches ``min_rows`` (default :data:`lakehouse.ann.INDEX_MIN_ROWS`).
    """
    threshold = ann.INDEX_MIN_ROWS if min_rows is None else min_rows
    load_before = os.getloadavg()
    data, qs = generate(rows, dim, queries)
    with tempfile.TemporaryDirectory(prefix="lake-bench-vectors-") as tmp:
        table = write_lance(Path(tmp), data)
        if rows >= threshold:
            index: dict[str, Any] = ann.build_index(table, metric=METRIC, rows=rows, dim=dim)
        else:
            index = {"kind": f"none (flat search below {threshold:,} rows)", "params": {}, "seconds": 0.0}
        index["index_min_rows"] = threshold
        warm = qs[: min(20, len(qs))]
        for q in warm:  # index and file caches, numpy's BLAS threads
            numpy_one(data, q)
            lance_one(table, q, rows)
        searcher = AsyncSearcher(Path(tmp), rows)
        try:
            for q in warm:
                searcher.one(q)
            singles = timed_single(data, table, searcher, qs, rows)
        finally:
            searcher.close()
        batched = timed_batched(data, table, qs, rows, batch, singles["truth"])
    load_after = os.getloadavg()
    single, single_async = singles["single"], singles["single_async"]
    for part in (single, single_async, batched):
        part["ratio"] = part["lance_qps"] / part["numpy_qps"] if part["numpy_qps"] else 0.0
        part["goal_met"] = bool(part["recall"] >= GOAL_RECALL and part["ratio"] >= GOAL_RATIO)
        for key in ("numpy_qps", "lance_qps", "ratio", "recall", "numpy_recall"):
            if key in part:
                part[key] = round(part[key], 2 if key.endswith("qps") else 4)
    return {
        "rows": rows,
        "dim": dim,
        "queries": queries,
        "metric": METRIC,
        "index": index,
        "single": single,
        "single_async": single_async,
        "batched": batched,
        "goal": {"recall": GOAL_RECALL, "ratio": GOAL_RATIO},
        "goal_met": single["goal_met"] or single_async["goal_met"],
        "load_average": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "cpus": os.cpu_count(),
    }


def render(result: dict[str, Any]) -> str:
    """The human-readable report."""
    index, batched = result["index"], result["batched"]
    params = ", ".join(f"{k}={v}" for k, v in index.get("params", {}).items()) or "-"
    search = ", ".join(f"{k}={v}" for k, v in index.get("search", {}).items()) or "-"
    lines = [
        f"Lake vector bench: {result['rows']:,} rows x {result['dim']} dims, "
        f"{result['queries']:,} held-out queries, {result['metric']}, recall@{K} against exact numpy",
        f"index: {index['kind']} ({params}); search: {search}; built in {index['seconds']:.1f} s",
        "",
        f"{'':<30}{'recall@10':>10}{'numpy q/s':>12}{'Lance q/s':>12}{'ratio':>8}{'goal met':>10}",
    ]
    parts = (
        ("one query at a time", result["single"]),
        ("one at a time, async API", result["single_async"]),
        (f"batches of {batched['batch']}", batched),
    )
    for label, part in parts:
        lines.append(
            f"{label:<30}{part['recall']:>10.3f}{part['numpy_qps']:>12,.1f}{part['lance_qps']:>12,.1f}"
            f"{part['ratio']:>8.2f}{'yes' if part['goal_met'] else 'no':>10}"
        )
    load = result["load_average"]
    lines += [
        "",
        f"goal (recall@{K} >= {GOAL_RECALL} at >= {GOAL_RATIO:.0f}x numpy, one query at a time): "
        f"goal met: {'yes' if result['goal_met'] else 'no'}",
        f"load average {load['before']} -> {load['after']} on {result['cpus']} CPUs "
        "(both sides ran interleaved, so load falls on both)",
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
    parser.add_argument("--batch", type=int, default=_env_int("LAKE_BENCH_VECTORS_BATCH", 100))
    parser.add_argument(
        "--min-rows",
        type=int,
        default=None,
        help="build the index from this many rows (default: lakehouse.ann.INDEX_MIN_ROWS)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.rows <= K or args.dim < 2 or args.queries < 1 or args.batch < 1:
        parser.error(f"need --rows > {K}, --dim >= 2, --queries >= 1 and --batch >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print the report."""
    args = parse_args(argv)
    result = run_bench(args.rows, args.dim, args.queries, args.batch, args.min_rows)
    print(json.dumps(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
