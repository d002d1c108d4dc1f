"""Every bench script runs once on a small size, so none of them rots."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_ingest_bench_runs_and_counts_every_row() -> None:
    result = subprocess.run(
        [sys.executable, "bench/ingest.py", "--rows", "5000", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 5000
    assert report["ratio"] > 0
    assert report["lake"]["peak_rss_mib"] > 0 and report["baseline"]["peak_rss_mib"] > 0
