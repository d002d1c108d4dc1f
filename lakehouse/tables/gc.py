"""Snapshot expiry with file GC, and orphan cleanup.

pyiceberg 0.12's ``expire_snapshots`` only rewrites metadata: every file stays on storage. Lake
expires snapshots older than the retention (keeping at least ``min_snapshots`` of the current
history and every branch or tag head), then deletes the files that only the expired snapshots
reached: their manifest lists, manifests, and data and delete files no remaining snapshot
holds. Orphan cleanup deletes files under the table's location that no metadata references at
all (failed writes, old metadata versions) once they are older than an age threshold. Both list
the files from the store and never touch anything outside the table's location.

Per-table overrides (table properties): ``lake.snapshot-retention-days``, ``lake.min-snapshots``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from lakehouse.config import Settings
from lakehouse.errors import CommitConflict, StoreUnavailable
from lakehouse.storage import arrow_filesystem, s3_client
from lakehouse.tables.write import backoff, commit_expiry

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

RETENTION_PROPERTY = "lake.snapshot-retention-days"
MIN_SNAPSHOTS_PROPERTY = "lake.min-snapshots"
EXPIRED_IDS_PROPERTY = "lake.expired-snapshot-ids"
EXPIRED_THROUGH_PROPERTY = "lake.expired-through-ms"
EXPIRED_IDS_KEPT = 200  # recent expired ids remembered, so rollback can say "expired"


@dataclass
class StoredFile:
    """One object under a table's location."""

    path: str  # s3://bucket/key
    size: int
    modified: dt.datetime


@dataclass
class ExpiryResult:
    table: str
    snapshots_expired: int = 0
    snapshots_kept: int = 0
    files_deleted: int = 0
    bytes_freed: int = 0
    dry_run: bool = False
    expired_snapshot_ids: list[int] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OrphanResult:
    table: str
    files_found: int = 0
    bytes: int = 0
    files_deleted: int = 0
    bytes_freed: int = 0
    dry_run: bool = False
    older_than: str = ""
    orphans: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the store --------------------------------------------------------------------------------


def _split(location: str) -> tuple[str, str]:
    url = urlparse(location)
    if url.scheme not in ("s3", "s3a", "s3n"):
        raise StoreUnavailable(f"table location {location!r} is not on S3")
    return url.netloc, url.path.lstrip("/").rstrip("/") + "/"


def _normalise(path: str) -> str:
    url = urlparse(path)
    return f"s3://{url.netloc}/{url.path.lstrip('/')}"


def list_table_files(settings: Settings, table: Table) -> list[StoredFile]:
    """Every object under the table's location, listed from the store (directory markers aside).

    Listed through Arrow's S3 client (one flat ``ListObjectsV2`` walk), which pyiceberg's file
    IO has set up already: expiry and orphan dry runs make no boto3 call.
    """
    import pyarrow.fs as pafs

    bucket, prefix = _split(table.location())
    selector = pafs.FileSelector(f"{bucket}/{prefix}", recursive=True, allow_not_found=True)
    try:
        infos = arrow_filesystem(settings).get_file_info(selector)
    except OSError as e:
        raise StoreUnavailable(f"cannot list {table.location()}: {e}") from e
    # A directory marker (a key ending in "/", which pyarrow leaves) lists as a directory.
    return [
        StoredFile(f"s3://{info.path}", int(info.size or 0), info.mtime)
        for info in infos
        if info.type == pafs.FileType.File
    ]


def delete_files(settings: Settings, table: Table, paths: Iterable[str]) -> None:
    """Delete objects, refusing any that is not under the table's location."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = _split(table.location())
    keys = []
    for path in paths:
        url = urlparse(path)
        key = url.path.lstrip("/")
        if url.netloc != bucket or not key.startswith(prefix):
            raise AssertionError(f"refusing to delete {path}: outside {table.location()}")
        keys.append(key)
    s3 = s3_client(settings)
    try:
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            response = s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
            if response.get("Errors"):
                first = response["Errors"][0]
                raise StoreUnavailable(
                    f"{len(response['Errors'])} deletes failed under {table.location()}, "
                    f"first {first.get('Key')}: {first.get('Code')}"
                )
    except (BotoCoreError, ClientError) as e:
        raise StoreUnavailable(f"cannot delete under {table.location()}: {e}") from e


# --- what metadata references -----------------------------------------------------------------


def reachable(table: Table, snapshots: Iterable[Snapshot], cache: dict[str, list[str]]) -> set[str]:
    """Manifest lists, manifests and live data/delete files of ``snapshots``.

    Manifest lists and manifests are read in parallel (each is one GET); ``cache`` keeps the
    files of each manifest across calls.
    """
    from concurrent.futures import ThreadPoolExecutor

    snapshots = list(snapshots)
    paths: set[str] = {_normalise(s.manifest_list) for s in snapshots}
    with ThreadPoolExecutor(max_workers=8) as pool:
        manifests: dict[str, Any] = {}
        for listed in pool.map(lambda s: s.manifests(table.io), snapshots):
            for manifest in listed:
                manifests.setdefault(manifest.manifest_path, manifest)
        paths.update(_normalise(p) for p in manifests)
        missing = [m for p, m in manifests.items() if p not in cache]

        def entries(manifest: Any) -> tuple[str, list[str]]:
            files = [
                _normalise(e.data_file.file_path)
                for e in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
            ]
            return manifest.manifest_path, files

        for path, files in pool.map(entries, missing):
            cache[path] = files
    for path in manifests:
        paths.update(cache[path])
    return paths


def referenced(table: Table) -> set[str]:
    """Every file the table's metadata references: all snapshots' files, the current metadata
    file, the previous ones in its metadata log, and statistics files."""
    metadata = table.metadata
    paths = reachable(table, metadata.snapshots, {})
    if table.metadata_location:
        paths.add(_normalise(table.metadata_location))
    paths.update(_normalise(entry.metadata_file) for entry in metadata.metadata_log)
    paths.update(_normalise(s.statistics_path) for s in metadata.statistics)
    paths.update(_normalise(s.statistics_path) for s in metadata.partition_statistics)
    return paths


# --- expiry + GC ------------------------------------------------------------------------------


def _to_expire(table: Table, cutoff_ms: int, min_snapshots: int) -> list[int]:
    from pyiceberg.table.snapshots import ancestors_of

    metadata = table.metadata
    keep = {ref.snapshot_id for ref in metadata.refs.values()}
    history = list(ancestors_of(metadata.current_snapshot(), metadata))
    keep.update(s.snapshot_id for s in history[:min_snapshots])
    return [
        s.snapshot_id for s in metadata.snapshots if s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep
    ]


def _commit_expiry(table: Table, ids: list[int]) -> None:
    expired = [s for s in table.metadata.snapshots if s.snapshot_id in set(ids)]
    remembered = [int(x) for x in table.properties.get(EXPIRED_IDS_PROPERTY, "").split(",") if x]
    remembered = (remembered + ids)[-EXPIRED_IDS_KEPT:]
    through = max(
        [int(table.properties.get(EXPIRED_THROUGH_PROPERTY, 0))] + [s.timestamp_ms for s in expired]
    )
    commit_expiry(
        table,
        ids,
        {EXPIRED_IDS_PROPERTY: ",".join(map(str, remembered)), EXPIRED_THROUGH_PROPERTY: str(through)},
    )


def expire_snapshots(
    settings: Settings,
    table: Table,
    now: dt.datetime | None = None,
    retention: dt.timedelta | None = None,
    min_snapshots: int | None = None,
    dry_run: bool = False,
    sleep: Any = time.sleep,
) -> ExpiryResult:
    """Expire old snapshots, then delete the files only they reached.

    Args:
        settings: Lake settings (retention defaults, retries, the store).
        table: the table.
        now: the current time (tests pass one).
        retention: expire snapshots older than this; default the table property
            ``lake.snapshot-retention-days``, else ``LAKE_SNAPSHOT_RETENTION_DAYS``.
        min_snapshots: newest snapshots of the current history kept whatever their age.
        dry_run: report what would be expired and deleted; change nothing.
    """
    from pyiceberg.exceptions import CommitFailedException

    now = now or dt.datetime.now(dt.UTC)
    props = table.properties
    if retention is None:
        retention = dt.timedelta(days=float(props.get(RETENTION_PROPERTY, settings.snapshot_retention_days)))
    if min_snapshots is None:
        min_snapshots = int(props.get(MIN_SNAPSHOTS_PROPERTY, settings.min_snapshots))
    cutoff_ms = int((now - retention).timestamp() * 1000)
    result = ExpiryResult(table=".".join(table.name()), dry_run=dry_run)

    for attempt in range(settings.commit_retries + 1):
        table.refresh()
        ids = _to_expire(table, cutoff_ms, min_snapshots)
        if not ids:
            result.snapshots_kept = len(table.metadata.snapshots)
            return result
        cache: dict[str, list[str]] = {}
        before = reachable(table, table.metadata.snapshots, cache)
        if dry_run:
            kept = [s for s in table.metadata.snapshots if s.snapshot_id not in set(ids)]
            after = reachable(table, kept, cache)
            break
        try:
            _commit_expiry(table, ids)
        except CommitFailedException as e:
            if attempt == settings.commit_retries:
                raise CommitConflict(f"{result.table}: snapshot expiry lost to concurrent writers") from e
            sleep(backoff(attempt))
            continue
        table.refresh()
        after = reachable(table, table.metadata.snapshots, cache)
        break
    result.expired_snapshot_ids = ids
    result.snapshots_expired = len(ids)
    result.snapshots_kept = len(table.metadata.snapshots) - (len(ids) if dry_run else 0)
    unreferenced = before - after
    stored = {f.path: f for f in list_table_files(settings, table)}
    gone = sorted(p for p in unreferenced if p in stored)
    if not dry_run:
        delete_files(settings, table, gone)
    result.deleted = gone
    result.files_deleted = len(gone)
    result.bytes_freed = sum(stored[p].size for p in gone)
    return result


# --- orphans ----------------------------------------------------------------------------------


def find_orphans(settings: Settings, table: Table, older_than: dt.datetime) -> Iterator[StoredFile]:
    """Files under the table's location that no metadata references, last written before
    ``older_than``."""
    table.refresh()
    known = referenced(table)
    for stored in list_table_files(settings, table):
        if stored.path not in known and stored.modified < older_than:
            yield stored


def remove_orphans(
    settings: Settings,
    table: Table,
    now: dt.datetime | None = None,
    age: dt.timedelta | None = None,
    dry_run: bool = False,
) -> OrphanResult:
    """Delete (or, with ``dry_run``, list) the table's orphan files older than ``age``
    (default ``LAKE_ORPHAN_AGE_DAYS``)."""
    now = now or dt.datetime.now(dt.UTC)
    age = dt.timedelta(days=settings.orphan_age_days) if age is None else age
    older_than = now - age
    orphans = sorted(find_orphans(settings, table, older_than), key=lambda f: f.path)
    result = OrphanResult(
        table=".".join(table.name()),
        files_found=len(orphans),
        bytes=sum(f.size for f in orphans),
        dry_run=dry_run,
        older_than=older_than.isoformat(),
        orphans=[f.path for f in orphans],
    )
    if not dry_run and orphans:
        delete_files(settings, table, result.orphans)
        result.files_deleted = len(orphans)
        result.bytes_freed = result.bytes
    return result
