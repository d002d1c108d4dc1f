"""Search a dataset by meaning, by words, or both, answered with the table's rows at a snapshot.

Candidates come from the dataset's Lance table at the version its Iceberg snapshot recorded:
nearest vectors (``vector``, answered in process by :mod:`lakehouse.vectors.ann`: the dataset's HNSW
index plus the rows it does not cover yet), full-text BM25 over the text column (``text``, Lance
FTS), or both fused by reciprocal rank (``hybrid``). They are then joined to the table itself,
read as of the same snapshot in DuckDB, where the caller's ``filter`` (an SQL predicate on the
table's columns) and a tenant key's row filter apply. A row the snapshot does not hold is never
returned. When the join leaves fewer than ``k`` rows, more candidates are fetched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from lakehouse.access.auth import LOCAL, Principal
from lakehouse.config import Settings
from lakehouse.contracts.model import ROW_ID, Contract, VectorConfig, load_contract
from lakehouse.duck import arrow_rows, ident
from lakehouse.duck import snapshot_id as as_snapshot_id
from lakehouse.errors import (
    BadRequest,
    Forbidden,
    ForbiddenSQL,
    QueryFailed,
    QueryLimitExceeded,
    SnapshotNotFound,
    VectorsNotConfigured,
)

if TYPE_CHECKING:
    from lancedb.table import Table as LanceTable
    from pyiceberg.catalog import Catalog

    from lakehouse.query.scan import TenantFilter
    from lakehouse.vectors.ann import Resident

Mode = Literal["vector", "text", "hybrid"]
RRF_K = 60  # reciprocal-rank fusion constant: score = sum of 1 / (RRF_K + rank)
SCORE = "_score"


@dataclass
class SearchResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    dataset: str
    mode: str
    snapshot_id: int | None
    lance_version: int | None
    candidates: int = 0
    elapsed_ms: float = 0.0
    ids: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "types": self.types,
            "rows": self.rows,
            "row_count": len(self.rows),
            "dataset": self.dataset,
            "mode": self.mode,
            "snapshot_id": self.snapshot_id,
            "lance_version": self.lance_version,
            "candidates": self.candidates,
            "elapsed_ms": self.elapsed_ms,
        }


def default_mode(config: VectorConfig, text: str | None, vector: list[float] | None) -> Mode:
    """``vector`` for a query vector; ``hybrid`` for text where the dataset has an embedder and text."""
    if vector is not None or text is None:
        return "vector"
    if config.text is None:
        return "vector"
    return "text" if config.embedder == "supplied" else "hybrid"


def _check_request(
    config: VectorConfig, mode: Mode, text: str | None, vector: list[float] | None, k: int
) -> None:
    if k < 1:
        raise BadRequest("k must be at least 1")
    if (text is None) == (vector is None):
        raise BadRequest("give exactly one of text or vector")
    if mode in ("text", "hybrid") and config.text is None:
        raise VectorsNotConfigured(
            f"mode {mode} needs a text column: the contract's vectors section has no `text:`"
        )
    if mode in ("text", "hybrid") and text is None:
        raise BadRequest(f"mode {mode} searches words: give text")
    if mode in ("vector", "hybrid") and vector is None and config.embedder == "supplied":
        raise BadRequest(
            "this dataset's vectors are supplied with the data: search it with a vector, or mode text"
        )


def _query_vector(
    config: VectorConfig, text: str | None, vector: list[float] | None, settings: Settings
) -> Any:
    import numpy as np

    from lakehouse.vectors.store import dimension, embed_texts

    dim = dimension(config)
    if vector is not None:
        if len(vector) != dim:
            raise BadRequest(f"the query vector has {len(vector)} numbers; this dataset's vectors have {dim}")
        out = np.asarray(vector, dtype=np.float32)
        if not np.all(np.isfinite(out)):
            raise BadRequest("the query vector holds a NaN or infinite number")
        return out
    assert text is not None
    return embed_texts(config, [text], settings)[0]


def _vector_hits(resident: Resident | None, query: Any, limit: int) -> list[tuple[str, float]]:
    """Nearest rows by :mod:`lakehouse.vectors.ann` (the index plus the rows it does not cover yet)."""
    return resident.search(query, limit) if resident is not None else []


def _text_hits(lance: LanceTable, text: str, limit: int) -> list[tuple[str, float]]:
    from lakehouse.vectors.store import TEXT

    found = (
        lance.search(text, query_type="fts", fts_columns=TEXT)
        .select([ROW_ID, "_score"])
        .limit(limit)
        .to_arrow()
    )
    return list(zip(found[ROW_ID].to_pylist(), found["_score"].to_pylist(), strict=True))


def fuse(*ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion of ranked lists (best first): ``sum(1 / (60 + rank))`` per id."""
    scores: dict[str, float] = {}
    for hits in ranked:
        seen: set[str] = set()
        rank = 0
        for row_id, _ in hits:
            if row_id in seen:
                continue
            seen.add(row_id)
            rank += 1
            scores[row_id] = scores.get(row_id, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def candidates(
    lance: LanceTable,
    resident: Resident | None,
    mode: Mode,
    text: str | None,
    query_vector: Any,
    limit: int,
) -> list[tuple[str, float]]:
    """The best ``limit`` (row id, score) pairs of each mode, best first, one per id.

    ``resident`` answers vector queries (:func:`lakehouse.vectors.ann.resident`); ``lance`` full-text ones.
    """
    if mode == "vector":
        hits = _vector_hits(resident, query_vector, limit)
    elif mode == "text":
        assert text is not None
        hits = _text_hits(lance, text, limit)
    else:
        assert text is not None
        hits = fuse(_vector_hits(resident, query_vector, limit), _text_hits(lance, text, limit))
    best: dict[str, float] = {}
    for row_id, score in hits:
        best.setdefault(row_id, score)
    return list(best.items())


def check_filter(settings: Settings, dataset: str, predicate: str) -> str:
    """``predicate`` if it parses as one SQL boolean expression over the dataset's columns, calling
    allowed functions only (the plan is checked again where it runs, in :func:`_join`)."""
    from lakehouse.query.sqlguard import parse

    statement = parse(
        f"SELECT 1 FROM {ident(settings.namespace)}.{ident(dataset)} WHERE ({predicate})",
        settings.query_max_sql_chars,
        settings.query_max_nesting,
    )
    if statement.names != [(settings.namespace, dataset)] or statement.searches:
        raise ForbiddenSQL("a search filter may use the dataset's own columns only")
    return predicate


def search(
    settings: Settings,
    dataset: str,
    *,
    text: str | None = None,
    vector: list[float] | None = None,
    k: int = 10,
    filter: str | None = None,
    as_of: int | str | None = None,
    mode: Mode | None = None,
    principal: Principal = LOCAL,
    catalog: Catalog | None = None,
) -> SearchResult:
    """The ``k`` best rows of ``dataset`` for the query, as of a snapshot.

    Raises:
        ContractNotFound, VectorsNotConfigured, BadRequest, ForbiddenSQL, QueryFailed,
        SnapshotNotFound: terminal (HTTP 400/404); Forbidden (403).
    """
    from lakehouse.catalog import get_catalog
    from lakehouse.query.scan import current_table, resolve_snapshot, row_filter
    from lakehouse.query.sqlguard import MAX_K
    from lakehouse.vectors.store import lance_version_at, local_copy

    started = time.perf_counter()
    contract = load_contract(settings, dataset)
    config = _config(contract)
    mode = mode or default_mode(config, text, vector)
    _check_request(config, mode, text, vector, k)
    if k > MAX_K:
        raise BadRequest(f"k must be at most {MAX_K}")
    predicate = check_filter(settings, dataset, filter) if filter else None
    tenant = row_filter(settings, principal, dataset)
    catalog = catalog or get_catalog(settings)
    table = current_table(catalog, settings, dataset)
    snapshot_id = resolve_snapshot(table, as_of)
    version = lance_version_at(table, snapshot_id)
    result = SearchResult([], [], [], dataset, mode, snapshot_id, version)
    lance = local_copy(settings, dataset) if version is not None else None
    if lance is None:
        result.elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        return _empty(result, table)
    assert version is not None
    if version < lance.version:
        try:
            lance.checkout(version)
        except (ValueError, OSError, RuntimeError):  # cleaned up by maintenance: read the latest
            result.lance_version = lance.version
    query_vector = _query_vector(config, text, vector, settings) if mode != "text" else None
    resident = None
    if mode != "text":
        from lakehouse.vectors import ann

        resident = ann.resident(settings, dataset, lance, config.metric)
    total = resident.rows if resident is not None else lance.count_rows()
    limit = min(max(4 * k, 40), max(total, 1))
    while True:
        hits = candidates(lance, resident, mode, text, query_vector, limit)
        data = _join(settings, dataset, table, snapshot_id, tenant, predicate, hits, k)
        if data.num_rows >= k or limit >= total:
            break
        limit = min(limit * 4, total)
    result.candidates = len(hits)
    result.columns = data.column_names
    result.types = [str(t) for t in data.schema.types]
    result.rows = arrow_rows(data)
    result.ids = data[ROW_ID].to_pylist()
    result.scores = data[SCORE].to_pylist()
    result.elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    return result


def _config(contract: Contract) -> VectorConfig:
    if contract.vectors is None:
        raise VectorsNotConfigured(
            f"dataset {contract.name!r} has no vectors: add a `vectors:` section to its contract"
        )
    return contract.vectors


def _empty(result: SearchResult, table: Any) -> SearchResult:
    schema = table.schema().as_arrow()
    result.columns = [*schema.names, SCORE]
    result.types = [*(str(t) for t in schema.types), "double"]
    return result


def _join(
    settings: Settings,
    dataset: str,
    table: Any,
    snapshot_id: int | None,
    tenant: TenantFilter | None,
    predicate: str | None,
    hits: list[tuple[str, float]],
    k: int,
) -> pa.Table:
    """The table's rows among ``hits`` at the snapshot, filtered, best ``k`` first.

    The rows come as Arrow (the tenant's only), read from the files that can hold a hit (the
    ids are pushed into the scan); the caller's filter runs in the same locked-down session
    and plan check as ``POST /sql``.
    """
    import duckdb
    import pyarrow.dataset as pads

    from lakehouse.query.files import ScanStats
    from lakehouse.query.scan import TableRows, session, table_rows
    from lakehouse.query.sqlguard import check_plan

    ranked = pa.table(
        {
            "id": pa.array([h[0] for h in hits], pa.string()),
            SCORE: pa.array([float(h[1]) for h in hits], pa.float64()),
            "rank": pa.array(range(len(hits)), pa.int64()),
        }
    )
    started = time.perf_counter()
    rows = table_rows(settings, table, snapshot_id, tenant, ScanStats())
    if isinstance(rows, TableRows):
        # The hits' rows (at most k per mode) read here, in this thread: DuckDB then joins an
        # in-memory table and never calls back into the store's Python filesystem from its own
        # threads (a search waiting on such a callback could hold the request's worker forever).
        ids = ranked["id"].combine_chunks().cast(rows.schema.field(ROW_ID).type)
        found = rows.dataset().filter(pads.field(ROW_ID).isin(ids)).to_table() if hits else None
        rows = found if found is not None else rows.schema.empty_table()
    with session(settings) as con:
        con.bind(dataset, rows)
        con.register("__lake_hits", ranked)
        where = f"WHERE ({predicate})" if predicate else ""
        view = f"{ident(settings.namespace)}.{ident(dataset)}"
        sql = (
            f"SELECT t.*, h.{SCORE} FROM (SELECT * FROM {view} {where}) t "
            f"JOIN __lake_hits h ON t.{ident(ROW_ID)} = h.id ORDER BY h.rank LIMIT {int(k)}"
        )
        check_plan(con.con, sql)
        left = settings.query_timeout_seconds - (time.perf_counter() - started)
        try:
            return con.run(lambda: con.select(sql).to_arrow_table(), left)
        except (TimeoutError, duckdb.InterruptException) as e:
            raise QueryLimitExceeded(
                f"the search ran past its time limit of {settings.query_timeout_seconds:g}s"
            ) from e
        except duckdb.PermissionException as e:
            raise ForbiddenSQL("a search filter may use the dataset's own columns only") from e
        except duckdb.Error as e:
            raise QueryFailed(f"search filter: {str(e).strip()}") from e


def vector_hits_table(
    settings: Settings,
    calls: list[tuple[str, str, int]],
    as_of: int | str | None,
    principal: Principal,
    catalog: Catalog | None = None,
) -> pa.Table:
    """Rows (dataset, query, k, id, score) answering each ``vector_search(dataset, text, k)`` of a query."""
    parts: list[pa.Table] = []
    for dataset, text, k in calls:
        try:
            found = search(
                settings,
                dataset,
                text=text,
                k=k,
                as_of=as_of,
                mode="vector",
                principal=principal,
                catalog=catalog,
            )
        except SnapshotNotFound:
            if as_of is None or as_snapshot_id(as_of) is None:
                raise
            # A snapshot id applies to the table that holds it; this one is read at its current one.
            found = search(
                settings, dataset, text=text, k=k, mode="vector", principal=principal, catalog=catalog
            )
        n = len(found.ids)
        parts.append(
            pa.table(
                {
                    "dataset": pa.array([dataset] * n, pa.string()),
                    "query": pa.array([text] * n, pa.string()),
                    "k": pa.array([k] * n, pa.int64()),
                    "id": pa.array(found.ids, pa.string()),
                    "score": pa.array(found.scores, pa.float64()),
                }
            )
        )
    if not parts:
        return pa.table(
            {
                "dataset": pa.array([], pa.string()),
                "query": pa.array([], pa.string()),
                "k": pa.array([], pa.int64()),
                "id": pa.array([], pa.string()),
                "score": pa.array([], pa.float64()),
            }
        )
    return pa.concat_tables(parts)


def vector_datasets(settings: Settings, principal: Principal = LOCAL) -> list[dict[str, Any]]:
    """``GET /vectors``: the datasets with vectors (and a table) the principal may read, and the
    search modes the console can offer for each (a ``supplied`` embedder cannot embed a query)."""
    from lakehouse.catalog import get_catalog, list_tables
    from lakehouse.contracts.model import list_contracts
    from lakehouse.query.scan import row_filter

    tables = set(list_tables(get_catalog(settings), settings))
    out = []
    for contract in list_contracts(settings):
        if contract.vectors is None or f"{settings.namespace}.{contract.name}" not in tables:
            continue
        try:
            row_filter(settings, principal, contract.name)
        except Forbidden:
            continue
        config = contract.vectors
        if config.embedder == "supplied":  # no embedder: the page cannot make a query vector
            modes = ["text"] if config.text else []
        else:
            modes = ["vector", "text", "hybrid"] if config.text else ["vector"]
        out.append(
            {
                "dataset": contract.name,
                "text": config.text,
                "embedder": config.embedder,
                "metric": config.metric,
                "modes": modes,
            }
        )
    return out


def vector_status(settings: Settings, dataset: str, principal: Principal = LOCAL) -> dict[str, Any]:
    """``GET /vectors/{dataset}``: the Lance version of the current snapshot, its rows, and how
    many of them each index covers (rows not yet indexed are searched exactly, by brute force).

    Counts span every tenant, so a tenant-bound key is refused.
    """
    from lakehouse.catalog import get_catalog, load_table
    from lakehouse.query.scan import resolve_snapshot, row_filter
    from lakehouse.vectors import ann
    from lakehouse.vectors.store import lance_version_at, local_copy

    if principal.tenant is not None:
        raise Forbidden("index coverage spans every tenant; a tenant key cannot read it")
    config = _config(load_contract(settings, dataset))
    row_filter(settings, principal, dataset)
    table = load_table(get_catalog(settings), settings, dataset)
    snapshot_id = resolve_snapshot(table, None)
    version = lance_version_at(table, snapshot_id)
    body: dict[str, Any] = {
        "dataset": dataset,
        "snapshot_id": snapshot_id,
        "lance_version": version,
        "rows": 0,
        "indexes": [],
    }
    lance = local_copy(settings, dataset) if version is not None else None
    if lance is None or version is None:
        return body
    if version < lance.version:
        lance.checkout(version)
    body["rows"] = lance.count_rows()
    resident = ann.resident(settings, dataset, lance, config.metric)
    body["indexes"].append(
        {
            "name": "vector (HNSW)",
            "column": "vector",
            "index_version": resident.index_version,
            "indexed_rows": resident.rows - len(resident.tail_ids),
            "unindexed_rows": len(resident.tail_ids),
        }
    )
    for index in lance.list_indices():
        stats = lance.index_stats(index.name)
        if stats is not None:
            body["indexes"].append(
                {
                    "name": f"{index.name} ({stats.index_type})",
                    "column": ", ".join(index.columns),
                    "index_version": None,
                    "indexed_rows": stats.num_indexed_rows,
                    "unindexed_rows": stats.num_unindexed_rows,
                }
            )
    return body
