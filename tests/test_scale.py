"""Scale jobs on Daft against the local stack: ``lake backfill`` (native runner and a local Ray),
its crash recovery, and ``lake sql --engine daft`` against ``POST /sql``.

Each backfill runs as the ``lake`` command in its own process (Daft fixes its runner once per
process; a SIGKILL needs a process). One local Ray, started by Lake's own code
(:func:`lakehouse.scale.runner.local_ray`), serves every Ray test of the module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lake.local.serve import deliver
from lakehouse.config import Settings, load_settings
from lakehouse.query.engine import run_sql
from lakehouse.storage import list_objects, s3_client
from lakehouse.tables.ledger import Ledger
from tests.conftest import SENSOR_CONTRACT

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = 8
pytestmark = pytest.mark.integration


def sensor_csv(i: int, rows: int = 40) -> bytes:
    """One object: good rows, a value over its max, an unknown status, a bad timestamp and a line
    with too many fields (a parse failure with its line number)."""
    lines = ["ts,sensor_id,temp_c,status"]
    for j in range(rows):
        temp = "999" if j % 13 == 4 else f"{10 + j * 0.25:.2f}"
        status = "exploded" if j % 11 == 6 else "ok"
        ts = (
            "not-a-time" if j == 9 and i % 2 else f"2025-0{1 + (i + j) % 3}-{1 + j % 27:02d}T0{i}:{j:02d}:00Z"
        )
        lines.append(f"{ts},s-{i},{temp},{status}")
        if j == 20 and i % 3 == 0:
            lines.append(f"2025-01-01T00:00:00Z,s-{i},1.0,ok,surplus")
    return ("\n".join(lines) + "\n").encode()


def put_objects(settings: Settings, prefix: str) -> None:
    s3 = s3_client(settings)
    for i in range(OBJECTS):
        s3.put_object(Bucket=settings.landing_bucket, Key=f"{prefix}/part-{i}.csv", Body=sensor_csv(i))


def lake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lake.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def backfill(dataset: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    settings = load_settings()
    done = lake("backfill", dataset, f"s3://{settings.landing_bucket}/{dataset}/", "--json", *extra, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    report["stderr"] = done.stderr  # the progress bar
    return report


def table_rows(settings: Settings, dataset: str) -> list[list[Any]]:
    return run_sql(settings, f"SELECT ts, sensor_id, temp_c, status FROM lake.{dataset} ORDER BY ALL").rows


def quarantine_rows(settings: Settings, dataset: str) -> list[list[Any]]:
    """Quarantine rows without what differs by dataset and run (the key's dataset, the time)."""
    rows = run_sql(
        settings,
        f"SELECT split_part(source_uri, '/', 5) AS file, row_number, \"column\", rule, reason, record "
        f"FROM lake.{dataset}__quarantine ORDER BY ALL",
    ).rows
    return rows


@pytest.fixture(scope="module")
def baseline(stack: dict[str, Any]) -> tuple[str, list[list[Any]], list[list[Any]]]:
    """The same 8 objects, each ingested by the function (an upload event each)."""
    settings = load_settings()
    name = register(settings)
    put_objects(settings, name)
    for i in range(OBJECTS):
        deliver(settings, settings.landing_bucket, f"{name}/part-{i}.csv")
    return name, table_rows(settings, name), quarantine_rows(settings, name)


def register(settings: Settings) -> str:
    name = f"t_{uuid.uuid4().hex[:10]}"
    (settings.contracts_dir / f"{name}.yaml").write_text(SENSOR_CONTRACT.replace("{name}", name))
    return name


def test_backfill_native_equals_function_ingests_and_reruns_add_nothing(
    settings: Settings, baseline: tuple[str, list[list[Any]], list[list[Any]]]
) -> None:
    base, rows, bad = baseline
    assert len(bad) > OBJECTS and {r[3] for r in bad} >= {"max", "enum", "parse", "type"}
    name = register(settings)
    put_objects(settings, name)

    dry = backfill(name, "--dry-run")
    assert (dry["objects_listed"], dry["objects_skipped"], dry["dry_run"]) == (OBJECTS, 0, True)
    assert not list(list_objects(settings, settings.warehouse_bucket, f"_lake/ledger/{name}/"))

    report = backfill(name)
    assert report["objects_loaded"] == OBJECTS and report["objects_failed"] == 0
    assert f"{OBJECTS}/{OBJECTS} objects" in report["stderr"] and "rows/s" in report["stderr"]
    bucket, key = report["manifest"].removeprefix("s3://").split("/", 1)
    manifest = json.loads(s3_client(settings).get_object(Bucket=bucket, Key=key)["Body"].read())
    assert [o["key"] for o in manifest["objects"]] == [f"{name}/part-{i}.csv" for i in range(OBJECTS)]
    assert all(o["version"] and o["size"] > 0 for o in manifest["objects"])
    assert report["rows_quarantined"] == len(bad) and report["rows_accepted"] == len(rows)
    assert table_rows(settings, name) == rows
    assert quarantine_rows(settings, name) == bad

    snapshots = run_sql(settings, f"SELECT count(*) FROM lake.{name}").snapshots
    again = backfill(name)
    assert (again["objects_skipped"], again["objects_loaded"], again["rows_read"]) == (OBJECTS, 0, 0)
    assert run_sql(settings, f"SELECT count(*) FROM lake.{name}").snapshots == snapshots

    # The ledger holds each backfilled version: a later upload event for it is a duplicate.
    event = deliver(settings, settings.landing_bucket, f"{name}/part-3.csv")["reports"][0]
    assert event["duplicate"] is True and event["rows_accepted"] == 0
    assert table_rows(settings, name) == rows


def test_backfill_killed_mid_run_then_rerun_loads_every_row_once(
    settings: Settings, baseline: tuple[str, list[list[Any]], list[list[Any]]]
) -> None:
    _, rows, bad = baseline
    name = register(settings)
    put_objects(settings, name)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lake.cli.main",
            "backfill",
            name,
            f"s3://{settings.landing_bucket}/{name}/",
            "--json",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marks = f"_lake/backfills/{name}/runs/"
    deadline = time.monotonic() + 300
    while not list(list_objects(settings, settings.warehouse_bucket, marks)):
        assert proc.poll() is None and time.monotonic() < deadline, "the backfill ended before any object"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    ledger = Ledger(settings, name)
    loaded = [
        i for i in range(OBJECTS) if ledger.lookup(f"{name}/part-{i}.csv", version_of(settings, name, i))
    ]
    assert len(loaded) < OBJECTS  # killed mid-run

    report = backfill(name)
    assert report["objects_failed"] == 0
    assert table_rows(settings, name) == rows
    assert quarantine_rows(settings, name) == bad


def version_of(settings: Settings, name: str, i: int) -> str:
    head = s3_client(settings).head_object(Bucket=settings.landing_bucket, Key=f"{name}/part-{i}.csv")
    return str(head["VersionId"])


@pytest.fixture(scope="module")
def ray_cluster(stack: dict[str, Any]) -> Iterator[dict[str, str]]:
    """The suite's one local Ray (2 CPUs), started and stopped by Lake's runner code; what a
    `lake … --runner ray` process needs to join it."""
    from lakehouse.scale.runner import local_ray, token_path

    settings = load_settings()
    with local_ray(settings) as address:
        yield {"address": address, "RAY_AUTH_TOKEN_PATH": str(token_path(settings))}


def test_backfill_on_local_ray_equals_function_ingests(
    settings: Settings, baseline: tuple[str, list[list[Any]], list[list[Any]]], ray_cluster: dict[str, str]
) -> None:
    from lakehouse.scale.runner import ray_home

    _, rows, bad = baseline
    name = register(settings)
    put_objects(settings, name)
    env = {"RAY_AUTH_TOKEN_PATH": ray_cluster["RAY_AUTH_TOKEN_PATH"]}
    report = backfill(name, "--runner", "ray", "--ray-address", ray_cluster["address"], env=env)
    assert report["runner"].startswith("ray") and report["objects_loaded"] == OBJECTS
    assert table_rows(settings, name) == rows
    assert quarantine_rows(settings, name) == bad
    home = ray_home(settings)  # Ray's session files and token went under LAKE_HOME
    assert Path(ray_cluster["RAY_AUTH_TOKEN_PATH"]).is_file() and Path(
        ray_cluster["RAY_AUTH_TOKEN_PATH"]
    ).is_relative_to(home)
    assert any(p.name.startswith("session_") for p in home.iterdir())


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT status, count(*) AS n, round(avg(temp_c), 3) AS mean FROM lake.{t} "
        "GROUP BY status ORDER BY status",
        "SELECT sensor_id, ts, temp_c FROM {t} WHERE temp_c > 15 ORDER BY ts, sensor_id LIMIT 7",
        "WITH hot AS (SELECT sensor_id, max(temp_c) AS top FROM lake.{t} GROUP BY sensor_id) "
        "SELECT * FROM hot ORDER BY top DESC, sensor_id",
    ],
)
def test_sql_on_daft_equals_the_query_function(
    sql: str,
    baseline: tuple[str, list[list[Any]], list[list[Any]]],
    http_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lake.cli.main import main

    query = sql.format(t=baseline[0])
    expected = http_client.sql(query).body
    assert main(["sql", "--engine", "daft", "--format", "json", query]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["columns"] == expected["columns"] and got["rows"] == expected["rows"] and got["rows"]


def test_sql_on_daft_keeps_the_gate_and_writes_parquet_out(
    settings: Settings, baseline: tuple[str, list[list[Any]], list[list[Any]]]
) -> None:
    import pyarrow.parquet as pq

    from lakehouse.errors import ForbiddenSQL
    from lakehouse.scale.sql import run_sql as daft_sql
    from lakehouse.storage import arrow_filesystem

    with pytest.raises(ForbiddenSQL):
        daft_sql(settings, "SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(ForbiddenSQL):
        daft_sql(settings, f"DELETE FROM lake.{baseline[0]}")
    out = f"s3://{settings.warehouse_bucket}/results/{uuid.uuid4().hex}.parquet"
    body = daft_sql(settings, f"SELECT * FROM lake.{baseline[0]}", out=out)
    assert body["row_count"] == len(baseline[1]) and body["rows"] == []
    assert pq.read_table(out.removeprefix("s3://"), filesystem=arrow_filesystem(settings)).num_rows == len(
        baseline[1]
    )


TICKETS = """
name: {name}
event_time: opened_at
columns:
  opened_at: {type: timestamp, required: true}
  ticket_id: {type: string, required: true}
  body:      {type: string, required: true}
vectors:
  text: body
  embedder: static
"""


def test_reembed_writes_a_new_lance_version_that_searches_read_at_the_new_snapshot(
    settings: Settings, upload: Any
) -> None:
    from lakehouse.errors import VectorsNotConfigured
    from lakehouse.query.search import search
    from lakehouse.scale.reembed import reembed

    name = f"t_{uuid.uuid4().hex[:10]}"
    (settings.contracts_dir / f"{name}.yaml").write_text(TICKETS.replace("{name}", name))
    bodies = ["screen cracked after a fall", "parcel never arrived", "refund for a broken kettle"]
    lines = [
        json.dumps({"opened_at": f"2026-01-0{i + 1}T09:00:00Z", "ticket_id": f"T-{i}", "body": b})
        for i, b in enumerate(bodies)
    ]
    first = upload(name, "tickets.ndjson", ("\n".join(lines) + "\n").encode())
    with pytest.raises(VectorsNotConfigured):
        reembed(settings, name, "minilm")  # not the contract's embedder: searches would not match

    done = reembed(settings, name)
    assert done["vectors_written"] == len(bodies) and done["lance_version"] > first["lance_version"]
    assert done["read_snapshot_id"] == first["snapshot_id"] and done["snapshot_id"] != first["snapshot_id"]
    assert table_rows_count(settings, name) == len(bodies)  # a snapshot with no data change
    hits = search(settings, name, text="my parcel did not arrive", k=1)
    assert hits.lance_version == done["lance_version"] and hits.snapshot_id == done["snapshot_id"]
    assert hits.rows[0][hits.columns.index("ticket_id")] == "T-1"


def table_rows_count(settings: Settings, name: str) -> int:
    return int(run_sql(settings, f"SELECT count(*) FROM lake.{name}").rows[0][0])
