"""lakehouse.vectors.ann: the HNSW index and per-process search state, on Lance tables and the local S3."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lakehouse.config import Settings
from lakehouse.vectors import ann

ROWS = 3_000
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


def ids(n: int, first: int = 0) -> list[str]:
    return [str(first + i) for i in range(n)]


def arrow(vectors: np.ndarray, first_id: int = 0) -> pa.Table:
    flat = pa.array(vectors.reshape(-1), pa.float32())
    return pa.table(
        {
            "_row_id": pa.array(ids(len(vectors), first_id)),
            "vector": pa.FixedSizeListArray.from_arrays(flat, DIM),
        }
    )


def exact(data: np.ndarray, q: np.ndarray, metric: str) -> list[int]:
    if metric == "l2":
        scores = -np.linalg.norm(data - q, axis=1)
    elif metric == "cosine":
        scores = (data / np.linalg.norm(data, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    else:
        scores = data @ q
    return [int(i) for i in np.argsort(-scores)[:K]]


def indexed(data: np.ndarray, metric: str, present: np.ndarray | None = None) -> ann.Resident:
    prepared = ann.prepare(data, metric)
    empty = np.zeros((0, DIM), np.float32)
    return ann.Resident(metric, ann.build(prepared, metric), ids(len(data)), present, [], empty)


def flat(data: np.ndarray, metric: str, first: int = 0) -> ann.Resident:
    return ann.Resident(metric, None, [], None, ids(len(data), first), ann.prepare(data, metric))


def top(resident: ann.Resident, q: np.ndarray, k: int = K) -> list[int]:
    return [int(i) for i, _ in resident.search(q, k)]


def recall(resident: ann.Resident, data: np.ndarray, queries: np.ndarray, metric: str) -> float:
    hits = [len(set(top(resident, q)) & set(exact(data, q, metric))) for q in queries]
    return sum(hits) / (K * len(queries))


@pytest.fixture()
def data() -> np.ndarray:
    return clustered(ROWS, DIM, seed=1)


@pytest.fixture()
def queries() -> np.ndarray:
    return clustered(40, DIM, seed=2)


@pytest.mark.parametrize("metric", ["l2", "dot", "cosine"])
def test_index_recall_and_exact_scoring_follow_the_metric(metric: str, queries: np.ndarray) -> None:
    data = clustered(ROWS, DIM, seed=4, normalise=False)
    assert recall(indexed(data, metric), data, queries, metric) >= 0.9
    assert recall(flat(data, metric), data, queries, metric) == 1.0  # no index: every row scored
    other = "dot" if metric != "dot" else "l2"  # vectors of different lengths: the top 10s differ
    overlap = sum(len(set(exact(data, q, metric)) & set(exact(data, q, other))) for q in queries)
    assert recall(indexed(data, metric), data, queries, metric) >= overlap / (K * len(queries)) + 0.2


def test_scores_are_higher_for_nearer_rows(data: np.ndarray) -> None:
    for metric, best in (("cosine", 1.0), ("dot", 1.0), ("l2", 0.0)):
        hits = flat(data, metric).search(data[7], 5)
        assert hits[0][0] == "7" and hits[0][1] == pytest.approx(best, abs=1e-5)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        graph = indexed(data, metric).search(data[7], 5)
        assert graph[0][0] == "7" and graph[0][1] == pytest.approx(best, abs=0.05)  # 8-bit vectors


def test_nodes_the_version_does_not_hold_are_never_returned(data: np.ndarray, queries: np.ndarray) -> None:
    present = np.ones(ROWS, dtype=bool)
    present[::2] = False  # even rows deleted (or newer than the version searched)
    resident = indexed(data, "cosine", present)
    assert resident.rows == ROWS // 2
    kept = data[1::2]
    hits = 0
    for q in queries:
        found = top(resident, q)
        assert len(found) == K and all(i % 2 == 1 for i in found)
        hits += len(set(found) & {2 * i + 1 for i in exact(kept, q, "cosine")})
    assert hits / (K * len(queries)) >= 0.9
    assert resident.search(data[0], ROWS)  # more than ef asked for: served
    assert all(int(i) % 2 == 1 for i, _ in resident.search(data[0], ROWS))


def test_rows_the_index_does_not_cover_are_scored_and_merged(data: np.ndarray) -> None:
    new = clustered(50, DIM, seed=3)
    graph = indexed(data, "cosine")
    tail = flat(new, "cosine", first=ROWS)
    resident = ann.Resident("cosine", graph.index, graph.index_ids, None, tail.tail_ids, tail.tail)
    assert resident.rows == ROWS + 50
    for i in (0, 17, 49):
        assert top(resident, new[i])[0] == ROWS + i
    assert top(resident, data[5])[0] == 5
    limit = ann.EF * 3
    assert len(resident.search(data[0], limit)) == limit


def test_bad_metric_is_refused(data: np.ndarray) -> None:
    with pytest.raises(ValueError, match="metric"):
        ann.prepare(data, "hamming")


def test_index_on_the_store_follows_the_lance_versions(
    settings: Settings, tmp_path: Path, data: np.ndarray
) -> None:
    import lancedb

    dataset = f"ann_{uuid.uuid4().hex[:8]}"
    table: Any = lancedb.connect(str(tmp_path)).create_table(dataset, data=arrow(data))
    assert ann.stored_indexes(settings, dataset) == []
    assert ann.needs_index(settings, dataset, table)
    before = ann.resident(settings, dataset, table, "cosine")
    assert before.index is None and before.rows == ROWS  # no index yet: every row scored exactly

    first = ann.build_index(settings, dataset, table, "cosine")
    assert first["rows"] == ROWS and first["version"] == table.version and first["bytes"] > 0
    assert ann.stored_indexes(settings, dataset) == [table.version]
    assert not ann.needs_index(settings, dataset, table)
    indexed_version = table.version

    new = clustered(50, DIM, seed=3)
    table.add(arrow(new, first_id=ROWS))
    assert ann.needs_index(settings, dataset, table)
    now = ann.resident(settings, dataset, table, "cosine")
    assert now.index is not None and now.present is None and len(now.tail_ids) == 50
    assert top(now, new[17])[0] == ROWS + 17  # found before any re-index

    table.delete("_row_id = '5'")
    after_delete = ann.resident(settings, dataset, table, "cosine")
    assert after_delete.present is not None and after_delete.rows == ROWS + 49
    assert "5" not in {i for i, _ in after_delete.search(data[5], 20)}

    table.checkout(indexed_version)  # as of the older version: the newer rows are not there
    old = ann.resident(settings, dataset, table, "cosine")
    assert old.rows == ROWS and old.tail_ids == []
    assert ROWS + 17 not in top(old, new[17], 50)
    table.checkout_latest()

    second = ann.build_index(settings, dataset, table, "cosine")
    assert ann.stored_indexes(settings, dataset) == [second["version"]]  # the older index is deleted
    assert second["rows"] == ROWS + 49
    assert not ann.needs_index(settings, dataset, table)
    rebuilt = ann.resident(settings, dataset, table, "cosine")
    assert rebuilt.tail_ids == [] and rebuilt.present is None and top(rebuilt, new[17])[0] == ROWS + 17
