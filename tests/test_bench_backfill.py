"""bench/backfill.py runs once at a tiny size: every row held, ratios printed. Its Ray phase is
left out here (the backfill on Ray is tested in tests/test_scale.py, with the suite's one Ray);
the full-size bench runs all three phases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_backfill_bench_runs_and_counts_every_row() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "bench/backfill.py",
            "--rows",
            "1000",
            "--objects",
            "2",
            "--phases",
            "function,native",
        ]
        + ["--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["complete"] and result["table_rows"] == {"function": 2000, "native": 2000}
    for phase in ("function", "native"):
        assert result["phases"][phase]["rows"] == 2000 and result["phases"][phase]["rows_per_second"] > 0
    assert result["native_vs_function"] > 0 and result["load_before"]
