"""Table shapes without a stack: contract keys (event time, partitioning, sort order, clustering,
write mode, types) and the validation of decimals, binary, uuid, time and nested values."""

from __future__ import annotations

import base64
import decimal
import json
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from lakehouse.contracts.model import ROW, parse_contract
from lakehouse.contracts.types import parse_type
from lakehouse.contracts.validate import Validator
from lakehouse.errors import ContractInvalid, SchemaEvolutionRefused
from lakehouse.ingest.evolution import plan
from lakehouse.ingest.infer import infer_contract

REF = """
name: x
columns:
  id:    {type: long, required: true}
  sku:   {type: string}
  price: {type: 'decimal(15,2)'}
  ts:    {type: timestamp}
  lat:   {type: double}
  lon:   {type: double}
  tags:  {type: 'list<string>'}
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return parse_contract(path.read_text(), str(path))


@pytest.mark.parametrize(
    ("extra", "field", "why"),
    [
        ("partitioning: ['spread(id)']", "partitioning", "unknown transform 'spread'"),
        ("partitioning: ['bucket(0, id)']", "partitioning", "bucket count must be at least 1"),
        ("partitioning: ['bucket(id)']", "partitioning", "bucket needs a number"),
        ("partitioning: ['day(sku)']", "partitioning[0]", "day applies to date, timestamp"),
        ("partitioning: ['identity(nope)']", "partitioning[0]", "'nope' is not one of the columns"),
        ("partitioning: ['identity(tags)']", "partitioning[0]", "only scalar columns"),
        ("sort_order: [nope]", "sort_order[0]", "'nope' is not one of the columns"),
        ("sort_order: ['id sideways']", "sort_order", "is not `column [asc|desc]"),
        ("cluster_by: 'zorder(lat, sku)'", "cluster_by", "interleaves numbers"),
        ("cluster_by: 'zorder(lat)'", "cluster_by", "2 to 4 columns"),
        ("sort_order: [id]\ncluster_by: 'zorder(lat, lon)'", "cluster_by", "not both"),
        ("retention_months: 6", "retention_months", "no event_time"),
        ("write_mode: upsert", "write_mode", "names none"),
        ("write_mode: sometimes", "write_mode", "Input should be"),
    ],
)
def test_bad_shapes_are_refused_naming_the_file_and_the_field(
    tmp_path: Path, extra: str, field: str, why: str
) -> None:
    with pytest.raises(ContractInvalid) as caught:
        _load(tmp_path, REF + extra + "\n")
    message = str(caught.value)
    assert str(tmp_path / "x.yaml") in message and field in message and why in message, message


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("decimal(40,2)", "precision must be 1..38"),
        ("decimal(5,7)", "scale is larger than the precision"),
        ("struct<a: int", "does not parse"),
        ("struct<a int>", "expected ':'"),
        ("list<>", "does not parse"),
        ("map<int, string>", "map keys must be string"),
        ("money", "unknown type 'money'"),
        ("struct<a: int, a: long>", "appears twice"),
    ],
)
def test_bad_types_are_refused_naming_the_column(tmp_path: Path, kind: str, why: str) -> None:
    with pytest.raises(ContractInvalid) as caught:
        _load(tmp_path, f"name: x\ncolumns:\n  v: {{type: '{kind}'}}\n")
    message = str(caught.value)
    assert "x.yaml" in message and "columns.v.type" in message and why in message, message


def test_required_fields_name_struct_fields(tmp_path: Path) -> None:
    with pytest.raises(ContractInvalid, match=r"columns\.a.*'zip' is not a field"):
        _load(tmp_path, "name: x\ncolumns:\n  a: {type: 'struct<street: string>', required_fields: [zip]}\n")
    with pytest.raises(ContractInvalid, match="apply to struct columns"):
        _load(tmp_path, "name: x\ncolumns:\n  a: {type: string, required_fields: [zip]}\n")


def test_types_parse_to_duckdb_and_iceberg_forms() -> None:
    kind = parse_type(
        "struct<name: string, price: decimal(15, 2), tags: list<string>, attrs: map<string, long>>"
    )
    assert (
        str(kind)
        == "struct<name: string, price: decimal(15,2), tags: list<string>, attrs: map<string, long>>"
    )
    assert kind.duckdb() == (
        'STRUCT("name" VARCHAR, "price" DECIMAL(15,2), "tags" VARCHAR[], "attrs" MAP(VARCHAR, BIGINT))'
    )
    duckdb.sql(f"SELECT NULL::{kind.duckdb()}")  # DuckDB takes it
    ice = kind.iceberg(iter(range(100, 200)))
    assert str(ice).startswith("struct<100: name: optional string, 101: price: optional decimal(15, 2)")


def test_a_reference_table_has_no_partition_no_retention_and_its_layout_keys(tmp_path: Path) -> None:
    ref = _load(tmp_path, REF + "primary_key: [id]\n")
    schema = ref.iceberg_schema()  # type: ignore[attr-defined]
    assert ref.event_time is None and ref.months_kept is None and ref.mode == "upsert"  # type: ignore[attr-defined]
    assert ref.partition_spec(schema).fields == ()  # type: ignore[attr-defined]
    props = ref.table_properties()  # type: ignore[attr-defined]
    assert props["lake.event-time"] == "" and "lake.retention-months" not in props
    shaped = _load(
        tmp_path,
        REF
        + "event_time: ts\npartitioning: ['day(ts)', 'bucket(16, id)', 'truncate(4, sku)', identity(sku)]\n"
        + "sort_order: [sku, 'id desc nulls first']\nwrite_mode: replace\n",
    )
    spec = shaped.partition_spec(shaped.iceberg_schema())  # type: ignore[attr-defined]
    assert [(f.name, str(f.transform)) for f in spec.fields] == [
        ("ts_day", "day"),
        ("id_bucket_16", "bucket[16]"),
        ("sku_trunc_4", "truncate[4]"),
        ("sku", "identity"),
    ]
    order = shaped.iceberg_sort_order(shaped.iceberg_schema())  # type: ignore[attr-defined]
    assert [(f.source_id, str(f.direction), str(f.null_order)) for f in order.fields] == [
        (2, "ASC", "NULLS LAST"),
        (1, "DESC", "NULLS FIRST"),
    ]
    assert shaped.mode == "replace" and shaped.months_kept == 12  # type: ignore[attr-defined]
    zorder = _load(tmp_path, REF + "cluster_by: 'zorder(lat, lon)'\n")
    assert zorder.table_properties()["lake.cluster-by"] == "lat,lon"  # type: ignore[attr-defined]


TYPED = """
name: x
columns:
  id:     {type: int, required: true}
  price:  {type: 'decimal(6,2)', min: 0}
  at:     {type: time}
  blob:   {type: binary}
  ref:    {type: uuid}
  addr:   {type: 'struct<street: string, zip: int, geo: struct<lat: double>>', required_fields: [zip]}
  tags:   {type: 'list<int>'}
  attrs:  {type: 'map<string, double>'}
"""


def _check(contract_text: str, batch: pa.Table) -> tuple[pa.Table, dict[int, list[str]]]:
    contract = parse_contract(contract_text, "x.yaml")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    checked = Validator(con, contract, contract.iceberg_schema().as_arrow()).check(batch)
    reasons: dict[int, list[str]] = {}
    for row in checked.rejected.to_pylist():
        reasons[row["__lake_row"]] = [f"{e['column']}: {e['reason']}" for e in row["__lake_errors"]]
    return checked.accepted, reasons


def test_text_values_of_every_type_are_read_exactly_and_bad_ones_say_why() -> None:
    u = str(uuid.uuid4())
    good = {
        "id": "1",
        "price": "1234.50",
        "at": "12:30:01",
        "blob": base64.b64encode(b"\x00\xffhi").decode(),
        "ref": u,
        "addr": '{"street": "Main", "zip": 1000, "geo": {"lat": 1.5}}',
        "tags": "[1, 2]",
        "attrs": '{"a": 0.5}',
    }
    bad = [
        {"price": "1234.567"},  # too many decimals
        {"price": "12345.5"},  # too many digits before the point
        {"price": "abc"},
        {"at": "25:00"},
        {"blob": "not base64!"},
        {"ref": "not-a-uuid"},
        {"addr": '{"street": "Main"}'},  # zip required
        {"addr": '{"street": "Main", "zip": "x"}'},
        {"addr": "{not json"},
        {"tags": '[1, "two"]'},
        {"attrs": '{"a": "b"}'},
    ]
    rows = [good] + [{**good, **b} for b in bad]
    batch = pa.table({k: [r[k] for r in rows] for k in good}).append_column(
        ROW, pa.array(range(1, len(rows) + 1), pa.int64())
    )
    accepted, reasons = _check(TYPED, batch)
    assert accepted.num_rows == 1
    row = accepted.to_pylist()[0]
    assert row["price"] == decimal.Decimal("1234.50") and row["blob"] == b"\x00\xffhi"
    assert str(uuid.UUID(bytes=row["ref"])) == u if isinstance(row["ref"], bytes) else str(row["ref"]) == u
    assert row["addr"] == {"street": "Main", "zip": 1000, "geo": {"lat": 1.5}}
    assert row["tags"] == [1, 2] and dict(row["attrs"]) == {"a": 0.5}
    expected = {
        2: "price: '1234.567' has more than 2 digits after the point (decimal(6,2))",
        3: "price: '12345.5' is not a number of at most 4 digits before the point",
        4: "price: 'abc' is not a number",
        5: "at: '25:00' is not a valid time",
        6: "blob: 'not base64!' is not a valid binary",
        7: "ref: 'not-a-uuid' is not a valid uuid",
        8: "addr.zip: missing value",
        9: "addr.zip: not a valid int",
        10: "addr: '{not json' is not a valid struct",
        11: "tags: an element is not a valid int",
        12: "attrs: a value is not a valid double",
    }
    for row_number, why in expected.items():
        assert any(r.startswith(why) for r in reasons[row_number]), (row_number, reasons[row_number])


def test_typed_parquet_values_keep_their_exact_values() -> None:
    batch = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "price": pa.array([decimal.Decimal("1.10"), decimal.Decimal("9999.99"), decimal.Decimal("0.10")]),
            "addr": pa.array(
                [{"street": "a", "zip": 1}, {"street": "b", "zip": None}, None],
                pa.struct([("street", pa.string()), ("zip", pa.int64())]),
            ),
            "tags": pa.array([[1], [], None], pa.list_(pa.int64())),
            "attrs": pa.array([[("k", 1.0)], [], None], pa.map_(pa.string(), pa.float64())),
        }
    ).append_column(ROW, pa.array([1, 2, 3], pa.int64()))
    accepted, reasons = _check(TYPED, batch)
    assert [r["price"] for r in accepted.to_pylist()] == [decimal.Decimal("1.10"), decimal.Decimal("0.10")]
    assert reasons == {2: ["addr.zip: missing value"]}
    doubles = pa.table({"id": pa.array([1, 2], pa.int32()), "price": pa.array([0.1, 0.125])}).append_column(
        ROW, pa.array([1, 2], pa.int64())
    )
    accepted, reasons = _check(TYPED, doubles)
    assert accepted.to_pylist()[0]["price"] == decimal.Decimal("0.10")
    assert "more than 2 digits" in reasons[2][0]


def test_evolution_adds_struct_fields_and_widens_decimals_only() -> None:
    v1 = parse_contract(
        "name: x\ncolumns:\n  p: {type: 'decimal(10,2)'}\n  s: {type: 'struct<a: int>'}\n", "v1"
    )
    v2 = parse_contract(
        "name: x\ncolumns:\n  p: {type: 'decimal(18,2)'}\n  s: {type: 'struct<a: long, b: string>'}\n", "v2"
    )
    assert [(c.kind, c.column) for c in plan(v1.iceberg_schema(), v2)] == [
        ("widen", "p"),
        ("widen", "s.a"),
        ("add", "s.b"),
    ]
    narrower = parse_contract("name: x\ncolumns:\n  p: {type: 'decimal(10,3)'}\n", "v3")
    with pytest.raises(SchemaEvolutionRefused, match="decimal"):
        plan(v1.iceberg_schema(), narrower)


def test_infer_drafts_a_reference_table_with_new_types_and_a_note_on_bad_values(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "sku": f"A{i}",
                "price": f"{i}.50",
                "ref": str(uuid.UUID(int=i)),
                "dims": {"w": i, "h": 2},
                "tags": ["x"],
                "qty": "n/a" if i == 7 else str(i),
            }
        )
        for i in range(60)
    ]
    path = tmp_path / "products.ndjson"
    path.write_text("\n".join(lines) + "\n")
    contract, sampled = infer_contract(path, "products")
    types = {n: c.type for n, c in contract.columns.items()}
    assert sampled == 60 and contract.event_time is None and contract.retention_months is None
    assert types == {
        "dims": "struct<w: long, h: long>",
        "price": "decimal(15,2)",
        "qty": "long",
        "ref": "uuid",
        "sku": "string",
        "tags": "list<string>",
    }
    assert "1 of 60 values are not long (e.g. 'n/a')" in contract.columns["qty"].description
    assert parse_contract(contract.to_yaml(), "draft") == contract
