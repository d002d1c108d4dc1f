"""Retention against the local stack: whole months dropped, no data file rewritten."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.maintenance import apply_retention, retention_cutoff
from tests.conftest import SENSOR_CONTRACT
from tests.test_ingest import month_rows, to_csv


def test_cutoff_keeps_the_current_month_and_the_eleven_before() -> None:
    assert retention_cutoff(dt.datetime(2026, 11, 24, tzinfo=dt.UTC), 12) == dt.datetime(
        2025, 12, 1, tzinfo=dt.UTC
    )
    assert retention_cutoff(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 1) == dt.datetime(
        2026, 1, 1, tzinfo=dt.UTC
    )
    assert retention_cutoff(dt.datetime(2026, 1, 31, tzinfo=dt.UTC), 13) == dt.datetime(
        2025, 1, 1, tzinfo=dt.UTC
    )


@pytest.mark.integration
def test_retention_drops_months_older_than_twelve_without_rewriting(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    name = dataset(SENSOR_CONTRACT)
    upload(name, "a.csv", to_csv(month_rows(14, start=(2025, 1))))  # Jan 2025 .. Feb 2026
    table = get_catalog(settings).load_table(f"lake.{name}")
    before = {r["file_path"]: r["partition"]["ts_month"] for r in table.inspect.files().to_pylist()}
    now = dt.datetime(2026, 2, 10, tzinfo=dt.UTC)  # keeps Mar 2025 .. Feb 2026

    results = {r.table: r for r in apply_retention(settings, now=now)}
    result = results[f"lake.{name}"]
    assert (result.files_dropped, result.rows_dropped, result.files_rewritten) == (2, 6, 0)

    table.refresh()
    after = {r["file_path"] for r in table.inspect.files().to_pylist()}
    dropped = {path for path, month in before.items() if month < (2025 - 1970) * 12 + 2}  # before 2025-03
    assert len(dropped) == 2
    assert after == set(before) - dropped  # the remaining files are the very same files
    summary = table.current_snapshot().summary
    assert summary.operation.value == "delete" and "added-data-files" not in summary.additional_properties
    assert client.sql(f"SELECT min(ts)::DATE::VARCHAR, count(*) FROM lake.{name}").body["rows"] == [
        ["2025-03-01", 36]
    ]
    # Nothing more to drop the second time.
    again = {r.table: r for r in apply_retention(settings, now=now)}[f"lake.{name}"]
    assert again.files_dropped == 0 and again.snapshot_id is None
