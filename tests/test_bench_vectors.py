"""bench/vectors.py runs on a small size, so it does not rot (its speed is not asserted): once with
an index and POST /search over HTTP, once below the index threshold in process only."""

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
    assert isinstance(single["goal_met"], bool)
    return single


def check_http(report: dict[str, object], single: dict[str, object]) -> dict[str, object]:
    """POST /search over HTTP on the same queries, timed against the same numpy runs."""
    http = report["http"]
    assert isinstance(http, dict) and isinstance(single["numpy_qps"], float)
    assert http["recall"] >= 0.9 and http["numpy_qps"] == single["numpy_qps"]
    assert http["http_qps"] > 0 and http["ratio"] > 0 and isinstance(http["goal_met"], bool)
    assert report["goal_met"] == (single["goal_met"] and http["goal_met"])
    spent = report["breakdown_ms"]
    assert isinstance(spent, dict)
    stages = ("auth", "request", "snapshot", "lance", "resident", "candidates", "join", "rows", "json")
    assert all(spent[stage] >= 0 for stage in stages)
    assert spent["search"] > 0 and spent["handler"] > 0 and spent["http_total"] > 0
    return http


def test_vectors_bench_with_an_index() -> None:
    report = run_bench("--min-rows", "1000")
    single = check_figures(report)
    index = report["index"]
    assert isinstance(index, dict)
    assert index["kind"] == "HNSW_SQ8" and index["seconds"] > 0 and index["rows"] == 5000
    assert single["recall"] >= 0.9  # well above chance on 5k rows
    http = check_http(report, single)
    assert http["recall"] == single["recall"]  # the server searches the same index


def test_vectors_bench_without_an_index_below_the_threshold() -> None:
    report = run_bench("--min-rows", "10000", "--no-http")
    single = check_figures(report)
    assert report["http"] is None and report["goal_met"] == single["goal_met"]
    index = report["index"]
    assert isinstance(index, dict) and str(index["kind"]).startswith("none")
    assert single["recall"] == 1.0  # every vector scored: exact
