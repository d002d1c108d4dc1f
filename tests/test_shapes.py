"""Tables of every shape against the local stack: a reference table without an event time
(upsert, replace, append), a day/bucket partitioned and sorted table, partition spec evolution,
decimals and nested values end to end, and the table services on each."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.errors import ChangeFeedUnavailable, FileRejected
from lakehouse.ingest.upload import ingest_object
from lakehouse.maintenance import MaintenanceOptions, run_maintenance
from lakehouse.query.history import changes
from lakehouse.storage import s3_client

pytestmark = pytest.mark.integration

SERVICES = {"compaction_target_bytes": 4 * 2**20, "compaction_min_files": 2}

PRODUCTS = """
name: {name}
primary_key: [sku]
columns:
  sku:     {type: string, required: true}
  price:   {type: 'decimal(9,2)', required: true, min: 0}
  dims:    {type: 'struct<w: int, h: int>', required_fields: [w]}
  tags:    {type: 'list<string>'}
  attrs:   {type: 'map<string, double>'}
  made_at: {type: time}
  ref:     {type: uuid}
  lat:     {type: double}
  lon:     {type: double}
vectors:
  embedding: emb
  embedder: supplied
  dim: 4
"""


def _vec(seed: int) -> list[float]:
    return [round(float(x), 6) for x in np.random.default_rng(seed).normal(size=4)]


def _ndjson(rows: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


def _product(i: int, price: str = "1.10") -> dict[str, Any]:
    return {
        "sku": f"p{i}",
        "price": price,
        "dims": {"w": i, "h": 2},
        "tags": ["a", f"t{i}"],
        "attrs": {"weight": i / 2},
        "made_at": "08:30:00",
        "ref": f"00000000-0000-0000-0000-{i:012d}",
        "lat": 50.0,
        "lon": 4.0,
        "emb": _vec(i),
    }


def _maintain(settings: Settings, name: str, now: dt.datetime | None = None) -> dict[str, Any]:
    opts = MaintenanceOptions(
        jobs=("retention", "compact", "expire", "orphans"),
        tables=(f"{settings.namespace}.{name}",),
        now=now,
        snapshot_retention=dt.timedelta(0),
        orphan_age=dt.timedelta(0),
    )
    return run_maintenance(settings.model_copy(update=SERVICES), opts)


def test_a_reference_table_without_event_time_upserts_searches_travels_and_is_maintained(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    name = dataset(PRODUCTS)
    bad = {**_product(9), "price": "1.005"}  # three decimals: quarantined, the reason says so
    nested_bad = {**_product(8), "dims": {"h": 1}}  # w required
    first = upload(name, "p1.ndjson", _ndjson([_product(i, f"{i}.10") for i in range(5)] + [bad, nested_bad]))
    assert (first["rows_accepted"], first["rows_quarantined"]) == (5, 2)
    q = client.quarantine(name).body
    reasons = sorted(r["reason"] for r in q["rows"])
    assert reasons[0].startswith("dims.w: missing value")
    assert reasons[1].startswith("price: '1.005' has more than 2 digits after the point (decimal(9,2))")

    second = upload(
        name, "p2.ndjson", _ndjson([_product(1, "99.99"), _product(2, "0.50"), _product(7, "7.00")])
    )
    assert (second["rows_updated"], second["rows_inserted"]) == (2, 1)

    body = client.sql(
        f"SELECT sku, price, dims, tags, attrs['weight'] AS w, made_at, ref FROM {name} ORDER BY sku"
    ).body
    assert body["columns"] == ["sku", "price", "dims", "tags", "w", "made_at", "ref"]
    rows = {r[0]: r for r in body["rows"]}
    assert [rows[s][1] for s in ("p0", "p1", "p2", "p7")] == ["0.10", "99.99", "0.50", "7.00"]  # exact
    assert rows["p3"][2:6] == [{"w": 3, "h": 2}, ["a", "t3"], 1.5, "08:30:00"]
    assert rows["p3"][6] == "00000000-0000-0000-0000-000000000003"
    assert client.sql(f"SELECT sum(price) FROM {name}").body["rows"] == [["114.79"]]

    # Time travel to the first upload; vectors follow the upsert.
    assert client.sql(f"SELECT count(*) FROM {name}", as_of=first["snapshot_id"]).body["rows"] == [[5]]
    found = client.search(name, vector=_vec(7), k=1).body
    assert found["rows"][0][found["columns"].index("sku")] == "p7"

    # No event time: time series and time-filtered geo say so; a plain box works.
    series = client.timeseries(name, "count", "1d")
    assert series.status == 400 and "has no event time" in series.body["message"]
    geo = client.geo(name, bbox=(3.0, 49.0, 5.0, 51.0), start="2026-01-01")
    assert geo.status == 400 and "has no event time" in geo.body["message"]
    assert client.geo(name, bbox=(3.0, 49.0, 5.0, 51.0)).body["row_count"] == 6

    # The change feed covers appends only: an upsert is an overwrite.
    with pytest.raises(ChangeFeedUnavailable):
        changes(settings, f"{settings.namespace}.{name}", first["snapshot_id"])

    # Maintenance: retention leaves it alone, compaction merges the upsert's files, GC frees.
    table = get_catalog(settings).load_table(f"{settings.namespace}.{name}")
    before = len(list(table.scan().plan_files()))
    report = _maintain(settings, name)
    assert report["failures"] == 0 and report["jobs"]["retention"] == []
    assert report["jobs"]["compact"][0]["files_before"] == before >= 2
    table.refresh()
    assert len(list(table.scan().plan_files())) == 1
    assert report["jobs"]["expire"][0]["bytes_freed"] > 0
    assert client.sql(f"SELECT count(*), sum(price) FROM {name}").body["rows"] == [[6, "114.79"]]


def test_write_mode_replace_makes_the_upload_the_whole_table(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    name = dataset(
        "name: {name}\nwrite_mode: replace\ncolumns:\n  code: {type: string, required: true}\n"
        "  rate: {type: 'decimal(8,4)'}\n"
    )
    upload(name, "a.csv", b"code,rate\nEUR,1.0000\nUSD,1.0842\nGBP,0.8571\n")
    second = upload(name, "b.csv", b"code,rate\nEUR,1.0000\nJPY,161.5000\n")
    assert client.sql(f"SELECT code, rate FROM {name} ORDER BY 1").body["rows"] == [
        ["EUR", "1.0000"],
        ["JPY", "161.5000"],
    ]
    table = get_catalog(settings).load_table(f"{settings.namespace}.{name}")
    snap = table.snapshot_by_id(second["snapshot_id"])
    assert snap is not None and snap.summary is not None
    assert snap.summary.operation.value == "overwrite" and snap.summary["deleted-records"] == "3"
    # An upload none of whose rows pass would empty the table: refused, nothing committed.
    s3_client(settings).put_object(
        Bucket=settings.landing_bucket, Key=f"{name}/c.csv", Body=b"code,rate\n,1\n"
    )
    with pytest.raises(FileRejected, match="would empty the table"):
        ingest_object(settings, settings.landing_bucket, f"{name}/c.csv")
    assert client.sql(f"SELECT count(*) FROM {name}").body["rows"] == [[2]]
    # With a primary key, replace keeps one row per key (the last one of the upload).
    keyed = dataset(
        "name: {name}\nprimary_key: [code]\nwrite_mode: replace\ncolumns:\n  code: {type: string}\n"
        "  rate: {type: 'decimal(8,4)'}\n"
    )
    upload(keyed, "a.csv", b"code,rate\nEUR,1\nUSD,2\n")
    replaced = upload(keyed, "b.csv", b"code,rate\nEUR,3\nGBP,4\nEUR,5\n")
    assert (replaced["rows_inserted"], replaced["rows_superseded"], replaced["files_rewritten"]) == (2, 1, 1)
    rows = client.sql(f"SELECT code, rate FROM {keyed} ORDER BY 1").body["rows"]
    assert rows == [["EUR", "5.0000"], ["GBP", "4.0000"]]
    # An append-only reference table has a change feed.
    log = dataset("name: {name}\ncolumns:\n  line: {type: string}\n")
    one = upload(log, "1.csv", b"line\na\nb\n")
    upload(log, "2.csv", b"line\nc\n")
    feed = changes(settings, f"{settings.namespace}.{log}", one["snapshot_id"])
    assert [r[feed["columns"].index("line")] for r in feed["rows"]] == ["c"]


MONEY = """
name: {name}
columns:
  id:     {type: int, required: true}
  amount: {type: 'decimal(38,2)'}
  legs:   {type: 'list<struct<amount: decimal(38,2), note: string>>'}
"""


@pytest.mark.parametrize("shape", ["ndjson", "json array"])
def test_json_numbers_in_a_decimal_column_keep_every_digit(
    shape: str, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    name = dataset(MONEY)
    numbers = [
        "12345678901234567.89",  # 19 significant digits: a double holds 17
        "999999999999999999999999999999999999.99",  # the largest decimal(38,2)
        "0.10000000000000000001",  # a double reads 0.1: too many decimals all the same
        "1.5e3",
        "-7",
        '"123456789012345678901234567.5"',  # a JSON string, as before
        "1e40",  # too many integer digits
    ]
    lines = [f'{{"id": {i}, "amount": {n}}}' for i, n in enumerate(numbers)]
    lines[0] = lines[0][:-1] + ', "legs": [{"amount": 12345678901234567.89, "note": "a"}, {"amount": 2}]}'
    body = ("\n".join(lines) if shape == "ndjson" else "[" + ",\n".join(lines) + "]").encode()
    report = upload(name, "money.ndjson" if shape == "ndjson" else "money.json", body)
    assert (report["rows_accepted"], report["rows_quarantined"]) == (5, 2)
    rows = client.sql(f"SELECT id, amount::VARCHAR FROM {name} ORDER BY id").body["rows"]
    assert rows == [
        [0, "12345678901234567.89"],
        [1, "999999999999999999999999999999999999.99"],
        [3, "1500.00"],
        [4, "-7.00"],
        [5, "123456789012345678901234567.50"],
    ]
    legs = client.sql(f"SELECT [l.amount::VARCHAR FOR l IN legs] FROM {name} WHERE id = 0").body["rows"]
    assert legs == [[["12345678901234567.89", "2.00"]]]
    bad = f'SELECT row_number, "column", reason FROM {name}__quarantine ORDER BY row_number'
    reasons = client.sql(bad).body["rows"]
    assert [r[:2] for r in reasons] == [[3, "amount"], [7, "amount"]]  # line or element, from 1
    assert "0.10000000000000000001" in reasons[0][2] and "1e40" in reasons[1][2]


EVENTS = """
name: {name}
version: {version}
event_time: ts
retention_months: 1
partitioning: {partitioning}
sort_order: [device, ts]
columns:
  ts:     {type: timestamp, required: true}
  device: {type: string, required: true}
  value:  {type: 'decimal(12,3)'}
  lat:    {type: double}
  lon:    {type: double}
vectors:
  embedding: emb
  embedder: supplied
  dim: 4
"""


def _events(start: int, n: int, days: list[dt.date]) -> bytes:
    rows = [
        {
            "ts": f"{days[i % len(days)].isoformat()}T{i % 24:02d}:00:00Z",
            "device": f"d{(i * 7) % 5}",
            "value": f"{i}.125",
            "lat": 1.0,
            "lon": 2.0,
            "emb": _vec(i),
        }
        for i in range(start, start + n)
    ]
    return _ndjson(rows)


def test_a_day_and_bucket_partitioned_sorted_table_through_every_service(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    now = dt.datetime.now(dt.UTC)
    this_month = now.date().replace(day=1)
    old = this_month - dt.timedelta(days=40)
    days = [old, this_month, this_month + dt.timedelta(days=1)]
    contract = EVENTS.replace("{partitioning}", "['day(ts)', 'bucket(4, device)']")
    name = dataset(contract.replace("{version}", "1"))
    first = upload(name, "a.ndjson", _events(0, 30, days))
    upload(name, "b.ndjson", _events(30, 30, days))
    qualified = f"{settings.namespace}.{name}"
    table = get_catalog(settings).load_table(qualified)
    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [
        ("ts_day", "day"),
        ("device_bucket_4", "bucket[4]"),
    ]
    assert [f.source_id for f in table.sort_order().fields] == [2, 1]
    for task in table.scan().plan_files():  # every data file is written in the sort order
        data = pq.read_table(table.io.new_input(task.file.file_path).open()).to_pylist()
        keys = [(r["device"], r["ts"]) for r in data]
        assert keys == sorted(keys)

    feed = changes(settings, qualified, first["snapshot_id"])
    assert len(feed["rows"]) == 30
    assert client.sql(f"SELECT count(*) FROM {name}", as_of=first["snapshot_id"]).body["rows"] == [[30]]
    assert client.sql(f"SELECT sum(value) FROM {name}").body["rows"] == [["1777.500"]]  # 60 × .125 exact
    assert client.search(name, vector=_vec(3), k=1).body["row_count"] == 1

    # Retention drops the old day partitions without rewriting a file.
    report = _maintain(settings, name)
    assert report["failures"] == 0
    kept = report["jobs"]["retention"][0]
    assert kept["rows_dropped"] == 20 and kept["files_rewritten"] == 0
    assert report["jobs"]["compact"][0]["partitions_compacted"] >= 1
    assert report["jobs"]["expire"][0]["bytes_freed"] > 0
    table.refresh()
    for task in table.scan().plan_files():
        data = pq.read_table(table.io.new_input(task.file.file_path).open()).to_pylist()
        keys = [(r["device"], r["ts"]) for r in data]
        assert keys == sorted(keys)
    assert client.sql(f"SELECT count(*) FROM {name}").body["rows"] == [[40]]
    gone = client.sql(f"SELECT count(*) FROM {name}", as_of=first["snapshot_id"])
    assert gone.status == 400 and gone.body["error"] == "SnapshotNotFound"  # expired by maintenance

    # A new contract version partitions by day only: the spec evolves, old files keep theirs.
    path = settings.contracts_dir / f"{name}.yaml"
    v2 = EVENTS.replace("{version}", "2").replace("{partitioning}", "['day(ts)']").replace("{name}", name)
    path.write_text(v2)
    third = upload(name, "c.ndjson", _events(60, 10, days[1:]))
    assert third["rows_accepted"] == 10, third
    table.refresh()
    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [("ts_day", "day")]
    assert {t.file.spec_id for t in table.scan().plan_files()} == {0, 1}
    assert client.sql(f"SELECT count(*) FROM {name}").body["rows"] == [[50]]
    assert table.properties["lake.contract.version"] == "2"
