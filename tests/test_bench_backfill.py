"""bench/backfill.py runs once at a tiny size: three phases, every row held, ratios printed (its
Ray phase joins the session's one local Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.xdist_group("ray")
def test_backfill_bench_runs_all_three_phases_and_counts_every_row(ray_cluster: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "bench/backfill.py", "--rows", "2000", "--objects", "3", "--json"]
        + ["--ray-address", ray_cluster["address"]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env={**os.environ, "RAY_AUTH_TOKEN_PATH": ray_cluster["RAY_AUTH_TOKEN_PATH"]},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["complete"] and result["table_rows"] == {"function": 6000, "native": 6000, "ray": 6000}
    for phase in ("function", "native", "ray"):
        assert result["phases"][phase]["rows"] == 6000 and result["phases"][phase]["rows_per_second"] > 0
    assert result["phases"]["ray"]["runner"].startswith("ray")
    assert result["native_vs_function"] > 0 and result["ray_vs_function"] > 0
