"""Upsert: merge an upload into a table by the contract's ``primary_key``.

The accepted rows of the upload are staged in DuckDB (spilling to disk past its memory limit),
reduced to one winner per key (latest event time; ties go to the later row of the file), then
merged copy-on-write:

1. Files whose key bounds (manifest statistics) cannot hold an incoming key are skipped
   unread; the others have only their key and event-time columns read.
2. Only files holding a matching key are rewritten, without the rows an incoming row
   replaces. An existing row with a later event time than the incoming one wins; the
   incoming row is dropped (``rows_superseded``).
3. One ``overwrite`` snapshot removes the rewritten files and adds their replacements and
   the new rows; its summary carries the source (the idempotency ledger) and the counts.

Without an event time the incoming row always wins. With ``write_mode: replace`` the winners
become the whole table: the overwrite removes every live file.

A commit that loses to a concurrent writer is planned again from the new table state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from lakehouse.config import Settings
from lakehouse.contracts.model import ROW, Contract
from lakehouse.duck import ident
from lakehouse.errors import CommitConflict
from lakehouse.tables.write import (
    SOURCE_URI,
    SOURCE_VERSION,
    SourceRef,
    StagedWrite,
    backoff,
    committed_snapshot,
)

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import FileScanTask, Table

INCOMING = "__lake_incoming"
WINNERS = "__lake_winners"
MATCHED = "__lake_matched"
REPLACED = "__lake_replaced"


@dataclass
class MergeStats:
    """What a merge did."""

    rows_inserted: int = 0
    rows_updated: int = 0
    rows_superseded: int = 0  # incoming rows that lost: a duplicate in the file or an older event
    files_rewritten: int = 0
    files_scanned: int = 0
    files_skipped: int = 0


@dataclass
class MergeWrite:
    """Accepted rows of an upsert contract, staged in DuckDB until :meth:`commit` merges them."""

    table: Table
    contract: Contract
    con: duckdb.DuckDBPyConnection
    rows: int = 0
    stats: MergeStats = field(default_factory=MergeStats)
    files: list[DataFile] = field(default_factory=list)
    replace: bool = False
    _created: bool = False

    def write(self, data: pa.Table, rows: pa.Array) -> None:
        """Stage accepted rows with their row numbers (the arrival order within the file)."""
        if data.num_rows == 0:
            return
        staged = data.append_column(ROW, rows)
        self.con.register("__lake_stage", staged)
        try:
            if not self._created:
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE {INCOMING} AS SELECT * FROM __lake_stage")
                self._created = True
            else:
                self.con.execute(f"INSERT INTO {INCOMING} SELECT * FROM __lake_stage")
        finally:
            self.con.unregister("__lake_stage")
        self.rows += data.num_rows

    # --- merge -------------------------------------------------------------------------------

    def _keys(self) -> list[str]:
        assert self.contract.primary_key
        return list(self.contract.primary_key)

    def _on(self, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{ident(k)} = {right}.{ident(k)}" for k in self._keys())

    def _et(self, alias: str = "") -> str:
        """The event-time column (a constant NULL without one: every incoming row is newest)."""
        et = self.contract.event_time
        return "NULL::BOOLEAN" if et is None else f"{alias + '.' if alias else ''}{ident(et)}"

    def _newer(self, old: str, new: str) -> str:
        """SQL: the existing row (event time ``old``) is newer than the incoming one (``new``)."""
        return "false" if self.contract.event_time is None else f"{old} > {new}"

    def _winners(self) -> int:
        keys = ", ".join(ident(k) for k in self._keys())
        by_time = "" if self.contract.event_time is None else f"{self._et()} DESC NULLS LAST, "
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {WINNERS} AS SELECT * EXCLUDE (__lake_rank) FROM ("
            f"SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {by_time}"
            f"{ident(ROW)} DESC) AS __lake_rank FROM {INCOMING}) WHERE __lake_rank = 1"
        )
        return int(self.con.execute(f"SELECT count(*) FROM {WINNERS}").fetchone()[0])  # type: ignore[index]

    def _candidates(self, tasks: list[FileScanTask]) -> list[FileScanTask]:
        """Files whose key bounds overlap the incoming keys' range (all when bounds are missing)."""
        from pyiceberg.conversions import from_bytes

        schema = self.table.schema()
        ranges: dict[int, tuple[Any, Any]] = {}
        for key in self._keys():
            f = schema.find_field(key)
            low, high = self.con.execute(
                f"SELECT min({ident(key)}), max({ident(key)}) FROM {WINNERS}"
            ).fetchone()  # type: ignore[misc]
            ranges[f.field_id] = (low, high)
        out = []
        for task in tasks:
            df = task.file
            overlap = True
            for field_id, (low, high) in ranges.items():
                lower, upper = (df.lower_bounds or {}).get(field_id), (df.upper_bounds or {}).get(field_id)
                if lower is None or upper is None or low is None:
                    continue
                ftype = schema.find_field(field_id).field_type
                try:
                    lo, hi = from_bytes(cast(Any, ftype), lower), from_bytes(cast(Any, ftype), upper)
                    if hi < low or lo > high:
                        overlap = False
                except TypeError:  # bounds of a type that does not compare with the key values
                    continue
            if overlap:
                out.append(task)
        return out

    def _no_matches(self) -> None:
        """An empty ``MATCHED`` (key, existing event time)."""
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {MATCHED} AS SELECT {', '.join(ident(k) for k in self._keys())}, "
            f"{self._et()} AS __lake_old_et FROM {WINNERS} LIMIT 0"
        )

    def _plan(self) -> tuple[list[FileScanTask], int]:
        """Find the files holding incoming keys; fills ``MATCHED`` (key, existing event time)."""
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan

        keys = self._keys()
        et = self.contract.event_time
        self._no_matches()
        tasks = list(self.table.scan().plan_files()) if self.table.current_snapshot() else []
        candidates = self._candidates(tasks)
        self.stats.files_scanned = len(candidates)
        self.stats.files_skipped = len(tasks) - len(candidates)
        projected = self.table.schema().select(*keys, *([et] if et else []))
        scan = ArrowScan(self.table.metadata, self.table.io, projected, AlwaysTrue())
        affected: list[FileScanTask] = []
        cols = ", ".join(f"k.{ident(k)}" for k in keys)
        for task in candidates:
            found = scan.to_table([task])
            self.con.register("__lake_keys", found)
            try:
                self.con.execute(
                    f"CREATE OR REPLACE TEMP TABLE __lake_hits AS SELECT {cols}, "
                    f"{self._et('k')} AS __lake_old_et, "
                    f"{self._newer(self._et('k'), self._et('w'))} AS __lake_kept FROM __lake_keys k "
                    f"JOIN {WINNERS} w ON {self._on('k', 'w')}"
                )
                self.con.execute(f"INSERT INTO {MATCHED} SELECT * EXCLUDE (__lake_kept) FROM __lake_hits")
                # Rewrite a file only where an incoming row replaces one of its rows.
                n = self.con.execute("SELECT count(*) FROM __lake_hits WHERE NOT __lake_kept").fetchone()[0]  # type: ignore[index]
            finally:
                self.con.unregister("__lake_keys")
            if n:
                affected.append(task)
        total = self.con.execute(f"SELECT count(*) FROM {MATCHED}").fetchone()[0]  # type: ignore[index]
        # The existing rows an incoming winner replaces: small (the updates), so every rewritten
        # batch is joined against it rather than against all the winners.
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {REPLACED} AS SELECT {', '.join('m.' + ident(k) for k in keys)} "
            f"FROM {MATCHED} m JOIN {WINNERS} w ON {self._on('m', 'w')} "
            f"WHERE NOT ({self._newer('m.__lake_old_et', self._et('w'))})"
        )
        return affected, int(total)

    def _rewrite(self, affected: list[FileScanTask], staged: StagedWrite, target: pa.Schema) -> None:
        """Write each affected file again without the rows an incoming winner replaces."""
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan

        from lakehouse.contracts.validate import conform

        scan = ArrowScan(self.table.metadata, self.table.io, self.table.schema(), AlwaysTrue())
        for task in affected:
            for batch in scan.to_record_batches([task]):
                self.con.register("__lake_old", batch)
                try:
                    kept = self.con.execute(
                        f"SELECT o.* FROM __lake_old o WHERE NOT EXISTS (SELECT 1 FROM {REPLACED} r "
                        f"WHERE {self._on('o', 'r')})"
                    ).to_arrow_table()
                finally:
                    self.con.unregister("__lake_old")
                staged.write(conform(kept, target))

    def _inserts(self, staged: StagedWrite, target: pa.Schema, batch_rows: int) -> int:
        from lakehouse.contracts.validate import conform

        reader = self.con.execute(
            f"SELECT w.* EXCLUDE ({ident(ROW)}) FROM {WINNERS} w WHERE NOT EXISTS (SELECT 1 FROM {MATCHED} m "
            f"WHERE {self._on('m', 'w')} AND {self._newer('m.__lake_old_et', self._et('w'))})"
        ).to_arrow_reader(batch_rows)
        written = 0
        for batch in reader:
            staged.write(conform(pa.Table.from_batches([batch]), target))
            written += batch.num_rows
        return written

    def commit(self, source: SourceRef, properties: dict[str, str], settings: Settings) -> tuple[int, bool]:
        """Merge and commit in one overwrite snapshot; returns (snapshot id, already committed)."""
        from pyiceberg.exceptions import CommitFailedException, ValidationException

        winners = self._winners() if self._created else 0
        for attempt in range(settings.commit_retries + 1):
            self.table.refresh()
            done = committed_snapshot(self.table, source)
            if done is not None:
                return done, True
            self.stats = MergeStats()
            target = self.table.schema().as_arrow()
            staged = StagedWrite(self.table)
            affected: list[FileScanTask] = []
            if self.replace:  # the winners become the whole table
                affected = list(self.table.scan().plan_files()) if self.table.current_snapshot() else []
                if winners:
                    self._no_matches()
                    self.stats.rows_inserted = self._inserts(staged, target, settings.batch_rows)
                self.stats.rows_superseded = self.rows - winners
                self.stats.files_rewritten = len(affected)
            elif winners:
                affected, matched = self._plan()
                self._rewrite(affected, staged, target)
                inserted_or_updated = self._inserts(staged, target, settings.batch_rows)
                stale = int(
                    self.con.execute(
                        f"SELECT count(*) FROM {MATCHED} m JOIN {WINNERS} w ON {self._on('m', 'w')} "
                        f"WHERE {self._newer('m.__lake_old_et', self._et('w'))}"
                    ).fetchone()[0]  # type: ignore[index]
                )
                self.stats.rows_updated = matched - stale
                self.stats.rows_inserted = inserted_or_updated - self.stats.rows_updated
                self.stats.rows_superseded = self.rows - winners + stale
                self.stats.files_rewritten = len(affected)
            summary = {
                SOURCE_URI: source.uri,
                SOURCE_VERSION: source.version,
                **properties,
                "lake.upsert.rows-inserted": str(self.stats.rows_inserted),
                "lake.upsert.rows-updated": str(self.stats.rows_updated),
                "lake.upsert.rows-superseded": str(self.stats.rows_superseded),
                "lake.upsert.files-rewritten": str(self.stats.files_rewritten),
            }
            try:
                with self.table.transaction() as tx:
                    with tx.update_snapshot(snapshot_properties=summary).overwrite() as overwrite:
                        for task in affected:
                            overwrite.delete_data_file(task.file)
                        for data_file in staged.files:
                            overwrite.append_data_file(data_file)
            except (CommitFailedException, ValidationException) as e:
                if attempt == settings.commit_retries:
                    raise CommitConflict(
                        f"{self.table.name()}: upsert of {source.uri} lost to concurrent writers "
                        f"{attempt + 1} times"
                    ) from e
                time.sleep(backoff(attempt))
                continue
            self.files = staged.files
            snapshot = self.table.current_snapshot()
            assert snapshot is not None
            return snapshot.snapshot_id, False
        raise AssertionError("unreachable")
