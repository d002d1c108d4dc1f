"""The embedder bench runs once on a small size, so it never rots."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

EMBEDDERS = ("minilm", "static")
METRICS = ("topic_nn", "paraphrase_r1", "paraphrase_r5")


def test_embedder_bench_reports_speed_and_quality_of_both() -> None:
    result = subprocess.run(
        [sys.executable, "bench/embedders.py", "--sentences", "64", "--repeat", "1", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["sentences"] == 64 and report["pairs"] == 72 * 71 // 2
    for name in EMBEDDERS:
        assert report[f"{name}_sentences_per_s"] > 0
        for metric in METRICS:
            assert 0.0 <= report[f"{name}_{metric}"] <= 1.0
    assert report["minilm_topic_nn"] >= 0.9
    assert report["speed_ratio"] > 1  # the static model is the fast one
    assert -1.0 <= report["spearman"] <= 1.0
