"""Takeout archives end to end: a synthetic export uploaded to the local S3 endpoint, ingested by
the ingest function, counted per product through the query API; safety cases; idempotency and
member ranges; agreement with the PyPI package google-takeout-parser."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lake.local.serve import deliver
from lakehouse.config import Settings
from lakehouse.errors import ArchiveTooLarge, ArchiveUnreadable
from lakehouse.storage import s3_client
from lakehouse.takeout import ingest_archive
from lakehouse.takeout.products import PRODUCTS, relative, route
from tests import takeout_synth as synth

pytestmark = pytest.mark.integration


def put(settings: Settings, data: bytes, name: str = "export.zip") -> str:
    key = f"takeout/{uuid.uuid4().hex[:10]}/{name}"
    s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=data)
    return key


def count(client: Any, table: str, archive: str, where: str = "") -> int:
    extra = f" AND {where}" if where else ""
    body = client.sql(f"SELECT count(*) FROM lake.{table} WHERE archive = '{archive}'{extra}").body
    return int(body["rows"][0][0])


def counts(client: Any, archive: str, tables: list[str]) -> dict[str, int]:
    """Rows of ``archive`` in each table, in one query."""
    sql = " UNION ALL ".join(
        f"SELECT '{t}' AS t, count(*) AS n FROM lake.{t} WHERE archive = '{archive}'" for t in tables
    )
    return {t: int(n) for t, n in client.sql(sql).body["rows"]}


def members_of(client: Any, archive: str) -> dict[str, dict[str, Any]]:
    body = client.sql(
        "SELECT member, status, rule, reason, product, sha256, blob_key, rows, rows_quarantined, size "
        f"FROM lake.takeout_members WHERE archive = '{archive}'"
    ).body
    return {r[0]: dict(zip(body["columns"], r, strict=True)) for r in body["rows"]}


@pytest.fixture(scope="module")
def export() -> synth.Export:
    return synth.build()


@pytest.fixture(scope="module")
def ingested(stack: dict[str, Any], export: synth.Export) -> dict[str, Any]:
    """The synthetic export as a zip, uploaded and delivered to the ingest function once."""
    from lakehouse.config import load_settings

    settings = load_settings()
    key = put(settings, synth.to_zip(export.members))
    report = deliver(settings, settings.landing_bucket, key)["reports"][0]
    return {"key": key, "report": report, "archive": f"s3://{settings.landing_bucket}/{key}"}


def test_every_product_lands_with_exact_counts(
    ingested: dict[str, Any], export: synth.Export, client: Any
) -> None:
    report, archive = ingested["report"], ingested["archive"]
    assert report["duplicate"] is False
    assert counts(client, archive, list(export.accepted)) == export.accepted
    for table, rows in export.accepted.items():
        assert report["products"][table]["rows"] == rows, table
        assert report["products"][table]["rows_quarantined"] == export.quarantined_rows.get(table, 0), table
    assert count(client, "takeout_places", archive, "kind = 'place_visit'") == export.place_visits
    assert report["members"] == len(export.members) + 1  # + the member with a broken CRC
    assert report["members_quarantined"] == len(export.quarantined_members) + 1
    assert report["members_stored"] == len(export.stored)


def test_keep_notes_and_activity_titles_get_vectors_and_are_searchable(
    ingested: dict[str, Any], client: Any
) -> None:
    from lakehouse.catalog import get_catalog
    from lakehouse.config import load_settings
    from lakehouse.contracts.model import load_contract
    from lakehouse.vectors.store import open_table

    settings = load_settings()
    assert ingested["report"]["vectors"] == {"takeout_keep": "indexed", "takeout_activity": "indexed"}
    for name in ("takeout_keep", "takeout_activity"):
        table = get_catalog(settings).load_table(f"{settings.namespace}.{name}")
        held = table.scan(row_filter=f"archive == '{ingested['archive']}'", selected_fields=("_row_id",))
        ids = set(held.to_arrow()["_row_id"].to_pylist())
        lance = open_table(settings, load_contract(settings, name))
        assert lance is not None
        assert ids and None not in ids and ids <= set(lance.to_arrow()["_row_id"].to_pylist()), name
    found = client.search("takeout_keep", text="groceries to buy", k=1, mode="vector")
    assert found.ok, found.body
    assert "milk" in found.body["rows"][0][found.body["columns"].index("text")]


def test_bad_records_are_quarantined_with_member_and_reason(ingested: dict[str, Any], client: Any) -> None:
    archive = ingested["archive"]
    body = client.sql(
        'SELECT source_uri, row_number, "column", rule, reason FROM lake.takeout_location__quarantine '
        f"WHERE source_uri LIKE '{archive}#%'"
    ).body
    assert body["rows"] == [
        [
            f"{archive}#Takeout/Location History/Records.json",
            3,
            "lat",
            "type",
            "lat: '\"abc\"' is not a valid double",
        ]
    ] or (body["rows"][0][:4] == [f"{archive}#Takeout/Location History/Records.json", 3, "lat", "type"])
    chrome = client.sql(
        'SELECT row_number, "column", rule FROM lake.takeout_chrome__quarantine '
        f"WHERE source_uri = '{archive}#Takeout/Chrome/History.json'"
    ).body["rows"]
    assert chrome == [[14, "url", "required"]]


def test_every_member_is_accounted_for_and_kept(
    settings: Settings, ingested: dict[str, Any], export: synth.Export, client: Any
) -> None:
    import hashlib

    members = members_of(client, ingested["archive"])
    assert set(members) == set(export.members) | {synth.CORRUPT_MEMBER}
    s3 = s3_client(settings)
    for path, content in export.members.items():
        row = members[path]
        if path in export.quarantined_members:
            assert row["status"] == "quarantined" and row["rule"] == export.quarantined_members[path], row
            assert path in row["reason"]
        elif path in export.stored:
            assert row["status"] == "stored" and row["product"] is None, row
        else:
            assert row["status"] == "parsed" and row["product"] == route(path)[0].table, row  # type: ignore[index]
        # Parsed, stored and unparseable members all keep their bytes, content-addressed.
        sha = hashlib.sha256(content).hexdigest()
        assert row["sha256"] == sha and row["size"] == len(content)
        assert row["blob_key"] == f"s3://{settings.warehouse_bucket}/blobs/sha256/{sha[:2]}/{sha}"
        blob = s3.get_object(Bucket=settings.warehouse_bucket, Key=row["blob_key"].split("/", 3)[3])
        assert blob["Body"].read() == content
    corrupt = members[synth.CORRUPT_MEMBER]
    assert (corrupt["status"], corrupt["rule"], corrupt["blob_key"]) == ("quarantined", "corrupt", None)
    assert "corrupt" in corrupt["reason"] and synth.CORRUPT_MEMBER in corrupt["reason"]
    nested = members["Takeout/Drive/backup.zip"]
    assert nested["rule"] == "nested_archive" and nested["blob_key"]


def test_values_and_variants_are_normalised(ingested: dict[str, Any], client: Any) -> None:
    archive = ingested["archive"]
    rows = client.sql(
        "SELECT member, min(time) >= '2018-01-01', max(time) < '2019-01-01', count(activity), "
        "bool_and(lat BETWEEN -90 AND 90) FROM lake.takeout_location "
        f"WHERE archive = '{archive}' GROUP BY 1 ORDER BY 1"
    ).body["rows"]
    assert rows == [
        ["Takeout/Location History/Location History.json", True, True, 40, True],
        ["Takeout/Location History/Records.json", True, False, 59, True],
    ]
    keep = client.sql(
        "SELECT title, text, labels, edited_time > created_time FROM lake.takeout_keep "
        f"WHERE archive = '{archive}' AND title = 'List 1'"
    ).body["rows"]
    assert keep == [["List 1", "milk\neggs", "shopping, home", True]]
    kinds = client.sql(
        f"SELECT kind, count(*), count(channel_name) FROM lake.takeout_youtube WHERE archive = '{archive}' "
        "GROUP BY 1 ORDER BY 1"
    ).body["rows"]
    assert kinds == [["search", 13, 0], ["watch", 26, 16]]


def test_html_my_activity_lands_like_json(
    ingested: dict[str, Any], export: synth.Export, client: Any
) -> None:
    """MyActivity.html (and split MyActivity-2.html) cells become rows of the same table: title
    and link, product, products and details, the date line in UTC whatever its zone."""
    archive = ingested["archive"]
    html = client.sql(
        "SELECT member, count(*), count(url), count(details), min(products) FROM lake.takeout_activity "
        f"WHERE archive = '{archive}' AND member LIKE '%.html' GROUP BY 1 ORDER BY 1"
    ).body["rows"]
    assert html == [
        ["Takeout/My Activity/Chrome/MyActivity-2.html", 2, 2, 0, "Chrome"],
        ["Takeout/My Activity/Chrome/MyActivity.html", 3, 2, 1, "Chrome"],
        ["Takeout/My Activity/Search/MyActivity.html", 6, 6, 0, "Search"],
    ]
    assert sum(r[1] for r in html) == export.html_activity
    one = client.sql(
        "SELECT product, title, url, details FROM lake.takeout_activity "
        f"WHERE archive = '{archive}' AND title = 'Visited page 0'"
    ).body["rows"]
    assert one == [["Chrome", "Visited page 0", "https://example.org/0", "From Google Ads"]]
    bad = client.sql(
        'SELECT row_number, "column", rule FROM lake.takeout_activity__quarantine '
        f"WHERE source_uri = '{archive}#Takeout/My Activity/Search/MyActivity.html'"
    ).body["rows"]
    assert bad == [[2, None, "parse"]]  # the cell without a date
    channels = client.sql(
        "SELECT count(*), count(channel_url) FROM lake.takeout_youtube "
        f"WHERE archive = '{archive}' AND member LIKE '%.html'"
    ).body["rows"]
    assert channels == [[4, 4]]


def test_a_second_delivery_adds_nothing(
    settings: Settings, ingested: dict[str, Any], export: synth.Export, client: Any
) -> None:
    again = deliver(settings, settings.landing_bucket, ingested["key"])["reports"][0]
    assert again["duplicate"] is True and again["rows"] == 0
    assert count(client, "takeout_activity", ingested["archive"]) == export.accepted["takeout_activity"]
    assert len(members_of(client, ingested["archive"])) == len(export.members) + 1  # + the corrupt one


def test_the_tgz_of_the_same_export_gives_the_same_counts(
    settings: Settings, export: synth.Export, client: Any
) -> None:
    key = put(settings, synth.to_tgz(export.members), "export.tgz")
    report = deliver(settings, settings.landing_bucket, key)["reports"][0]
    archive = f"s3://{settings.landing_bucket}/{key}"
    assert report["kind"] == "tar"
    assert counts(client, archive, list(export.accepted)) == export.accepted
    assert report["members_quarantined"] == len(export.quarantined_members)


def test_large_archives_fan_out_through_the_queue_to_the_takeout_function(
    settings: Settings, export: synth.Export, client: Any
) -> None:
    """Ranges are queued on SQS (the local endpoint serves it); the Takeout function ingests them,
    and a message delivered twice adds nothing."""
    from functions.takeout.handler import lambda_handler
    from lake.local.events import LambdaContext
    from lakehouse.catalog import get_catalog
    from lakehouse.storage import sqs_client

    sqs = sqs_client(settings)
    url = sqs.create_queue(QueueName=f"takeout-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    key = put(settings, synth.to_zip(export.members, corrupt=False))
    archive = f"s3://{settings.landing_bucket}/{key}"
    total = sum(len(v) for v in export.members.values())
    fan = settings.model_copy(update={"takeout_range_bytes": total // 2 + 1, "takeout_queue_url": url})
    report = ingest_archive(fan, settings.landing_bucket, key)
    assert report.queued >= 2 and report.rows == 0 and report.members == 0
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        messages += batch
    assert len(messages) == report.queued
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "0",
                "SenderId": "x",
                "ApproximateFirstReceiveTimestamp": "0",
            },
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:takeout",
            "awsRegion": "us-east-1",
        }
        for m in messages + messages[:1]  # the first message arrives twice
    ]
    result = lambda_handler({"Records": records}, LambdaContext("lake-takeout"))  # type: ignore[arg-type]
    assert result == {"batchItemFailures": []}
    assert counts(client, archive, list(export.accepted)) == export.accepted
    assert len(members_of(client, archive)) == len(export.members)
    # One commit per range to the ledger, at most one per range to each product table.
    catalog = get_catalog(settings)

    def ranges_of(table: str) -> list[str]:
        return [
            s.summary["lake.takeout.range"]
            for s in catalog.load_table(f"{settings.namespace}.{table}").metadata.snapshots
            if s.summary and s.summary.get("lake.takeout.archive") == archive
        ]

    ledger, keep = ranges_of("takeout_members"), ranges_of("takeout_keep")
    assert len(ledger) == len(set(ledger)) == report.queued
    assert len(keep) == len(set(keep)) and set(keep) <= set(ledger)


def _ledger_ranges(settings: Settings, archive: str) -> list[str]:
    from lakehouse.catalog import get_catalog

    table = get_catalog(settings).load_table(f"{settings.namespace}.takeout_members")
    return [
        s.summary["lake.takeout.range"]
        for s in table.metadata.snapshots
        if s.summary and s.summary.get("lake.takeout.archive") == archive
    ]


def test_a_tgz_is_committed_in_chunks_and_resumes_after_the_last_committed_one(
    settings: Settings, export: synth.Export, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tgz is streamed in chunks of about LAKE_TAKEOUT_RANGE_BYTES, each committed as a range.
    When an invocation dies after a chunk, the next delivery reads past the committed chunks
    (no member is stored, parsed or counted twice) and goes on from there."""
    from lakehouse.errors import StoreUnavailable
    from lakehouse.takeout import pipeline

    key = put(settings, synth.to_tgz(export.members), "export.tgz")
    archive = f"s3://{settings.landing_bucket}/{key}"
    total = sum(len(v) for v in export.members.values())
    chunked = settings.model_copy(update={"takeout_range_bytes": total // 3 + 1})
    commit = pipeline._Range.commit
    calls: list[str] = []

    def dies_at_the_second_chunk(self: Any, report: Any, properties: Any = None) -> None:
        calls.append(self.source.key)
        if len(calls) == 2:
            raise StoreUnavailable("the invocation ran out of time")
        commit(self, report, properties)

    monkeypatch.setattr(pipeline._Range, "commit", dies_at_the_second_chunk)
    with pytest.raises(StoreUnavailable):
        ingest_archive(chunked, settings.landing_bucket, key)
    monkeypatch.setattr(pipeline._Range, "commit", commit)
    first = _ledger_ranges(settings, archive)
    assert first == [calls[0]] and calls[0].endswith("#members=0-" + calls[1].rsplit("=")[1].split("-")[0])

    report = ingest_archive(chunked, settings.landing_bucket, key)
    assert (
        report.duplicate is False
        and len(report.ranges) >= 2
        and calls[0].split("/")[-1] not in [r.split("/")[-1] for r in report.ranges]
    )
    assert counts(client, archive, list(export.accepted)) == export.accepted
    assert (
        count(client, "takeout_members", archive) == len(members_of(client, archive)) == len(export.members)
    )
    first_chunk = count(
        client, "takeout_members", archive, f"member_index < {report.ranges[0].rsplit('=')[1].split('-')[0]}"
    )
    assert 0 < first_chunk and report.members == len(export.members) - first_chunk
    ledger = _ledger_ranges(settings, archive)
    assert len(ledger) == len(set(ledger)) == 1 + len(report.ranges)
    again = ingest_archive(chunked, settings.landing_bucket, key)
    assert again.duplicate is True and again.rows == 0
    assert again.ranges == sorted(ledger, key=lambda r: int(r.rsplit("=")[1].split("-")[0]))


def _expire_all_but_the_newest(settings: Settings) -> None:
    """Expire every snapshot of the Takeout tables but each one's newest (after a year)."""
    import datetime as dt

    from lakehouse.catalog import get_catalog
    from lakehouse.tables.gc import expire_snapshots

    catalog = get_catalog(settings)
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    for name in catalog.list_tables(settings.namespace):
        if name[-1].startswith("takeout_"):
            table = catalog.load_table(name)
            expire_snapshots(settings, table, now=far, retention=dt.timedelta(0), min_snapshots=1)


@pytest.mark.parametrize("shape", ["zip", "tgz"])
def test_a_redelivery_after_every_snapshot_expired_adds_nothing(
    shape: str, settings: Settings, export: synth.Export, client: Any
) -> None:
    data = synth.to_zip(export.members) if shape == "zip" else synth.to_tgz(export.members)
    key = put(settings, data, f"export.{shape}")
    archive = f"s3://{settings.landing_bucket}/{key}"
    total = sum(len(v) for v in export.members.values())
    chunked = settings.model_copy(update={"takeout_range_bytes": total // 2 + 1})  # tgz: two chunks
    first = ingest_archive(chunked, settings.landing_bucket, key)
    assert not first.duplicate and first.rows > 0
    # Another archive commits after it, so none of its snapshots is any table's newest.
    ingest_archive(settings, settings.landing_bucket, put(settings, _zip([("a.txt", b"x")])))
    _expire_all_but_the_newest(settings)
    assert _ledger_ranges(settings, archive) == []  # the snapshot summaries no longer know it
    again = ingest_archive(chunked, settings.landing_bucket, key)
    assert again.duplicate is True and again.rows == 0 and again.members == 0
    assert counts(client, archive, list(export.accepted)) == export.accepted


def test_an_old_version_of_an_archive_is_read_as_it_was_or_not_at_all(settings: Settings) -> None:
    from lakehouse.errors import SourceVersionGone

    s3 = s3_client(settings)
    key = f"takeout/{uuid.uuid4().hex[:10]}/export.zip"
    two = _zip([("a.txt", b"1"), ("b.txt", b"2")])
    old = s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=two)
    s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=_zip([("c.txt", b"3")]))
    report = ingest_archive(settings, settings.landing_bucket, key, old["VersionId"])
    assert report.version == old["VersionId"] and report.members == 2  # v1's members, not v2's one
    gone = s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=_zip([("d.txt", b"4")]))
    s3.delete_object(Bucket=settings.landing_bucket, Key=key, VersionId=gone["VersionId"])
    with pytest.raises(SourceVersionGone):
        ingest_archive(settings, settings.landing_bucket, key, gone["VersionId"])


def test_a_tgz_goes_to_the_takeout_function_which_queues_the_rest_before_its_time_runs_out(
    settings: Settings, export: synth.Export, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import time

    from functions.takeout.handler import lambda_handler
    from lake.local.events import LambdaContext
    from lakehouse.config import get_settings
    from lakehouse.storage import sqs_client
    from lakehouse.takeout import ingest_range_message

    sqs = sqs_client(settings)
    url = sqs.create_queue(QueueName=f"takeout-tgz-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    key = put(settings, synth.to_tgz(export.members), "export.tgz")
    archive = f"s3://{settings.landing_bucket}/{key}"
    total = sum(len(v) for v in export.members.values())
    fan = settings.model_copy(update={"takeout_range_bytes": total // 3 + 1, "takeout_queue_url": url})

    def receive() -> dict[str, Any]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        assert len(messages) == 1
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        return messages[0]

    handed = ingest_archive(fan, settings.landing_bucket, key)  # the ingest function
    assert handed.queued == 1 and handed.rows == 0 and handed.ranges == []
    message = receive()
    assert json.loads(message["Body"])["start"] == 0 and json.loads(message["Body"])["end"] == -1
    # An invocation whose time is up commits the chunk it is in, then queues the rest.
    part = ingest_range_message(fan, message["Body"], deadline=time.monotonic())
    assert part.queued == 1 and len(part.ranges) == 1 and part.next_member and part.rows > 0
    message = receive()
    assert json.loads(message["Body"])["start"] == part.next_member
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "0",
            "SenderId": "x",
            "ApproximateFirstReceiveTimestamp": "0",
        },
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:takeout",
        "awsRegion": "us-east-1",
    }
    monkeypatch.setenv("LAKE_TAKEOUT_RANGE_BYTES", str(fan.takeout_range_bytes))
    monkeypatch.setenv("LAKE_TAKEOUT_QUEUE_URL", url)
    get_settings.cache_clear()
    try:
        result = lambda_handler({"Records": [record]}, LambdaContext("lake-takeout"))  # type: ignore[arg-type]
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert result == {"batchItemFailures": []}
    assert counts(client, archive, list(export.accepted)) == export.accepted
    assert len(members_of(client, archive)) == len(export.members)
    assert not sqs.receive_message(QueueUrl=url).get("Messages")  # done: nothing more queued
    assert ingest_archive(fan, settings.landing_bucket, key).duplicate is True  # a redelivered event


# --- safety -----------------------------------------------------------------------------------


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in entries:
            z.writestr(info, data)
    return buf.getvalue()


def _rules(settings: Settings, data: bytes, name: str = "x.zip", **limits: Any) -> dict[str, dict[str, Any]]:
    key = put(settings, data, name)
    s = settings.model_copy(update=limits) if limits else settings
    report = ingest_archive(s, settings.landing_bucket, key)
    return {m["member"]: m for m in report.quarantined_members}


def test_path_traversal_and_absolute_paths_are_quarantined_not_extracted(settings: Settings) -> None:
    good = (
        b'{"color": "DEFAULT", "title": "ok", "textContent": "x", "createdTimestampUsec": 1600000000000000}'
    )
    data = _zip(
        [
            ("../../etc/Keep/evil.json", good),
            ("/abs/Keep/evil.json", good),
            ("C:/Keep/x.json", good),
            ("Takeout/Keep/ok.json", good),
        ]
    )
    rules = _rules(settings, data)
    assert {m: r["rule"] for m, r in rules.items()} == {
        "../../etc/Keep/evil.json": "path",
        "/abs/Keep/evil.json": "path",
        "C:/Keep/x.json": "path",
    }
    assert "traverses" in rules["../../etc/Keep/evil.json"]["reason"]
    assert "absolute" in rules["/abs/Keep/evil.json"]["reason"]


def test_symlinks_are_quarantined(settings: Settings) -> None:
    link = zipfile.ZipInfo("Takeout/Keep/link.json")
    link.external_attr = 0o120777 << 16
    data = _zip([(link, b"/etc/passwd")])
    assert _rules(settings, data)["Takeout/Keep/link.json"]["rule"] == "symlink"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        sym = tarfile.TarInfo("Takeout/Keep/link.json")
        sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(sym)
        hard = tarfile.TarInfo("Takeout/Keep/hard.json")
        hard.type, hard.linkname = tarfile.LNKTYPE, "Takeout/Keep/link.json"
        tar.addfile(hard)
        evil = tarfile.TarInfo("../../Keep/evil.json")
        evil.size = 2
        tar.addfile(evil, io.BytesIO(b"{}"))
    rules = _rules(settings, buf.getvalue(), "x.tgz")
    assert rules["Takeout/Keep/link.json"]["rule"] == "symlink"
    assert rules["Takeout/Keep/hard.json"]["rule"] == "special"
    assert rules["../../Keep/evil.json"]["rule"] == "path"
    # A tgz is a stream: its total is counted as it goes, and past the limit nothing is committed.
    key = put(settings, synth.to_tgz({f"Takeout/Keep/{i}.json": b"{}" * 1000 for i in range(5)}), "big.tgz")
    small = settings.model_copy(update={"takeout_max_total_bytes": 5000})
    with pytest.raises(ArchiveTooLarge, match="LAKE_TAKEOUT_MAX_TOTAL_BYTES"):
        ingest_archive(small, settings.landing_bucket, key)


def test_encrypted_members_are_quarantined(settings: Settings) -> None:
    data = synth.set_zip_flag(_zip([("Takeout/Keep/secret.json", b"{}")]), "Takeout/Keep/secret.json", 0x1)
    rules = _rules(settings, data)
    assert rules["Takeout/Keep/secret.json"]["rule"] == "encrypted"


def test_zip_bombs_are_refused_by_ratio_and_by_total_size(settings: Settings, client: Any) -> None:
    bomb = b"\0" * (8 << 20)  # 8 MiB of zeros deflate to ~8 KiB: ratio ~1000
    data = _zip([("Takeout/Keep/bomb.json", bomb), ("Takeout/Keep/fine.json", b"{}")])
    rules = _rules(settings, data)
    assert rules["Takeout/Keep/bomb.json"]["rule"] == "ratio"
    assert "zip bomb" in rules["Takeout/Keep/bomb.json"]["reason"]
    key = put(settings, data)
    with pytest.raises(ArchiveTooLarge, match="LAKE_TAKEOUT_MAX_TOTAL_BYTES"):
        ingest_archive(
            settings.model_copy(update={"takeout_max_total_bytes": 1 << 20}), settings.landing_bucket, key
        )
    assert members_of(client, f"s3://{settings.landing_bucket}/{key}") == {}  # nothing committed


def test_nested_archives_are_kept_but_not_expanded(settings: Settings) -> None:
    inner = _zip([("Takeout/Keep/inner.json", b"{}")])
    key = put(settings, _zip([("Takeout/Drive/inner.zip", inner)]))
    report = ingest_archive(settings, settings.landing_bucket, key)
    assert report.members == 1 and report.members_stored == 1 and report.rows == 0


def test_corrupt_and_unreadable_archives(settings: Settings) -> None:
    key = put(settings, b"PK\x03\x04 this is no zip at all")
    with pytest.raises(ArchiveUnreadable, match="not a readable zip"):
        ingest_archive(settings, settings.landing_bucket, key)
    key = put(settings, b"\x1f\x8b\x08 broken gzip", "x.tgz")
    with pytest.raises(ArchiveUnreadable):
        ingest_archive(settings, settings.landing_bucket, key)
    rules = _rules(settings, synth.to_zip({"Takeout/Keep/a.json": b"{}"}))
    assert rules[synth.CORRUPT_MEMBER]["rule"] == "corrupt"


# --- google-takeout-parser ------------------------------------------------------------------


def test_counts_agree_with_google_takeout_parser(
    tmp_path: Path, ingested: dict[str, Any], export: synth.Export, client: Any
) -> None:
    """google-takeout-parser on the same files (the members Lake parsed) yields the same rows."""
    from google_takeout_parser import path_dispatch as gtp
    from google_takeout_parser.locales.en import HANDLER_MAP

    members = members_of(client, ingested["archive"])
    root = tmp_path / "Takeout"
    for path, content in export.members.items():
        if members[path]["status"] == "parsed":
            target = root / relative(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    parser = gtp.TakeoutParser(root, handlers=[HANDLER_MAP], warn_exceptions=False, error_policy="drop")
    theirs: dict[str, int] = {p.table: 0 for p in PRODUCTS}
    for path, handler in parser.dispatch_map().items():
        table = route("Takeout/" + path.relative_to(root).as_posix())[0].table  # type: ignore[index]
        theirs[table] += sum(1 for item in handler(path) if not isinstance(item, Exception))
    ours = counts(client, ingested["archive"], [p.table for p in PRODUCTS])
    # google-takeout-parser reads place visits only, not activity segments.
    ours["takeout_places"] = count(client, "takeout_places", ingested["archive"], "kind = 'place_visit'")
    assert theirs == ours
    assert all(v > 0 for v in ours.values())


@pytest.mark.parametrize("size", [1_000, (8 << 20) + 1])  # one Arrow PUT; boto3's multipart upload
def test_blobs_are_stored_once_under_their_content_address(settings: Settings, size: int) -> None:
    import hashlib

    from lakehouse.takeout.blobs import blob_key, put_blob, spool

    content = os.urandom(size)
    data, sha, spooled = spool(io.BytesIO(content))
    with data:
        assert spooled == size and sha == hashlib.sha256(content).hexdigest()
        uri, new = put_blob(settings, data, sha, size)
        assert new and uri == f"s3://{settings.warehouse_bucket}/{blob_key(sha)}"
        assert data.read() == content  # the spool is left readable, at its start, for the parser
        again = put_blob(settings, data, sha, size)
        assert again == (uri, False)
    stored = s3_client(settings).get_object(Bucket=settings.warehouse_bucket, Key=blob_key(sha))
    assert stored["Body"].read() == content
