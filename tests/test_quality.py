"""Deeper contracts over the real local stack: every rule, reject_file, quality figures, PII,
schema evolution, quarantine list + replay, upsert."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.local.events import LambdaContext, s3_put_event
from lakehouse.catalog import get_catalog
from lakehouse.config import Settings, get_settings
from lakehouse.errors import FileRejected, PiiSaltMissing, SchemaEvolutionRefused
from lakehouse.ingest.quarantine import list_quarantine, replay
from lakehouse.storage import s3_client

pytestmark = pytest.mark.integration

Upload = Callable[..., dict[str, Any]]
Dataset = Callable[[str], str]

RULES = """
name: {name}
event_time: ts
columns:
  ts:    {type: timestamp, required: true, not_before: "2020-01-01", not_future: true}
  code:  {type: string, pattern: "[A-Z]{3}-[0-9]{2}", unique: true}
  note:  {type: string, max_length: 5}
  qty:   {type: long}
  price: {type: double}
checks:
  - name: total_positive
    sql: qty * price > 0
    description: qty times price must be positive
"""


def table_of(settings: Settings, name: str) -> Any:
    return get_catalog(settings).load_table(f"{settings.namespace}.{name}")


def quarantined(client: Any, name: str) -> dict[int, list[tuple[str | None, str]]]:
    body = client.sql(f"SELECT row_number, errors FROM lake.{name}__quarantine ORDER BY row_number").body
    return {r[0]: [(e["column"], e["rule"]) for e in r[1]] for r in body["rows"]}


def _invoke(settings: Settings, key: str, body: bytes) -> Any:
    from functions.ingest.handler import lambda_handler

    put = s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=body)
    event = s3_put_event(settings.landing_bucket, key, len(body), put["ETag"], put.get("VersionId"))
    return lambda_handler(event, LambdaContext("lake-ingest"))


def test_every_rule_quarantines_with_column_rule_and_reason(
    settings: Settings, dataset: Dataset, upload: Upload, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKE_BATCH_ROWS", "3")  # `unique` must hold across batches
    get_settings.cache_clear()
    name = dataset(RULES)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    csv = (
        "ts,code,note,qty,price\n"
        "2025-01-01T00:00:00Z,ABC-01,ok,1,2.5\n"  # 2 good
        "2025-01-02T00:00:00Z,abc-01,ok,1,1\n"  # 3 pattern
        "2025-01-03T00:00:00Z,ABD-02,toolong,1,1\n"  # 4 max_length
        "2025-01-04T00:00:00Z,ABC-01,ok,1,1\n"  # 5 unique (same batch? no: line 2 is in batch 1)
        f"{future},ABE-03,ok,1,1\n"  # 6 not_future
        "2019-12-31T23:59:59Z,ABF-04,ok,1,1\n"  # 7 not_before
        "2025-01-05T00:00:00Z,ABG-05,ok,-1,3\n"  # 8 check
        "2025-01-06T00:00:00Z,ABG-05,ok,2,3\n"  # 9 unique within the batch
        "2025-01-07T00:00:00Z,,ok,,\n"  # 10 good: nulls pass pattern, unique and the check
    ).encode()
    report = upload(name, "rules.csv", csv)
    assert (report["rows_read"], report["rows_accepted"], report["rows_quarantined"]) == (9, 2, 7)
    assert quarantined(client, name) == {
        3: [("code", "pattern")],
        4: [("note", "max_length")],
        5: [("code", "unique")],
        6: [("ts", "not_future")],
        7: [("ts", "not_before")],
        8: [(None, "check:total_positive")],
        9: [("code", "unique")],
    }
    reasons = dict(client.sql(f"SELECT row_number, reason FROM lake.{name}__quarantine").body["rows"])
    assert reasons[3] == "code: 'abc-01' does not match [A-Z]{3}-[0-9]{2}"
    assert reasons[4] == "note: 'toolong' is longer than 5 characters"
    assert reasons[5] == "code: 'ABC-01' repeats a value of an earlier row of the file"
    assert reasons[7] == "ts: '2019-12-31 23:59:59+00' is before 2020-01-01"
    assert reasons[8] == "row: check total_positive failed: qty times price must be positive"
    # Quality figures: report, snapshot summary.
    assert report["quality_score"] == pytest.approx(2 / 9, abs=1e-6)
    assert report["rule_failures"] == {
        "check:total_positive": 1,
        "max_length": 1,
        "not_before": 1,
        "not_future": 1,
        "pattern": 1,
        "unique": 2,
    }
    summary = table_of(settings, name).current_snapshot().summary
    assert summary["lake.quality.score"] == f"{2 / 9:.6f}"
    assert summary["lake.quality.rule.unique"] == "2"


def test_contract_sql_cannot_reach_files(dataset: Dataset, upload: Upload) -> None:
    from lakehouse.errors import ContractInvalid

    name = dataset(
        """
name: {name}
event_time: ts
columns:
  ts: {type: timestamp}
checks:
  - name: sneaky
    sql: (SELECT count(*) FROM read_csv('/etc/passwd')) > 0
"""
    )
    with pytest.raises(ContractInvalid):
        upload(name, "x.csv", b"ts\n2025-01-01\n")


def test_reject_file_commits_nothing_above_max_bad_fraction(
    settings: Settings, dataset: Dataset, upload: Upload
) -> None:
    contract = """
name: {name}
event_time: ts
on_error: reject_file
max_bad_fraction: 0.25
columns:
  ts: {type: timestamp, required: true}
  n:  {type: int, min: 0}
"""
    name = dataset(contract)
    ok = upload(name, "one_bad.csv", b"ts,n\n2025-01-01,1\n2025-01-02,2\n2025-01-03,-1\n2025-01-04,4\n")
    assert (ok["rows_accepted"], ok["rows_quarantined"]) == (3, 1)  # 25 % is allowed
    with pytest.raises(FileRejected, match=r"2 of 4 rows failed \(50.0%\).*min ×2") as info:
        _invoke(
            settings,
            f"{name}/two_bad.csv",
            b"ts,n\n2025-01-01,1\n2025-01-02,-2\n2025-01-03,-1\n2025-01-04,4\n",
        )
    assert info.value.terminal
    table = table_of(settings, name)
    assert len(table.metadata.snapshots) == 1  # only the first file's commit
    assert len(get_catalog(settings).load_table(f"lake.{name}__quarantine").metadata.snapshots) == 1


PII = """
name: {name}
event_time: ts
detect_pii: true
pii_default: {mode}
columns:
  ts:      {type: timestamp}
  email:   {type: string, pii: hash}
  card:    {type: string, pii: mask}
  ssn:     {type: string, pii: drop, pattern: "[0-9]{3}-[0-9]{2}-[0-9]{4}"}
  comment: {type: string}
"""

PII_CSV = (
    b"ts,email,card,ssn,comment\n"
    b"2025-01-01,ann@example.com,4111111111111111,123-45-6789,"
    b"call me at +44 20 7946 0958 or ann@example.com\n"
    b"2025-01-02,bob@example.com,5500000000000004,987-65-4321,server 10.0.0.7 is down\n"
    b"2025-01-03,ann@example.com,1234,555-55-5555,nothing to see\n"
)


@pytest.mark.parametrize("mode", ["mask", "hash", "drop"])
def test_pii_mask_hash_drop_and_detection(
    settings: Settings,
    dataset: Dataset,
    upload: Upload,
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    monkeypatch.setenv("LAKE_PII_SALT", "s3cret")
    get_settings.cache_clear()
    name = dataset(PII.replace("{mode}", mode))
    report = upload(name, "people.csv", PII_CSV)
    assert report["rows_accepted"] == 3
    assert report["pii_detected"] == {"email": 1, "ip": 1, "phone": 1}
    body = client.sql(f"SELECT * FROM lake.{name} ORDER BY ts").body
    assert "ssn" not in body["columns"]  # dropped: validated, never stored
    rows = [dict(zip(body["columns"], r, strict=True)) for r in body["rows"]]
    # Keyed hash: deterministic (joins work), not the plain value, not an unkeyed sha256.
    assert rows[0]["email"] == rows[2]["email"] != rows[1]["email"]
    expected = duckdb.sql("SELECT sha256('s3cret' || sha256('s3cret' || 'ann@example.com'))").fetchone()
    assert expected is not None and rows[0]["email"] == expected[0]
    assert rows[0]["card"] == "************1111" and rows[2]["card"] == "****"
    comments = [r["comment"] for r in rows]
    if mode == "mask":
        assert comments == ["call me at <phone> or <email>", "server <ip> is down", "nothing to see"]
    elif mode == "hash":
        assert comments[2] == "nothing to see" and len(comments[0]) == 64 and "@" not in comments[0]
    else:
        assert comments == [None, None, "nothing to see"]
    summary = table_of(settings, name).current_snapshot().summary
    assert summary["lake.pii.email"] == "1"


def test_hashing_without_a_salt_is_a_terminal_error(settings: Settings, dataset: Dataset) -> None:
    name = dataset(PII.replace("{mode}", "mask"))
    with pytest.raises(PiiSaltMissing):
        _invoke(settings, f"{name}/p.csv", PII_CSV)


EVOLVE = """
name: {name}
version: {version}
event_time: ts
evolution: {mode}
columns:
  ts: {type: timestamp}
  n:  {type: {ntype}}
"""


def _contract(mode: str, version: int = 1, ntype: str = "int", extra: str = "") -> str:
    return EVOLVE.replace("{mode}", mode).replace("{version}", str(version)).replace("{ntype}", ntype) + extra


def test_add_columns_evolution_and_contract_bump_widen_the_table(
    settings: Settings, dataset: Dataset, upload: Upload, client: Any
) -> None:
    name = dataset(_contract("add_columns"))
    first = upload(name, "a.csv", b"ts,n\n2025-01-01,1\n")
    second = upload(name, "b.csv", b"ts,n,color\n2025-01-02,2,red\n")
    assert second["schema_changes"] == ["add color"] and first["schema_changes"] == []
    rows = client.sql(f"SELECT n, color FROM lake.{name} ORDER BY ts").body["rows"]
    assert rows == [[1, None], [2, "red"]]
    table = table_of(settings, name)
    old = table.scan(snapshot_id=table.metadata.snapshots[0].snapshot_id).to_arrow()
    assert old.num_rows == 1  # the old snapshot stays readable
    # Version 2 widens n to long and adds a column: applied on the next ingest.
    path = settings.contracts_dir / f"{name}.yaml"
    path.write_text(_contract("add_columns", 2, "long", "  size: {type: double}\n").replace("{name}", name))
    third = upload(name, "c.csv", b"ts,n,size\n2025-01-03,5000000000,1.5\n")
    assert third["schema_changes"] == ["widen n", "add size"]
    fields = {f.name: str(f.field_type) for f in table_of(settings, name).schema().fields}
    assert fields == {"ts": "timestamptz", "n": "long", "color": "string", "size": "double"}
    assert client.sql(f"SELECT max(n) FROM lake.{name}").body["rows"] == [[5000000000]]
    # Narrowing is refused with the column named.
    path.write_text(_contract("add_columns", 3, "int").replace("{name}", name))
    with pytest.raises(SchemaEvolutionRefused, match="column 'n': the table holds long"):
        _invoke(settings, f"{name}/d.csv", b"ts,n\n2025-01-04,1\n")


def test_strict_evolution_refuses_unknown_columns_and_ignore_drops_them(
    settings: Settings, dataset: Dataset, upload: Upload, client: Any
) -> None:
    strict = dataset(_contract("strict"))
    with pytest.raises(SchemaEvolutionRefused, match=r"column\(s\) color.*evolution: strict"):
        _invoke(settings, f"{strict}/a.csv", b"ts,n,color\n2025-01-01,1,red\n")
    assert table_of(settings, strict).metadata.snapshots == []
    assert upload(strict, "b.csv", b"ts,n\n2025-01-01,1\n")["rows_accepted"] == 1
    ignore = dataset(_contract("ignore"))
    assert upload(ignore, "a.csv", b"ts,n,color\n2025-01-01,1,red\n")["rows_accepted"] == 1
    assert client.sql(f"SELECT * FROM lake.{ignore}").body["columns"] == ["ts", "n"]


def test_parquet_columns_are_added_with_their_type(dataset: Dataset, upload: Upload, client: Any) -> None:
    name = dataset(_contract("add_columns"))
    buf = io.BytesIO()
    pq.write_table(pa.table({"ts": ["2025-01-01"], "n": [1], "weight": pa.array([2.5], pa.float64())}), buf)
    upload(name, "a.parquet", buf.getvalue())
    body = client.sql(f"SELECT weight FROM lake.{name}").body
    assert body["rows"] == [[2.5]] and body["types"] == ["double"]


REPLAY = """
name: {name}
version: {version}
event_time: ts
columns:
  ts:     {type: timestamp, required: true}
  status: {type: string, enum: [{enum}]}
"""


def test_quarantine_list_and_replay_after_a_contract_fix(
    settings: Settings, dataset: Dataset, upload: Upload, client: Any, http_client: Any
) -> None:
    name = dataset(REPLAY.replace("{version}", "1").replace("{enum}", "ok, failed"))
    csv = b"ts,status\n2025-01-01,ok\n2025-01-02,degraded\n2025-01-03,degraded\nbad-time,ok\n2025-01-05,x,y\n"
    upload(name, "a.csv", csv)
    upload(name, "b.csv", b"ts,status\n2025-02-01,degraded\n")
    listed = client.quarantine(name)
    assert listed.status == 200, listed.body
    assert listed.body["total"] == 5
    assert listed.body["by_rule"] == {"enum": 3, "parse": 1, "type": 1}
    only_a = http_client.quarantine(name, source=f"{name}/a.csv", limit=2).body
    assert only_a["total"] == 4 and len(only_a["rows"]) == 2
    assert {r["source_uri"] for r in only_a["rows"]} == {f"s3://{settings.landing_bucket}/{name}/a.csv"}
    assert client.quarantine("nosuchdataset").status == 404
    # Fix the contract: degraded becomes a valid status. Replay only a.csv's rows first.
    path = settings.contracts_dir / f"{name}.yaml"
    path.write_text(
        REPLAY.replace("{version}", "2").replace("{enum}", "ok, failed, degraded").replace("{name}", name)
    )
    first = replay(settings, name, f"{name}/a.csv")
    assert (first.examined, first.replayed, first.still_failing, first.unparseable) == (4, 2, 1, 1)
    assert client.sql(f"SELECT count(*) FROM lake.{name}").body["rows"] == [[3]]
    left = list_quarantine(settings, name)
    assert left["total"] == 3 and left["by_rule"] == {"enum": 1, "parse": 1, "type": 1}
    # A second replay of the same source moves nothing and duplicates nothing.
    again = replay(settings, name, f"{name}/a.csv")
    assert again.replayed == 0 and client.sql(f"SELECT count(*) FROM lake.{name}").body["rows"] == [[3]]
    # The rest: b.csv's row.
    rest = replay(settings, name)
    assert rest.replayed == 1
    assert client.sql(f"SELECT count(*) FROM lake.{name}").body["rows"] == [[4]]
    assert replay(settings, name).replayed == 0
    summaries = [s.summary for s in table_of(settings, name).metadata.snapshots]
    assert [s.get("lake.operation") for s in summaries].count("quarantine-replay") == 2


def test_replay_interrupted_after_the_table_commit_finishes_without_duplicates(
    settings: Settings, dataset: Dataset, upload: Upload, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lakehouse.ingest.quarantine as quarantine

    name = dataset(REPLAY.replace("{version}", "1").replace("{enum}", "ok"))
    upload(name, "a.csv", b"ts,status\n2025-01-01,ok\n2025-01-02,degraded\n")
    (settings.contracts_dir / f"{name}.yaml").write_text(
        REPLAY.replace("{version}", "2").replace("{enum}", "ok, degraded").replace("{name}", name)
    )

    def crash(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("killed between the two commits")

    with monkeypatch.context() as m:
        m.setattr(quarantine, "_commit_removal", crash)
        with pytest.raises(RuntimeError):
            replay(settings, name)
    assert client.sql(f"SELECT count(*) FROM lake.{name}").body["rows"] == [[2]]
    assert replay(settings, name).replayed == 1  # finishes the quarantine side only
    assert client.sql(f"SELECT count(*) FROM lake.{name}").body["rows"] == [[2]]
    assert list_quarantine(settings, name)["total"] == 0


UPSERT = """
name: {name}
event_time: ts
primary_key: [id]
columns:
  ts:    {type: timestamp, required: true}
  id:    {type: long}
  value: {type: double}
"""


def test_upsert_matches_a_duckdb_reference(
    settings: Settings, dataset: Dataset, upload: Upload, client: Any
) -> None:
    name = dataset(UPSERT)
    files = [
        # id 1..40 over three months
        "ts,id,value\n"
        + "".join(f"2025-0{1 + i % 3}-0{1 + i % 9}T00:00:00Z,{i},{i}.0\n" for i in range(1, 41)),
        # updates (newer), an older event that must lose, duplicates in the file (the later line wins),
        # a key moving to another month, new keys
        "ts,id,value\n"
        "2025-06-01T00:00:00Z,1,100.0\n"
        "2024-01-01T00:00:00Z,2,-1.0\n"
        "2025-06-02T00:00:00Z,3,300.0\n"
        "2025-06-02T00:00:00Z,3,301.0\n"
        "2025-05-01T00:00:00Z,41,41.0\n"
        "2025-05-01T00:00:00Z,42,42.0\n"
        "2025-05-01T00:00:00Z,42,43.0\n",
        "ts,id,value\n2025-07-01T00:00:00Z,41,410.0\n2025-01-01T00:00:00Z,40,40.0\n",
    ]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE arrivals (ts TIMESTAMPTZ, id BIGINT, value DOUBLE, file INT, line INT)")
    reports = []
    for i, text in enumerate(files):
        reports.append(upload(name, f"u{i}.csv", text.encode()))
        for line, row in enumerate(text.splitlines()[1:], start=2):
            ts, key, value = row.split(",")
            con.execute("INSERT INTO arrivals VALUES (?, ?, ?, ?, ?)", [ts, int(key), float(value), i, line])
    reference = con.execute(
        "SELECT id, value, strftime(ts, '%Y-%m-%dT%H:%M:%S') FROM (SELECT *, row_number() OVER "
        "(PARTITION BY id ORDER BY ts DESC, file DESC, line DESC) AS r FROM arrivals) WHERE r = 1 ORDER BY id"
    ).fetchall()
    got = client.sql(
        f"SELECT id, value, strftime(ts, '%Y-%m-%dT%H:%M:%S') FROM lake.{name} ORDER BY id"
    ).body["rows"]
    assert [tuple(r) for r in got] == reference
    assert len(got) == 42
    second = reports[1]
    assert (second["rows_inserted"], second["rows_updated"], second["rows_superseded"]) == (2, 2, 3)
    assert reports[2]["rows_updated"] == 1 and reports[2]["rows_superseded"] == 1
    table = table_of(settings, name)
    assert table.current_snapshot().summary["operation"].value == "overwrite"
    # Only files holding matching keys were rewritten.
    assert second["files_rewritten"] <= 3 and reports[2]["files_rewritten"] == 1
