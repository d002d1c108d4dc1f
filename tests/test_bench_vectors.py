"""bench/vectors.py runs once on a small size, so it does not rot (its speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run_bench(*args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "bench/vectors.py", "--rows", "5000", "--dim", "64", "--queries", "100",
         "--batch", "25", "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def check_figures(report: dict[str, object]) -> None:
    assert report["rows"] == 5000 and report["dim"] == 64 and report["queries"] == 100
    for part in ("single", "single_async", "batched"):
        figures = report[part]
        assert isinstance(figures, dict)
        assert 0.0 <= figures["recall"] <= 1.0
        assert figures["numpy_qps"] > 0 and figures["lance_qps"] > 0 and figures["ratio"] >= 0
        assert isinstance(figures["goal_met"], bool)
    batched = report["batched"]
    assert isinstance(batched, dict) and batched["batch"] == 25
    assert batched["numpy_recall"] == 1.0  # numpy batched is exact too
    assert isinstance(report["goal_met"], bool)


def test_vectors_bench_with_an_index() -> None:
    report = run_bench("--min-rows", "1000")
    check_figures(report)
    index = report["index"]
    assert isinstance(index, dict)
    assert index["kind"] == "IVF_HNSW_SQ" and index["seconds"] > 0 and index["params"]
    single = report["single"]
    assert isinstance(single, dict) and single["recall"] >= 0.8  # well above chance on 5k rows


def test_vectors_bench_flat_below_the_threshold() -> None:
    report = run_bench("--min-rows", "10000")
    check_figures(report)
    index = report["index"]
    assert isinstance(index, dict) and str(index["kind"]).startswith("none")
    single = report["single"]
    assert isinstance(single, dict) and single["recall"] == 1.0  # flat search is exact
