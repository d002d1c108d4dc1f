"""The README, walked top to bottom: every shell example (curl and `lake`), every complete
command written inline, the SQL and the Python example run against a fresh stack of the walk's
own and its `lake serve`; every contract and rollup example loads. A README example that stops
working fails here."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from lake.local.serve import deliver
from lakehouse.config import Settings
from lakehouse.contracts.model import parse_contract
from lakehouse.storage import s3_client
from tests.conftest import ROOT, serving

# One worker walks the whole README in order: inline commands read what the shell examples made.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("readme")]

README = (ROOT / "README.md").read_text()
BLOCKS = [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w+)\n(.*?)```", README, re.S)]
# Blocks that set up or deploy rather than use Lake: `make demo`/`make test` are what this suite
# runs under, `sam build`/`sam deploy` need Docker and an AWS account, and `lake up && lake serve &`
# starts a long-running server on port 8080 and opens a browser (tests/test_console.py runs the
# console against its own server, `lake console` included).
NOT_HERE = ("make ", "sam ", "lake up && lake serve &")
# Inline commands that are complete and only read (the ones that change every table, like
# `lake maintain`, would change other tests' tables; their behaviour is tested on its own).
READS = ("search", "snapshots", "sql", "tables", "describe", "rollup", "keys list", "status")


def shell_blocks() -> list[str]:
    return [body for kind, body in BLOCKS if kind == "sh" and not body.lstrip().startswith(NOT_HERE)]


def inline_commands() -> list[str]:
    spans = re.findall(r"`(?:\.venv/bin/)?lake ([^`]+)`", README)
    complete = {s for s in spans if not re.search(r"[\[\]|<>]|\.\.\.|\b[A-Z]{2,}\b|\$\(", s)}
    return sorted(s for s in complete if s.startswith(READS) and " " in s)


@pytest.fixture(scope="module")
def walk(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """A fresh stack of its own with the demo's samples, its own `lake serve`, an admin key, and
    a `lake` on PATH (the README's `.venv/bin/lake`): the README is walked as a newcomer would."""
    from lake.local import stack as localstack
    from lakehouse.access.auth import create_key
    from lakehouse.config import get_settings, load_settings

    home = tmp_path_factory.mktemp("readme-home")
    shutil.copytree(ROOT / "catalog" / "datasets", home / "contracts")
    fresh = {"LAKE_HOME": str(home), "LAKE_CONTRACTS_DIR": str(home / "contracts")}
    saved = {name: os.environ[name] for name in fresh}
    os.environ.update(fresh)  # the Python example runs in this process
    get_settings.cache_clear()
    localstack.up(load_settings(), owner_pid=os.getpid())
    get_settings.cache_clear()
    settings: Settings = load_settings()  # now with the stack's endpoint
    try:
        for dataset, ext in (("sensor_readings", "csv"), ("support_tickets", "ndjson")):
            sample = ROOT / "infra" / "samples" / f"{dataset}.{ext}"
            key = f"{dataset}/{sample.name}"
            s3_client(settings).upload_file(str(sample), settings.landing_bucket, key)
            deliver(settings, settings.landing_bucket, key)
        bin_dir = tmp_path_factory.mktemp("bin")
        shim = bin_dir / "lake"
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m lake.cli.main "$@"\n')
        shim.chmod(0o755)
        path = f"{bin_dir}:{os.environ['PATH']}"
        with serving(home, dict(os.environ)) as url:
            key = create_key(settings, "admin", None, "readme")[0]
            env = {**os.environ, "PATH": path, "KEY": key, "URL": url}
            yield {"env": env, "host": url.removeprefix("http://")}
    finally:
        localstack.down(settings)
        os.environ.update(saved)
        get_settings.cache_clear()


def run(walk: dict[str, Any], script: str) -> str:
    script = script.replace(".venv/bin/lake", "lake").replace("localhost:8080", walk["host"])
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=ROOT,
        env=walk["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{script}\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    return done.stdout


@pytest.mark.parametrize("block", shell_blocks(), ids=lambda b: b.split()[0] + ":" + b.split("\n")[0][-30:])
def test_every_shell_example_runs(walk: dict[str, Any], block: str) -> None:
    out = run(walk, block)
    for line in out.splitlines():  # a curl answer is a JSON body: never an error
        if line.startswith("{"):
            assert '"error"' not in line, line


def test_the_walkthrough_covers_the_readme() -> None:
    assert len(shell_blocks()) >= 4 and len(inline_commands()) >= 3
    skipped = [body for kind, body in BLOCKS if kind == "sh" and body.lstrip().startswith(NOT_HERE)]
    # `make demo`/`make test`, `sam build`/`sam deploy`, the OIDC `sam deploy`, the console's server
    assert len(skipped) == 4


@pytest.mark.parametrize("command", inline_commands())
def test_every_inline_command_runs(walk: dict[str, Any], command: str) -> None:
    run(walk, f"lake {command}")


def test_the_sql_example_runs(walk: dict[str, Any]) -> None:
    sql = next(body for kind, body in BLOCKS if kind == "sql" and "vector_search" in body)
    out = json.loads(run(walk, f"lake sql {shlex.quote(sql)} --json"))
    assert out["columns"] == ["opened_at", "body", "score"] and out["rows"]


def test_the_python_example_runs(walk: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """In this process: the models the walk loaded are loaded already."""
    import asyncio

    (code,) = [body for kind, body in BLOCKS if kind == "python"]
    namespace: dict[str, Any] = {"schema_text": '{"type": "record", "name": "orders", "fields": []}'}
    exec(compile("async def example():\n" + textwrap.indent(code, "    "), "README.md", "exec"), namespace)
    asyncio.run(namespace["example"]())
    assert "artifacts" in capsys.readouterr().out  # get_stats() printed


def test_every_contract_and_rollup_example_loads() -> None:
    from lakehouse.query.rollups import RollupDef

    examples = [yaml.safe_load(body) for kind, body in BLOCKS if kind == "yaml"]
    contracts = [e for e in examples if "columns" in e and "name" in e]
    assert {"sensor_readings", "support_tickets"} <= {c["name"] for c in contracts}
    for example in contracts:
        parse_contract(yaml.safe_dump(example), "README")
    (rollup,) = [e for e in examples if "agg" in e]
    RollupDef.model_validate(rollup)
    # The partial examples (column rules, checks, on_error, evolution, PII), each in a contract
    # with the columns they name.
    base = {"ts": "timestamp", "started_at": "timestamp", "ended_at": "timestamp", "discount": "double",
            "price": "double", "device_id": "string", "lat": "double", "lon": "double"}
    partial = [e for e in examples if "name" not in e]
    assert len(partial) == 8  # ... and partitioning, sort order, clustering
    for example in partial:
        columns = {name: {"type": kind} for name, kind in base.items()} | example.get("columns", {})
        columns["ts"] = {"type": "timestamp", "required": True}
        contract = {"name": "example", "event_time": "ts", **example, "columns": columns}
        parse_contract(yaml.safe_dump(contract), f"README example {sorted(example)}")
