"""bench/vectors.py runs once on a small size, so it does not rot (its speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run_bench(*args: str) -> dict[str, object]:
    command = [sys.executable, "bench/vectors.py", "--rows", "5000", "--dim", "64", "--queries", "100"]
    result = subprocess.run(
        [*command, "--json", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def check_figures(report: dict[str, object]) -> dict[str, object]:
    assert report["rows"] == 5000 and report["dim"] == 64 and report["queries"] == 100
    single = report["single"]
    assert isinstance(single, dict)
    assert 0.0 <= single["recall"] <= 1.0
    assert single["numpy_qps"] > 0 and single["lake_qps"] > 0 and single["ratio"] > 0
    assert isinstance(single["goal_met"], bool) and report["goal_met"] == single["goal_met"]
    return single


def test_vectors_bench_with_an_index() -> None:
    report = run_bench("--min-rows", "1000")
    single = check_figures(report)
    index = report["index"]
    assert isinstance(index, dict)
    assert index["kind"] == "HNSW_SQ8" and index["seconds"] > 0 and index["rows"] == 5000
    assert single["recall"] >= 0.9  # well above chance on 5k rows


def test_vectors_bench_without_an_index_below_the_threshold() -> None:
    report = run_bench("--min-rows", "10000")
    single = check_figures(report)
    index = report["index"]
    assert isinstance(index, dict) and str(index["kind"]).startswith("none")
    assert single["recall"] == 1.0  # every vector scored: exact
