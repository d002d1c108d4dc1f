"""Every sample event of ``infra/events/`` works with ``lake invoke`` against a fresh stack that
holds what ``make demo`` ingests (its own stack: the maintenance samples touch every table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Which function of template.yaml each sample is for (the README names them too).
FUNCTIONS = {
    "s3-put.json": "IngestFunction",
    "function-url-sql.json": "QueryFunction",
    "function-url-tables.json": "QueryFunction",
    "maintenance-compact.json": "MaintenanceFunction",
    "maintenance-cleanup-dry-run.json": "MaintenanceFunction",
    "schedule.json": "MaintenanceFunction",
    "sqs-takeout-range.json": "TakeoutFunction",
    "sqs-commit.json": "CommitFunction",
}

# One process for the whole walk (imports once): up, the demo's files, then every sample.
SCRIPT = """
import contextlib, io, json, os, sys, time
from lake.cli.main import main
from lake.local import stack
from lakehouse.config import load_settings

def run(*argv):
    out, err, started = io.StringIO(), io.StringIO(), time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code
    seconds = round(time.monotonic() - started, 1)
    step = {"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue(), "s": seconds}
    print(json.dumps(step), flush=True)

stack.up(load_settings(), owner_pid=os.getpid())  # gone with this process, however it ends
for path in json.loads(sys.argv[2]):
    run("put", path, "--json")
for event, function in json.loads(sys.argv[1]).items():
    run("invoke", function, "--event", "infra/events/" + event, "--json")
run("sql", "SELECT count(*) FROM lake.takeout_keep", "--json", "--no-server")
run("down")
"""


def test_every_sample_event_works_against_a_fresh_demo_stack(tmp_path: Path) -> None:
    assert sorted(p.name for p in (ROOT / "infra" / "events").glob("*.json")) == sorted(FUNCTIONS)
    # The demo's files under the demo's keys; the first 200 readings are enough here.
    sensors = tmp_path / "sensor_readings.csv"
    sensors.write_text("".join((ROOT / "infra/samples/sensor_readings.csv").open().readlines()[:201]))
    takeout = ROOT / "infra/samples/takeout-20250101T000000Z-001.zip"
    env = {k: v for k, v in os.environ.items() if k != "LAKE_HOME"}
    env.update(LAKE_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(FUNCTIONS), json.dumps([str(sensors), str(takeout)])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(steps) == 2 + len(FUNCTIONS) + 2, done.stdout[-3000:]
    for step in steps:
        assert step["code"] == 0, step
        assert "Traceback" not in step["out"] + step["err"], step
    invoked = [step for step in steps if step["argv"][0] == "invoke"]
    results = {step["argv"][3].split("/")[-1]: json.loads(step["out"]) for step in invoked}
    # The sample's version id is AWS's: locally the current version is read, and the demo's
    # upload of the same object is found already ingested (no second copy of its rows).
    assert results["s3-put.json"]["reports"][0]["duplicate"] is True
    assert results["function-url-sql.json"]["statusCode"] == 200
    assert results["function-url-tables.json"]["statusCode"] == 200
    assert results["sqs-takeout-range.json"] == {"batchItemFailures": []}
    for event in ("maintenance-compact.json", "maintenance-cleanup-dry-run.json", "schedule.json"):
        assert results[event]["failures"] == 0, results[event]
    # Nothing counted twice: the sample range is the local archive's own range, already done.
    (counts,) = [json.loads(step["out"]) for step in steps if step["argv"][0] == "sql"]
    assert counts["rows"] == [[5]]
