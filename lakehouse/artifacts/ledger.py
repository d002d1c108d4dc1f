"""The artifact store's truth: content objects in the warehouse and an append-only Iceberg table.

Content is content-addressed (``s3://<warehouse>/_lake/artifacts/content/<sha256>``) and written
before the metadata commit, so no commit ever names bytes that are not there. Each change of an
artifact (store, update, delete) is one row and one Iceberg commit: the table's history is the
artifacts' history, and a snapshot id or time reads them as they were.

A commit is checked against the state it was decided on: the snapshot it was read at must still
be current (pyiceberg's own retry is off on this table), else the state is read again, the change
decided again (is the path still free? what is the next version?) and committed again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakehouse.artifacts.model import Artifact, ArtifactError, NotFoundError
from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.errors import CommitConflict, StoreUnavailable
from lakehouse.storage import s3_client
from lakehouse.tables.write import backoff, create_table, store_retry

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

CONTENT_PREFIX = "_lake/artifacts/content/"
ARTIFACT_ID = "lake.artifact.id"
ARTIFACT_VERSION = "lake.artifact.version"
ARTIFACT_OP = "lake.artifact.op"
DENIED = ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch")  # terminal
MAX_INCREMENT = 100  # commits read one by one on top of a cached state; more: read the table
MARK = "lake.artifacts"  # table property of an artifact table: a dataset table is never taken for one


def ledger_schema() -> Schema:
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

    columns = [
        ("id", StringType(), "artifact id"),
        ("version", LongType(), "1 for the store, +1 for every update and the delete"),
        ("op", StringType(), "store, update or delete"),
        ("name", StringType(), None),
        ("data_type", StringType(), "schema, macro, documentation, configuration, logs or other"),
        ("subpath", StringType(), "folder, '/'-separated, '' at the root"),
        ("path", StringType(), "subpath/name"),
        ("metadata", StringType(), "JSON object"),
        ("size", LongType(), "content bytes"),
        ("sha256", StringType(), "of the content; its object key"),
        ("content_type", StringType(), None),
        ("encoding", StringType(), "utf-8 (text) or binary"),
        ("created_at", TimestamptzType(), "when version 1 was stored"),
        ("updated_at", TimestamptzType(), "when this version was committed"),
    ]
    return Schema(
        *(
            NestedField(i, name, kind, required=False, doc=doc)
            for i, (name, kind, doc) in enumerate(columns, start=1)
        )
    )


def _row(artifact: Artifact) -> dict[str, Any]:
    body = artifact.to_dict(content=False)
    body.pop("snapshot_id")
    body["metadata"] = json.dumps(artifact.metadata, ensure_ascii=False, sort_keys=True)
    body["created_at"] = artifact.created_at
    body["updated_at"] = artifact.updated_at
    return body


def _artifact(row: dict[str, Any], snapshot_id: int | None) -> Artifact:
    return Artifact(
        id=row["id"],
        name=row["name"],
        data_type=row["data_type"],
        subpath=row["subpath"],
        path=row["path"],
        metadata=json.loads(row["metadata"]),
        size=int(row["size"]),
        sha256=row["sha256"],
        content_type=row["content_type"],
        encoding=row["encoding"],
        version=int(row["version"]),
        op=row["op"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        snapshot_id=snapshot_id,
    )


@dataclass(frozen=True)
class State:
    """Every version in the table at one snapshot, and the current (latest, not deleted) ones."""

    snapshot_id: int | None
    versions: list[Artifact]
    current: dict[str, Artifact]
    by_path: dict[str, str]

    @staticmethod
    def of(snapshot_id: int | None, versions: list[Artifact]) -> State:
        latest: dict[str, Artifact] = {}
        for a in versions:
            if a.id not in latest or a.version > latest[a.id].version:
                latest[a.id] = a
        current = {i: a for i, a in latest.items() if not a.deleted}
        return State(snapshot_id, versions, current, {a.path: a.id for a in current.values()})

    def get(self, artifact_id: str) -> Artifact:
        found = self.current.get(artifact_id)
        if found is None:
            raise NotFoundError(f"no artifact {artifact_id!r}")
        return found


class Ledger:
    """The Iceberg table ``<namespace>.<table>`` of artifact versions, and the content objects."""

    def __init__(self, settings: Settings, table: str = "artifacts") -> None:
        self.settings = settings
        self.ident = f"{settings.namespace}.{table}"
        self._table: Table | None = None
        self._cache: State | None = None
        self._lock = threading.RLock()  # one table object: its refreshes and commits take turns

    # --- the table ---------------------------------------------------------------------------

    def table(self, refresh: bool = True) -> Table:
        """The table (created on first use), refreshed unless ``refresh`` is false."""
        if self._table is None:
            catalog = get_catalog(self.settings)
            properties = {"format-version": "2", "write.parquet.compression-codec": "zstd", MARK: "true"}
            table = store_retry(
                self.settings,
                lambda: create_table(catalog, self.ident, ledger_schema(), _unpartitioned(), properties),
            )
            if table.properties.get(MARK) != "true":
                raise ArtifactError(f"{self.ident} is a table of another kind (no {MARK} property)")
            self._table = table
        elif refresh:
            store_retry(self.settings, self._table.refresh)
        return self._table

    def state(self, snapshot_id: int | None = None) -> State:
        """The artifacts at ``snapshot_id`` (default: the current snapshot, read fresh)."""
        with self._lock:
            table = self.table()
            if snapshot_id is None:
                snapshot_id = table.metadata.current_snapshot_id
            cached = self._cache
            if cached is not None and cached.snapshot_id == snapshot_id:
                return cached
            state = None
            if cached is not None and snapshot_id == table.metadata.current_snapshot_id:
                state = self._advance(table, cached, snapshot_id)
            if state is None:
                state = self._read(table, snapshot_id)
            if snapshot_id == table.metadata.current_snapshot_id:
                self._cache = state
            return state

    def _read(self, table: Table, snapshot_id: int | None) -> State:
        if snapshot_id is None:
            return State.of(None, [])
        rows = store_retry(self.settings, lambda: table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist())
        return State.of(snapshot_id, _versions(table, rows))

    def _advance(self, table: Table, cached: State, snapshot_id: int | None) -> State | None:
        """``cached`` plus the rows of the artifact commits since it (None: read it all again).

        Each commit adds one small file; reading only the new ones keeps a warm store's reads
        independent of its history's length. Anything but artifact appends since (compaction,
        rollback, expiry of the cached snapshot) means a full read.
        """
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan
        from pyiceberg.manifest import ManifestEntryStatus
        from pyiceberg.table import FileScanTask
        from pyiceberg.table.snapshots import Operation

        chain: list[Snapshot] = []
        snap = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
        while snap is not None and snap.snapshot_id != cached.snapshot_id:
            summary = snap.summary
            if summary is None or summary.operation != Operation.APPEND or summary.get(ARTIFACT_ID) is None:
                return None
            if len(chain) == MAX_INCREMENT or snap.parent_snapshot_id is None:
                return None
            chain.append(snap)
            snap = table.snapshot_by_id(snap.parent_snapshot_id)
        if snap is None:
            return None

        def rows() -> list[dict[str, Any]]:
            files = [
                entry.data_file
                for added in reversed(chain)
                for manifest in added.manifests(table.io)
                if manifest.added_snapshot_id == added.snapshot_id
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
                if entry.status == ManifestEntryStatus.ADDED
            ]
            scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
            return scan.to_table([FileScanTask(f) for f in files]).to_pylist()

        return State.of(snapshot_id, cached.versions + _versions(table, store_retry(self.settings, rows)))

    def commit(
        self,
        decide: Callable[[State], Artifact],
        sleep: Callable[[float], None] = time.sleep,
    ) -> Artifact:
        """Commit the version ``decide`` makes of the current state, as one snapshot.

        ``decide`` runs again on the new state whenever another writer committed first, so its
        checks (unique path, next version) hold for the state the commit lands on.
        """
        from pyiceberg.exceptions import CommitFailedException

        retries = self.settings.commit_retries
        for attempt in range(retries + 1):
            try:
                with self._lock:
                    return self._commit_once(decide)
            except CommitFailedException as e:
                if attempt == retries:
                    raise CommitConflict(
                        f"{self.ident}: a change lost to concurrent writers {attempt + 1} times"
                    ) from e
            except OSError as e:
                if attempt == retries:
                    raise StoreUnavailable(f"{self.ident}: commit failed: {e}") from e
            sleep(backoff(attempt))
        raise AssertionError("unreachable")

    def _commit_once(self, decide: Callable[[State], Artifact]) -> Artifact:
        state = self.state()
        artifact = decide(state)
        table = self.table(refresh=False)
        summary = {
            ARTIFACT_ID: artifact.id,
            ARTIFACT_VERSION: str(artifact.version),
            ARTIFACT_OP: artifact.op,
        }
        data = pa.Table.from_pylist([_row(artifact)], schema=table.schema().as_arrow())
        with table.transaction() as tx:
            tx.append(data, snapshot_properties=summary)
        snapshot_id = table.metadata.current_snapshot_id
        return artifact if snapshot_id is None else replace(artifact, snapshot_id=snapshot_id)

    # --- content -----------------------------------------------------------------------------

    def put_content(self, data: bytes) -> str:
        """Store ``data`` under its SHA-256 (once: an existing object is the same bytes)."""
        from botocore.exceptions import BotoCoreError, ClientError

        digest = hashlib.sha256(data).hexdigest()
        s3 = s3_client(self.settings)
        try:
            s3.put_object(
                Bucket=self.settings.warehouse_bucket,
                Key=CONTENT_PREFIX + digest,
                Body=data,
                IfNoneMatch="*",
            )
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in DENIED:
                raise ArtifactError(f"this function may not write {CONTENT_PREFIX}: {e}") from e
            if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise StoreUnavailable(f"could not store artifact content: {e}") from e
        except BotoCoreError as e:
            raise StoreUnavailable(f"could not store artifact content: {e}") from e
        return digest

    def get_content(self, sha256: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = s3_client(self.settings)
        try:
            obj = s3.get_object(Bucket=self.settings.warehouse_bucket, Key=CONTENT_PREFIX + sha256)
            data: bytes = obj["Body"].read()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                raise NotFoundError(f"the content {sha256} is gone from the store") from e
            if code in DENIED:
                raise ArtifactError(f"this function may not read {CONTENT_PREFIX}: {e}") from e
            raise StoreUnavailable(f"could not read artifact content: {e}") from e
        except BotoCoreError as e:
            raise StoreUnavailable(f"could not read artifact content: {e}") from e
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreUnavailable(f"the content {sha256} read back does not match its hash")
        return data


def _unpartitioned() -> Any:
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC

    return UNPARTITIONED_PARTITION_SPEC


def _versions(table: Table, rows: list[dict[str, Any]]) -> list[Artifact]:
    """Rows as artifact versions (with the snapshot that committed each), in commit order."""
    committed_by = _commits(table)
    versions = [_artifact(r, committed_by.get((r["id"], int(r["version"])))) for r in rows]
    return sorted(versions, key=lambda a: (a.updated_at, a.id, a.version))


def _commits(table: Table) -> dict[tuple[str, int], int]:
    """(artifact id, version) → the snapshot that committed it, from the snapshot summaries."""
    found: dict[tuple[str, int], int] = {}
    for snap in table.metadata.snapshots:
        summary = snap.summary
        if summary is None:
            continue
        artifact_id, version = summary.get(ARTIFACT_ID), summary.get(ARTIFACT_VERSION)
        if artifact_id is not None and version is not None:
            found[(artifact_id, int(version))] = snap.snapshot_id
    return found


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
