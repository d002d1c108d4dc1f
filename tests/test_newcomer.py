"""The newcomer's path: no silent detour to AWS, no traceback for anything a user can do,
requests as people send them, re-runs and broken contracts that do not surprise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lake.cli import running
from lake.cli.main import main, partition_text, plural
from lake.local.events import LambdaContext, function_url_event
from lakehouse.config import Settings, load_settings
from lakehouse.paths import project_root
from lakehouse.storage import s3_client
from tests.conftest import ROOT, SENSOR_CONTRACT
from tests.test_ingest import month_rows, to_csv


def lake_in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the `lake` command in this process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse, and `_check` for a failed request
        code = e.code if isinstance(e.code, int) else 1
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, err


# --- where Lake looks, and no detour to AWS ----------------------------------------------------


def test_the_project_root_is_found_from_any_folder_inside_it(tmp_path: Path) -> None:
    assert project_root(ROOT / "lakehouse" / "query") == ROOT
    mine = tmp_path / "my-lake"
    (mine / "catalog" / "datasets").mkdir(parents=True)
    (mine / "deep" / "down").mkdir(parents=True)
    assert project_root(mine / "deep" / "down") == mine.resolve()
    # Outside any project: the checkout Lake runs from, never the working folder.
    assert project_root(tmp_path) == ROOT


@pytest.mark.integration
def test_without_a_stack_read_commands_fail_at_once_from_any_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}
    env.update(LAKE_HOME=str(tmp_path / "nothing-here"), PYTHONPATH=str(ROOT))
    for argv in (["tables"], ["sql", "SELECT 1"], ["search", "support_tickets", "x"], ["maintain"]):
        done = subprocess.run(
            [sys.executable, "-m", "lake.cli.main", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (argv, done.stderr)
        assert "StackNotRunning" in done.stderr and "lake up" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / ".lake").exists()  # no stray catalog in the working folder


def test_a_server_is_used_only_while_it_and_its_stack_run(tmp_path: Path) -> None:
    (tmp_path / running.STACK_FILE).write_text(json.dumps({"pid": os.getpid()}))
    running.register(tmp_path, "http://127.0.0.1:1", "lake_x_y")
    assert oct((tmp_path / running.SERVE_FILE).stat().st_mode & 0o777) == "0o600"  # it holds a key
    assert running.find(tmp_path) == {
        "url": "http://127.0.0.1:1", "token": "lake_x_y", "pid": os.getpid(), "stack_pid": os.getpid()
    }
    (tmp_path / running.STACK_FILE).write_text(json.dumps({"pid": 2**22 + 12345}))  # another stack
    assert running.find(tmp_path) is None
    running.unregister(tmp_path)
    assert not (tmp_path / running.SERVE_FILE).exists()


# --- no traceback for anything a user can do -------------------------------------------------

BAD_INPUT = [
    (["--no-such-flag"], 2),
    (["sql"], 2),
    (["sql", "SELEC nonsense"], 1),
    (["sql", "SELECT * FROM lake.no_such_table"], 1),
    (["sql", "SELECT 1", "--format", "xml"], 2),
    (["search", "no_such_dataset", "text"], 1),
    (["search", "support_tickets"], 2),
    (["search", "support_tickets", "--vector-file", "missing.json"], 2),
    (["tables", "--url", "http://127.0.0.1:9"], 3),
    (["describe", "no_such_table"], 1),
    (["snapshots", "no_such_table"], 1),
    (["changes", "no_such_table", "--from", "1"], 1),
    (["rollup", "no_such_table", "--agg", "avg", "--bucket", "1d"], 1),
    (["rollup", "x", "--agg", "median", "--bucket", "1d"], 2),
    (["put", "missing.csv"], 2),
    (["put", "README.md", "--dataset", "no_such_dataset"], 2),
    (["quarantine", "list", "no_such_dataset"], 1),
    (["quarantine", "replay", "no_such_dataset"], 2),
    (["rollback", "no_such_table", "--to", "1"], 2),
    (["maintain", "--table", "lake.no_such_table", "--compact"], 1),
    (["keys", "revoke", "no-such-key"], 2),
    (["keys", "create", "--scope", "root"], 2),
    (["dlq", "replay", "--id", "no-such-message"], 0),
    (["invoke", "NoSuchFunction", "--event", "infra/events/s3-put.json"], 2),
    (["invoke", "IngestFunction", "--event", "missing.json"], 2),
    (["invoke", "IngestFunction", "--event", "README.md"], 2),
    (["contract", "infer", "missing.csv", "--dataset", "x"], 2),
    (["contract", "infer", "README.md", "--dataset", "x"], 2),
    (["artifacts", "get", "no-such-id"], 1),
    (["artifacts", "store", "x.md", "missing.md"], 2),
    (["artifacts", "store", "x.md", "README.md", "--metadata-json", "[1]"], 1),
    (["up", "--port", "not-a-port"], 2),
]


@pytest.mark.integration
@pytest.mark.parametrize(("argv", "code"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_gets_one_clear_line_and_no_traceback(
    argv: list[str], code: int, stack: dict[str, Any], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    in_process = ["--no-server"] if _remote(argv) and "--url" not in argv else []
    got, out, err = lake_in_process(capsys, *argv, *in_process)
    assert got == code, (out, err)
    assert "Traceback" not in out + err and "unexpected" not in err, err
    if code:
        assert err.strip(), "a failure says why"


def _remote(argv: list[str]) -> bool:
    """Commands that take --no-server (they go through the query API)."""
    first = argv[0] if argv else ""
    remote = ("sql", "search", "tables", "describe", "snapshots", "changes", "rollup", "artifacts")
    return first in remote or argv[:2] == ["quarantine", "list"]


@pytest.mark.integration
def test_ctrl_c_during_put_commits_nothing_and_takes_the_upload_back(
    settings: Settings, dataset: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lake.local.serve

    name = dataset(SENSOR_CONTRACT)
    path = tmp_path / f"{name}.csv"
    path.write_bytes(to_csv(month_rows(2)))

    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(lake.local.serve, "deliver", interrupted)
    code, out, err = lake_in_process(capsys, "put", str(path))
    assert code == 130 and out == ""
    where = f"s3://{settings.landing_bucket}/{name}/{path.name}"
    assert err.strip().splitlines() == [f"interrupted: nothing committed; the upload {where} was removed"]
    listed = s3_client(settings).list_objects_v2(Bucket=settings.landing_bucket, Prefix=f"{name}/")
    assert listed.get("KeyCount", 0) == 0  # nothing left for a watcher to ingest


# --- requests as people send them -------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_json_bodies_are_read_whatever_their_content_type(
    stack: dict[str, Any], content_type: str | None
) -> None:
    from functions.query.handler import lambda_handler

    headers = {"content-type": content_type} if content_type else {}
    event = function_url_event("POST", "/sql", json.dumps({"sql": "SELECT 41 + 1 AS n"}), None, headers)
    result = lambda_handler(event, LambdaContext("lake-query"))  # type: ignore[arg-type]
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"])["rows"] == [[42]]


@pytest.mark.integration
def test_a_missing_key_is_401_before_the_body_is_validated(serve_url: str) -> None:
    for body in (b'{"sql": "SELECT 1"}', b'{"nonsense": true}', b"not json"):
        request = urllib.request.Request(f"{serve_url}/sql", data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 401
        assert json.loads(refused.value.read()) == {"error": "Unauthorized"}


# --- re-runs and broken contracts -------------------------------------------------------------


@pytest.mark.integration
def test_replay_after_dropping_required_moves_the_rows(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    contract = """
name: {name}
event_time: ts
columns:
  ts:       {type: timestamp, required: true}
  customer: {type: string, required: true}
  amount:   {type: double}
"""
    name = dataset(contract)
    data = b"ts,customer,amount\n2026-01-01T00:00:00Z,ann,1\n2026-01-02T00:00:00Z,,-5\n"
    report = upload(name, "orders.csv", data)
    assert (report["rows_accepted"], report["rows_quarantined"]) == (1, 1)
    path = settings.contracts_dir / f"{name}.yaml"
    fixed = path.read_text().replace("customer: {type: string, required: true}", "customer: {type: string}")
    path.write_text(fixed)  # the README's fix: drop `required`
    code, out, err = lake_in_process(capsys, "quarantine", "replay", name)
    assert code == 0, err
    assert "1 of 1 quarantined row moved to the table" in out
    query = f"SELECT customer, amount FROM lake.{name} ORDER BY ts"
    code, out, err = lake_in_process(capsys, "sql", query, "--json", "--no-server")
    assert json.loads(out)["rows"] == [["ann", 1.0], [None, -5.0]]


@pytest.mark.integration
def test_one_broken_contract_is_reported_and_the_others_still_get_their_upkeep(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    from lakehouse.maintenance import MaintenanceOptions, run_maintenance

    name = dataset(SENSOR_CONTRACT)
    upload(name, "old.csv", to_csv(month_rows(1)))
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / f"{name}.yaml").write_text((settings.contracts_dir / f"{name}.yaml").read_text())
    broken = "name: aaa_broken\nevent_time: ts\ncolumns:\n  ts: {type: nope}\n"
    (contracts / "aaa_broken.yaml").write_text(broken)
    only = load_settings(contracts_dir=contracts)
    report = run_maintenance(only, MaintenanceOptions(jobs=("retention", "vectors")))
    problems = [r for results in report["jobs"].values() for r in results if "error" in r]
    assert {p["error"] for p in problems} == {"ContractInvalid"} and report["failures"] == len(problems) == 2
    assert all(p["file"] == str(contracts / "aaa_broken.yaml") for p in problems)
    assert any(r["table"] == f"lake.{name}" for r in report["jobs"]["retention"] if "error" not in r)


# --- the small things -------------------------------------------------------------------------


def test_plurals_and_partitions_read_as_people_write_them() -> None:
    assert [plural(0, "row"), plural(1, "row"), plural(2, "artifact"), plural(1200, "row")] == [
        "0 rows", "1 row", "2 artifacts", "1,200 rows"
    ]
    spec = [{"name": "ts_month", "transform": "month"}, {"name": "d_day", "transform": "day"}]
    assert partition_text({"ts_month": 682, "d_day": 20454}, spec) == "ts_month=2026-11, d_day=2026-01-01"


def test_values_print_as_sql_prints_them() -> None:
    from lake.cli.output import render_table

    rows = [[True, -5, 1.5, ["a"], None], [False, 0, 0.0, {}, None]]
    table = render_table(["ok", "n", "x", "tags", "none"], rows)
    assert [line.split() for line in table.splitlines()[2:]] == [
        ["true", "-5", "1.5", '["a"]'],
        ["false", "0", "0.0", "{}"],
    ]


def test_infer_takes_the_majority_type_with_a_note(tmp_path: Path) -> None:
    from lakehouse.ingest.infer import infer_contract

    rows = ["ts,reading"] + [f"2026-01-{d:02d}T{d % 24:02d}:30:00Z,{d}.5" for d in range(1, 29)]
    rows[3] = "yesterday,1.0"
    rows[7] = "not a time,2.0"
    path = tmp_path / "sample.csv"
    path.write_text("\n".join(rows) + "\n")
    notes: list[str] = []
    contract, sampled = infer_contract(path, "sample", notes=notes)
    assert sampled == 28 and contract.event_time == "ts" and contract.columns["ts"].type == "timestamp"
    assert notes == ["ts: 2 of 28 values are not timestamp; rows holding them would be quarantined"]
