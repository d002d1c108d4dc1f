"""bench/cli.py: runs once on small sizes (no speed assertions: the figures are printed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_cli_prints_every_figure() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LAKE_HOME"}
    done = subprocess.run(
        [sys.executable, "bench/cli.py", "--runs", "1", "--embedder", "static", "--rows", "20"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    expected = {"help", "sql (cold)", "search (cold)", "sql (server)", "first search (server)"}
    assert expected | {"second search (server)", "load"} == set(figures)
    assert all(figures[name] > 0 for name in expected)
    assert "ratio sql cold / server" in done.stdout
