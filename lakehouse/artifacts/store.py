"""The artifact store: :class:`ArtifactStore` (async) over :class:`BlockingArtifactStore`."""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import json
import logging
import threading
import uuid
from dataclasses import replace
from typing import Any

from lakehouse.artifacts.index import SearchIndex, fuse, load_embedder
from lakehouse.artifacts.ledger import Ledger, State, now
from lakehouse.artifacts.model import (
    BINARY,
    DATA_TYPES,
    TEXT,
    Artifact,
    NotFoundError,
    SearchHit,
    SearchResults,
    ValidationError,
    check_content_type,
    check_data_type,
    check_metadata,
    check_name,
    decode_content,
    encode_content,
    join_path,
    normalise_subpath,
    split_path,
)
from lakehouse.config import Settings
from lakehouse.duck import epoch_ms, parse_time
from lakehouse.errors import BadRequest

log = logging.getLogger(__name__)

DEFAULT_TABLE = "artifacts"
MAX_QUERY_CHARS = 10_000
MIN_SIMILARITY = 0.3
AsOf = int | str | dt.datetime | None  # an Iceberg snapshot id, or a time (ISO-8601 text or datetime)


def _in_folder(artifact: Artifact, subpath: str, recursive: bool) -> bool:
    if artifact.subpath == subpath:
        return True
    return recursive and (subpath == "" or artifact.subpath.startswith(subpath + "/"))


class BlockingArtifactStore:
    """Artifacts in the warehouse: content objects, an Iceberg table of versions, a Lance index.

    Every method blocks; :class:`ArtifactStore` runs them in a thread. Instances are cheap and
    share nothing but the warehouse: any number of them, in any number of processes, see the
    same artifacts.

    Args:
        settings: where the warehouse and the catalog are.
        table: the Iceberg table (in ``settings.namespace``) of the artifact versions; the Lance
            search index is ``_<table>`` beside the vector datasets.
    """

    def __init__(self, settings: Settings, table: str = DEFAULT_TABLE) -> None:
        if not table.isidentifier():
            raise ValidationError(f"{table!r} is not a table name")
        self.settings = settings
        self.ledger = Ledger(settings, table)
        self.index = SearchIndex(settings, f"_{table}")
        self._sync_lock = threading.Lock()

    # --- writes ------------------------------------------------------------------------------

    def store(
        self,
        name: str,
        content: str | bytes,
        data_type: str = "other",
        metadata: dict[str, Any] | None = None,
        subpath: str | None = None,
        content_type: str | None = None,
    ) -> Artifact:
        """Store a new artifact at ``subpath/name``; a path holds one artifact (else ValidationError)."""
        name = check_name(name)
        data_type = check_data_type(data_type)
        folder = normalise_subpath(subpath)
        meta = check_metadata(metadata)
        data, encoding = encode_content(content)
        ctype = check_content_type(content_type, encoding)
        path = join_path(folder, name)
        artifact_id = uuid.uuid4().hex
        sha256 = self.ledger.put_content(data)

        def decide(state: State) -> Artifact:
            if path in state.by_path:
                raise ValidationError(
                    f"an artifact is already stored at {path!r} (id {state.by_path[path]}): update it"
                )
            at = now()
            return Artifact(
                artifact_id, name, data_type, folder, path, meta, len(data), sha256, ctype, encoding,
                version=1, op="store", created_at=at, updated_at=at,
            )  # fmt: skip

        artifact = self.ledger.commit(decide)
        return artifact

    def update(
        self,
        artifact_id: str,
        content: str | bytes | None = None,
        metadata: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> Artifact:
        """A new version: new content and/or metadata (replaced whole, not merged)."""
        if content is None and metadata is None and content_type is None:
            raise ValidationError("give new content, metadata or content_type")
        meta = None if metadata is None else check_metadata(metadata)
        data: bytes | None = None
        encoding: str | None = None
        sha256: str | None = None
        if content is not None:
            data, encoding = encode_content(content)
            sha256 = self.ledger.put_content(data)
        ctype = None if content_type is None else check_content_type(content_type, encoding or TEXT)

        def decide(state: State) -> Artifact:
            current = state.get(artifact_id)
            changes: dict[str, Any] = {"version": current.version + 1, "op": "update", "updated_at": now()}
            if meta is not None:
                changes["metadata"] = meta
            if data is not None and encoding is not None:
                changes.update(size=len(data), sha256=sha256, encoding=encoding)
                if ctype is None and encoding != current.encoding:
                    changes["content_type"] = check_content_type(None, encoding)
            if ctype is not None:
                changes["content_type"] = ctype
            return replace(current, snapshot_id=None, **changes)

        artifact = self.ledger.commit(decide)
        self._unindex(artifact_id)
        return artifact

    def delete(self, artifact_id: str) -> Artifact:
        """Delete an artifact (its versions stay in the history); returns the deleting version."""

        def decide(state: State) -> Artifact:
            current = state.get(artifact_id)
            version = current.version + 1
            return replace(current, version=version, op="delete", updated_at=now(), snapshot_id=None)

        artifact = self.ledger.commit(decide)
        self._unindex(artifact_id)
        return artifact

    def _unindex(self, artifact_id: str) -> None:
        """Drop the search row of a version that is no longer current (its successor, if any,
        is indexed by the next search). A failure only leaves the row to that search."""
        try:
            self.index.drop([artifact_id])
        except Exception:  # noqa: BLE001 - the ledger is the truth; every search re-checks and resyncs
            log.warning("search row of artifact %s left to the next search", artifact_id, exc_info=True)

    # --- reads -------------------------------------------------------------------------------

    def _state(self, as_of: AsOf) -> State:
        if as_of is None:
            return self.ledger.state()
        from pyiceberg.table.snapshots import ancestors_of

        from lakehouse.query.history import resolve

        when = as_of.isoformat() if isinstance(as_of, dt.datetime) else as_of
        table = self.ledger.table()
        if isinstance(when, str) and not when.strip().lstrip("-").isdigit():
            chain = list(ancestors_of(table.current_snapshot(), table.metadata))
            oldest = chain[-1] if chain else None
            try:
                at = epoch_ms(parse_time(when, "as_of"))
            except BadRequest as e:
                raise ValidationError(str(e)) from e
            if oldest is None or (oldest.parent_snapshot_id is None and at < oldest.timestamp_ms):
                return State.of(None, [])  # before the first artifact: there were none
        return self.ledger.state(resolve(table, when))

    def retrieve(
        self, artifact_id: str, version: int | None = None, as_of: AsOf = None
    ) -> Artifact:
        """An artifact with its content: the current version, a ``version`` of its history, or
        the version current at ``as_of`` (an Iceberg snapshot id or an ISO-8601 time)."""
        state = self._state(as_of)
        if version is None:
            found = state.current.get(artifact_id)
        else:
            found = next((a for a in state.versions if a.id == artifact_id and a.version == version), None)
        if found is None or found.deleted:
            what = f"version {version} of " if version is not None else ""
            when = f" at {as_of}" if as_of is not None else ""
            raise NotFoundError(f"no {what}artifact {artifact_id!r}{when}")
        return found.with_content(decode_content(self.ledger.get_content(found.sha256), found.encoding))

    def retrieve_by_path(self, path: str, as_of: AsOf = None) -> Artifact:
        """The artifact at ``subpath/name``, with its content."""
        folder, name = split_path(path)
        state = self._state(as_of)
        artifact_id = state.by_path.get(join_path(folder, name))
        if artifact_id is None:
            raise NotFoundError(f"no artifact at {join_path(folder, name)!r}")
        return self.retrieve(artifact_id, as_of=as_of)

    def list(
        self,
        data_type: str | None = None,
        subpath: str | None = None,
        recursive: bool = True,
        as_of: AsOf = None,
    ) -> builtins.list[Artifact]:
        """Current artifacts (no content) in ``subpath`` (default: the root) and, if ``recursive``,
        its sub-folders; of one ``data_type`` if given. Sorted by path."""
        if data_type is not None:
            check_data_type(data_type)
        folder = normalise_subpath(subpath)
        state = self._state(as_of)
        found = [
            a
            for a in state.current.values()
            if (data_type is None or a.data_type == data_type) and _in_folder(a, folder, recursive)
        ]
        return sorted(found, key=lambda a: a.path)

    def history(self, artifact_id: str) -> builtins.list[Artifact]:
        """Every version of an artifact, oldest first (the last one is ``delete`` if deleted)."""
        versions = sorted(
            (a for a in self.ledger.state().versions if a.id == artifact_id), key=lambda a: a.version
        )
        if not versions:
            raise NotFoundError(f"no artifact {artifact_id!r} was ever stored")
        return versions

    def search(
        self,
        query: str,
        data_type: str | None = None,
        subpath: str | None = None,
        limit: int = 10,
        min_similarity: float = MIN_SIMILARITY,
    ) -> SearchResults:
        """Artifacts matching ``query`` by words (full text) and by meaning (MiniLM), rank-fused.

        Searches names, paths, metadata and text content (bytes content: metadata only). Only
        current artifacts are returned; ``subpath`` includes its sub-folders. Without the
        ``embed`` extra the search is words only and ``warning`` says so.
        """
        if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY_CHARS:
            raise ValidationError(f"a query is 1 to {MAX_QUERY_CHARS} characters of text")
        if data_type is not None:
            check_data_type(data_type)
        if not 1 <= limit <= 1000:
            raise ValidationError("limit is 1 to 1000")
        folder = normalise_subpath(subpath) if subpath else None
        state = self.sync_index()
        semantic = self.index.has_vectors()
        candidates = self.index.search(query, max(4 * limit, 50), data_type, folder, semantic)
        valid = [
            c
            for c in candidates
            if (a := state.current.get(c.id)) is not None
            and a.version == c.version
            and (data_type is None or a.data_type == data_type)
            and (folder is None or _in_folder(a, folder, True))
        ]
        hits = [
            SearchHit(state.current[c.id], round(score, 6), c.text_rank, c.similarity)
            for c, score in fuse(valid, min_similarity)[:limit]
        ]
        why = load_embedder(self.settings)[1] or "semantic search is unavailable; searched words only"
        warning = None if semantic else why
        return SearchResults(query, "hybrid" if semantic else "text", hits, warning)

    def sync_index(self) -> State:
        """Bring the search index in step with the current artifacts; returns the state it matches."""
        with self._sync_lock:
            state = self.ledger.state()
            rows = self.index.rows()
            gone = [i for i in rows if i not in state.current]
            stale = [a for i, a in state.current.items() if rows.get(i) != a.version]
            self.index.drop(gone)
            self.index.put((a, self._text(a)) for a in stale)
            return state

    def _text(self, artifact: Artifact) -> str | None:
        """The text content of an artifact (None for bytes content: only its metadata is searched)."""
        if artifact.encoding != TEXT:
            return None
        return decode_content(self.ledger.get_content(artifact.sha256), TEXT)  # type: ignore[return-value]

    def get_stats(self) -> dict[str, Any]:
        """Counts by data type, bytes, versions and the time of the last change."""
        state = self.ledger.state()
        current = builtins.list(state.current.values())
        last = max((a.updated_at for a in state.versions), default=None)
        return {
            "artifacts": len(current),
            "by_type": {t: sum(1 for a in current if a.data_type == t) for t in DATA_TYPES},
            "total_bytes": sum(a.size for a in current),
            "text_artifacts": sum(1 for a in current if a.encoding == TEXT),
            "binary_artifacts": sum(1 for a in current if a.encoding == BINARY),
            "versions": len(state.versions),
            "deleted": len({a.id for a in state.versions}) - len(current),
            "last_update": last.isoformat() if isinstance(last, dt.datetime) else None,
            "snapshot_id": state.snapshot_id,
            "table": self.ledger.ident,
        }


class ArtifactStore:
    """The artifact store, async: each call runs :class:`BlockingArtifactStore` in a thread.

    Example::

        store = ArtifactStore(load_settings())
        a = await store.store("orders.json", text, "schema", {"owner": "sales"}, "sales/v1")
        same = await store.retrieve_by_path("sales/v1/orders.json")
        hits = await store.search("who buys what", data_type="schema")
    """

    def __init__(self, settings: Settings, table: str = DEFAULT_TABLE) -> None:
        self.blocking = BlockingArtifactStore(settings, table)

    async def store(
        self,
        name: str,
        content: str | bytes,
        data_type: str = "other",
        metadata: dict[str, Any] | None = None,
        subpath: str | None = None,
        content_type: str | None = None,
    ) -> Artifact:
        return await asyncio.to_thread(
            self.blocking.store, name, content, data_type, metadata, subpath, content_type
        )

    async def retrieve(
        self, artifact_id: str, version: int | None = None, as_of: AsOf = None
    ) -> Artifact:
        return await asyncio.to_thread(self.blocking.retrieve, artifact_id, version, as_of)

    async def retrieve_by_path(self, path: str, as_of: AsOf = None) -> Artifact:
        return await asyncio.to_thread(self.blocking.retrieve_by_path, path, as_of)

    async def list(
        self,
        data_type: str | None = None,
        subpath: str | None = None,
        recursive: bool = True,
        as_of: AsOf = None,
    ) -> builtins.list[Artifact]:
        return await asyncio.to_thread(self.blocking.list, data_type, subpath, recursive, as_of)

    async def history(self, artifact_id: str) -> builtins.list[Artifact]:
        return await asyncio.to_thread(self.blocking.history, artifact_id)

    async def search(
        self,
        query: str,
        data_type: str | None = None,
        subpath: str | None = None,
        limit: int = 10,
        min_similarity: float = MIN_SIMILARITY,
    ) -> SearchResults:
        return await asyncio.to_thread(self.blocking.search, query, data_type, subpath, limit, min_similarity)

    async def update(
        self,
        artifact_id: str,
        content: str | bytes | None = None,
        metadata: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> Artifact:
        return await asyncio.to_thread(self.blocking.update, artifact_id, content, metadata, content_type)

    async def delete(self, artifact_id: str) -> Artifact:
        return await asyncio.to_thread(self.blocking.delete, artifact_id)

    async def get_stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.blocking.get_stats)

    async def sync_index(self) -> None:
        await asyncio.to_thread(self.blocking.sync_index)


_stores: dict[str, BlockingArtifactStore] = {}
_stores_lock = threading.Lock()


def store_for(settings: Settings, table: str = DEFAULT_TABLE) -> BlockingArtifactStore:
    """One store per configuration and process (a warm function keeps its cached state)."""
    key = json.dumps([settings.model_dump(mode="json"), table], sort_keys=True)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = BlockingArtifactStore(settings, table)
        return _stores[key]

