"""The load ledger: which object versions, and which contents, a dataset has taken in.

Exactly-once in Lake rests here, not on snapshot summaries: an entry outlives snapshot expiry
and is kept at least ``LAKE_LEDGER_DAYS`` (default 30, longer than the DLQ's 14).

Store: one small JSON object per fact in the **warehouse bucket**, written with S3's conditional
PUT (``If-None-Match: *`` to claim, ``If-Match: <etag>`` to take over an entry past the window):

* ``_lake/ledger/<dataset>/v/<h(key)>/<h(version)>.json``: the object version (written when the
  source is settled: committed, or a duplicate; the claim of a source without a content hash);
* ``_lake/ledger/<dataset>/c/<h(key)>/<sha256>.json``: the same bytes under the same key (the
  claim: a source with a content hash is claimed here alone, one conditional PUT, and its
  version entry settles it, one PUT; a ``claimed`` content entry is read through its version's);
* ``_lake/ledger/<dataset>/f/<h(key)>/<h(version)>.json``: a version that failed terminally
  (sent to the DLQ once; a watcher does not deliver it again, a replay may still load it).

Why objects and not DynamoDB: the warehouse bucket already exists wherever Lake runs (AWS, the
local stack, any S3-compatible store), conditional PUT is atomic and strongly consistent on S3
and on moto, a lifecycle rule on ``_lake/ledger/`` drops entries after the window without code,
and a lookup is one GET by key (no scans). A table would need a second service and IAM policy
for the same two operations.

An entry's ``state`` is ``claimed`` (a committer batch owns the source: it is being committed,
and that batch's recovery finishes it), ``committed`` (with the snapshot ids and the ingest
report) or ``duplicate`` (the same bytes were committed under another version: ``of`` names it).
A claim is never released: the batch that claimed a source commits it, or its recovery does.
While a source is claimed, its version has no entry (``lookup`` returns None) unless it came
without a content hash.

API for callers that bring their own data files (the committer, a Daft backfill)::

    ledger = Ledger(settings, dataset)
    ledger.lookup(key, version)                  # Entry | None (None also past the window)
    ledger.lookup_content(key, content_hash)     # Entry | None (as its version settled it)
    won = ledger.claim(SourceId(key, version, content_hash), batch)   # the winning Entry
    ledger.settle(SourceId(...), Entry(...))     # the version entry of a source this batch owns

Callers never claim directly to commit rows: hand data files to
:func:`lakehouse.tables.committer.stage` and let the committer claim, commit and settle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lakehouse.config import Settings
from lakehouse.errors import StoreUnavailable
from lakehouse.storage import s3_client

LEDGER_PREFIX = "_lake/ledger"

State = Literal["claimed", "committed", "duplicate"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def short_hash(text: str) -> str:
    """A fixed-length, key-safe name for arbitrary text (object keys, version ids)."""
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class SourceId:
    """What the ledger knows a source by: its key, its version (id or ETag) and its content."""

    key: str
    version: str
    content_hash: str | None = None


@dataclass
class Entry:
    """One ledger fact (the JSON body of one ledger object)."""

    state: State
    batch: str
    key: str
    version: str
    content_hash: str | None = None
    at: str = field(default_factory=lambda: _now())
    snapshot_id: int | None = None
    quarantine_snapshot_id: int | None = None
    of: str | None = None  # duplicate: the version that holds these bytes
    report: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), default=str).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Entry:
        data = json.loads(body)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def age(self, now: dt.datetime | None = None) -> dt.timedelta:
        return (now or dt.datetime.now(dt.UTC)) - dt.datetime.fromisoformat(self.at)


def _code(e: Exception) -> str:
    response = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class Ledger:
    """The ledger of one dataset (its main and quarantine tables share it)."""

    def __init__(self, settings: Settings, dataset: str) -> None:
        self.settings = settings
        self.dataset = dataset
        self.bucket = settings.warehouse_bucket
        self.window = dt.timedelta(days=settings.ledger_days)
        self._s3 = s3_client(settings)

    def version_key(self, key: str, version: str) -> str:
        return f"{LEDGER_PREFIX}/{self.dataset}/v/{short_hash(key)}/{short_hash(version)}.json"

    def failure_key(self, key: str, version: str) -> str:
        return f"{LEDGER_PREFIX}/{self.dataset}/f/{short_hash(key)}/{short_hash(version)}.json"

    def content_key(self, key: str, content_hash: str) -> str:
        return f"{LEDGER_PREFIX}/{self.dataset}/c/{short_hash(key)}/{short_hash(content_hash)}.json"

    # --- reads ---------------------------------------------------------------------------

    def _get(self, obj: str) -> tuple[Entry, str] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            got = self._s3.get_object(Bucket=self.bucket, Key=obj)
            return Entry.from_json(got["Body"].read()), str(got["ETag"])
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404"):
                return None
            raise StoreUnavailable(f"ledger read of {obj} failed: {e}") from e
        except BotoCoreError as e:
            raise StoreUnavailable(f"ledger read of {obj} failed: {e}") from e

    def _live(self, obj: str) -> Entry | None:
        found = self._get(obj)
        if found is None or found[0].age() > self.window:
            return None
        return found[0]

    def lookup(self, key: str, version: str) -> Entry | None:
        """The entry of an object version, if the window still holds it."""
        return self._live(self.version_key(key, version))

    def lookup_content(self, key: str, content_hash: str) -> Entry | None:
        """The entry of these bytes under this key, if the window still holds it (as settled on
        the version that holds them: ``claimed`` while that version's batch has not committed)."""
        held = self._live(self.content_key(key, content_hash))
        return None if held is None else self._settled(held)

    def failure(self, key: str, version: str) -> dict[str, Any] | None:
        """Why an object version failed terminally (it went to the DLQ), if it did."""
        from botocore.exceptions import ClientError

        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self.failure_key(key, version))["Body"].read()
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404"):
                return None
            raise StoreUnavailable(f"ledger read failed: {e}") from e
        found: dict[str, Any] = json.loads(body)
        return found

    def fail(self, key: str, version: str, error: str, reason: str) -> None:
        """Record a terminal failure of an object version (not a load: a replay may still load it)."""
        body = {"key": key, "version": version, "error": error, "reason": reason, "at": _now()}
        self._s3.put_object(
            Bucket=self.bucket, Key=self.failure_key(key, version), Body=json.dumps(body).encode()
        )

    # --- writes --------------------------------------------------------------------------

    def _put(self, obj: str, entry: Entry, **condition: str) -> bool:
        """Write an entry; False when the condition failed (someone else's entry is there)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._s3.put_object(
                Bucket=self.bucket, Key=obj, Body=entry.to_json(), ContentType="application/json", **condition
            )
            return True
        except ClientError as e:
            if _code(e) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise StoreUnavailable(f"ledger write of {obj} failed: {e}") from e
        except BotoCoreError as e:
            raise StoreUnavailable(f"ledger write of {obj} failed: {e}") from e

    def _claim(self, obj: str, entry: Entry) -> Entry:
        for _ in range(5):
            if self._put(obj, entry, IfNoneMatch="*"):
                return entry
            found = self._get(obj)
            if found is None:
                continue  # deleted in between (lifecycle): claim again
            existing, etag = found
            if existing.age() <= self.window or existing.batch == entry.batch:
                return existing
            if self._put(obj, entry, IfMatch=etag):  # past the window: the slot is free again
                return entry
        raise StoreUnavailable(f"ledger entry {obj} kept changing under the claim")

    def claim(self, source: SourceId, batch: str) -> Entry:
        """Claim ``source`` for ``batch``; the winning entry.

        The result's ``batch`` is ``batch`` when this batch owns the source. Otherwise the source
        is another batch's (a concurrent or earlier delivery): ``state`` says whether that batch
        committed it. A source with a content hash is claimed by its content entry alone (one
        conditional PUT: the same version always has the same bytes, so two claims of one version
        meet there too); its version entry is written when it is settled. When the bytes are
        held by another version, the version is recorded as a ``duplicate`` of the version that
        holds them, and that entry is returned. A source without a content hash is claimed by
        its version entry.
        """
        mine = Entry("claimed", batch, source.key, source.version, source.content_hash)
        if source.content_hash is None:
            return self._claim(self.version_key(source.key, source.version), mine)
        held = self._claim(self.content_key(source.key, source.content_hash), mine)
        if held.version == source.version:
            return held if held.batch == batch else self._settled(held)
        holder = self._settled(held)
        dup = Entry(
            "duplicate",
            batch,
            source.key,
            source.version,
            source.content_hash,
            snapshot_id=holder.snapshot_id,
            quarantine_snapshot_id=holder.quarantine_snapshot_id,
            of=holder.version,
            report=holder.report,
        )
        self.settle(source, dup)
        return dup

    def _settled(self, held: Entry) -> Entry:
        """A content entry as its version settled it: a claim is settled on the version entry
        only, so a ``claimed`` content entry is followed to its version's entry (the claim
        itself while the batch that holds it has not committed)."""
        if held.state != "claimed":
            return held
        found = self._get(self.version_key(held.key, held.version))
        if found is None or found[0].batch != held.batch:
            return held
        return found[0]

    def settle(self, source: SourceId, entry: Entry) -> None:
        """Write the settled entry of a source this batch owns (committed, or a duplicate): one
        PUT of its version entry (its content entry keeps the claim and leads to it)."""
        self._put(self.version_key(source.key, source.version), entry)


def prune(settings: Settings, dataset: str, now: dt.datetime | None = None) -> int:
    """Delete the dataset's ledger entries older than the window; how many (the local stand-in
    for the ``_lake/ledger/`` lifecycle rule the template sets on AWS)."""
    from lakehouse.storage import list_objects

    s3 = s3_client(settings)
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=settings.ledger_days)
    deleted = 0
    ledger = Ledger(settings, dataset)
    for obj, _ in list(list_objects(settings, settings.warehouse_bucket, f"{LEDGER_PREFIX}/{dataset}/")):
        found = ledger._get(obj)
        if found is not None and dt.datetime.fromisoformat(found[0].at) < cutoff:
            s3.delete_object(Bucket=settings.warehouse_bucket, Key=obj)
            deleted += 1
    return deleted
