"""Table upkeep run on a schedule. Retention: whole months older than a contract's
``retention_months`` are dropped with a metadata-only delete (no data file is rewritten).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.contracts import Contract, list_contracts

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


@dataclass
class RetentionResult:
    table: str
    cutoff: str
    files_dropped: int
    rows_dropped: int
    files_rewritten: int
    snapshot_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retention_cutoff(now: dt.datetime, months: int) -> dt.datetime:
    """The first instant kept: the start of the month ``months - 1`` before ``now``'s month.

    With 12 months, on 2026-11-24 the cutoff is 2025-12-01: December 2025 to November 2026 stay.
    """
    index = now.year * 12 + (now.month - 1) - (months - 1)
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def apply_retention(
    settings: Settings, catalog: Catalog | None = None, now: dt.datetime | None = None
) -> list[RetentionResult]:
    """Drop expired months from every dataset table that exists."""
    from pyiceberg.exceptions import NoSuchTableError

    catalog = catalog or get_catalog(settings)
    now = now or dt.datetime.now(dt.UTC)
    results = []
    for contract in list_contracts(settings):
        try:
            table = catalog.load_table(f"{settings.namespace}.{contract.name}")
        except NoSuchTableError:
            continue
        results.append(_retain(table, contract, retention_cutoff(now, contract.retention_months)))
    return results


def _retain(table: Any, contract: Contract, cutoff: dt.datetime) -> RetentionResult:
    column = contract.event_time
    bound = cutoff.date().isoformat() if contract.columns[column].type == "date" else cutoff.isoformat()
    name = ".".join(table.name())
    expired = f"{column} < '{bound}'"
    if not list(table.scan(row_filter=expired).plan_files()):
        return RetentionResult(name, cutoff.isoformat(), 0, 0, 0, None)
    table.delete(delete_filter=expired, snapshot_properties={"lake.retention.cutoff": cutoff.isoformat()})
    snap = table.current_snapshot()
    summary = snap.summary if snap and snap.summary else {}
    return RetentionResult(
        table=name,
        cutoff=cutoff.isoformat(),
        files_dropped=int(summary.get("deleted-data-files", 0) or 0),
        rows_dropped=int(summary.get("deleted-records", 0) or 0),
        files_rewritten=int(summary.get("added-data-files", 0) or 0),
        snapshot_id=snap.snapshot_id if snap else None,
    )
