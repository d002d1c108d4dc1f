"""The quarantine of a dataset: list it, and replay it against the current contract.

Replay re-validates the quarantined records (their raw JSON) with the contract as it is now,
appends the rows that pass to the dataset's table (merged by key for ``primary_key``
contracts) and removes them from the quarantine: one commit per table. The table's commit
records the quarantine snapshot it replayed (``lake.source.uri`` ``replay://<table>``,
``lake.source.version`` the snapshot id), so a replay interrupted between its two commits
finishes without duplicates when run again, and a second replay finds nothing left to move.
Rows that could not be parsed at all (``rule: parse``) keep their raw text and stay.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.contracts.model import ROW, load_contract
from lakehouse.contracts.validate import Validator, validation_connection
from lakehouse.duck import ident, literal
from lakehouse.errors import CommitConflict
from lakehouse.ingest.evolution import evolve
from lakehouse.ingest.upsert import MergeWrite
from lakehouse.tables.write import (
    QUARANTINE_SUFFIX,
    SourceRef,
    StagedWrite,
    backoff,
    committed_snapshot,
    ensure_tables,
)

if TYPE_CHECKING:
    from pyiceberg.table import FileScanTask, Table

LISTED = (
    "quarantined_at",
    "source_uri",
    "source_version",
    "row_number",
    "column",
    "rule",
    "reason",
    "errors",
    "record",
    "contract_version",
)


@dataclass(frozen=True)
class ReplaySource(SourceRef):
    """The identity of a replay: the quarantine table and the snapshot replayed."""

    @property
    def uri(self) -> str:
        return f"replay://{self.key}"


@dataclass
class ReplayReport:
    """What one replay did."""

    dataset: str
    examined: int
    replayed: int
    still_failing: int
    unparseable: int
    snapshot_id: int | None
    quarantine_snapshot_id: int | None
    contract_version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def source_uri(settings: Settings, source: str) -> str:
    """``--source``: a landing key (``<dataset>/<file>``) or a full ``s3://`` URI."""
    return source if "://" in source else f"s3://{settings.landing_bucket}/{source.lstrip('/')}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def list_quarantine(
    settings: Settings, dataset: str, source: str | None = None, limit: int = 100, principal: Any = None
) -> dict[str, Any]:
    """The quarantined rows of a dataset (newest first, at most ``limit``) and counts by rule.

    Quarantined records are raw and span tenants: a tenant-bound API key is refused.
    """
    from pyiceberg.expressions import AlwaysTrue, EqualTo

    if principal is not None:
        from lakehouse.errors import Forbidden

        principal.require("read")
        if principal.tenant is not None:
            raise Forbidden("the quarantine holds raw records of every tenant; a tenant key cannot read it")
    contract = load_contract(settings, dataset)
    _, quarantine = ensure_tables(get_catalog(settings), settings, contract)
    row_filter: Any = (
        cast(Any, EqualTo)("source_uri", source_uri(settings, source)) if source else AlwaysTrue()
    )
    rules = quarantine.scan(row_filter=row_filter, selected_fields=("rule",)).to_arrow()
    by_rule = (
        {r["values"]: r["counts"] for r in pc.value_counts(rules["rule"]).to_pylist()} if len(rules) else {}
    )
    rows = quarantine.scan(row_filter=row_filter).to_arrow()
    if rows.num_rows:
        order = pc.sort_indices(rows, [("quarantined_at", "descending"), ("row_number", "ascending")])
        rows = rows.take(order).slice(0, limit)
    return {
        "dataset": dataset,
        "table": f"{settings.namespace}.{dataset}{QUARANTINE_SUFFIX}",
        "total": rules.num_rows,
        "by_rule": dict(sorted(by_rule.items())),
        "rows": [_json_safe(r) for r in rows.select(list(LISTED)).to_pylist()],
        "limit": limit,
    }


def _commit_removal(
    quarantine: Table,
    affected: list[FileScanTask],
    staged: StagedWrite,
    props: dict[str, str],
    settings: Settings,
) -> int:
    """Swap the affected quarantine files for their rewrites (without the replayed rows)."""
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    paths = {t.file.file_path for t in affected}
    for attempt in range(settings.commit_retries + 1):
        try:
            with quarantine.transaction() as tx:
                with tx.update_snapshot(snapshot_properties=props).overwrite() as overwrite:
                    for task in affected:
                        overwrite.delete_data_file(task.file)
                    for data_file in staged.files:
                        overwrite.append_data_file(data_file)
            snapshot = quarantine.current_snapshot()
            assert snapshot is not None
            return snapshot.snapshot_id
        except (CommitFailedException, ValidationException) as e:
            quarantine.refresh()
            live = {t.file.file_path for t in quarantine.scan().plan_files()}
            if attempt == settings.commit_retries or not paths <= live:
                raise CommitConflict(
                    f"{quarantine.name()}: the quarantine changed under the replay; run it again"
                ) from e
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")


def replay(
    settings: Settings, dataset: str, source: str | None = None, principal: Any = None
) -> ReplayReport:
    """Re-validate quarantined rows against the current contract and move the ones that pass.

    Over the API (``principal`` given) it needs a ``write`` key that is bound to no tenant.
    """
    from pyiceberg.expressions import AlwaysTrue, EqualTo
    from pyiceberg.io.pyarrow import ArrowScan


    if principal is not None:
        from lakehouse.errors import Forbidden

        principal.require("write")
        if principal.tenant is not None:
            raise Forbidden("the quarantine holds raw records of every tenant; a tenant key cannot replay it")

    contract = load_contract(settings, dataset)
    main, quarantine = ensure_tables(get_catalog(settings), settings, contract)
    evolve(main, contract, settings)  # the fixed contract may relax `required` or add columns
    quarantine.refresh()
    qsnap = quarantine.current_snapshot()
    report = ReplayReport(dataset, 0, 0, 0, 0, None, None, contract.version)
    if qsnap is None:
        return report
    wanted = source_uri(settings, source) if source else None
    row_filter: Any = cast(Any, EqualTo)("source_uri", wanted) if wanted else AlwaysTrue()
    tasks = list(quarantine.scan(row_filter=row_filter).plan_files())
    scan = ArrowScan(quarantine.metadata, quarantine.io, quarantine.schema(), AlwaysTrue())
    con = validation_connection(settings)
    try:
        # Every quarantined row of the files in play, numbered: (file, position) → replay row id.
        parts = []
        for i, task in enumerate(tasks):
            data = scan.to_table([task])
            parts.append(
                data.append_column("__lake_file", pa.array([i] * data.num_rows, pa.int32())).append_column(
                    "__lake_pos", pa.array(range(data.num_rows), pa.int64())
                )
            )
        if not parts:
            return report
        rows = pa.concat_tables(parts)
        con.register("__lake_q", rows)
        where = f"source_uri = {literal(wanted)}" if wanted else "true"
        picks = ", ".join(
            f"json_extract_string(record, {literal('$.' + _json_key(c))}) AS {ident(c)}"
            for c in contract.columns
        )
        parseable = (
            "CASE WHEN rule <> 'parse' AND json_valid(record) THEN json_type(record) = 'OBJECT' "
            "ELSE false END"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __lake_candidates AS SELECT *, {parseable} AS __lake_ok "
            f"FROM __lake_q WHERE {where}"
        )
        con.unregister("__lake_q")
        examined, ok = con.execute(
            "SELECT count(*), count(*) FILTER (__lake_ok) FROM __lake_candidates"
        ).fetchone()  # type: ignore[misc]
        report.examined, report.unparseable = int(examined), int(examined - ok)
        batch = con.execute(
            f"SELECT (__lake_file::BIGINT << 40) + __lake_pos AS {ROW}{', ' if picks else ''}{picks} "
            "FROM (SELECT * FROM __lake_candidates WHERE __lake_ok)"
        ).to_arrow_table()
        target = main.schema().as_arrow()
        checked = Validator(con, contract, target, salt=settings.pii_salt).check(batch)
        report.still_failing = checked.rejected.num_rows
        moved = checked.accepted_rows
        report.replayed = len(moved)
        if not report.replayed:
            return report
        replay_source = ReplaySource(
            bucket="", key=".".join(quarantine.name()), version=str(qsnap.snapshot_id)
        )
        props = {
            "lake.dataset": dataset,
            "lake.contract.version": str(contract.version),
            "lake.operation": "quarantine-replay",
            "lake.replay.rows": str(report.replayed),
        }
        if committed_snapshot(main, replay_source) is None:
            good: StagedWrite | MergeWrite
            if contract.primary_key:
                good = MergeWrite(main, contract, con)
                good.write(checked.accepted, moved)
            else:
                good = StagedWrite(main)
                good.write(checked.accepted)
        else:  # an earlier run committed the table and stopped before the quarantine
            good = StagedWrite(main)
        report.snapshot_id = good.commit(replay_source, props, settings)[0]

        # Rewrite the quarantine files that held moved rows, without them.
        moved_ids = pa.table({"id": moved})
        files = pc.unique(pc.shift_right(moved, 40)).to_pylist()
        staged = StagedWrite(quarantine)
        qtarget = quarantine.schema().as_arrow()
        con.register("__lake_moved", moved_ids)
        for i in files:
            part = parts[i]
            con.register("__lake_part", part)
            kept = con.execute(
                "SELECT * EXCLUDE (__lake_file, __lake_pos) FROM __lake_part p WHERE NOT EXISTS "
                "(SELECT 1 FROM __lake_moved m WHERE m.id = (p.__lake_file::BIGINT << 40) + p.__lake_pos)"
            ).to_arrow_table()
            con.unregister("__lake_part")
            staged.write(kept.cast(qtarget))
        affected = [tasks[i] for i in files]
        report.quarantine_snapshot_id = _commit_removal(
            quarantine, affected, staged, {**props, "lake.replay.of": str(qsnap.snapshot_id)}, settings
        )
    finally:
        con.close()
    return report


def _json_key(column: str) -> str:
    return '"' + column.replace('"', '\\"') + '"'
