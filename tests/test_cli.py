"""The `lake` command, run as a user runs it (a subprocess), against the session's local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lakehouse.config import Settings
from lakehouse.contracts.model import parse_contract
from lakehouse.storage import s3_client
from tests.conftest import ROOT, SENSOR_CONTRACT
from tests.test_ingest import month_rows, to_csv

pytestmark = pytest.mark.integration


def lake(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "lake.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_up_status_reuse_and_down_in_a_fresh_home(tmp_path: Path) -> None:
    env = {"LAKE_HOME": str(tmp_path / "home")}
    assert lake("status", env=env, check=False).returncode == 1
    first = lake("up", "--owner-pid", str(os.getpid()), env=env)  # gone with the session if interrupted
    assert "started the local stack" in first.stdout
    state = json.loads(lake("status", "--json", env=env).stdout)
    assert state["running"] is True and state["endpoint"].startswith("http://127.0.0.1:")
    assert state["landing_bucket"] == "lake-landing" and state["warehouse_bucket"] == "lake-warehouse"
    assert state["catalog_uri"] == f"sqlite:///{tmp_path / 'home' / 'catalog.db'}"
    assert "reusing" in lake("up", env=env).stdout
    assert json.loads(lake("status", "--json", env=env).stdout)["pid"] == state["pid"]
    assert "stopped" in lake("down", env=env).stdout
    assert json.loads(lake("status", "--json", env=env, check=False).stdout)["running"] is False
    refused = lake("put", "infra/samples/app_events.ndjson", env=env, check=False)
    assert refused.returncode == 2 and "lake up" in refused.stderr


def test_put_sql_tables_describe(
    settings: Settings, dataset: Callable[[str], str], tmp_path: Path, client: Any
) -> None:
    name = dataset(SENSOR_CONTRACT)
    path = tmp_path / f"{name}.csv"
    path.write_bytes(to_csv(month_rows(3)))
    put = lake("put", str(path))
    assert f"→ lake.{name}: 9 accepted, 0 quarantined of 9 rows" in put.stdout
    again = json.loads(lake("put", str(path), "--dataset", name, "--json").stdout)
    assert again["duplicate"] is True  # a new version of the same bytes: the ledger knows them
    assert again["duplicate_of"] and again["duplicate_of"] != again["version"]

    sql = f"SELECT sensor_id, count(*) AS n FROM lake.{name} GROUP BY 1 ORDER BY 1"
    as_json = json.loads(lake("sql", sql, "--format", "json").stdout)
    direct = client.sql(sql).body
    for body in (as_json, direct):
        body.pop("elapsed_ms"), body.pop("cached")
    assert as_json == direct and as_json["rows"] == [["s0", 3], ["s1", 3], ["s2", 3]]
    assert lake("sql", sql, "--format", "csv").stdout.splitlines() == ["sensor_id,n", "s0,3", "s1,3", "s2,3"]
    table = lake("sql", sql).stdout
    assert "sensor_id" in table and "(3 rows" in table
    forbidden = lake("sql", "COPY (SELECT 1) TO 'x.csv'", check=False)
    assert forbidden.returncode != 0 and "only SELECT" in forbidden.stderr

    assert f"lake.{name}" in lake("tables").stdout
    described = lake("describe", name).stdout
    assert "month(ts)" in described and "9 rows" in described


def test_contract_infer_drafts_a_loadable_contract() -> None:
    out = lake("contract", "infer", "infra/samples/app_events.ndjson", "--dataset", "events_draft").stdout
    contract = parse_contract(out, "inferred")
    assert contract.name == "events_draft" and contract.event_time == "event_time"
    types = {n: c.type for n, c in contract.columns.items()}
    assert types["event_time"] == "timestamp" and types["user_id"] == "long" and types["is_test"] == "boolean"
    assert types["amount"] == "double" and types["day"] == "date" and types["event_id"] == "string"
    assert contract.columns["event_id"].required and not contract.columns["amount"].required
    csv_out = lake("contract", "infer", "infra/samples/sensor_readings.csv", "--dataset", "s").stdout
    draft = yaml.safe_load(csv_out)
    assert draft["event_time"] == "ts" and draft["columns"]["status"]["enum"] == ["degraded", "failed", "ok"]


def test_serve_ingests_a_plain_s3_upload(settings: Settings, dataset: Callable[[str], str]) -> None:
    from lake.local.serve import Watcher

    name = dataset(SENSOR_CONTRACT)
    watcher = Watcher(settings, interval=0.2, workers=1)
    watcher.poll()  # everything already in the bucket is delivered (and found already ingested)
    s3_client(settings).put_object(
        Bucket=settings.landing_bucket, Key=f"{name}/plain.csv", Body=to_csv(month_rows(2))
    )
    s3_client(settings).put_object(
        Bucket=settings.landing_bucket, Key="no_contract_here/x.csv", Body=b"a\n1\n"
    )
    watcher.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(c["dataset"] == name for c in watcher.committed):
        time.sleep(0.1)
    watcher.stop_event.set()
    report = next(r for r in watcher.reports if r.get("table") == f"lake.{name}")
    assert report["rows_accepted"] == 6 and report["status"] == "staged"  # the committer committed it
    assert any(c["dataset"] == name and c["sources"] == 1 for c in watcher.committed)
    assert any(f["key"] == "no_contract_here/x.csv" and f["terminal"] for f in watcher.failures)
