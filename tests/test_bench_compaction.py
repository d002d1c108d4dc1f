"""The compaction bench runs once on a small size, so it never rots."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

KEYS = {
    "files",
    "rows",
    "bytes_before",
    "files_after",
    "query_before_ms",
    "query_after_ms",
    "query_speedup",
    "compaction_mib_per_s",
    "baseline_mib_per_s",
    "throughput_ratio",
    "bytes_freed",
    "problems",
}


def test_compaction_bench_runs_and_reports_its_ratios() -> None:
    result = subprocess.run(
        [sys.executable, "bench/compaction.py", "--files", "10", "--rows-per-file", "200", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert KEYS <= set(report)
    assert (report["files"], report["rows"], report["files_after"]) == (10, 2000, 1)
    assert report["problems"] == []
    assert report["query_speedup"] > 0 and report["throughput_ratio"] > 0
    assert report["bytes_freed"] >= report["bytes_before"]
