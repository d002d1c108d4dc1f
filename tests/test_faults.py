"""Object-store faults: a proxy on 127.0.0.1 in front of the local S3 endpoint injects 503
SlowDown, 500 InternalError and dropped connections; Lake rides through them on its retries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest

from lake.local.faultproxy import FaultProxy
from lakehouse.config import Settings
from lakehouse.storage import s3_client
from tests.conftest import SENSOR_CONTRACT
from tests.test_ingest import month_rows, to_csv

pytestmark = pytest.mark.integration


@pytest.fixture()
def proxy(settings: Settings) -> Iterator[FaultProxy]:
    assert settings.s3_endpoint
    faults = FaultProxy(settings.s3_endpoint, rate=0.1, seed=11)
    faults.start()
    yield faults
    faults.shutdown()
    faults.server_close()


def test_ingest_query_and_retention_succeed_through_injected_faults(
    settings: Settings, proxy: FaultProxy, dataset: Callable[[str], str]
) -> None:
    from lakehouse.ingest.upload import ingest_object
    from lakehouse.maintenance import apply_retention
    from lakehouse.query.engine import run_sql

    faulty = settings.model_copy(update={"s3_endpoint": proxy.url})
    name = dataset(SENSOR_CONTRACT)
    rows = month_rows(14, per_month=20, start=(2025, 1))
    for part in range(3):
        key = f"{name}/part-{part}.csv"
        s3_client(faulty).put_object(Bucket=settings.landing_bucket, Key=key, Body=to_csv(rows))
        report = ingest_object(faulty, settings.landing_bucket, key)
        assert report.rows_accepted == len(rows) and report.rows_quarantined == 0
    counted = run_sql(faulty, f"SELECT count(*), count(DISTINCT ts) FROM lake.{name}")
    assert counted.rows == [[3 * len(rows), 14 * 20]]
    for _ in range(5):
        assert run_sql(faulty, f"SELECT sum(temp_c) FROM lake.{name} WHERE ts >= '2025-06-01'").rows
    results = {
        r.table: r
        for r in apply_retention(faulty, now=dt.datetime(2026, 2, 10, tzinfo=dt.UTC), datasets=[name])
    }
    assert results[f"lake.{name}"].rows_dropped == 3 * 2 * 20
    assert run_sql(faulty, f"SELECT count(*) FROM lake.{name}").rows == [[3 * 12 * 20]]
    assert sum(proxy.injected.values()) >= 10, proxy.injected
    assert set(proxy.injected) == {"slowdown", "internal", "drop"}
