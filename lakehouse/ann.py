"""Lake's ANN settings: when a Lance vector dataset gets an index, which one, and how to search it.

This is the one place the index kind and its parameters live. :mod:`lakehouse.vectors` builds
the index from the ``vectors`` maintenance job (:func:`needs_index`, :func:`build_index`) and
:mod:`lakehouse.search` passes every vector query through :func:`tune`.

How it behaves:

* Below :data:`INDEX_MIN_ROWS` rows a dataset has no index: Lance searches it flat, which is
  exact and, at that size, about as fast as an index lookup (the fixed cost of a LanceDB query
  dominates). Lance's flat search slows quickly past it (it reads and scores every vector on
  each query), so the threshold is low.
* Past it, :func:`build_index` creates an IVF_HNSW_SQ index (:func:`plan`): vectors scalar-
  quantised to 8 bits, one HNSW graph per :data:`PARTITION_ROWS` rows. :func:`tune` searches
  every graph with ``ef`` :data:`EF` (at least the limit): recall@10 >= 0.95 on clustered
  embeddings, measured by ``bench/vectors.py`` against exact search. No refine step: re-ranking
  on the full vectors reads them back from the data files and cost more than half the query
  rate in the bench for no recall it needed; ``_distance`` is computed on the 8-bit vectors.
* Rows appended after the index was built are still found: Lance searches the fragments the
  index does not cover flat and merges them with the index's hits. ``optimize()`` (run by the
  maintenance job) adds them to the index without retraining; :func:`needs_index` asks for a
  full rebuild when there is no index, when rows remain unindexed, or when the row count has
  drifted by more than :data:`REBUILD_DRIFT` times from the count the index was trained on
  (the partition count no longer fits).

Why IVF_HNSW_SQ: on 200,000 x 384 clustered vectors (local disk, 300 queries, top 10), to
reach recall@10 >= 0.95 IVF_PQ (256 partitions, 48 sub-vectors) needed 30 probes and a refine
factor of 20 (0.968), IVF_SQ 30 probes and refine 5 (0.970), IVF_FLAT 20 probes (0.952);
IVF_HNSW_SQ with 8 partitions reached 0.993 with no refine. One query at a time all ran at
about the same rate (the fixed cost of a LanceDB query dominates), but with 100 queries per
call the HNSW index answered 1.6-2.5x faster than the others at equal recall. It builds more
slowly (160-310 s on 2 busy cores, against 20-30 s for IVF_FLAT/IVF_SQ and 210 s for IVF_PQ).

The index name records the row count it was trained on (``vector_ann_<rows>``), so the drift
check needs nothing but the table.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lancedb.table import Table

VECTOR = "vector"
INDEX_PREFIX = "vector_ann_"
METRICS: tuple[str, ...] = ("cosine", "l2", "dot")

INDEX_MIN_ROWS: int = 5_000
"""Below this many rows Lake does not index a vector dataset (flat search is exact and fast enough).

Measured with 384-dim vectors on local disk, one query at a time: a flat Lance search of 5,000
rows ran about as fast as an indexed search of 200,000 (the fixed cost of a LanceDB query
dominates both); at 10,000 rows flat search was 2-3x slower, at 50,000 more than 10x.
"""

REBUILD_DRIFT: float = 2.0
"""Rebuild the index when the rows have grown or shrunk by more than this factor since it was trained."""

PARTITION_ROWS: int = 25_000
"""Rows per IVF partition: each partition is one HNSW graph (more partitions, less build memory)."""

EF: int = 64
"""HNSW candidate list per partition at search time (``ef``); raised to the query's limit when larger."""

M: int = 20
"""HNSW graph degree."""

EF_CONSTRUCTION: int = 300
"""HNSW candidate list while building the graph."""


@dataclass(frozen=True)
class Plan:
    """The index Lake builds for a dataset of a given size, and how it is searched."""

    kind: str
    """Lance's index type (``IVF_HNSW_SQ``)."""
    build: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the lancedb index config (besides ``distance_type``)."""
    search: dict[str, int] = field(default_factory=dict)
    """Query-builder settings (``nprobes``, ``ef``)."""


def partitions(rows: int) -> int:
    """IVF partitions for ``rows`` rows: one HNSW graph per :data:`PARTITION_ROWS` rows."""
    return max(1, math.ceil(rows / PARTITION_ROWS))


def plan(rows: int, dim: int | None = None) -> Plan:
    """The index for ``rows`` rows of ``dim``-dimensional vectors, and its search settings.

    IVF_HNSW_SQ: vectors scalar-quantised to 8 bits, one HNSW graph per partition. A search
    probes every partition (``nprobes`` is sized for up to :data:`REBUILD_DRIFT` times fewer
    rows than ``rows``, so it still covers every partition of an index trained on a larger
    table); the partitions split the build, not the search. ``dim`` is accepted for
    index kinds whose settings depend on it (none at present).
    """
    del dim
    build: dict[str, Any] = {"num_partitions": partitions(rows), "m": M, "ef_construction": EF_CONSTRUCTION}
    nprobes = partitions(math.ceil(rows * REBUILD_DRIFT))
    return Plan(kind="IVF_HNSW_SQ", build=build, search={"nprobes": nprobes, "ef": EF})


def _config(kind: str, metric: str, build: dict[str, Any]) -> Any:
    from lancedb.index import IvfHnswSq

    if kind == "IVF_HNSW_SQ":
        return IvfHnswSq(distance_type=metric, **build)  # type: ignore[arg-type]
    raise ValueError(f"unknown index kind {kind!r}")


def vector_indices(table: Table) -> list[Any]:
    """The table's indices on the ``vector`` column (lancedb ``IndexConfig`` objects)."""
    return [idx for idx in table.list_indices() if VECTOR in idx.columns and idx.index_type != "FTS"]


def trained_rows(name: str) -> int | None:
    """The row count an index named by :func:`build_index` was trained on (``None`` for other names)."""
    match = re.fullmatch(re.escape(INDEX_PREFIX) + r"(\d+)", name)
    return int(match.group(1)) if match else None


def unindexed_rows(table: Table) -> int:
    """Rows no vector index covers yet (all rows when there is no index)."""
    indices = vector_indices(table)
    if not indices:
        return table.count_rows()
    stats = table.index_stats(indices[0].name)
    return int(stats.num_unindexed_rows) if stats is not None else table.count_rows()


def needs_index(table: Table) -> bool:
    """Whether :func:`build_index` is due: no vector index, rows left unindexed, or the size drifted.

    The row threshold is the caller's to check (:data:`INDEX_MIN_ROWS` or a contract's own).
    """
    indices = vector_indices(table)
    if len(indices) != 1:
        return True
    rows = table.count_rows()
    built = trained_rows(indices[0].name)
    if built is None or not built / REBUILD_DRIFT <= rows <= built * REBUILD_DRIFT:
        return True
    return unindexed_rows(table) > 0


def build_index(table: Table, *, metric: str, rows: int, dim: int) -> dict[str, Any]:
    """Create (or replace) the ANN index on ``vector`` with the settings :func:`plan` picks for the size.

    Any other index on ``vector`` is dropped first, so exactly one serves searches.

    Args:
        table: the LanceDB table (``vector`` and ``_row_id`` columns).
        metric: ``cosine``, ``l2`` or ``dot``; searches must use the same metric.
        rows: the table's row count (recorded in the index name).
        dim: the vectors' dimension.

    Returns:
        A JSON-able description: ``kind``, ``name``, ``metric``, ``rows``, ``params``
        (build settings), ``search`` (what :func:`tune` applies) and ``seconds``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    chosen = plan(rows, dim)
    name = f"{INDEX_PREFIX}{rows}"
    started = time.perf_counter()
    for idx in vector_indices(table):
        if idx.name != name:
            table.drop_index(idx.name)
    table.create_index(VECTOR, config=_config(chosen.kind, metric, chosen.build), name=name, replace=True)
    seconds = time.perf_counter() - started
    return {
        "kind": chosen.kind,
        "name": name,
        "metric": metric,
        "rows": rows,
        "dim": dim,
        "params": dict(chosen.build),
        "search": dict(chosen.search),
        "seconds": round(seconds, 3),
    }


def tune(query: Any, *, rows: int, limit: int | None = None) -> Any:
    """Apply Lake's search settings for a ``rows``-row dataset to a lancedb vector query builder.

    The settings are applied whatever the size: a dataset below the threshold may still carry
    an index (a contract can lower its own threshold), and on a dataset without one Lance
    ignores them (flat search is exact). Works with the sync ``LanceVectorQueryBuilder`` and
    the async ``AsyncVectorQuery`` alike.

    Lance refuses an HNSW search whose ``ef`` is below the number of rows asked for, so ``ef``
    is raised to ``limit``: pass it, or set ``.limit()`` on a sync builder before calling (it
    is read from there); without either, 10 is assumed.
    """
    if limit is None:
        limit = getattr(query, "_limit", None) or 10
    settings = dict(plan(rows).search)
    if "ef" in settings:
        settings["ef"] = max(settings["ef"], limit * settings.get("refine_factor", 1))
    for setting, value in settings.items():
        query = getattr(query, setting)(value)
    return query


def ensure_index(
    table: Table, *, metric: str, dim: int, min_rows: int | None = None
) -> dict[str, Any] | None:
    """Build the index if the table has at least ``min_rows`` rows and :func:`needs_index` says so.

    ``min_rows`` defaults to :data:`INDEX_MIN_ROWS`. Returns :func:`build_index`'s description,
    or ``None`` when nothing was built.
    """
    rows = table.count_rows()
    if rows < (INDEX_MIN_ROWS if min_rows is None else min_rows) or not needs_index(table):
        return None
    return build_index(table, metric=metric, rows=rows, dim=dim)


def describe(rows: int, dim: int) -> dict[str, Any]:
    """The plan for ``rows`` x ``dim`` as a dict (for reports)."""
    return asdict(plan(rows, dim))
