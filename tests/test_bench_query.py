"""bench/query.py runs once on a small size, so it does not rot (its speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_query_bench_runs_and_every_tpch_answer_matches_duckdb() -> None:
    command = [sys.executable, "bench/query.py", "--rows", "10000", "--sf", "0.002", "--repeat", "1"]
    command.append("--json")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])  # after the handlers' log lines
    month, tpch = report["month"], report["tpch"]
    assert month["files_planned"] >= 1 and month["rows_out"] >= 1
    assert month["warm_http_ms"] > 0 and month["warm_duckdb_ms"] > 0 and month["cold_http_ms"] > 0
    # Lake reads the files pyiceberg plans for the month: the others are skipped by their bounds.
    assert month["warm_stats"]["files_read"] == month["files_planned"] < month["warm_stats"]["files_planned"]
    assert month["warm_stats"]["bytes_from_store"] == 0  # warm: every byte from the file cache
    assert set(tpch["queries"]) == {str(n) for n in range(1, 23)}  # all 22, over the 8 tables
    assert set(tpch["load"]["rows"]) == {
        "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"
    }
    assert tpch["all_equal"] is True, {n: q for n, q in tpch["queries"].items() if not q["equal"]}
    assert isinstance(month["goal_met"], bool) and isinstance(tpch["goal_met"], bool)
