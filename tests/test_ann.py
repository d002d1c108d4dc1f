"""lakehouse.ann on real (small) Lance datasets in a temporary folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lakehouse import ann

ROWS = 3_000  # below ann.INDEX_MIN_ROWS
DIM = 32
K = 10


def clustered(rows: int, dim: int, seed: int, normalise: bool = True) -> np.ndarray:
    """Vectors around a few dozen centroids (unit length unless ``normalise`` is off)."""
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((30, dim)).astype(np.float32)
    noise = 0.4 * rng.standard_normal((rows, dim)).astype(np.float32)
    out = centroids[rng.integers(0, 30, size=rows)] + noise
    if normalise:
        out /= np.linalg.norm(out, axis=1, keepdims=True)
    else:
        out *= rng.uniform(0.5, 3.0, size=(rows, 1)).astype(np.float32)  # magnitudes differ: l2 != dot
    return out.astype(np.float32)


def arrow(vectors: np.ndarray, first_id: int = 0) -> pa.Table:
    ids = [str(first_id + i) for i in range(len(vectors))]
    flat = pa.array(vectors.reshape(-1), pa.float32())
    return pa.table({"_row_id": pa.array(ids), "vector": pa.FixedSizeListArray.from_arrays(flat, DIM)})


def make_table(folder: Path, vectors: np.ndarray, name: str = "t") -> Any:
    import lancedb

    return lancedb.connect(str(folder)).create_table(name, data=arrow(vectors))


def search(table: Any, q: np.ndarray, metric: str, rows: int) -> list[int]:
    builder = table.search(q, vector_column_name="vector").distance_type(metric)
    found = ann.tune(builder.select(["_row_id", "_distance"]).limit(K), rows=rows).to_arrow()
    return [int(i) for i in found["_row_id"].to_pylist()]


def exact(data: np.ndarray, q: np.ndarray, metric: str) -> list[int]:
    if metric == "l2":
        scores = -np.linalg.norm(data - q, axis=1)
    elif metric == "cosine":
        scores = (data / np.linalg.norm(data, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    else:
        scores = data @ q
    return [int(i) for i in np.argsort(-scores)[:K]]


def recall(table: Any, data: np.ndarray, queries: np.ndarray, metric: str, rows: int) -> float:
    hits = [len(set(search(table, q, metric, rows)) & set(exact(data, q, metric))) for q in queries]
    return sum(hits) / (K * len(queries))


def exact_overlap(data: np.ndarray, queries: np.ndarray, metric: str, other: str) -> float:
    """How much the exact top 10 under ``metric`` and under ``other`` agree."""
    hits = [len(set(exact(data, q, metric)) & set(exact(data, q, other))) for q in queries]
    return sum(hits) / (K * len(queries))


@pytest.fixture()
def data() -> np.ndarray:
    return clustered(ROWS, DIM, seed=1)


@pytest.fixture()
def queries() -> np.ndarray:
    return clustered(40, DIM, seed=2)


def test_index_only_past_the_threshold(tmp_path: Path, data: np.ndarray) -> None:
    assert ROWS < ann.INDEX_MIN_ROWS
    table = make_table(tmp_path, data)
    assert ann.needs_index(table)
    assert ann.ensure_index(table, metric="cosine", dim=DIM) is None  # ROWS < INDEX_MIN_ROWS
    assert ann.vector_indices(table) == []
    report = ann.ensure_index(table, metric="cosine", dim=DIM, min_rows=ROWS)
    assert report is not None and report["rows"] == ROWS and report["seconds"] >= 0
    assert report["kind"] in ("IVF_PQ", "IVF_HNSW_SQ")
    assert len(ann.vector_indices(table)) == 1
    assert not ann.needs_index(table)
    assert ann.ensure_index(table, metric="cosine", dim=DIM, min_rows=ROWS) is None  # nothing due


def test_threshold_and_plans_are_sane() -> None:
    assert 1_000 <= ann.INDEX_MIN_ROWS <= 100_000
    for rows in (ann.INDEX_MIN_ROWS, 200_000, 2_000_000):
        plan = ann.plan(rows, 384)
        assert plan.build["num_partitions"] >= 1
        assert plan.search["nprobes"] >= plan.build["num_partitions"]  # every partition is searched


def test_recall_against_exact_numpy(tmp_path: Path, data: np.ndarray, queries: np.ndarray) -> None:
    table = make_table(tmp_path, data)
    report = ann.build_index(table, metric="cosine", rows=ROWS, dim=DIM)
    stats = table.index_stats(report["name"])
    assert stats is not None and stats.num_indexed_rows == ROWS and stats.distance_type == "cosine"
    assert recall(table, data, queries, "cosine", ROWS) >= 0.95


def test_rows_added_after_indexing_are_found(tmp_path: Path, data: np.ndarray) -> None:
    table = make_table(tmp_path, data)
    ann.build_index(table, metric="cosine", rows=ROWS, dim=DIM)
    new = clustered(50, DIM, seed=3)
    table.add(arrow(new, first_id=ROWS))
    assert ann.unindexed_rows(table) == 50
    assert ann.needs_index(table)  # a re-index (or optimize) is due
    for i in (0, 17, 49):
        assert search(table, new[i], "cosine", ROWS + 50)[0] == ROWS + i
    table.optimize()  # the maintenance job: new rows join the existing index
    assert ann.unindexed_rows(table) == 0
    assert not ann.needs_index(table)
    for i in (0, 17, 49):
        assert search(table, new[i], "cosine", ROWS + 50)[0] == ROWS + i


@pytest.mark.parametrize("metric", ["l2", "dot", "cosine"])
def test_metric_is_respected(tmp_path: Path, metric: str, queries: np.ndarray) -> None:
    data = clustered(ROWS, DIM, seed=4, normalise=False)
    table = make_table(tmp_path, data)
    report = ann.build_index(table, metric=metric, rows=ROWS, dim=DIM)
    assert report["metric"] == metric
    stats = table.index_stats(report["name"])
    assert stats is not None and stats.distance_type == metric
    other = "dot" if metric != "dot" else "l2"  # vectors of different lengths: the top 10s differ
    same = recall(table, data, queries, metric, ROWS)
    assert same >= 0.85
    assert same >= exact_overlap(data, queries, metric, other) + 0.2


def test_rebuild_replaces_the_index_and_drift_asks_for_one(tmp_path: Path, data: np.ndarray) -> None:
    table = make_table(tmp_path, data)
    ann.build_index(table, metric="cosine", rows=ROWS, dim=DIM)
    again = ann.build_index(table, metric="cosine", rows=ROWS, dim=DIM)
    assert [idx.name for idx in ann.vector_indices(table)] == [again["name"]]
    assert ann.trained_rows(again["name"]) == ROWS
    table.add(arrow(clustered(ROWS * 2, DIM, seed=5), first_id=ROWS))
    table.optimize()
    assert ann.unindexed_rows(table) == 0
    assert ann.needs_index(table)  # 3x the rows it was trained on: retrain
    grown = ann.build_index(table, metric="cosine", rows=ROWS * 3, dim=DIM)
    assert [idx.name for idx in ann.vector_indices(table)] == [grown["name"]]
    assert not ann.needs_index(table)


def test_limits_above_ef_are_served(tmp_path: Path, data: np.ndarray) -> None:
    table = make_table(tmp_path, data)
    ann.build_index(table, metric="cosine", rows=ROWS, dim=DIM)
    limit = ann.EF * 3
    builder = table.search(data[0], vector_column_name="vector").distance_type("cosine")
    found = ann.tune(builder.select(["_row_id", "_distance"]).limit(limit), rows=ROWS).to_arrow()
    assert found.num_rows == limit and found["_row_id"][0].as_py() == "0"


def test_bad_metric_is_refused(tmp_path: Path, data: np.ndarray) -> None:
    table = make_table(tmp_path, data[:300])
    with pytest.raises(ValueError, match="metric"):
        ann.build_index(table, metric="hamming", rows=300, dim=DIM)
