"""bench/small_uploads.py runs once on a second of uploads per writer count, so it does not rot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_small_uploads_bench_commits_every_upload_once_beside_ducklake() -> None:
    result = subprocess.run(
        [sys.executable, "bench/small_uploads.py", "--seconds", "1", "--interval", "0.5"]
        + ["--writers", "1,2", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for run in report["lake"]:
        assert run["uploads"] > 0 and run["committed"] == run["uploads"]
        assert run["lost"] == 0 and run["duplicated"] == 0
        assert run["snapshots_made"] >= 1 and run["metadata_json_bytes"] > 0
        assert run["latency_p95_s"] >= run["latency_p50_s"] > 0
    assert [r["writers"] for r in report["ducklake"]] == [1, 2]
    assert all(r["uploads"] > 0 and not r["lost_or_duplicated"] for r in report["ducklake"])
