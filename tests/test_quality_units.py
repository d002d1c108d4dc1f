"""Unit tests of the data-quality modules: contract rules, PII SQL, evolution plans, metrics,
progress, with no services."""

from __future__ import annotations

import datetime as dt
import io
import json

import duckdb
import pyarrow as pa
import pytest

from functions.ingest.metrics import publish
from lake.cli.progress import StderrBar
from lakehouse.config import Settings
from lakehouse.contracts import pii
from lakehouse.contracts.model import ROW, parse_contract
from lakehouse.contracts.validate import Validator
from lakehouse.errors import ContractInvalid, PiiSaltMissing, SchemaEvolutionRefused
from lakehouse.ingest.evolution import plan
from lakehouse.ingest.progress import current, reporting
from lakehouse.ingest.upload import IngestReport

BASE = "name: x\nevent_time: ts\ncolumns:\n  ts: {type: timestamp}\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  n: {type: int, pattern: 'a+'}", "pattern/max_length apply to string"),
        ("  s: {type: string, pattern: '(unclosed'}", "not a regular expression"),
        ("  s: {type: string, max_length: 0}", "max_length"),
        ("  s: {type: string, not_future: true}", "not_future/not_before apply"),
        ("  d: {type: date, not_before: 'last tuesday'}", "not an ISO-8601"),
        ("  n: {type: long, pii: hash}", "pii hash applies to string"),
        ("  s: {type: string, pii: scramble}", "columns.s.pii"),
        ("  s: {type: string}\nprimary_key: [nope]", "primary_key column 'nope'"),
        ("  s: {type: string}\nprimary_key: []", "distinct columns"),
        ("  s: {type: string}\nchecks: [{name: c, sql: 'nope > 1'}]", "check c:"),
        ("  s: {type: string}\nchecks: [{name: c, sql: 's >'}]", "not valid SQL|check c"),
        ("  s: {type: string}\nchecks: [{name: c, sql: 'true'}, {name: c, sql: 'true'}]", "distinct"),
        ("  s: {type: string}\non_error: explode", "on_error"),
        ("  s: {type: string}\nmax_bad_fraction: 1.5", "max_bad_fraction"),
        ("  s: {type: string}\nevolution: anything", "evolution"),
    ],
)
def test_bad_quality_rules_are_refused_with_the_field_named(extra: str, message: str) -> None:
    with pytest.raises(ContractInvalid, match=message):
        parse_contract(BASE + extra, "x.yaml")


def test_the_event_time_and_keys_cannot_be_dropped() -> None:
    with pytest.raises(ContractInvalid, match="cannot be dropped"):
        parse_contract(BASE.replace("{type: timestamp}", "{type: timestamp, pii: drop}"), "x.yaml")


def test_dropped_columns_are_validated_but_not_stored_and_keys_are_required() -> None:
    c = parse_contract(
        BASE + "  id: {type: long}\n  secret: {type: string, pii: drop}\nprimary_key: [id]", "x"
    )
    assert [f.name for f in c.iceberg_schema().fields] == ["ts", "id"]
    assert c.iceberg_schema().find_field("id").required


def _validator(contract_yaml: str, salt: str | None = None) -> Validator:
    contract = parse_contract(contract_yaml, "x")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return Validator(con, contract, contract.iceberg_schema().as_arrow(), salt=salt)


def test_unique_holds_across_batches_and_counts_failures() -> None:
    v = _validator(BASE + "  code: {type: string, unique: true}")
    first = v.check(pa.table({"ts": ["2025-01-01"] * 3, "code": ["a", "b", "a"], ROW: [2, 3, 4]}))
    second = v.check(pa.table({"ts": ["2025-01-01"] * 3, "code": ["b", "c", None], ROW: [5, 6, 7]}))
    assert first.rejected[ROW].to_pylist() == [4] and second.rejected[ROW].to_pylist() == [5]
    assert first.failures == {"unique": 1} and second.accepted_rows.to_pylist() == [6, 7]


def test_not_future_compares_with_the_ingest_start() -> None:
    contract = parse_contract(BASE.replace("{type: timestamp}", "{type: timestamp, not_future: true}"), "x")
    con = duckdb.connect()
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    v = Validator(con, contract, contract.iceberg_schema().as_arrow(), now=now)
    out = v.check(pa.table({"ts": ["2025-05-31T23:59:59Z", "2025-06-01T00:00:01Z"], ROW: [2, 3]}))
    assert out.rejected[ROW].to_pylist() == [3]


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("mail ann.lee+x@mail.example.co.uk now", {"email"}),
        ("card 4111 1111 1111 1111 ok", {"card"}),
        ("from 192.168.0.254 and 10.0.0.1", {"ip"}),
        ("ring (020) 7946 0958", {"phone"}),
        ("ring +1-202-555-0143", {"phone"}),
        ("order 12345 shipped in 2025", set()),
        ("version 1.2.3 released", set()),
    ],
)
def test_pii_detectors(text: str, kinds: set[str]) -> None:
    found = {k for k in pii.DETECTORS if duckdb.sql(f"SELECT {pii.flag_expr(repr(text), k)}").fetchone()[0]}  # type: ignore[index]
    assert found == kinds


def test_pii_expressions() -> None:
    assert duckdb.sql(f"SELECT {pii.mask_expr(repr('4111111111111111'))}").fetchone() == ("************1111",)
    assert duckdb.sql(f"SELECT {pii.mask_expr(repr('abc'))}").fetchone() == ("***",)
    one = duckdb.sql(f"SELECT {pii.hash_expr(repr('x'), 'k1')}, {pii.hash_expr(repr('x'), 'k2')}").fetchone()
    assert one is not None and one[0] != one[1] and len(one[0]) == 64
    with pytest.raises(PiiSaltMissing):
        pii.hash_expr("c", None)


def test_evolution_plans_widening_and_refuses_narrowing() -> None:
    v1 = parse_contract(BASE + "  n: {type: int}\n  f: {type: float}", "x")
    v2 = parse_contract(BASE + "  n: {type: long}\n  f: {type: double}\n  s: {type: string}", "x")
    changes = [(c.kind, c.column) for c in plan(v1.iceberg_schema(), v2)]
    assert changes == [("widen", "n"), ("widen", "f"), ("add", "s")]
    with pytest.raises(SchemaEvolutionRefused, match="column 'n': the table holds long"):
        plan(v2.iceberg_schema(), v1)
    text = parse_contract(BASE + "  n: {type: string}", "x")
    with pytest.raises(SchemaEvolutionRefused, match="column 'n'"):
        plan(v1.iceberg_schema(), text)


def _report(**kw: object) -> IngestReport:
    base: dict[str, object] = {
        "dataset": "d",
        "source": "s3://l/d/f.csv",
        "version": "v",
        "table": "lake.d",
        "rows_read": 10,
        "rows_accepted": 8,
        "rows_quarantined": 2,
        "files_written": 1,
        "snapshot_id": 1,
        "quarantine_snapshot_id": 2,
        "duplicate": False,
        "seconds": 1.0,
        "rows_per_second": 10.0,
        "quality_score": 0.8,
        "rule_failures": {"max": 1, "type": 1},
    }
    base.update(kw)
    return IngestReport(**base)  # type: ignore[arg-type]


def test_quality_metrics_are_emitted_as_emf(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The `lake` command switches metrics off for its process; a test that ran it in process
    # before this one leaves that setting behind.
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    publish(_report(), Settings(metrics_namespace="LakeTest"))
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LakeTest"
    assert docs[0]["QualityScore"] == [80.0] and docs[0]["dataset"] == "d"
    assert {(d["rule"], d["RuleFailures"][0]) for d in docs[1:]} == {("max", 1.0), ("type", 1.0)}
    publish(_report(duplicate=True), Settings())
    assert capsys.readouterr().out == ""


def test_metrics_can_be_switched_off(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    publish(_report(), Settings())
    assert capsys.readouterr().out == ""


def test_progress_bar_reports_bytes_rows_and_rate() -> None:
    out = io.StringIO()
    bar = StderrBar(2 << 30, "ingest ", out=out, every=0)
    with reporting(bar):
        assert current() is bar
        bar.update(1 << 30, 1_000_000)
    assert current() is None
    bar.close()
    text = out.getvalue()
    assert "50%" in text and "1,000,000 rows" in text and "1.0 GiB/2.0 GiB" in text and "rows/s" in text
