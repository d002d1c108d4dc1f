"""Materialised rollup tables: declared in <catalog>/rollups/, built by the ``rollups``
maintenance job, refreshed incrementally (only the months that changed), always equal to the
same rollup computed by a plain DuckDB over every row."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import pyarrow as pa
import pytest

from tests.test_rollup_geo import CONTRACT, make_rows, parquet

pytestmark = pytest.mark.integration


def reference(
    rows: list[dict[str, Any]], agg: str, bucket: str, group: str | None
) -> dict[tuple[Any, ...], Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", pa.Table.from_pylist(rows))
    value = "count(*)" if agg == "count" else f"{agg}(value)"
    keys = f"date_trunc('{bucket}', ts)" + (f", {group}" if group else "")
    out = con.execute(f"SELECT {keys}, {value} FROM t GROUP BY ALL").fetchall()
    return {tuple(r[:-1]): r[-1] for r in out}


def materialised(settings: Any, name: str, group: str | None) -> dict[tuple[Any, ...], Any]:
    from lakehouse.catalog import get_catalog

    table = get_catalog(settings).load_table(f"{settings.namespace}.{name}")
    data = table.scan().to_arrow().to_pylist()
    return {(r["bucket"],) + ((r[group],) if group else ()): r["value"] for r in data}


def same(a: dict[tuple[Any, ...], Any], b: dict[tuple[Any, ...], Any]) -> bool:
    if set(a) != set(b):
        return False
    return all(
        (a[k] is None and b[k] is None)
        or (a[k] is not None and b[k] is not None and math.isclose(a[k], b[k]))
        for k in a
    )


def test_rollups_are_materialised_then_refreshed_month_by_month(stack: dict[str, Any]) -> None:
    from lake.local.serve import deliver
    from lakehouse.config import load_settings
    from lakehouse.maintenance import MaintenanceOptions, run_maintenance
    from lakehouse.query.rollups import SOURCE_SNAPSHOT, rollups_dir
    from lakehouse.storage import s3_client

    settings = load_settings()
    name = f"t_{uuid.uuid4().hex[:10]}"
    (settings.contracts_dir / f"{name}.yaml").write_text(CONTRACT.replace("{name}", name))
    folder = rollups_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}_weekly.yaml").write_text(
        f"name: {name}_weekly\ntable: {name}\nagg: count\nbucket: 1w\ngroup_by: device\n"
    )
    (folder / f"{name}_daily.yaml").write_text(
        f"name: {name}_daily\ntable: {name}\ncolumn: value\nagg: avg\nbucket: 1d\n"
    )
    s3 = s3_client(settings)

    def load(rows: list[dict[str, Any]], part: str) -> None:
        key = f"{name}/{part}.parquet"
        s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=parquet(rows))
        assert deliver(settings, settings.landing_bucket, key)["reports"][0]["rows_accepted"] == len(rows)

    def refresh() -> dict[str, dict[str, Any]]:
        options = MaintenanceOptions(jobs=("rollups",), tables=(f"{settings.namespace}.{name}",))
        results = run_maintenance(settings, options)["jobs"]["rollups"]
        assert all("error" not in r for r in results), results
        return {r["rollup_table"].rsplit("__rollup_", 1)[1]: r for r in results}

    weekly, daily = f"{name}__rollup_{name}_weekly", f"{name}__rollup_{name}_daily"
    rows = make_rows(1500)
    load(rows, "first")
    first = refresh()
    assert {r["mode"] for r in first.values()} == {"full"}
    assert same(materialised(settings, weekly, "device"), reference(rows, "count", "week", "device"))
    assert same(materialised(settings, daily, None), reference(rows, "avg", "day", None))

    # New rows in two months only: those months (widened to whole weeks) are recomputed.
    more = [
        {**r, "id": 10_000 + i, "ts": dt.datetime(2025, m, 1 + i % 27, 12, tzinfo=dt.UTC)}
        for i, r in enumerate(make_rows(200, seed=5))
        for m in ((3,) if i % 2 else (7,))
    ]
    load(more, "second")
    second = refresh()
    assert {r["mode"] for r in second.values()} == {"incremental"}
    assert all(r["months"] == ["2025-03", "2025-07"] for r in second.values())
    everything = rows + more
    assert same(materialised(settings, weekly, "device"), reference(everything, "count", "week", "device"))
    assert same(materialised(settings, daily, None), reference(everything, "avg", "day", None))

    # The refresh records the source snapshot it read; nothing new: nothing to do.
    from lakehouse.catalog import get_catalog

    source = get_catalog(settings).load_table(f"{settings.namespace}.{name}")
    target = get_catalog(settings).load_table(f"{settings.namespace}.{weekly}")
    assert target.current_snapshot().summary[SOURCE_SNAPSHOT] == str(source.current_snapshot().snapshot_id)  # type: ignore[union-attr]
    assert {r["mode"] for r in refresh().values()} == {"unchanged"}


def test_bad_declarations_are_reported_not_raised(stack: dict[str, Any]) -> None:
    from lakehouse.config import load_settings
    from lakehouse.maintenance import MaintenanceOptions, run_maintenance
    from lakehouse.query.rollups import RollupDef, rollups_dir

    settings = load_settings()
    with pytest.raises(ValueError, match="bucket"):
        RollupDef(name="x", table="y", bucket="2d")
    folder = rollups_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "zz_missing.yaml"
    path.write_text("name: zz_missing\ntable: no_such_table\nagg: sum\ncolumn: value\n")
    try:
        options = MaintenanceOptions(jobs=("rollups",), tables=(f"{settings.namespace}.no_such_table",))
        results = run_maintenance(settings, options)["jobs"]["rollups"]
        assert results and results[0]["error"] == "TableNotFound" and results[0]["terminal"] is True
    finally:
        path.unlink()
