"""bench/takeout.py runs at two tiny sizes, so it does not rot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_takeout_bench_runs_and_both_phases_count_every_record() -> None:
    result = subprocess.run(
        [sys.executable, "bench/takeout.py", "--size-mb", "2", "--steps", "2", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == sum(report["records"].values()) > 1000
    assert set(report["records"]) >= {
        "takeout_location",
        "takeout_activity",
        "takeout_chrome",
        "takeout_keep",
    }
    assert report["lake"]["records"] == report["baseline"]["records"] == report["records"]
    assert [run["size_mb"] for run in report["runs"]] == [1, 2]
    assert all(run["lake"]["records"] == run["records"] for run in report["runs"])
    assert report["allocator_env"]["MALLOC_ARENA_MAX"] == "2"
    assert (
        report["ratio"] > 0 and report["lake"]["peak_rss_mib"] > 0 and report["baseline"]["peak_rss_mib"] > 0
    )
