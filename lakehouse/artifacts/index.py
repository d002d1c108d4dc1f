"""The artifacts' search index: a Lance table of one row per current artifact, beside the vectors.

Each row holds the artifact's searchable text (name, path, type, metadata, text content) with a
full-text index, and, where the ``embed`` extra is installed, its MiniLM embedding. The Iceberg
ledger is the truth: :meth:`SearchIndex.sync` brings the rows in step with a state (adds what is
missing, drops what is deleted or stale), and every hit is checked against that state.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa

from lakehouse.artifacts.model import TEXT, Artifact
from lakehouse.config import Settings
from lakehouse.errors import EmbedderUnavailable

if TYPE_CHECKING:
    from lancedb.table import Table as LanceTable

log = logging.getLogger(__name__)

EMBEDDER = "minilm"
EMBED_CHARS = 2_000  # MiniLM reads 256 tokens at most: the start of the content carries the meaning
TEXT_CHARS = 1_000_000  # of text content indexed for words
OPTIMIZE_AFTER = 256  # unindexed rows (searched by brute force) that make the index catch up
RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al.)
_WORD = re.compile(r"\w+")


def searchable_text(artifact: Artifact, content: str | bytes | None, limit: int) -> str:
    """What a search reads of an artifact: name, path, type, metadata and (text) content."""
    parts = [artifact.name, artifact.path.replace("/", " "), artifact.data_type]
    parts.extend(f"{k}: {_flat(v)}" for k, v in sorted(artifact.metadata.items()))
    if isinstance(content, str) and artifact.encoding == TEXT:
        parts.append(content[:limit])
    return "\n".join(parts)


def _flat(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def words(query: str) -> str:
    """The query's words only: punctuation never reaches the full-text parser."""
    return " ".join(_WORD.findall(query))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def where(data_type: str | None, subpath: str | None) -> str | None:
    """A Lance filter on data type and folder (a folder includes its sub-folders)."""
    terms: list[str] = []
    if data_type is not None:
        terms.append(f"data_type = {_quote(data_type)}")
    if subpath:
        escaped = subpath.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        terms.append(f"(subpath = {_quote(subpath)} OR subpath LIKE {_quote(escaped + '/%')} ESCAPE '\\')")
    return " AND ".join(terms) or None


_embedder: Any = None
_embedder_error: str | None = None
_embedder_lock = threading.Lock()


def load_embedder(settings: Settings | None = None) -> tuple[Any, str | None]:
    """The MiniLM embedder, or None and why not (the ``embed`` extra is optional)."""
    global _embedder, _embedder_error
    with _embedder_lock:
        if _embedder is None and _embedder_error is None:
            try:
                from lakehouse.vectors.embedders import get_embedder

                _embedder = get_embedder(EMBEDDER, settings)
            except (ImportError, EmbedderUnavailable) as e:
                _embedder_error = f"semantic search is unavailable ({e}); searched words only"
                log.warning(_embedder_error)
        return _embedder, _embedder_error


@dataclass(frozen=True)
class Candidate:
    id: str
    version: int
    text_rank: int | None = None
    similarity: float | None = None


class SearchIndex:
    """The Lance table ``_<table>`` of the artifacts' searchable text and embeddings."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self._table: LanceTable | None = None
        self._lock = threading.Lock()

    def _embedder(self) -> Any:
        return load_embedder(self.settings)[0]

    def _open(self) -> LanceTable:
        """The Lance table, created on first use (with a vector column where embeddings exist)."""
        if self._table is None:
            from lakehouse.vectors.store import connect

            embedder = self._embedder()
            fields = [
                pa.field("id", pa.string()),
                pa.field("version", pa.int64()),
                pa.field("data_type", pa.string()),
                pa.field("subpath", pa.string()),
                pa.field("text", pa.string()),
            ]
            if embedder is not None:
                fields.append(pa.field("vector", pa.list_(pa.float32(), _dim(embedder))))
            db = connect(self.settings)
            self._table = db.create_table(self.name, schema=pa.schema(fields), exist_ok=True)
        return self._table

    def _existing(self) -> LanceTable | None:
        """The Lance table if it exists (without loading an embedder to create it)."""
        if self._table is None:
            from lakehouse.vectors.store import connect

            try:
                self._table = connect(self.settings).open_table(self.name)
            except ValueError:  # lancedb's "table not found"
                return None
        return self._table

    def has_vectors(self) -> bool:
        return "vector" in self._open().schema.names and self._embedder() is not None

    def rows(self) -> dict[str, int]:
        """Artifact id → the version its row was made of."""
        table = self._existing()
        if table is None:
            return {}
        table.checkout_latest()
        data = table.search().select(["id", "version"]).limit(None).to_arrow()
        return dict(zip(data["id"].to_pylist(), data["version"].to_pylist(), strict=True))

    def put(self, artifacts: Iterable[tuple[Artifact, str | bytes | None]]) -> None:
        """(Re)index these artifacts: one row each, replacing rows of their earlier versions."""
        items = list(artifacts)
        if not items:
            return
        with self._lock:
            table = self._open()
            items = list({a.id: (a, c) for a, c in items}.values())
            rows: dict[str, list[Any]] = {
                "id": [a.id for a, _ in items],
                "version": [a.version for a, _ in items],
                "data_type": [a.data_type for a, _ in items],
                "subpath": [a.subpath for a, _ in items],
                "text": [searchable_text(a, c, TEXT_CHARS) for a, c in items],
            }
            if "vector" in table.schema.names:
                embedder = self._embedder()
                if embedder is None:
                    raise EmbedderUnavailable("this index holds embeddings; install the 'embed' extra")
                vectors = embedder.embed([searchable_text(a, c, EMBED_CHARS) for a, c in items])
                rows["vector"] = list(np.asarray(vectors, dtype=np.float32))
            data = pa.table(rows, schema=table.schema)
            table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)
            fts = next((idx for idx in table.list_indices() if idx.index_type == "FTS"), None)
            if fts is None:
                from lancedb.index import FTS

                table.create_index("text", config=FTS(), replace=True)
            else:
                stats = table.index_stats(fts.name)
                if stats is not None and stats.num_unindexed_rows >= OPTIMIZE_AFTER:
                    table.optimize()  # rows added since the index was built join it; fragments merge

    def drop(self, artifact_ids: Iterable[str]) -> None:
        ids = sorted(set(artifact_ids))
        if not ids:
            return
        with self._lock:
            table = self._existing()
            if table is not None:
                table.delete(f"id IN ({', '.join(_quote(i) for i in ids)})")

    def search(
        self, query: str, limit: int, data_type: str | None, subpath: str | None, semantic: bool
    ) -> list[Candidate]:
        """Full-text and (if ``semantic``) nearest-meaning candidates, each list ``limit`` long."""
        table = self._open()
        table.checkout_latest()
        filter_ = where(data_type, subpath)
        found: dict[str, Candidate] = {}
        text = words(query)
        if text and any(idx.index_type == "FTS" for idx in table.list_indices()):
            q = table.search(text, query_type="fts", fts_columns="text")
            if filter_:
                q = q.where(filter_, prefilter=True)
            hits = q.select(["id", "version", "_score"]).limit(limit).to_arrow()
            pairs = zip(hits["id"].to_pylist(), hits["version"].to_pylist(), strict=True)
            for rank, (i, v) in enumerate(pairs):
                found.setdefault(i, Candidate(i, v, text_rank=rank + 1))
        if semantic and query.strip():
            vector = np.asarray(self._embedder().embed([query]), dtype=np.float32)[0]
            q = cast(Any, table.search(vector, vector_column_name="vector")).distance_type("cosine")
            if filter_:
                q = q.where(filter_, prefilter=True)
            hits = q.select(["id", "version", "_distance"]).limit(limit).to_arrow()
            columns = (hits["id"].to_pylist(), hits["version"].to_pylist(), hits["_distance"].to_pylist())
            for i, v, d in zip(*columns, strict=True):
                prior = found.get(i)
                if prior is None:
                    found[i] = Candidate(i, v, similarity=1.0 - float(d))
                elif prior.similarity is None and prior.version == v:
                    found[i] = Candidate(i, v, prior.text_rank, similarity=1.0 - float(d))
        return list(found.values())


def _dim(embedder: Any) -> int:
    dim = getattr(embedder, "dim", None)
    if isinstance(dim, int):
        return dim
    return int(np.asarray(embedder.embed(["dimension"])).shape[1])


def fuse(candidates: list[Candidate], min_similarity: float) -> list[tuple[Candidate, float]]:
    """Reciprocal-rank fusion of the word ranks and the meaning ranks, best first.

    A candidate only close in meaning counts when its similarity reaches ``min_similarity``:
    nearest neighbours always exist, relevant ones not.
    """
    semantic = sorted(
        (c for c in candidates if c.similarity is not None and c.similarity >= min_similarity),
        key=lambda c: -(c.similarity or 0.0),
    )
    semantic_rank = {c.id: r + 1 for r, c in enumerate(semantic)}
    scored: list[tuple[Candidate, float]] = []
    for c in candidates:
        score = 0.0
        if c.text_rank is not None:
            score += 1.0 / (RRF_K + c.text_rank)
        if c.id in semantic_rank:
            score += 1.0 / (RRF_K + semantic_rank[c.id])
        if score > 0:
            scored.append((c, score))
    scored.sort(key=lambda cs: (-cs[1], cs[0].id))
    return scored
