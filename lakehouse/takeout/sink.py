"""Rows of one product table on their way to one commit: validated, written, counted per member.

Small members (a Keep note is one row) are pooled in a shared buffer; a large member (a
``Records.json`` of millions of locations) writes its own data files as it goes. Either way its
rows only join the range's commit when the whole member parsed: a member that fails half-way
is quarantined and none of its rows are committed.
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
from lakehouse.contracts import Contract
from lakehouse.readers import ROW
from lakehouse.tables import StagedWrite
from lakehouse.takeout.products import Record, Row
from lakehouse.validate import ERRORS, check_batch

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.table import Table

LINEAGE = ("archive", "member")
# Parsed records wait as Python dicts (~1 KiB each) until validated: at most this many per buffer
# (one per worker's member, one pooled per product), whatever LAKE_BATCH_ROWS says.
ROW_BUFFER = 32_768
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


@dataclass
class Pending:
    """Parsed records not yet validated: rows with their member and position, and bad records."""

    rows: list[Row] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    malformed: list[tuple[str, int, str, Any]] = field(default_factory=list)  # member, position, why, raw

    def extend(self, other: Pending) -> None:
        self.rows += other.rows
        self.members += other.members
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
    ) -> None:
        self.contract = contract
        self.main = main
        self.quarantine = quarantine
        self.settings = settings
        self.archive_uri = archive_uri
        self.archive_version = archive_version
        self.con = con
        self.target = main.schema().as_arrow()
        self.qtarget = quarantine.schema().as_arrow()
        self.good = StagedWrite(main)
        self.bad = StagedWrite(quarantine)
        self.shared = Pending()
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.now = dt.datetime.now(dt.UTC)
        self.limit = min(settings.batch_rows, ROW_BUFFER)

    def member(self, name: str) -> MemberRows:
        return MemberRows(self, name)

    def validate_and_write(
        self, pending: Pending, good: StagedWrite, bad: StagedWrite
    ) -> tuple[Counter[str], Counter[str]]:
        """Validate pending records against the contract; write accepted and quarantined rows."""
        accepted: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
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
            cursor = self.con.cursor()
            try:
                cursor.execute("SET TimeZone = 'UTC'")
                checked = check_batch(cursor, pa.RecordBatch.from_pydict(arrays), self.contract, self.target)
            finally:
                cursor.close()
            good.write(checked.accepted)
            accepted.update(checked.accepted["member"].to_pylist())
            rej = checked.rejected
            for row, errors, raw in zip(
                rej[ROW].to_pylist(), rej[ERRORS].to_pylist(), rej["__lake_raw"].to_pylist(), strict=True
            ):
                member = pending.members[row]
                rejected[member] += 1
                qrows.append(self._qrow(member, pending.positions[row], errors, raw))
        for member, position, why, raw in pending.malformed:
            rejected[member] += 1
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

    def adopt(self, rows: MemberRows) -> None:
        """A member parsed completely: its files and leftover rows join the range's commit."""
        with self.lock:
            self.good.files += rows.good.files
            self.good.rows += rows.good.rows
            self.bad.files += rows.bad.files
            self.bad.rows += rows.bad.rows
            self.accepted.update(rows.accepted)
            self.rejected.update(rows.rejected)
            self.shared.extend(rows.pending)
            # The member's own buffers now belong to the range: let go of them (the member's
            # outcome lives until the commit; its rows must not).
            rows.pending = Pending()
            rows.good.files, rows.bad.files = [], []
            if len(self.shared.rows) + len(self.shared.malformed) >= self.limit:
                self._flush_shared()

    def _flush_shared(self) -> None:
        accepted, rejected = self.validate_and_write(self.shared, self.good, self.bad)
        self.accepted.update(accepted)
        self.rejected.update(rejected)
        self.shared = Pending()

    def finish(self) -> None:
        """Validate and write what is still pooled (before the commit)."""
        with self.lock:
            if self.shared.rows or self.shared.malformed:
                self._flush_shared()


class MemberRows:
    """The rows of one member: written to files of its own when many, adopted when the member is done."""

    def __init__(self, sink: ProductSink, member: str) -> None:
        self.sink = sink
        self.name = member
        self.pending = Pending()
        self.good = StagedWrite(sink.main)
        self.bad = StagedWrite(sink.quarantine)
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.records = 0

    def add(self, record: Record) -> None:
        if isinstance(record, tuple):
            why, raw = record
            self.pending.malformed.append((self.name, self.records, why, raw))
        else:
            self.pending.rows.append(record)
            self.pending.members.append(self.name)
            self.pending.positions.append(self.records)
        self.records += 1
        if len(self.pending.rows) + len(self.pending.malformed) >= self.sink.limit:
            accepted, rejected = self.sink.validate_and_write(self.pending, self.good, self.bad)
            self.accepted.update(accepted)
            self.rejected.update(rejected)
            self.pending = Pending()

    def done(self) -> None:
        self.sink.adopt(self)
