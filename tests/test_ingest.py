"""Ingest over the real local S3 endpoint and SQLite catalog."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.local.events import LambdaContext, s3_put_event
from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.errors import ContractNotFound, UnreadableFile, UnsupportedFormat
from lakehouse.storage import s3_client
from tests.conftest import SENSOR_CONTRACT

pytestmark = pytest.mark.integration


def month_rows(months: int, per_month: int = 3, start: tuple[int, int] = (2025, 1)) -> list[dict[str, Any]]:
    rows = []
    for m in range(months):
        index = start[0] * 12 + start[1] - 1 + m
        for i in range(per_month):
            ts = dt.datetime(index // 12, index % 12 + 1, 1 + i, 12, 0, tzinfo=dt.UTC)
            rows.append(
                {
                    "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "sensor_id": f"s{i}",
                    "temp_c": 10.0 + m,
                    "status": "ok",
                }
            )
    return rows


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    lines = ["ts,sensor_id,temp_c,status"] + [
        f"{r['ts']},{r['sensor_id']},{r['temp_c']},{r['status']}" for r in rows
    ]
    return ("\n".join(lines) + "\n").encode()


def table_of(settings: Settings, name: str) -> Any:
    return get_catalog(settings).load_table(f"{settings.namespace}.{name}")


def test_fourteen_months_land_in_fourteen_partitions_in_one_commit(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    report = upload(name, "year.csv", to_csv(month_rows(14)))
    assert report["rows_accepted"] == 42 and report["rows_quarantined"] == 0
    table = table_of(settings, name)
    assert len(table.metadata.snapshots) == 1
    partitions = {row["partition"]["ts_month"] for row in table.inspect.files().to_pylist()}
    assert len(partitions) == 14
    summary = table.current_snapshot().summary
    assert summary["lake.source.uri"] == f"s3://{settings.landing_bucket}/{name}/year.csv"
    assert summary["lake.source.version"] == report["version"]
    assert summary["lake.rows.accepted"] == "42"


def test_one_month_filter_reads_only_that_months_files(
    dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    name = dataset(SENSOR_CONTRACT)
    upload(name, "year.csv", to_csv(month_rows(14)))
    response = client.sql(
        f"SELECT count(*) AS n FROM lake.{name} WHERE ts >= '2025-03-01' AND ts < '2025-04-01'", explain=True
    )
    assert response.status == 200, response.body
    assert response.body["rows"] == [[3]]
    assert response.body["stats"]["files_read"] == 1 and response.body["stats"]["files_planned"] == 14
    whole = client.sql(f"SELECT sum(temp_c) FROM lake.{name}", explain=True).body
    assert whole["stats"]["files_read"] == 14


def test_bad_rows_are_quarantined_with_row_column_and_reason(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    name = dataset(SENSOR_CONTRACT)
    csv = (
        b"ts,sensor_id,temp_c,status\n"
        b"2025-01-01T00:00:00Z,a,1.5,ok\n"  # line 2: good
        b"2025-01-01T01:00:00Z,b,hot,ok\n"  # line 3: type
        b"2025-01-01T02:00:00Z,c,99,ok\n"  # line 4: max
        b"2025-01-01T03:00:00Z,,5,ok\n"  # line 5: required
        b"2025-01-01T04:00:00Z,d,5,broken\n"  # line 6: enum
        b"2025-01-01T05:00:00Z,e,5\n"  # line 7: wrong field count
        b"yesterday,f,5,ok\n"  # line 8: timestamp type
        b"2025-01-01T06:00:00Z,g,-3,degraded\n"  # line 9: good
    )
    report = upload(name, "mixed.csv", csv)
    assert (report["rows_accepted"], report["rows_quarantined"], report["rows_read"]) == (2, 6, 8)
    body = client.sql(
        f'SELECT row_number, "column", rule, reason, record FROM lake.{name}__quarantine ORDER BY row_number'
    ).body
    got = {r[0]: (r[1], r[2], r[3]) for r in body["rows"]}
    assert got[3] == ("temp_c", "type", "temp_c: 'hot' is not a valid double")
    assert got[4] == ("temp_c", "max", "temp_c: '99' is above the maximum 60")
    assert got[5] == ("sensor_id", "required", "sensor_id: missing value")
    assert got[6] == ("status", "enum", "status: 'broken' is not one of [ok, degraded, failed]")
    assert got[7] == (None, "parse", "row: expected 4 fields, found 3")
    assert got[8] == ("ts", "type", "ts: 'yesterday' is not a valid timestamp")
    record = json.loads(next(r[4] for r in body["rows"] if r[0] == 3))
    assert record == {"ts": "2025-01-01T01:00:00Z", "sensor_id": "b", "temp_c": "hot", "status": "ok"}
    good = client.sql(f"SELECT sensor_id FROM lake.{name} ORDER BY 1").body["rows"]
    assert good == [["a"], ["g"]]


def test_a_repeated_event_adds_nothing(
    settings: Settings, dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    from lake.local.serve import deliver

    name = dataset(SENSOR_CONTRACT)
    first = upload(name, "a.csv", to_csv(month_rows(2)) + b"not-a-time,x,1,ok\n")
    assert first["duplicate"] is False and first["rows_quarantined"] == 1
    for _ in range(2):
        again = deliver(settings, settings.landing_bucket, f"{name}/a.csv")["reports"][0]
        assert again["duplicate"] is True
        assert again["snapshot_id"] == first["snapshot_id"]
    assert client.sql(f"SELECT count(*) FROM lake.{name}").body["rows"] == [[6]]
    assert client.sql(f"SELECT count(*) FROM lake.{name}__quarantine").body["rows"] == [[1]]
    assert len(table_of(settings, name).metadata.snapshots) == 1
    # A new version of the same key is a new object: it is ingested.
    second = upload(name, "a.csv", to_csv(month_rows(1)))
    assert second["duplicate"] is False and second["rows_accepted"] == 3
    assert client.sql(f"SELECT count(*) FROM lake.{name}").body["rows"] == [[9]]


def test_every_format_gives_the_same_rows(
    dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    rows = month_rows(3)
    ndjson = "\n".join(json.dumps(r) for r in rows).encode()
    parquet = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    variants = {
        "a.csv": to_csv(rows),
        "b.csv.gz": gzip.compress(to_csv(rows)),
        "c.ndjson": ndjson,
        "d.jsonl.gz": gzip.compress(ndjson),
        "e.json": json.dumps(rows).encode(),
        "f.json": ndjson,
        "g.parquet": parquet.getvalue(),
    }
    expected = None
    for filename, content in variants.items():
        name = dataset(SENSOR_CONTRACT)
        report = upload(name, filename, content)
        assert (report["rows_accepted"], report["rows_quarantined"]) == (9, 0), filename
        assert report["bytes_read"] == len(content), filename  # every byte of the object, however small
        got = client.sql(f"SELECT ts, sensor_id, temp_c, status FROM lake.{name} ORDER BY ts, sensor_id").body
        expected = expected or got["rows"]
        assert got["rows"] == expected, filename


def test_naive_and_offset_timestamps_are_normalised_to_utc(
    dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    name = dataset(SENSOR_CONTRACT)
    csv = (
        b"ts,sensor_id\n2025-06-01 10:00:00,naive\n2025-06-01T12:00:00+02:00,offset\n"
        b"2025-06-01T10:00:00Z,zulu\n2025-06-01T10:00:00.250000Z,fraction\n"
    )
    assert upload(name, "tz.csv", csv)["rows_accepted"] == 4
    rows = client.sql(f"SELECT sensor_id, ts FROM lake.{name} ORDER BY sensor_id").body["rows"]
    assert dict(rows) == {
        "fraction": "2025-06-01T10:00:00.250000+00:00",
        "naive": "2025-06-01T10:00:00+00:00",
        "offset": "2025-06-01T10:00:00+00:00",
        "zulu": "2025-06-01T10:00:00+00:00",
    }


def _invoke_ingest(settings: Settings, key: str, body: bytes) -> Any:
    from functions.ingest.handler import lambda_handler

    put = s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=body)
    event = s3_put_event(settings.landing_bucket, key, len(body), put["ETag"], put.get("VersionId"))
    return lambda_handler(event, LambdaContext("lake-ingest"))


def test_unknown_dataset_is_a_terminal_error_that_fails_the_function(settings: Settings) -> None:
    with pytest.raises(ContractNotFound, match="no contract for dataset 'nosuchdataset'") as info:
        _invoke_ingest(settings, "nosuchdataset/x.csv", b"a,b\n1,2\n")
    assert info.value.terminal


def test_unreadable_and_unsupported_files_are_terminal_and_commit_nothing(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    with pytest.raises(UnreadableFile, match="parquet"):
        _invoke_ingest(settings, f"{name}/broken.parquet", b"PAR1 this is not parquet")
    with pytest.raises(UnreadableFile, match="gzip"):
        _invoke_ingest(settings, f"{name}/broken.csv.gz", b"\x1f\x8b\x08garbage")
    with pytest.raises(UnsupportedFormat, match="unsupported file type 'xlsx'"):
        _invoke_ingest(settings, f"{name}/sheet.xlsx", b"PK")
    table = table_of(settings, name)
    assert table.metadata.snapshots == []


def test_dataset_is_the_first_path_segment(settings: Settings) -> None:
    from lakehouse.errors import BadObjectKey

    with pytest.raises(BadObjectKey, match="upload to <dataset>/<file>"):
        _invoke_ingest(settings, "toplevel.csv", b"a\n1\n")
