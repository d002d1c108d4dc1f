"""The layout bench runs once on a small size, so it never rots."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_layout_bench_clusters_and_reads_fewer_files_for_a_box() -> None:
    result = subprocess.run(
        [sys.executable, "bench/layout.py", "--points", "20000", "--files", "8", "--boxes", "3", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["problems"] == [] and report["counted_by"] == "pyiceberg"
    assert report["engine_read_before"] == 8  # the query engine opened every file before
    assert report["files_before"] == 8 and report["read_before"] == 8  # every upload spans the map
    assert report["read_after"] < report["files_after"]  # z-ordered files prune
    assert report["boxes"] == 3
    assert 0 < report["ratio"] < 1
