"""bench/coldstart.py: runs once with one repeat (no speed assertions), and its parsers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.coldstart import dependency_closure, extra_imports, import_tree
from tests.conftest import ROOT

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |     botocore.utils
import time:       200 |        300 |   boto3
import time:      1000 |       1000 |       aiohttp
import time:       500 |       1500 |     s3fs
import time:        50 |       1550 |   lakehouse.storage
import time:        10 |       1860 | lakehouse
"""
BASELINE = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   botocore.utils
import time:       200 |        300 | boto3
"""


def test_import_tree_follows_importtime_nesting() -> None:
    (root,) = import_tree(IMPORTTIME)
    assert (root.name, root.cumulative_us) == ("lakehouse", 1860)
    assert [c.name for c in root.children] == ["boto3", "lakehouse.storage"]
    assert [c.name for c in root.children[1].children] == ["s3fs"]


def test_extra_imports_charge_a_new_package_with_what_it_pulls_in() -> None:
    extra = extra_imports(import_tree(IMPORTTIME), import_tree(BASELINE))
    # s3fs brings aiohttp (1.5 ms in all); Lake's own modules count their own time; boto3 is baseline.
    assert extra == pytest.approx({"s3fs": 0.0015, "lakehouse": 0.00006})


def test_dependency_closure_follows_extras() -> None:
    core, _ = dependency_closure("lake", ())
    embed, _ = dependency_closure("lake", ("embed",))
    assert {"lake", "lancedb", "pyarrow", "duckdb", "boto3"} <= core
    assert "torch" not in core and "sentence-transformers" not in core
    assert {"torch", "sentence-transformers"} <= embed and core < embed


@pytest.mark.slow
def test_coldstart_bench_runs_once() -> None:
    env = {**os.environ, "LAKE_BENCH_COLDSTART_REPEAT": "1"}
    result = subprocess.run(
        [sys.executable, "bench/coldstart.py", "--json", "--no-explain"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["repeat"] == 1
    assert set(report["handlers"]) == {"ingest", "takeout", "query", "maintenance"}
    for name, r in report["handlers"].items():
        assert r["import_and_first_call_median_s"] > 0 and r["baseline_median_s"] > 0, name
        assert r["ratio"] > 0 and isinstance(r["goal_met"], bool)
        assert r["vector_modules_after_import"] == [], name
        assert r["baseline_modules"], name
    assert report["vector_imports_clean"]
    sizes = report["sizes"]["functions"]
    assert sizes["maintenance"]["install"] == "pip install ."
    assert sizes["query"]["install"] == "pip install .[embed]"
    assert sizes["ingest"]["mib"] > sizes["maintenance"]["mib"] > 0
    assert sizes["maintenance"]["under_image_limit"]
