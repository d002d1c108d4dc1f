"""Ingest a Google Takeout archive: members → product tables, blobs and the member ledger.

One call handles one *member range* of one archive version (a zip's members ``[start, end)``,
or a whole tar stream). Its identity, ``s3://bucket/key#members=start-end`` + the archive's
version, is the idempotency key of every commit it makes: one commit per product table (and
its quarantine table) and, last, one to ``takeout_members``, the ledger that says the range is
done. A redelivered range adds nothing; a range that failed half-way is redone, and tables it
had already committed are skipped by their own ledger entry.

An archive larger than ``LAKE_TAKEOUT_RANGE_BYTES`` is split into ranges: with
``LAKE_TAKEOUT_QUEUE_URL`` set, each range becomes an SQS message for the Takeout function
(fan-out); without it (``lake put``, tests) the ranges run one after another in process.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.contracts.model import Contract, load_contract
from lakehouse.contracts.validate import validation_connection
from lakehouse.errors import (
    ArchiveUnreadable,
    LakeError,
    MemberRejected,
    StoreUnavailable,
    UnsupportedFormat,
)
from lakehouse.storage import open_object
from lakehouse.tables.ledger import Entry, SourceId
from lakehouse.tables.ledger import Ledger as LoadLedger
from lakehouse.tables.write import (
    SOURCE_URI,
    SOURCE_VERSION,
    SourceRef,
    committed_snapshot,
    ensure_tables,
    limit_write_workers,
    resolve_source,
)
from lakehouse.takeout.archive import (
    LimitedReader,
    Member,
    ZipArchive,
    archive_kind,
    check_member,
    check_total,
    iter_tar,
    plan_ranges,
)
from lakehouse.takeout.blobs import put_blob, spool
from lakehouse.takeout.products import PRODUCTS, parse_member, route
from lakehouse.takeout.sink import REPORTED_QUARANTINE, Ledger, ProductSink

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

MEMBERS_TABLE = "takeout_members"
TAR_LAST = "lake.takeout.last"  # on the ledger commit of a tar's last chunk: the tar is done
TAR_REST = -1  # the end of a tar continuation message's range: to the end of the stream

Progress = Callable[[dict[str, Any]], None]


@dataclass
class TakeoutReport:
    """What one ingest of an archive (or of one member range of it) did."""

    source: str
    version: str
    kind: str
    ranges: list[str]
    members: int = 0
    members_parsed: int = 0
    members_stored: int = 0
    members_quarantined: int = 0
    products: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantined_members: list[dict[str, str]] = field(default_factory=list)
    blobs_written: int = 0
    bytes_read: int = 0
    snapshots: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    next_member: int | None = None  # a tar continued by a queued message: where it goes on
    vectors: dict[str, str] = field(default_factory=dict)  # table → indexed, or unavailable: why
    duplicate: bool = False
    seconds: float = 0.0
    rows_per_second: float = 0.0

    @property
    def rows(self) -> int:
        return sum(p["rows"] for p in self.products.values())

    def merge(self, other: TakeoutReport) -> None:
        self.ranges += other.ranges
        for name in ("members", "members_parsed", "members_stored", "members_quarantined"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.blobs_written += other.blobs_written
        self.bytes_read += other.bytes_read
        self.quarantined_members += other.quarantined_members
        for product, counts in other.products.items():
            mine = self.products.setdefault(product, {"members": 0, "rows": 0, "rows_quarantined": 0})
            for k, v in counts.items():
                mine[k] += v
        self.snapshots.update(other.snapshots)
        self.vectors.update(other.vectors)
        self.duplicate = self.duplicate and other.duplicate

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["rows"] = self.rows
        return body


class _Range:
    """The state of one member range while it is processed.

    Memory does not grow with the range: a member's ledger row leaves for the :class:`Ledger`
    (written to data files every few thousand members) once its counts are final, and product
    rows are validated and written in bounded batches (:mod:`lakehouse.takeout.sink`).
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        source: SourceRef,
        archive_uri: str,
        version: str,
        progress: Progress | None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.archive_uri = archive_uri
        self.version = version
        self.progress = progress
        limit_write_workers(settings.write_workers)
        self.con = validation_connection(settings, threads=1)
        self.now = dt.datetime.now(dt.UTC)
        members_contract: Contract = load_contract(settings, MEMBERS_TABLE)
        self.ledger = Ledger(ensure_tables(catalog, settings, members_contract)[0])
        self.sinks: dict[str, ProductSink] = {}
        for product in PRODUCTS:
            contract = load_contract(settings, product.table)
            main, quarantine = ensure_tables(catalog, settings, contract)
            self.sinks[product.name] = ProductSink(
                contract, main, quarantine, settings, archive_uri, version, self.con, self.ledger
            )
            self.sinks[product.name].stage_vectors(source)
        self.lock = threading.Lock()
        self.blobs_written = 0
        self.bytes_read = 0
        self.members_done = 0
        self.done_rows: Counter[str] = Counter()

    def read(
        self, member: Member, open_member: Callable[[], IO[bytes]] | None
    ) -> tuple[dict[str, Any], IO[bytes] | None]:
        """Check a member and copy it into a spool (its ledger row, and the spool or None when
        the member was refused)."""
        row: dict[str, Any] = {
            "ingested_at": self.now,
            "archive": self.archive_uri,
            "archive_version": self.version,
            "member_index": member.index,
            "member": member.path,
            "product": None,
            "status": "stored",
            "rule": None,
            "reason": None,
            "size": member.size,
            "compressed_size": member.compressed_size,
            "sha256": None,
            "blob_key": None,
            "rows": None,
            "rows_quarantined": None,
        }
        try:
            check_member(member, self.settings)
            if open_member is None:
                raise MemberRejected("special", f"member {member.path!r} is not a regular file")
            with open_member() as raw:
                data, sha, size = spool(LimitedReader(raw, member, self.settings))
        except MemberRejected as e:
            row.update(status="quarantined", rule=e.rule, reason=str(e))
            return row, None
        row.update(sha256=sha, size=size)
        return row, data

    def store(self, member: Member, row: dict[str, Any], data: IO[bytes] | None) -> None:
        """Keep a spooled member as a blob, parse it when a product owns its path, ledger it."""
        product: str | None = None
        records = 0
        adopted = False
        if data is not None:
            try:
                with data:
                    uri, new = put_blob(self.settings, data, row["sha256"], int(row["size"]))
                    row.update(blob_key=uri)
                    with self.lock:
                        self.blobs_written += int(new)
                        self.bytes_read += int(row["size"])
                    routed = route(member.path)
                    if member.nested_archive:
                        row.update(
                            rule="nested_archive", reason="a nested archive is kept as a blob, not expanded"
                        )
                    elif routed is not None:
                        parser, match = routed
                        rows = self.sinks[parser.name].member(member.path, member.index)
                        for record in parse_member(parser, match, data, member.path):
                            rows.add(record)
                        row.update(product=parser.table, status="parsed")
                        product, records = parser.name, rows.records
                        rows.done(row)  # the ledger takes the row when its counts are final
                        adopted = True
            except MemberRejected as e:
                row.update(status="quarantined", rule=e.rule, reason=str(e), product=None)
                product, records = None, 0
        if not adopted:
            self.ledger.add(row)
        with self.lock:  # progress is reported under the lock too: lines come out in count order
            self.members_done += 1
            if product:
                self.done_rows[product] += records
            if self.progress:
                self.progress(
                    {
                        "member": member.path,
                        "status": row["status"],
                        "product": product,
                        "rule": row["rule"],
                        "records": records,
                        "records_by_product": dict(self.done_rows),
                        "members_done": self.members_done,
                    }
                )

    def process(self, member: Member, open_member: Callable[[], IO[bytes]] | None) -> None:
        row, data = self.read(member, open_member)
        self.store(member, row, data)

    def commit(self, report: TakeoutReport, properties: dict[str, str] | None = None) -> None:
        """One commit per product (and quarantine) table with rows, then the ledger's."""
        props = {
            "lake.takeout.archive": self.archive_uri,
            "lake.takeout.range": self.source.key,
            **(properties or {}),
        }
        for name, sink in self.sinks.items():
            sink.finish()
            table = f"takeout_{name}"
            if sink.bad.rows:
                summary = {**props, "lake.rows.quarantined": str(sink.bad.rows)}
                report.snapshots[f"{table}__quarantine"] = sink.bad.commit(
                    self.source, summary, self.settings
                )[0]
            if sink.good.rows:
                summary = {**props, "lake.rows.accepted": str(sink.good.rows)}
                report.snapshots[table] = _commit_with_vectors(sink, self.source, summary, self.settings)
            elif sink.vectors is not None:
                sink.vectors.close()
            if sink.vectors_state != "none":
                report.vectors[table] = sink.vectors_state
        ledger = self.ledger
        report.members += ledger.members
        report.members_parsed += ledger.parsed
        report.members_stored += ledger.stored
        report.members_quarantined += ledger.quarantined
        for table, counts in ledger.products.items():
            mine = report.products.setdefault(table, {"members": 0, "rows": 0, "rows_quarantined": 0})
            for k, v in counts.items():
                mine[k] += v
        room = REPORTED_QUARANTINE - len(report.quarantined_members)
        report.quarantined_members += ledger.quarantined_members[: max(room, 0)]
        report.blobs_written += self.blobs_written
        report.bytes_read += self.bytes_read
        report.snapshots[MEMBERS_TABLE] = ledger.commit(self.source, props, self.settings)
        _settle(self.settings, self.source, report.snapshots[MEMBERS_TABLE])

    def close(self) -> None:
        self.con.close()


def _commit_with_vectors(
    sink: ProductSink, source: SourceRef, summary: dict[str, str], settings: Settings
) -> int:
    """The table's commit, its rows' vectors committed to Lance first (see lakehouse.vectors.store)."""
    vectors = sink.vectors
    props = vectors.commit() if vectors is not None else {}
    commit_good = functools.partial(sink.good.commit, source, {**summary, **props}, settings)
    snapshot, _ = vectors.settle(commit_good) if vectors is not None else commit_good()
    return snapshot


def _range_source(bucket: str, key: str, version: str, start: int | None, end: int | None) -> SourceRef:
    suffix = "all" if start is None else f"{start}-{end}"
    return SourceRef(bucket=bucket, key=f"{key}#members={suffix}", version=version)


def _open(settings: Settings, source: SourceRef, buffer_size: int) -> IO[bytes]:
    """A reader of exactly the archive version the event named (``SourceVersionGone`` when it no
    longer exists: never the current object under that version's name)."""
    try:
        return open_object(
            settings,
            source.bucket,
            source.key,
            buffer_size=buffer_size,
            version_id=source.version_id,
            etag=source.etag,
        )
    except FileNotFoundError as e:
        raise ArchiveUnreadable(f"{source.uri} does not exist") from e


def _open_zip(settings: Settings, source: SourceRef) -> ZipArchive:
    def opener() -> IO[bytes]:
        try:
            return _open(settings, source, 4 << 20)
        except LakeError:
            raise
        except OSError as e:
            raise StoreUnavailable(f"{source.uri}: {e}") from e

    return ZipArchive(opener, source.uri)


def ingest_archive(
    settings: Settings,
    bucket: str,
    key: str,
    version: str | None = None,
    member_range: tuple[int, int] | None = None,
    catalog: Catalog | None = None,
    progress: Progress | None = None,
    deadline: float | None = None,
) -> TakeoutReport:
    """Ingest a Takeout archive (``.zip``, ``.tgz``/``.tar.gz``, ``.tar``) from the store.

    Args:
        member_range: process only the zip members ``[start, end)`` (a fan-out message), or,
            for a tar, go on with it here (a continuation message; committed chunks are read
            past whatever the range says); None: the whole archive (a zip split into ranges
            when it is large; a tar handed to the queue when one is set).
        progress: called after each member with its outcome and the running rows per product.
        deadline: ``time.monotonic()`` by which a tar's work must stop: the last chunk that
            fits is committed and the rest queued as a continuation message.

    Raises:
        TerminalError: not an archive, unreadable archive, over the total size limit.
        TransientError: store failures and commit conflicts that outlasted the retries.
    """
    started = time.perf_counter()
    kind = archive_kind(key)
    if kind is None:
        raise UnsupportedFormat(f"{key!r}: a Takeout upload is a .zip, .tgz, .tar.gz or .tar archive")
    source = resolve_source(settings, bucket, key, version)
    catalog = catalog or get_catalog(settings)
    report = TakeoutReport(source=source.uri, version=source.version, kind=kind, ranges=[], duplicate=True)
    if kind == "tar":
        done = _tar_ledger(settings, catalog, source)[1] is not None
        if member_range is None and settings.takeout_queue_url and not done:
            # The Takeout function streams it, chunk by chunk, and queues the rest for itself
            # before its time runs out.
            report.queued = _continue_tar(settings, source, 0)
            report.duplicate = False
        else:
            tar = _tar(settings, catalog, source, progress, deadline)
            report.merge(tar)
            report.queued, report.next_member = tar.queued, tar.next_member
    else:
        archive = _open_zip(settings, source)
        try:
            members = [m for m in archive.members if not m.is_dir]
            if member_range is not None:
                ranges = [member_range]
            else:
                check_total(members, source.uri, settings)
                ranges = plan_ranges(members, settings.takeout_range_bytes)
            if member_range is None and len(ranges) > 1 and settings.takeout_queue_url:
                report.queued = enqueue_ranges(settings, source, ranges)
                report.duplicate = False
            else:
                for start, end in ranges:
                    chosen = [m for m in members if start <= m.index < end]
                    report.merge(_zip_range(settings, catalog, source, archive, chosen, start, end, progress))
        finally:
            archive.close()
    if not report.ranges and not report.queued:  # an archive without files: nothing to do, nothing done
        report.duplicate = False
    report.seconds = round(time.perf_counter() - started, 3)
    report.rows_per_second = round(report.rows / report.seconds, 1) if report.seconds and report.rows else 0.0
    return report


def _settle(settings: Settings, source: SourceRef, snapshot_id: int | None) -> None:
    """Record a committed member range in the load ledger (:mod:`lakehouse.tables.ledger`), which
    outlives snapshot expiry."""
    entry = Entry("committed", "takeout", source.key, source.version, snapshot_id=snapshot_id)
    LoadLedger(settings, MEMBERS_TABLE).settle(SourceId(source.key, source.version), entry)


def _duplicate(settings: Settings, catalog: Catalog, source: SourceRef, kind: str) -> TakeoutReport | None:
    known = LoadLedger(settings, MEMBERS_TABLE).lookup(source.key, source.version)
    done = known.snapshot_id if known is not None and known.state == "committed" else None
    if done is None:  # committed before the load ledger held ranges, or just before a crash
        contract = load_contract(settings, MEMBERS_TABLE)
        done = committed_snapshot(ensure_tables(catalog, settings, contract)[0], source)
        if done is None:
            return None
        _settle(settings, source, done)
    return TakeoutReport(
        source=source.uri,
        version=source.version,
        kind=kind,
        ranges=[source.key],
        snapshots={MEMBERS_TABLE: done},
        duplicate=True,
    )


def _zip_range(
    settings: Settings,
    catalog: Catalog,
    archive_source: SourceRef,
    archive: ZipArchive,
    members: list[Member],
    start: int,
    end: int,
    progress: Progress | None,
) -> TakeoutReport:
    source = _range_source(archive_source.bucket, archive_source.key, archive_source.version, start, end)
    dup = _duplicate(settings, catalog, source, "zip")
    if dup is not None:
        return dup
    state = _Range(settings, catalog, source, archive_source.uri, archive_source.version, progress)
    report = TakeoutReport(
        source=archive_source.uri, version=archive_source.version, kind="zip", ranges=[source.key]
    )
    work: queue.Queue[Member] = queue.Queue()
    for m in members:
        work.put(m)

    def worker() -> None:
        with archive.worker() as open_member:
            while True:
                try:
                    member = work.get_nowait()
                except queue.Empty:
                    return
                state.process(member, lambda m=member: open_member(m))  # type: ignore[misc]

    try:
        workers = max(1, min(settings.takeout_workers, len(members)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="takeout") as pool:
            for future in [pool.submit(worker) for _ in range(workers)]:
                future.result()
        state.commit(report)
    finally:
        state.close()
    return report


class _Inflight:
    """Members handed to worker threads, at most ``limit`` at once (back-pressure on the reader)."""

    def __init__(self, pool: ThreadPoolExecutor, limit: int) -> None:
        self.pool = pool
        self.slots = threading.Semaphore(limit)
        self.futures: set[Future[None]] = set()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self.slots.acquire()
        try:
            future = self.pool.submit(fn, *args)
        except BaseException:
            self.slots.release()
            raise
        future.add_done_callback(lambda _: self.slots.release())
        self.futures.add(future)
        for done in [f for f in self.futures if f.done()]:
            self.futures.discard(done)
            done.result()  # a worker's error stops the reader

    def drain(self) -> None:
        futures, self.futures = self.futures, set()
        for future in futures:
            future.result()


def _tar_ledger(
    settings: Settings, catalog: Catalog, archive_source: SourceRef
) -> tuple[dict[int, int], int | None]:
    """Chunks of this tar version the ledger already holds (start → end), and the snapshot that
    committed its last chunk (None while the tar is not done)."""
    table = ensure_tables(catalog, settings, load_contract(settings, MEMBERS_TABLE))[0]
    prefix = f"{archive_source.uri}#members="
    chunks: dict[int, int] = {}
    last: int | None = None
    known = LoadLedger(settings, MEMBERS_TABLE).lookup(_tar_key(archive_source), archive_source.version)
    if known is not None and known.report:  # outlives the snapshots below
        chunks.update({int(a): int(b) for a, b in known.report["chunks"].items()})
        last = known.report.get("last")
    for snap in table.metadata.snapshots:
        summary = snap.summary
        if summary is None or summary.get(SOURCE_VERSION) != archive_source.version:
            continue
        uri = summary.get(SOURCE_URI) or ""
        if not uri.startswith(prefix):
            continue
        span = uri[len(prefix) :]
        if span == "all":  # a whole-stream range (Lake before tar chunks): done
            last = snap.snapshot_id
            continue
        first, _, end = span.partition("-")
        chunks[int(first)] = int(end)
        if summary.get(TAR_LAST) == "true":
            last = snap.snapshot_id
    return chunks, last


def _tar_key(source: SourceRef) -> str:
    """The load-ledger key of a tar's committed chunks (start → end member, and the last chunk's
    snapshot once the tar is done)."""
    return f"{source.key}#members=tar"


def _tar(
    settings: Settings,
    catalog: Catalog,
    archive_source: SourceRef,
    progress: Progress | None,
    deadline: float | None = None,
) -> TakeoutReport:
    """Stream a tar in chunks of about ``LAKE_TAKEOUT_RANGE_BYTES``, each committed as a range.

    Chunks the ledger already holds are read past, not processed again, so a redelivery or a
    continuation goes on from the last committed chunk. With a ``deadline`` (``time.monotonic``
    seconds), a chunk is only started when it is likely to be committed in time; otherwise the
    rest is queued as a continuation message (``LAKE_TAKEOUT_QUEUE_URL``).
    """
    uri, bucket, key = archive_source.uri, archive_source.bucket, archive_source.key
    version = archive_source.version
    committed, last = _tar_ledger(settings, catalog, archive_source)
    if last is not None:
        return TakeoutReport(
            source=uri,
            version=version,
            kind="tar",
            ranges=[_range_source(bucket, key, version, a, b).key for a, b in sorted(committed.items())],
            snapshots={MEMBERS_TABLE: last},
            duplicate=True,
        )
    report = TakeoutReport(source=uri, version=version, kind="tar", ranges=[])
    stream = _open(settings, archive_source, 8 << 20)
    state: _Range | None = None
    start, acc, count = 0, 0, 0
    skip_until = committed.get(0)  # the end of the committed chunk being read past
    began = time.monotonic()
    longest = 0.0
    workers = max(1, settings.takeout_workers)
    try:
        with stream, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="takeout") as pool:
            inflight = _Inflight(pool, workers)

            def finish(end: int, final: bool) -> None:
                nonlocal state, longest, began
                if state is None:  # a chunk read past, or an empty tail: the end mark needs a commit
                    state = _Range(settings, catalog, archive_source, uri, version, progress)
                inflight.drain()
                state.source = _range_source(bucket, key, version, start, end)
                try:
                    state.commit(report, {TAR_LAST: "true"} if final else None)
                finally:
                    state.close()
                    state = None
                committed[start] = end
                done = report.snapshots[MEMBERS_TABLE] if final else None
                chunks = {"chunks": {str(a): b for a, b in committed.items()}, "last": done}
                entry = Entry("committed", "takeout", _tar_key(archive_source), version, report=chunks)
                LoadLedger(settings, MEMBERS_TABLE).settle(SourceId(entry.key, version), entry)
                report.ranges.append(_range_source(bucket, key, version, start, end).key)
                now = time.monotonic()
                longest, began = max(longest, now - began), now

            for member, opener in iter_tar(stream, uri, settings):
                count = member.index + 1
                if skip_until is not None and member.index >= skip_until:
                    start, acc, skip_until = member.index, 0, committed.get(member.index)
                if skip_until is not None:
                    continue  # committed by an earlier delivery: the stream reads past it
                if acc and acc + member.size > settings.takeout_range_bytes:
                    finish(member.index, final=False)
                    start, acc, skip_until = member.index, 0, committed.get(member.index)
                    if deadline is not None and time.monotonic() + longest * 1.25 > deadline:
                        report.next_member = member.index
                        report.queued = _continue_tar(settings, archive_source, member.index)
                        return report
                    if skip_until is not None:
                        continue
                acc += member.size
                if member.is_dir:
                    continue
                if state is None:
                    state = _Range(settings, catalog, archive_source, uri, version, progress)
                row, data = state.read(member, opener)
                inflight.submit(state.store, member, row, data)
            if skip_until is not None:  # the last chunk was committed (without the end mark)
                start = count
            finish(count, final=True)
    finally:
        if state is not None:
            state.close()
    return report


def _continue_tar(settings: Settings, source: SourceRef, start: int) -> int:
    """Queue the rest of a tar (from member ``start``) for the Takeout function; 0 without a queue."""
    if not settings.takeout_queue_url:
        return 0
    return enqueue_ranges(settings, source, [(start, TAR_REST)])


# --- fan-out --------------------------------------------------------------------------------


def range_message(source: SourceRef, start: int, end: int) -> dict[str, Any]:
    """The SQS message body of one member range."""
    return {"bucket": source.bucket, "key": source.key, "version": source.version, "start": start, "end": end}


def enqueue_ranges(settings: Settings, source: SourceRef, ranges: list[tuple[int, int]]) -> int:
    """Send one message per member range to ``LAKE_TAKEOUT_QUEUE_URL``; returns how many."""
    from botocore.exceptions import BotoCoreError, ClientError

    from lakehouse.storage import sqs_client

    sqs = sqs_client(settings)
    entries = [
        {"Id": str(i), "MessageBody": json.dumps(range_message(source, start, end))}
        for i, (start, end) in enumerate(ranges)
    ]
    try:
        for i in range(0, len(entries), 10):
            result = sqs.send_message_batch(QueueUrl=settings.takeout_queue_url, Entries=entries[i : i + 10])
            if result.get("Failed"):
                raise StoreUnavailable(
                    f"SQS refused {len(result['Failed'])} range messages: {result['Failed']}"
                )
    except (ClientError, BotoCoreError) as e:
        raise StoreUnavailable(f"could not queue member ranges of {source.uri}: {e}") from e
    return len(entries)


def ingest_range_message(settings: Settings, body: str, deadline: float | None = None) -> TakeoutReport:
    """Process one fan-out message (see :func:`range_message`): a zip's member range, or the
    rest of a tar (``end`` = -1) until ``deadline`` (``time.monotonic()`` seconds)."""
    from lakehouse.errors import BadRequest

    try:
        message = json.loads(body)
        bucket, key, version = str(message["bucket"]), str(message["key"]), str(message["version"])
        start, end = int(message["start"]), int(message["end"])
    except (ValueError, KeyError, TypeError) as e:
        raise BadRequest(f"not a Takeout member-range message: {e}") from e
    return ingest_archive(settings, bucket, key, version, member_range=(start, end), deadline=deadline)
