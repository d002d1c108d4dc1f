"""Search a dataset by meaning, by words, or both, answered with the table's rows at a snapshot.

Candidates come from the dataset's Lance table at the version its Iceberg snapshot recorded:
nearest vectors (``vector``, answered in process by :mod:`lakehouse.vectors.ann`: the dataset's HNSW
index plus the rows it does not cover yet), full-text BM25 over the text column (``text``, Lance
FTS), or both fused by reciprocal rank (``hybrid``). They are then joined to the table itself,
read as of the same snapshot in DuckDB, where the caller's ``filter`` (an SQL predicate on the
table's columns) and a tenant key's row filter apply. A row the snapshot does not hold is never
returned. When the join leaves fewer than ``k`` rows, more candidates are fetched.

What does not change for a snapshot is kept per process: the Lance table open at the version
the snapshot records (:data:`LANCE_CACHE`), and a small table's rows with their ids sorted
(:data:`HELD_MAX_FILE_BYTES`), so a warm search lists nothing and scans nothing: it finds its
hits' rows by id, and without a ``filter`` ranks them without a DuckDB session. The parsed
contract is kept while its file is unchanged.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from lakehouse.access.auth import LOCAL, Principal
from lakehouse.config import Settings
from lakehouse.contracts.model import ROW_ID, Contract, VectorConfig, contract_path, load_contract
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

    from lakehouse.query.scan import TableRows, TenantFilter
    from lakehouse.vectors.ann import Resident

Mode = Literal["vector", "text", "hybrid"]
RRF_K = 60  # reciprocal-rank fusion constant: score = sum of 1 / (RRF_K + rank)
SCORE = "_score"
STAGES: tuple[str, ...] = ("request", "snapshot", "lance", "resident", "candidates", "join", "rows")
"""A search's stages, in order: the contract and checks; the table and snapshot (and the Lance
version it records); the local copy of the Lance files (a listing) checked out at that version; the
index in use and the version's row-id checks (:func:`lakehouse.vectors.ann.resident`); the
candidates (the ANN search, or BM25); the join to the table; the rows as Python values."""

LANCE_CACHE: int = 4
"""Lance tables a process keeps open, each checked out at the version a snapshot records (a
version's files never change, so it is listed and copied once, not on every search)."""

HELD_CACHE: int = 2
"""Snapshots of tables a process keeps in memory for the join (see :data:`HELD_MAX_FILE_BYTES`)."""

HELD_MAX_FILE_BYTES: int = 32 << 20
"""A table whose data files at a snapshot total at most this many bytes is read once per process
and held in memory, its rows found by row id (a binary search) on every search of that snapshot;
a larger one is scanned for the hits' ids on every search."""


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
    timings: dict[str, float] = field(default_factory=dict)
    """Milliseconds per stage (:data:`STAGES`), kept for measurement; not part of :meth:`to_dict`."""

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
    from lakehouse.vectors.store import lance_version_at

    started = time.perf_counter()
    timings: dict[str, float] = {}
    mark = started

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[stage] = timings.get(stage, 0.0) + (now - mark) * 1000
        mark = now

    contract = _contract(settings, dataset)
    config = _config(contract)
    mode = mode or default_mode(config, text, vector)
    _check_request(config, mode, text, vector, k)
    if k > MAX_K:
        raise BadRequest(f"k must be at most {MAX_K}")
    predicate = check_filter(settings, dataset, filter) if filter else None
    tenant = row_filter(settings, principal, dataset)
    lap("request")
    catalog = catalog or get_catalog(settings)
    table = current_table(catalog, settings, dataset)
    snapshot_id = resolve_snapshot(table, as_of)
    version = lance_version_at(table, snapshot_id)
    result = SearchResult([], [], [], dataset, mode, snapshot_id, version, timings=timings)
    lap("snapshot")
    lance, read = _lance_at(settings, dataset, snapshot_id, version) if version is not None else (None, None)
    if lance is None:
        result.elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        return _empty(result, table)
    result.lance_version = read
    lap("lance")
    query_vector = _query_vector(config, text, vector, settings) if mode != "text" else None
    lap("request")
    resident = None
    if mode != "text":
        from lakehouse.vectors import ann

        resident = ann.resident(settings, dataset, lance, config.metric, read)
    total = resident.rows if resident is not None else lance.count_rows()
    lap("resident")
    limit = min(max(4 * k, 40), max(total, 1))
    while True:
        hits = candidates(lance, resident, mode, text, query_vector, limit)
        lap("candidates")
        data = _join(settings, dataset, table, snapshot_id, tenant, predicate, hits, k)
        lap("join")
        if data.num_rows >= k or limit >= total:
            break
        limit = min(limit * 4, total)
    result.candidates = len(hits)
    result.columns = data.column_names
    result.types = [str(t) for t in data.schema.types]
    result.rows = arrow_rows(data)
    result.ids = data[ROW_ID].to_pylist()
    result.scores = data[SCORE].to_pylist()
    lap("rows")
    result.elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    return result


_cache_lock = threading.Lock()
_contracts: dict[str, tuple[tuple[int, int, int], Contract]] = {}
_lance: OrderedDict[tuple[str, str, int | None, int], LanceTable] = OrderedDict()
_held: OrderedDict[tuple[str, str, int], _Held] = OrderedDict()


def _contract(settings: Settings, dataset: str) -> Contract:
    """:func:`~lakehouse.contracts.model.load_contract`, parsed again only when its file changes
    (another inode, size or modification time): an edited contract applies from the next search."""
    path = contract_path(settings, dataset)
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return load_contract(settings, dataset)  # names the problem
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    found = _contracts.get(str(path))
    if found is not None and found[0] == stamp and found[1].name == dataset:
        return found[1]
    contract = load_contract(settings, dataset)
    _contracts[str(path)] = (stamp, contract)
    return contract


def _lance_at(
    settings: Settings, dataset: str, snapshot_id: int | None, version: int
) -> tuple[LanceTable | None, int | None]:
    """The dataset's Lance table checked out at ``version`` and the version it reads: the latest
    when maintenance has cleaned ``version`` up (None: no Lance data yet).

    The local copy is brought up to date (a listing of the store) only the first time a process
    reads a (snapshot, version); the table is then kept open at that version (:data:`LANCE_CACHE`).
    """
    from lakehouse.vectors.store import local_copy

    key = (str(settings.home), dataset, snapshot_id, version)
    with _cache_lock:
        found = _lance.get(key)
        if found is not None:
            _lance.move_to_end(key)
            return found, version
    lance = local_copy(settings, dataset)
    if lance is None:
        return None, None
    if version < lance.version:
        try:
            lance.checkout(version)
        except (ValueError, OSError, RuntimeError):  # cleaned up by maintenance: read the latest
            return lance, int(lance.version)
    if int(lance.version) != version:  # the copy has not got that version: read what it has
        return lance, int(lance.version)
    with _cache_lock:
        _lance[key] = lance
        while len(_lance) > LANCE_CACHE:
            _lance.popitem(last=False)
    return lance, version


@dataclass
class _Held:
    """A table's rows at one snapshot, in memory, with their row ids sorted for lookup."""

    data: pa.Table
    sorted_ids: np.ndarray  # the ``_row_id`` values, UTF-8 bytes, sorted
    order: np.ndarray  # the row of ``data`` holding each of ``sorted_ids``

    @classmethod
    def of(cls, data: pa.Table) -> _Held:
        data = data.combine_chunks()  # one chunk per column: a take from many chunks costs ~1 ms
        ids = np.array(data[ROW_ID].to_pylist(), dtype=object)
        encoded = np.array([i.encode() if i is not None else b"" for i in ids], dtype=bytes)
        order = np.argsort(encoded, kind="stable")
        return cls(data, encoded[order], order)

    def rows(self, ids: list[str]) -> pa.Table:
        """The rows with these ids (those it holds), in no particular order."""
        wanted = np.array([i.encode() for i in ids], dtype=bytes)
        if not len(wanted) or not len(self.sorted_ids):
            return self.data.slice(0, 0)
        at = np.searchsorted(self.sorted_ids, wanted)
        at = np.minimum(at, len(self.sorted_ids) - 1)
        hit = self.sorted_ids[at] == wanted
        return self.data.take(pa.array(self.order[at[hit]], pa.int64()))


def _held_rows(settings: Settings, table: Any, snapshot_id: int) -> _Held | TableRows | pa.Table:
    """The table's rows at the snapshot, every tenant's: held in memory per process when its files
    are small enough (:data:`HELD_MAX_FILE_BYTES`, and four times that decoded), else the files
    to scan (or the rows read: with deletes to apply, pyiceberg reads them all)."""
    from lakehouse.query.files import ScanStats
    from lakehouse.query.scan import TableRows, table_rows

    key = (str(settings.home), str(table.metadata.table_uuid), snapshot_id)
    with _cache_lock:
        found = _held.get(key)
        if found is not None:
            _held.move_to_end(key)
            return found
    rows = table_rows(settings, table, snapshot_id, None, ScanStats())
    if isinstance(rows, TableRows):
        if sum(f.size for f in rows.files) > HELD_MAX_FILE_BYTES:
            return rows
        rows = rows.dataset().to_table()
    if rows.nbytes > 4 * HELD_MAX_FILE_BYTES:  # too large decoded to hold: used this once
        return rows
    held = _Held.of(rows)
    with _cache_lock:
        _held[key] = held
        while len(_held) > HELD_CACHE:
            _held.popitem(last=False)
    return held


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

    The hits' rows come as Arrow (the tenant's only): found by id in the snapshot's rows held
    in memory (:data:`HELD_MAX_FILE_BYTES`), else read from the files that can hold a hit (the
    ids pushed into the scan). Without a filter they are ranked here; the caller's filter runs in
    the same locked-down session and plan check as ``POST /sql``.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from lakehouse.query.scan import TableRows, arrow_schema

    ranked = pa.table(
        {
            "id": pa.array([h[0] for h in hits], pa.string()),
            SCORE: pa.array([float(h[1]) for h in hits], pa.float64()),
            "rank": pa.array(range(len(hits)), pa.int64()),
        }
    )
    started = time.perf_counter()
    rows: pa.Table
    if snapshot_id is None or not hits:
        rows = arrow_schema(table).empty_table()
    else:
        # The hits' rows (at most k per mode) are found here, in this thread: DuckDB then joins
        # an in-memory table and never calls back into the store's Python filesystem from its
        # own threads (a search waiting on such a callback could hold the request's worker forever).
        source = _held_rows(settings, table, snapshot_id)
        if isinstance(source, _Held):
            rows = source.rows([h[0] for h in hits])
        else:
            ids = ranked["id"].combine_chunks().cast(source.schema.field(ROW_ID).type)
            if isinstance(source, TableRows):
                rows = source.dataset().filter(pads.field(ROW_ID).isin(ids)).to_table()
            else:
                rows = source.filter(pc.is_in(source[ROW_ID], value_set=ids))
        if tenant is not None:
            rows = rows.filter(tenant.expression())
    if predicate is None:  # no SQL of the caller's to run: ranked here, typed as DuckDB answers
        try:
            return _ranked(rows, hits, k).cast(_answer_schema(settings, dataset, rows.schema))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass  # a type DuckDB answers in another form: DuckDB joins
    return _duck_join(settings, dataset, rows, ranked, predicate, k, started)


def _ranked(rows: pa.Table, hits: list[tuple[str, float]], k: int) -> pa.Table:
    """The best ``k`` of ``rows`` in the order of ``hits`` (one per id), with their scores."""
    rank = {row_id: i for i, (row_id, _) in enumerate(hits)}
    ranks = [rank[row_id] for row_id in rows[ROW_ID].to_pylist()]
    best = sorted(range(len(ranks)), key=ranks.__getitem__)[:k]
    out = rows.take(pa.array(best, pa.int64()))
    return out.append_column(SCORE, pa.array([float(hits[ranks[i]][1]) for i in best], pa.float64()))


_answers: dict[tuple[str, str, bytes], pa.Schema] = {}


def _answer_schema(settings: Settings, dataset: str, schema: pa.Schema) -> pa.Schema:
    """The schema of the DuckDB join's answer for rows of ``schema`` (asked once per process)."""
    key = (settings.namespace, dataset, schema.serialize().to_pybytes())
    found = _answers.get(key)
    if found is None:
        ranked = pa.table(
            {
                "id": pa.array([], pa.string()),
                SCORE: pa.array([], pa.float64()),
                "rank": pa.array([], pa.int64()),
            }
        )
        found = _duck_join(
            settings, dataset, schema.empty_table(), ranked, None, 1, time.perf_counter()
        ).schema
        _answers[key] = found
    return found


def _duck_join(
    settings: Settings,
    dataset: str,
    rows: pa.Table,
    ranked: pa.Table,
    predicate: str | None,
    k: int,
    started: float,
) -> pa.Table:
    """``rows`` that pass ``predicate``, joined to ``ranked`` (id, score, rank), best ``k`` first:
    in the same locked-down session and plan check as ``POST /sql``."""
    import duckdb

    from lakehouse.query.scan import session
    from lakehouse.query.sqlguard import check_plan

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
