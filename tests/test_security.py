"""Authentication, scopes, tenant isolation and the audit trail, over real HTTP (`lake serve`)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from lake.client import LakeClient
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

TENANT_CONTRACT = """
name: {name}
event_time: ts
tenant_column: org
columns:
  ts:     {type: timestamp, required: true}
  org:    {type: string, required: true}
  amount: {type: double}
  lat:    {type: double}
  lon:    {type: double}
"""


def test_missing_bad_and_revoked_keys_get_401_with_no_data(
    serve_url: str, make_key: Callable[..., str]
) -> None:
    from lakehouse.access.auth import revoke_key
    from lakehouse.config import load_settings

    for client in (
        LakeClient(serve_url),
        LakeClient(serve_url, key="lake_nothere_secret"),
        LakeClient(serve_url, key="not-even-a-lake-key"),
    ):
        for response in (client.sql("SELECT 1"), client.tables(), client.describe("sensor_readings")):
            assert response.status == 401 and response.body == {"error": "Unauthorized"}
    key = make_key("read")
    assert LakeClient(serve_url, key=key).sql("SELECT 1").status == 200
    revoke_key(load_settings(), key.split("_")[1])
    revoked = time.monotonic()
    while (
        LakeClient(serve_url, key=key).sql("SELECT 1").status == 200
    ):  # cached up to LAKE_AUTH_CACHE_SECONDS
        assert time.monotonic() - revoked < 6  # the 1 s bound plus the time of a request on a busy machine
        time.sleep(0.1)
    assert LakeClient(serve_url, key=key).sql("SELECT 1").status == 401
    assert LakeClient(serve_url).health("live").status == 200  # health stays open


def test_scopes_guard_the_audit_table(serve_url: str, make_key: Callable[..., str]) -> None:
    reader = LakeClient(serve_url, key=make_key("read"))
    assert reader.sql("SELECT 42").body["rows"] == [[42]]
    denied = reader.sql("SELECT * FROM lake.audit")
    assert denied.status == 403 and denied.body == {"error": "Forbidden"}
    admin_key = make_key("admin")
    admin = LakeClient(serve_url, key=admin_key)
    admin.sql("SELECT 'audit me'")
    rows = admin.sql(
        "SELECT principal, action, outcome FROM lake.audit WHERE principal = "
        f"'{admin_key.split('_')[1]}' ORDER BY ts"
    ).body["rows"]
    assert ["POST /sql", "ok"] == rows[0][1:]


def test_a_tenant_key_sees_only_its_rows_whatever_the_sql(
    serve_url: str,
    make_key: Callable[..., str],
    dataset: Callable[[str], str],
    upload: Callable[..., dict[str, Any]],
    http_client: LakeClient,
) -> None:
    name = dataset(TENANT_CONTRACT)
    first = upload(
        name,
        "a.csv",
        b"ts,org,amount,lat,lon\n2025-01-01T00:00:00Z,acme,1,48.85,2.35\n2025-01-02T00:00:00Z,globex,2,48.85,2.35\n",
    )
    upload(
        name,
        "b.csv",
        b"ts,org,amount,lat,lon\n2025-02-01T00:00:00Z,acme,3,48.86,2.36\n2025-02-02T00:00:00Z,globex,4,48.86,2.36\n"
        b"not-a-time,globex,5,0,0\n",
    )
    acme = LakeClient(serve_url, key=make_key("read", tenant="acme"))
    t = f"lake.{name}"
    attempts = {
        f"SELECT DISTINCT org FROM {t}": [["acme"]],
        f"SELECT DISTINCT org FROM {t} WHERE org = 'globex' OR 1 = 1": [["acme"]],
        f"SELECT count(*) FROM (SELECT * FROM {t}) s": [[2]],
        f"WITH everything AS (SELECT * FROM {t}) SELECT DISTINCT org FROM everything": [["acme"]],
        f"SELECT org FROM {t} UNION SELECT org FROM {name}": [["acme"]],
        f"SELECT sum(a.amount) FROM {t} a, {t} b": [[8.0]],
        f"SELECT (SELECT max(amount) FROM {t})": [[3.0]],
    }
    for sql, expected in attempts.items():
        response = acme.sql(sql)
        assert response.status == 200 and response.body["rows"] == expected, sql
    older = acme.sql(f"SELECT org, amount FROM {t}", as_of=first["snapshot_id"])
    assert older.body["rows"] == [["acme", 1.0]]
    for sql in (
        f"SELECT * FROM {t}__quarantine",
        "SELECT * FROM lake.audit",
        "SELECT * FROM lake.sensor_readings",
    ):
        assert acme.sql(sql).status == 403, sql
    blocked = acme.sql(f"SELECT * FROM iceberg_scan('s3://lake-warehouse/lake/{name}/metadata/x.json')")
    assert blocked.status == 400
    assert acme.describe(name).status == 403
    rollup = acme.timeseries(name, "sum", "1mo", column="amount")
    assert rollup.status == 200 and [r[-1] for r in rollup.body["rows"]] == [1.0, 3.0]
    near = acme.geo(name, near=(2.35, 48.85), radius_m=5_000)
    assert near.status == 200 and len(near.body["rows"]) == 2  # globex's rows at the same spots stay hidden
    assert acme.changes(name, first["snapshot_id"]).status == 403  # a feed spans every tenant
    assert acme.snapshots(name).status == 403
    listed = acme.tables().body["tables"]
    assert {"name": t} in listed and all(set(entry) == {"name"} for entry in listed)
    # An unbound key sees every tenant.
    assert http_client.sql(f"SELECT count(DISTINCT org) FROM {t}").body["rows"] == [[2]]


def test_keys_cli_creates_lists_and_revokes() -> None:
    def lake(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lake.cli.main", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=True,
        )

    token = lake("keys", "create", "--scope", "write", "--tenant", "acme", "--name", "ci").stdout.strip()
    key_id = token.split("_")[1]
    assert token.startswith("lake_") and len(token) > 40
    listed = lake("keys", "list").stdout
    assert key_id in listed and "write" in listed and "acme" in listed and token not in listed
    assert f"revoked {key_id}" in lake("keys", "revoke", key_id).stdout


def test_audit_rows_are_spooled_then_folded_and_counted_once(
    serve_url: str, make_key: Callable[..., str], client: LakeClient
) -> None:
    from lakehouse.access.audit import fold, spool_files
    from lakehouse.config import load_settings

    settings = load_settings()
    key = make_key("admin")
    admin = LakeClient(serve_url, key=key)
    for i in range(3):
        assert admin.sql(f"SELECT {i}").status == 200
    mine = f"SELECT count(*) FROM lake.audit WHERE principal = '{key.split('_')[1]}'"
    answered = time.monotonic()
    while client.sql(mine).body["rows"] != [[3]]:  # spooled within LAKE_AUDIT_FLUSH_SECONDS, not yet folded
        assert time.monotonic() - answered < 5
        time.sleep(0.2)
    assert spool_files(settings)
    folded = [fold(settings)]
    while spool_files(settings):  # a fold takes at most 500 spool objects; the suite writes more
        folded.append(fold(settings))
    assert sum(f["rows_folded"] for f in folded) >= 3
    assert fold(settings)["rows_folded"] == 0  # nothing new since: a second fold adds nothing
    assert client.sql(mine).body["rows"] == [[3]]  # folded: counted once
