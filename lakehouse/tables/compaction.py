"""Compaction: bin-pack a partition's small data files into target-sized files, in one atomic
replace commit per partition.

pyiceberg 0.12 has no compaction. Lake plans the live files of the current snapshot, groups
them by partition, and rewrites a partition when it holds at least ``min_files`` files smaller
than ``small_fraction`` × ``target`` bytes. Rows are streamed file by file into the new files
(memory is bounded by a few input files and one row group, never a whole partition), and the
new files replace the old ones in one snapshot that changes no rows. A concurrent append is
never lost: pyiceberg rebases the replace onto it; if a replaced file was removed concurrently
(retention, another compaction) the partition is skipped and its new files are deleted.

A table with a write order (``sort_order`` or ``cluster_by: zorder(...)`` in its contract,
:mod:`lakehouse.tables.layout`) also selects every file no sorted rewrite wrote yet, whatever
its size, and rewrites each partition's selected files as one sorted run: the rows go through
DuckDB (spilling to disk past ``LAKE_INGEST_MEMORY_LIMIT``), come out in the table's order and
are cut into target-sized files, so each file holds a narrow range of the sort keys (a small
box of the z-ordered columns) and its column statistics prune scans.

Per-table overrides (table properties): ``lake.compaction.target-file-size-bytes``,
``lake.compaction.min-files``, ``lake.compaction.small-file-fraction``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.config import Settings
from lakehouse.tables.layout import WriteOrder, order_by, write_order
from lakehouse.tables.write import DataFileWriter, backoff, commit_replace, read_files

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

TARGET_PROPERTY = "lake.compaction.target-file-size-bytes"
MIN_FILES_PROPERTY = "lake.compaction.min-files"
FRACTION_PROPERTY = "lake.compaction.small-file-fraction"
OPERATION = "lake.operation"
ROW_GROUP_ROWS = 131_072
ROW_GROUP_BYTES = 64 * 2**20
READ_AHEAD_BYTES = 256 * 2**20
SORTED_SUFFIX = "sorted"  # data files written in the table's order by a sorted rewrite


@dataclass(frozen=True)
class CompactionOptions:
    """When and how a table is compacted."""

    target_bytes: int
    min_files: int
    small_fraction: float

    @classmethod
    def for_table(cls, table: Table, settings: Settings) -> CompactionOptions:
        """The settings' defaults, overridden by the table's own properties."""
        props = table.properties
        return cls(
            target_bytes=int(props.get(TARGET_PROPERTY, settings.compaction_target_bytes)),
            min_files=int(props.get(MIN_FILES_PROPERTY, settings.compaction_min_files)),
            small_fraction=float(props.get(FRACTION_PROPERTY, settings.compaction_small_fraction)),
        )

    @property
    def small_below(self) -> int:
        return int(self.target_bytes * self.small_fraction)


@dataclass
class PartitionPlan:
    """The small files of one partition and how they are packed into new files."""

    spec_id: int
    partition: Any
    path: str
    bins: list[list[DataFile]]

    @property
    def files(self) -> list[DataFile]:
        return [f for b in self.bins for f in b]


@dataclass
class CompactionResult:
    table: str
    partitions_compacted: int = 0
    partitions_skipped: int = 0
    files_before: int = 0
    files_after: int = 0
    bytes_rewritten: int = 0
    bytes_written: int = 0
    rows_rewritten: int = 0
    snapshot_ids: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pack(files: list[DataFile], target_bytes: int) -> list[list[DataFile]]:
    """Greedy bin-packing, in file order, of files into bins of at most ``target_bytes``.

    A last bin holding a single file is merged into the one before it (rewriting one file on its
    own gains nothing).
    """
    bins: list[list[DataFile]] = []
    current: list[DataFile] = []
    size = 0
    for data_file in files:
        if current and size + data_file.file_size_in_bytes > target_bytes:
            bins.append(current)
            current, size = [], 0
        current.append(data_file)
        size += data_file.file_size_in_bytes
    if current:
        bins.append(current)
    if len(bins) > 1 and len(bins[-1]) == 1:
        bins[-2].extend(bins.pop())
    return [b for b in bins if len(b) > 1]


def plan(table: Table, options: CompactionOptions) -> list[PartitionPlan]:
    """The partitions of the current snapshot worth compacting, with their bins."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    spec = table.spec()
    schema = table.schema()
    ordered = bool(write_order(table))
    groups: dict[tuple[int, Any], list[DataFile]] = {}
    partitions: dict[tuple[int, Any], Any] = {}
    with_deletes: set[tuple[int, Any]] = set()
    for task in table.scan().plan_files():
        data_file = task.file
        key: tuple[int, Any] = (data_file.spec_id, data_file.partition)
        partitions[key] = data_file.partition
        if task.delete_files:
            with_deletes.add(key)  # merge-on-read deletes: not rewritten here
        unsorted = ordered and not data_file.file_path.endswith(f"-{SORTED_SUFFIX}.parquet")
        if data_file.spec_id != spec.spec_id or (
            data_file.file_size_in_bytes >= options.small_below and not unsorted
        ):
            continue
        groups.setdefault(key, []).append(data_file)
    plans = []
    for key, files in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if key in with_deletes or len(files) < options.min_files:
            continue
        files.sort(key=lambda f: f.file_path)
        # A sorted rewrite takes every selected file as one run (cut into target-sized files).
        bins = [files] if ordered else pack(files, options.target_bytes)
        if bins:
            path = spec.partition_to_path(partitions[key], schema) if spec.fields else ""
            plans.append(PartitionPlan(key[0], partitions[key], path, bins))
    return plans


def _rewrite_bin(table: Table, part: PartitionPlan, files: list[DataFile]) -> DataFile:
    """Stream ``files`` into one new data file of the same partition."""
    import pyarrow as pa

    writer = DataFileWriter(table, part.partition, part.spec_id)
    buffered: list[pa.RecordBatch] = []
    rows = nbytes = 0
    # Read a few files ahead, but never more than ~READ_AHEAD_BYTES of compressed input at once.
    prefetch = max(1, min(4, READ_AHEAD_BYTES // max(f.file_size_in_bytes for f in files)))
    for batch in read_files(table, files, prefetch=prefetch):
        buffered.append(batch)
        rows += batch.num_rows
        nbytes += batch.nbytes
        if rows >= ROW_GROUP_ROWS or nbytes >= ROW_GROUP_BYTES:
            writer.write_table(pa.Table.from_batches(buffered))
            buffered, rows, nbytes = [], 0, 0
    if buffered:
        writer.write_table(pa.Table.from_batches(buffered))
    return writer.close()


def _rewrite_sorted(
    table: Table, part: PartitionPlan, order: WriteOrder, target_bytes: int, settings: Settings
) -> list[DataFile]:
    """Rewrite every file of ``part`` as one run in the table's write order, cut into files of
    about ``target_bytes``."""
    import pyarrow as pa
    from pyiceberg.types import UUIDType

    from lakehouse.contracts.validate import validation_connection
    from lakehouse.duck import ident

    files = part.files
    rows_in = sum(f.record_count for f in files)
    bytes_in = sum(f.file_size_in_bytes for f in files)
    per_file = max(1, int(target_bytes * rows_in / max(1, bytes_in)))
    target = table.schema().as_arrow()
    # DuckDB hands UUIDs back as text: the table holds their 16 bytes.
    select = ", ".join(
        f"unhex(replace(CAST({ident(f.name)} AS VARCHAR), '-', '')) AS {ident(f.name)}"
        if isinstance(f.field_type, UUIDType)
        else ident(f.name)
        for f in table.schema().fields
    )
    con = validation_connection(settings)
    written: list[DataFile] = []
    try:
        created = False
        for batch in read_files(table, files, prefetch=2):
            con.register("__lake_batch", batch)
            if created:
                con.execute("INSERT INTO __lake_run SELECT * FROM __lake_batch")
            else:
                con.execute("CREATE TEMP TABLE __lake_run AS SELECT * FROM __lake_batch")
                created = True
            con.unregister("__lake_batch")
        if not created:
            return []
        clause = order_by(con, "__lake_run", order, target)
        ordered = con.execute(f"SELECT {select} FROM __lake_run ORDER BY {clause}")
        reader = ordered.to_arrow_reader(ROW_GROUP_ROWS)
        writer: DataFileWriter | None = None
        for chunk in reader:
            data = pa.Table.from_batches([chunk]).cast(target)
            while data.num_rows:
                if writer is None:
                    writer = DataFileWriter(table, part.partition, part.spec_id, SORTED_SUFFIX)
                room = per_file - writer.rows
                writer.write_table(data.slice(0, room))
                data = data.slice(room)
                if writer.rows >= per_file:
                    written.append(writer.close())
                    writer = None
        if writer is not None:
            written.append(writer.close())
    except BaseException:
        for data_file in written:
            table.io.delete(data_file.file_path)
        raise
    finally:
        con.close()
    return written


def compact_partition(
    table: Table,
    part: PartitionPlan,
    commit_attempts: int = 1,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
    settings: Settings | None = None,
) -> tuple[int, list[DataFile]]:
    """Rewrite one partition and commit the replacement; returns (snapshot id, new files).

    The files are written once; the commit is tried up to ``commit_attempts`` times (each try
    is pyiceberg's own rebase-and-retry loop) with jittered backoff, since appenders that
    commit often can win every race of a short loop; no try starts after ``deadline`` (a
    ``time.monotonic()`` value). Raises pyiceberg's ``CommitFailedException`` (out of attempts
    or time) or ``ValidationException`` (a replaced file was removed meanwhile); the new files
    are deleted first (nothing references them).
    """
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    written: list[DataFile] = []
    order = write_order(table)
    try:
        if order and settings is not None:
            target = CompactionOptions.for_table(table, settings).target_bytes
            written = _rewrite_sorted(table, part, order, target, settings)
        else:
            for files in part.bins:
                written.append(_rewrite_bin(table, part, files))
        removed = part.files
        summary = {
            OPERATION: "compaction",
            "lake.compaction.partition": part.path,
            "lake.compaction.files-before": str(len(removed)),
            "lake.compaction.files-after": str(len(written)),
            "lake.compaction.bytes-rewritten": str(sum(f.file_size_in_bytes for f in removed)),
            "lake.compaction.bytes-written": str(sum(f.file_size_in_bytes for f in written)),
        }
        if order:
            keys = ",".join(order.zorder or [k[0] for k in order.keys])
            summary["lake.compaction.order"] = f"zorder({keys})" if order.zorder else keys
        for attempt in range(commit_attempts):
            try:
                snapshot_id = commit_replace(table, removed, written, summary)
                break
            except CommitFailedException:
                # Lake tables leave retries to Lake (tables.OWN_RETRIES): rebase here. Concurrent
                # appends are fine; a concurrent removal of a file being replaced is a conflict.
                table.refresh()
                live = {task.file.file_path for task in table.scan().plan_files()}
                gone = [f.file_path for f in removed if f.file_path not in live]
                if gone:
                    message = f"{len(gone)} file(s) being compacted were removed meanwhile"
                    raise ValidationException(message) from None
                out_of_time = deadline is not None and time.monotonic() > deadline
                if attempt + 1 == commit_attempts or out_of_time:
                    raise
                sleep(backoff(attempt))
    except (CommitFailedException, ValidationException):
        for data_file in written:
            table.io.delete(data_file.file_path)
        raise
    return snapshot_id, written


def compact_table(
    table: Table,
    settings: Settings,
    deadline: float | None = None,
    attempts: int = 2,
    dry_run: bool = False,
) -> CompactionResult:
    """Compact every partition of ``table`` that needs it.

    Args:
        table: the table.
        settings: defaults of the compaction options (table properties override them).
        deadline: a ``time.monotonic()`` value; no partition is started after it (Lambda's
            remaining time).
        attempts: tries per partition when a concurrent writer wins the commit race; then the
            partition is skipped until the next run.
        dry_run: only plan: the partitions and files that would be rewritten.
    """
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    started = time.perf_counter()
    result = CompactionResult(table=".".join(table.name()))
    options = CompactionOptions.for_table(table, settings)
    if dry_run:
        plans = plan(table, options)
        result.dry_run = True
        result.partitions_compacted = len(plans)
        result.files_before = sum(len(p.files) for p in plans)
        result.files_after = sum(len(p.bins) for p in plans)
        result.bytes_rewritten = sum(f.file_size_in_bytes for p in plans for f in p.files)
        result.rows_rewritten = sum(f.record_count for p in plans for f in p.files)
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    for part in plan(table, options):
        if deadline is not None and time.monotonic() > deadline:
            result.skipped.append(f"{part.path or '(unpartitioned)'}: out of time")
            result.partitions_skipped += 1
            continue
        current: PartitionPlan | None = part
        for attempt in range(attempts):
            if current is None:
                break
            try:
                snapshot_id, written = compact_partition(
                    table, current, settings.commit_retries + 1, deadline=deadline, settings=settings
                )
            except ValidationException as e:
                result.skipped.append(f"{current.path}: {e}")
                result.partitions_skipped += 1
                break
            except CommitFailedException as e:
                table.refresh()
                if attempt + 1 == attempts:
                    result.skipped.append(f"{current.path}: {e}")
                    result.partitions_skipped += 1
                    break
                current = next((p for p in plan(table, options) if p.partition == part.partition), None)
                continue
            result.partitions_compacted += 1
            result.files_before += len(current.files)
            result.files_after += len(written)
            result.bytes_rewritten += sum(f.file_size_in_bytes for f in current.files)
            result.bytes_written += sum(f.file_size_in_bytes for f in written)
            result.rows_rewritten += sum(f.record_count for f in written)
            result.snapshot_ids.append(snapshot_id)
            table.refresh()
            break
    result.seconds = round(time.perf_counter() - started, 3)
    return result
