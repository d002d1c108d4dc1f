"""Rows of one product table on their way to one commit: validated, written, counted per member.

Small members (a Keep note is one row) are pooled in a shared buffer; a large member (a
``Records.json`` of millions of locations) writes its own data files as it goes. Either way its
rows only join the range's commit when the whole member parsed: a member that fails half-way
is quarantined and none of its rows are committed.

Nothing here grows with the archive: parsed records wait in buffers of at most
:data:`ROW_BUFFER` rows (one per member being parsed, one pooled per product, which takes only
small members' rows and so stays within 1.25 buffers), and a member's
ledger row leaves for :class:`Ledger` as soon as its counts are final (at once, or when the pool
holding its last rows is written). Only the list of staged data files is kept to the commit.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakehouse.config import Settings
from lakehouse.contracts.model import ROW, Contract
from lakehouse.contracts.validate import ERRORS, check_batch
from lakehouse.tables.write import SourceRef, StagedWrite
from lakehouse.takeout.products import Record, Row

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.table import Table

    from lakehouse.vectors.store import VectorStage

LINEAGE = ("archive", "member")
# Parsed records wait as Python dicts (~1 KiB each) until validated: at most this many per buffer
# (one per worker's member, one pooled per product), whatever LAKE_BATCH_ROWS says.
ROW_BUFFER = 16_384
# Ledger rows (one per member) written to a data file of takeout_members every this many members.
LEDGER_ROWS = 8_192
REPORTED_QUARANTINE = 100  # quarantined members listed in a report (all are in takeout_members)
_ARROW_INPUT: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "long": pa.int64(),
    "float": pa.float64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.string(),
    "timestamp": pa.string(),
}


def _column(values: list[Any], kind: str) -> pa.Array:
    """Values as the Arrow type the validation casts from; odd values become text (and fail there)."""
    try:
        return pa.array(values, _ARROW_INPUT[kind])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        shown = [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values]
        return pa.array(shown, pa.string())


def _blank_products() -> dict[str, int]:
    return {"members": 0, "rows": 0, "rows_quarantined": 0}


class Ledger:
    """Member rows of one range on their way to ``takeout_members`` (thread-safe).

    Rows arrive when their counts are final and are written to data files every
    :data:`LEDGER_ROWS` rows; the running tallies are what the range's report says.
    """

    def __init__(self, table: Table) -> None:
        self.staged = StagedWrite(table)
        self.schema = table.schema().as_arrow()
        self.buffer: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.members = 0
        self.parsed = 0
        self.stored = 0
        self.quarantined = 0
        self.products: dict[str, dict[str, int]] = {}
        self.quarantined_members: list[dict[str, str]] = []

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.members += 1
            if row["status"] == "parsed":
                self.parsed += 1
                counts = self.products.setdefault(str(row["product"]), _blank_products())
                counts["members"] += 1
                counts["rows"] += row["rows"]
                counts["rows_quarantined"] += row["rows_quarantined"]
            elif row["status"] == "quarantined":
                self.quarantined += 1
                if len(self.quarantined_members) < REPORTED_QUARANTINE:
                    self.quarantined_members.append(
                        {"member": row["member"], "rule": row["rule"], "reason": row["reason"]}
                    )
            else:
                self.stored += 1
            self.buffer.append(row)
            if len(self.buffer) >= LEDGER_ROWS:
                self._write()

    def _write(self) -> None:
        rows = sorted(self.buffer, key=lambda r: int(r["member_index"]))
        self.buffer = []
        self.staged.write(pa.Table.from_pylist(rows, schema=self.schema))

    def commit(self, source: SourceRef, properties: dict[str, str], settings: Settings) -> int:
        """Write what is buffered and commit the range's ledger (its last commit)."""
        with self.lock:
            if self.buffer:
                self._write()
            summary = {**properties, "lake.takeout.members": str(self.members)}
            return self.staged.commit(source, summary, settings)[0]


@dataclass
class Pending:
    """Parsed records not yet validated: rows with their member, its slot and position, bad records."""

    rows: list[Row] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)  # the member's index in the archive
    positions: list[int] = field(default_factory=list)
    # (member, slot, position, why, raw record) of records that are not rows
    malformed: list[tuple[str, int, int, str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.malformed)

    def extend(self, other: Pending) -> None:
        self.rows += other.rows
        self.members += other.members
        self.slots += other.slots
        self.positions += other.positions
        self.malformed += other.malformed


class ProductSink:
    """Everything one range sends to one product table (thread-safe)."""

    def __init__(
        self,
        contract: Contract,
        main: Table,
        quarantine: Table,
        settings: Settings,
        archive_uri: str,
        archive_version: str,
        con: duckdb.DuckDBPyConnection,
        ledger: Ledger,
    ) -> None:
        self.contract = contract
        self.main = main
        self.quarantine = quarantine
        self.settings = settings
        self.archive_uri = archive_uri
        self.archive_version = archive_version
        self.con = con
        self.ledger = ledger
        self.target = main.schema().as_arrow()
        self.qtarget = quarantine.schema().as_arrow()
        self.good = StagedWrite(main)
        self.bad = StagedWrite(quarantine)
        self.shared = Pending()
        # Ledger rows of members whose last rows wait in the shared pool, with their counts so far.
        self.waiting: list[tuple[dict[str, Any], int, int]] = []
        self.lock = threading.Lock()
        self.now = dt.datetime.now(dt.UTC)
        self.limit = min(settings.batch_rows, ROW_BUFFER)
        self.vectors: VectorStage | None = None
        self.vectors_state = "none"
        self._vector_lock = threading.Lock()

    def stage_vectors(self, source: SourceRef) -> None:
        """Give every accepted row a vector under its ``_row_id`` (contracts with ``vectors:``).

        Without the ``embed`` extra the rows are still committed, without vectors, and the report
        says why (``vectors: "unavailable: ..."``).
        """
        if self.contract.vectors is None:
            return
        from lakehouse.errors import EmbedderUnavailable
        from lakehouse.vectors.store import VectorStage

        try:
            self.vectors = VectorStage(self.settings, self.contract, source)
            self.vectors_state = "indexed"
        except EmbedderUnavailable as e:
            self.vectors_state = f"unavailable: {e}"

    def member(self, name: str, slot: int) -> MemberRows:
        return MemberRows(self, name, slot)

    def validate_and_write(
        self, pending: Pending, good: StagedWrite, bad: StagedWrite
    ) -> tuple[Counter[int], Counter[int]]:
        """Validate pending records; write accepted and quarantined rows; counts per member slot."""
        accepted: Counter[int] = Counter(pending.slots)
        rejected: Counter[int] = Counter()
        qrows: list[dict[str, Any]] = []
        if pending.rows:
            n = len(pending.rows)
            arrays: dict[str, pa.Array] = {ROW: pa.array(range(n), pa.int64())}
            for name, col in self.contract.columns.items():
                if name == "archive":
                    arrays[name] = pa.array([self.archive_uri] * n, pa.string())
                elif name == "member":
                    arrays[name] = pa.array(pending.members, pa.string())
                else:
                    arrays[name] = _column([r.get(name) for r in pending.rows], col.type)
            batch = pa.RecordBatch.from_pydict(arrays)
            pending.rows = []  # the batch holds them now: let the dicts go before the next step
            cursor = self.con.cursor()
            try:
                checked = check_batch(cursor, batch, self.contract, self.target)
            finally:
                cursor.close()
            accepted_rows = checked.accepted
            if self.vectors is not None:
                # Row ids are the member's index in the archive and the record's position in it.
                where = checked.accepted_rows.to_pylist()
                keys = pa.array(
                    [pending.slots[r] * (1 << 32) + pending.positions[r] for r in where], pa.int64()
                )
                with self._vector_lock:
                    accepted_rows = self.vectors.add(accepted_rows, keys, batch)
            del batch
            good.write(accepted_rows)
            rej = checked.rejected
            for row, errors, raw in zip(
                rej[ROW].to_pylist(), rej[ERRORS].to_pylist(), rej["__lake_raw"].to_pylist(), strict=True
            ):
                slot = pending.slots[row]
                accepted[slot] -= 1
                rejected[slot] += 1
                qrows.append(self._qrow(pending.members[row], pending.positions[row], errors, raw))
        for member, slot, position, why, raw in pending.malformed:
            rejected[slot] += 1
            error = [{"column": None, "rule": "parse", "reason": why}]
            qrows.append(self._qrow(member, position, error, json.dumps(raw, default=str)[:100_000]))
        if qrows:
            bad.write(pa.Table.from_pylist(qrows).cast(self.qtarget))
        return accepted, rejected

    def _qrow(self, member: str, position: int, errors: list[dict[str, Any]], raw: Any) -> dict[str, Any]:
        return {
            "quarantined_at": self.now,
            "source_uri": f"{self.archive_uri}#{member}",
            "source_version": self.archive_version,
            "row_number": position,
            "column": errors[0]["column"],
            "rule": errors[0]["rule"],
            "reason": "; ".join(f"{e['column'] or 'record'}: {e['reason']}" for e in errors),
            "errors": errors,
            "record": raw,
            "contract_version": self.contract.version,
        }

    def adopt(self, rows: MemberRows, ledger_row: dict[str, Any]) -> None:
        """A member parsed completely: its files and leftover rows join the range's commit.

        A large member's leftover (a quarter of a buffer or more) is written on its own, in the
        member's thread, so a pool only ever takes small members' rows and stays within about
        1.25 buffers. The ledger row goes to the ledger once its counts are final: now, or when
        the pool that takes the member's leftover rows is written.
        """
        if len(rows.pending) >= self.limit // 4:
            rows.flush()
        with self.lock:
            self.good.files += rows.good.files
            self.good.rows += rows.good.rows
            self.bad.files += rows.bad.files
            self.bad.rows += rows.bad.rows
            if len(rows.pending):
                self.shared.extend(rows.pending)
                self.waiting.append((ledger_row, rows.accepted, rows.rejected))
            else:
                ledger_row.update(rows=rows.accepted, rows_quarantined=rows.rejected)
                self.ledger.add(ledger_row)
            # The member's buffers now belong to the range: let go of them.
            rows.pending = Pending()
            rows.good.files, rows.bad.files = [], []
            if len(self.shared) >= self.limit:
                self._flush_shared()

    def _flush_shared(self) -> None:
        pending, self.shared = self.shared, Pending()
        accepted, rejected = self.validate_and_write(pending, self.good, self.bad)
        waiting, self.waiting = self.waiting, []
        for row, acc, rej in waiting:
            slot = int(row["member_index"])
            row.update(rows=acc + accepted[slot], rows_quarantined=rej + rejected[slot])
            self.ledger.add(row)

    def finish(self) -> None:
        """Validate and write what is still pooled (before the commit)."""
        with self.lock:
            if len(self.shared) or self.waiting:
                self._flush_shared()


class MemberRows:
    """The rows of one member: written to files of its own when many, adopted when the member is done."""

    def __init__(self, sink: ProductSink, member: str, slot: int) -> None:
        self.sink = sink
        self.name = member
        self.slot = slot
        self.pending = Pending()
        self.good = StagedWrite(sink.main)
        self.bad = StagedWrite(sink.quarantine)
        self.accepted = 0
        self.rejected = 0
        self.records = 0

    def add(self, record: Record) -> None:
        if isinstance(record, tuple):
            why, raw = record
            self.pending.malformed.append((self.name, self.slot, self.records, why, raw))
        else:
            self.pending.rows.append(record)
            self.pending.members.append(self.name)
            self.pending.slots.append(self.slot)
            self.pending.positions.append(self.records)
        self.records += 1
        if len(self.pending) >= self.sink.limit:
            self.flush()

    def flush(self) -> None:
        """Validate and write the member's pending rows to files of its own."""
        pending, self.pending = self.pending, Pending()
        accepted, rejected = self.sink.validate_and_write(pending, self.good, self.bad)
        self.accepted += accepted[self.slot]
        self.rejected += rejected[self.slot]

    def done(self, ledger_row: dict[str, Any]) -> None:
        self.sink.adopt(self, ledger_row)
