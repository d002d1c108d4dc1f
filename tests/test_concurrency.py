"""Exactly once under redelivered events, and crash safety of a writer (SIGKILL). Many writers
and a killed committer: tests/test_committer.py."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from lake.client import LakeClient
from lakehouse.config import Settings
from lakehouse.storage import s3_client
from tests.conftest import ROOT, SENSOR_CONTRACT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _csv(tag: str, rows: int) -> bytes:
    lines = ["ts,sensor_id,temp_c"] + [
        f"2025-0{1 + i % 3}-0{1 + i % 9}T00:00:00Z,{tag}-{i},1.5" for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def _redeliver(settings_home: str, key: str) -> dict[str, Any]:
    from lake.local.serve import deliver
    from lakehouse.config import load_settings

    settings = load_settings()
    report: dict[str, Any] = deliver(settings, settings.landing_bucket, key)["reports"][0]
    return report


def test_the_same_event_three_times_in_a_row_and_at_once_adds_the_rows_once(
    settings: Settings, dataset: Callable[[str], str], client: LakeClient
) -> None:
    from lake.local.serve import deliver

    name = dataset(SENSOR_CONTRACT)
    s3 = s3_client(settings)
    key = f"{name}/again.csv"
    s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=_csv("seq", 5) + b"bad,row,1\n")
    sequential = [deliver(settings, settings.landing_bucket, key)["reports"][0] for _ in range(3)]
    assert [r["duplicate"] for r in sequential] == [False, True, True]
    key2 = f"{name}/together.csv"
    s3.put_object(Bucket=settings.landing_bucket, Key=key2, Body=_csv("par", 5) + b"bad,row,1\n")
    with ProcessPoolExecutor(3, mp_context=mp.get_context("spawn")) as pool:
        together = list(pool.map(_redeliver, [str(settings.home)] * 3, [key2] * 3))
    assert sorted(r["duplicate"] for r in together) == [False, True, True]
    assert len({r["snapshot_id"] for r in together}) == 1
    counted = client.sql(f"SELECT count(*) FROM lake.{name}")
    assert counted.status == 200 and counted.body["rows"] == [[10]], counted.body
    counted = client.sql(f"SELECT count(*) FROM lake.{name}__quarantine")
    assert counted.status == 200 and counted.body["rows"] == [[2]], counted.body


KILL_TRIALS = 10


def test_a_killed_ingest_shows_none_or_all_rows_and_a_redelivery_completes_it(
    settings: Settings, dataset: Callable[[str], str], client: LakeClient
) -> None:
    from lake.local.serve import deliver

    name = dataset(SENSOR_CONTRACT.replace("retention_months: 12", "retention_months: 12\n"))
    rows = 12_000
    s3 = s3_client(settings)
    env = {**os.environ, "LAKE_BATCH_ROWS": "2000"}  # many batches: kills land between file writes too
    code = (
        "import sys; from lakehouse.config import load_settings; from lake.local.serve import deliver; "
        "s = load_settings(); deliver(s, s.landing_bucket, sys.argv[1])"
    )
    rng = random.Random(7)
    outcomes = {"none": 0, "all": 0}
    expected = 0
    for trial in range(KILL_TRIALS):
        key = f"{name}/crash-{trial}.csv"
        s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=_csv(f"t{trial}", rows))
        proc = subprocess.Popen(
            [sys.executable, "-c", code, key],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:  # import takes about 1-2 s; the ingest a second or two more
            proc.wait(timeout=rng.uniform(0.8, 3.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        found = client.sql(f"SELECT count(*) FROM lake.{name} WHERE sensor_id LIKE 't{trial}-%'")
        if trial == 0 and found.status == 404 and found.body.get("error") == "TableNotFound":
            seen = 0  # killed before its first commit created the table
        else:
            assert found.ok, found.body
            seen = found.body["rows"][0][0]
        assert seen in (0, rows), f"trial {trial}: {seen} rows visible"
        outcomes["all" if seen else "none"] += 1
        # The redelivery commits the rows (or finds them committed, by the killed run's staged
        # request that its commit completed): either way they are there once.
        deliver(settings, settings.landing_bucket, key)
        expected += rows
        total = client.sql(f"SELECT count(*), count(DISTINCT sensor_id) FROM lake.{name}").body["rows"]
        assert total == [[expected, expected]]
    assert outcomes["none"] > 0  # some kills did land mid-ingest
    # What the killed runs wrote is unreferenced: orphan cleanup removes it and every row stays.
    import datetime as dt

    from lakehouse.catalog import get_catalog
    from lakehouse.tables.gc import remove_orphans

    table = get_catalog(settings).load_table(f"lake.{name}")
    cleaned = remove_orphans(settings, table, dt.datetime.now(dt.UTC) + dt.timedelta(days=1), dt.timedelta(0))
    assert remove_orphans(settings, table, age=dt.timedelta(0), dry_run=True).files_found == 0
    total = client.sql(f"SELECT count(*), count(DISTINCT sensor_id) FROM lake.{name}").body["rows"]
    assert total == [[expected, expected]]
    print(f"kill trials: {outcomes}, orphan files removed: {cleaned.files_deleted}")
