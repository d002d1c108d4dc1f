"""`lake put --progress`, `lake quarantine list|replay` as a user runs them, and the data-quality
bench scripts once on a tiny size (so they never rot)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lakehouse.config import Settings
from tests.conftest import ROOT
from tests.test_cli import lake

pytestmark = pytest.mark.integration

CONTRACT = """
name: {name}
version: {version}
event_time: ts
columns:
  ts:     {type: timestamp, required: true}
  status: {type: string, enum: [{enum}]}
"""


def test_put_progress_json_and_quarantine_commands(
    settings: Settings, dataset: Callable[[str], str], tmp_path: Path
) -> None:
    name = dataset(CONTRACT.replace("{version}", "1").replace("{enum}", "ok"))
    path = tmp_path / f"{name}.csv"
    path.write_text("ts,status\n2025-01-01,ok\n2025-01-02,late\n2025-01-03,late\n")
    put = lake("put", str(path), "--json", "--progress")
    report = json.loads(put.stdout)  # stdout is the report alone: no metrics, no progress
    assert (report["rows_accepted"], report["rows_quarantined"]) == (1, 2)
    assert report["rule_failures"] == {"enum": 2} and report["quality_score"] == pytest.approx(1 / 3)
    assert "rows" in put.stderr and "100%" in put.stderr  # the bar went to stderr
    listed = json.loads(lake("quarantine", "list", name, "--json").stdout)
    assert listed["total"] == 2 and listed["by_rule"] == {"enum": 2}
    assert "2 of 2 quarantined rows; enum 2" in lake("quarantine", "list", name).stdout
    (settings.contracts_dir / f"{name}.yaml").write_text(
        CONTRACT.replace("{version}", "2").replace("{enum}", "ok, late").replace("{name}", name)
    )
    replayed = json.loads(
        lake("quarantine", "replay", name, "--source", f"{name}/{path.name}", "--json").stdout
    )
    assert (replayed["replayed"], replayed["still_failing"], replayed["contract_version"]) == (2, 0, 2)
    assert "0 of 0 quarantined rows moved" in lake("quarantine", "replay", name).stdout


@pytest.mark.slow
def test_quality_bench_scripts_run_on_a_tiny_size() -> None:
    large = subprocess.run(
        [
            sys.executable,
            "bench/ingest_large.py",
            "--gb",
            "0.002",
            "--chunk-rows",
            "20000",
            "--rss-limit-mib",
            "100000",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert large.returncode == 0, large.stderr
    result = json.loads(large.stdout)
    assert result["rows_stored"] == result["rows"] > 0
    for key in (
        "csv_bytes",
        "lake_rows_per_second",
        "lake_peak_rss_mib",
        "baseline_rows_per_second",
        "ratio",
    ):
        assert result[key] > 0, key
    upsert = subprocess.run(
        [sys.executable, "bench/upsert.py", "--rows", "2000", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert upsert.returncode == 0, upsert.stderr
    result = json.loads(upsert.stdout)
    assert result["lake_matches_reference"] and result["pyiceberg_matches_reference"]
    assert result["lake_rows_updated"] == result["pyiceberg_rows_updated"] == 200
    assert result["lake_seconds"] > 0 and result["pyiceberg_seconds"] > 0 and result["speedup"] > 0
