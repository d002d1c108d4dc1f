"""``lake demo``: the whole path once, end to end, with a short printed story."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lake.client import LakeClient
from lake.local import stack as localstack
from lake.local.serve import deliver
from lakehouse.config import Settings, get_settings, load_settings
from lakehouse.storage import s3_client


def _say(text: str = "") -> None:
    print(text, flush=True)


def _show(client: LakeClient, title: str, sql: str) -> dict[str, Any]:
    from lake.cli.output import render_table

    _say(f"\n▶ {title}\n  {sql}")
    response = client.sql(sql)
    if not response.ok:
        raise SystemExit(f"query failed: {response.body}")
    _say(render_table(response.body["columns"], response.body["rows"], max_width=70))
    body: dict[str, Any] = response.body
    return body


def _upload_once(settings: Settings, path: Path, key: str) -> bool:
    """Upload a sample unless the landing bucket holds these very bytes under ``key`` already (a
    second ``make demo`` on a running stack then adds nothing). True if it was uploaded."""
    import hashlib

    from botocore.exceptions import ClientError

    s3 = s3_client(settings)
    try:
        etag = s3.head_object(Bucket=settings.landing_bucket, Key=key)["ETag"].strip('"')
    except ClientError:
        etag = None
    if etag == hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest():
        return False
    s3.upload_file(str(path), settings.landing_bucket, key)
    return True


def run_demo(settings: Settings, samples: Path) -> int:
    _say("Lake demo: files land in a bucket, become Iceberg tables, and are queried with SQL.\n")
    state = localstack.up(settings)
    get_settings.cache_clear()
    settings = load_settings(home=settings.home)
    _say(
        f"1. Local stack {'reused' if state['reused'] else 'started'}: {state['kind']} S3 endpoint at "
        f"{state['endpoint']}, SQLite catalog {state['catalog_uri']}"
    )

    uploads = [
        (samples / "sensor_readings.csv", "sensor_readings"),
        (samples / "app_events.ndjson", "app_events"),
    ]
    _say(
        "\n2. Uploading the samples to the landing bucket; each upload is an ObjectCreated event for the "
        "ingest function:"
    )
    for path, dataset in uploads:
        key = f"{dataset}/{path.name}"
        _upload_once(settings, path, key)
        for r in deliver(settings, settings.landing_bucket, key)["reports"]:
            if r["duplicate"]:
                _say(f"   {key}: already ingested (snapshot {r['snapshot_id']}), nothing added")
            else:
                _say(
                    f"   {key}: {r['rows_accepted']} rows accepted, {r['rows_quarantined']} quarantined, "
                    f"{r['files_written']} files, one commit (snapshot {r['snapshot_id']}) in {r['seconds']}s"
                )

    key = f"app_events/{uploads[1][0].name}"
    again = deliver(settings, settings.landing_bucket, key)["reports"][0]
    _say(
        f"\n3. The same event delivered again (S3 delivers at least once): duplicate={again['duplicate']}, "
        f"{again['rows_accepted']} rows added."
    )

    client = LakeClient()
    _say("\n4. Queries through the query function (POST /sql):")
    _show(
        client,
        "Readings per month (one partition per month)",
        "SELECT strftime(ts, '%Y-%m') AS month, count(*) AS readings, round(avg(temp_c), 1) AS avg_temp_c "
        "FROM lake.sensor_readings GROUP BY 1 ORDER BY 1",
    )
    _show(
        client,
        "Events by type and platform",
        "SELECT event_type, platform, count(*) AS events, round(sum(amount), 2) AS revenue "
        "FROM lake.app_events GROUP BY ALL ORDER BY events DESC LIMIT 8",
    )
    _show(
        client,
        "Quarantined rows: row number, column and reason",
        'SELECT row_number, "column", rule, reason FROM lake.app_events__quarantine ORDER BY row_number',
    )
    plan = client.sql(
        "SELECT count(*) FROM lake.sensor_readings WHERE ts >= '2026-03-01' AND ts < '2026-04-01'"
    ).body
    files = plan["stats"]["files_read"]  # what the query function opened (its response's stats)
    described = client.describe("sensor_readings").body
    _say(
        f"\n5. A one-month filter reads only that month: {files} of {described['file_count']} data files "
        f"(partition pruning), {plan['rows'][0][0]} rows."
    )

    refused = client.sql("SELECT * FROM read_csv('/etc/passwd')")
    _say(
        f"\n6. User SQL is read-only: reading a local file gets HTTP {refused.status}: "
        f"{refused.body['message']}"
    )

    _say(
        f"\n7. lake.sensor_readings: {described['rows']} rows, {described['file_count']} files, "
        "partitioned by "
        + ", ".join(f"{p['transform']}({p['source']})" for p in described["partition_spec"])
        + f", {len(described['snapshots'])} snapshot(s); metadata at {described['metadata_location']}"
    )
    from lakehouse.maintenance import apply_retention

    for r in apply_retention(settings, datasets=["sensor_readings"]):
        if r.files_dropped:
            _say(
                f"\n8. Maintenance: retention kept the last 12 months of {r.table}: dropped "
                f"{r.rows_dropped} rows before {r.cutoff[:10]} ({r.files_dropped} files, "
                f"{r.files_rewritten} rewritten: metadata only)."
            )
        else:
            _say(f"\n8. Maintenance: nothing in {r.table} is older than 12 months (cutoff {r.cutoff[:10]}).")
    _vectors_step(settings, samples, client)
    _takeout_step(settings, samples, client)
    _say(
        '\nDone. Try: lake tables | lake describe sensor_readings | lake sql "SELECT ..." | lake serve'
        " | lake down (the store is in memory: `lake down` discards it)"
    )
    return 0


def _takeout_step(settings: Settings, samples: Path, client: LakeClient) -> None:
    """10. A Google Takeout export; its Keep notes get vectors from the static embedder, which is
    prepared here once (so no later command sits silent while it is distilled)."""
    import time

    from lake.cli.output import render_table
    from lake.cli.takeout import summary
    from lakehouse.errors import EmbedderUnavailable
    from lakehouse.takeout import ingest_archive
    from lakehouse.vectors.embedders import get_embedder, static_ready

    path = samples / "takeout-20250101T000000Z-001.zip"
    _say(f"\n10. A Google Takeout export ({path.name}): every product its own table.")
    if not static_ready(settings):
        _say(
            "   Preparing the static embedder once (distilled from MiniLM: about 20 s on a quiet 2-core "
            "machine, a few minutes under load) ...",
        )
        started = time.monotonic()
        try:
            get_embedder("static", settings)
        except EmbedderUnavailable as e:
            _say(f"   the static embedder is unavailable ({e}); notes are stored without vectors")
        else:
            _say(f"   ready in {time.monotonic() - started:.0f} s; later runs load it in well under a second")
    key = f"takeout/{path.name}"
    _upload_once(settings, path, key)
    for line in summary(ingest_archive(settings, settings.landing_bucket, key)):
        _say(f"   {line}")
    question = "what did I need from the shop"
    found = client.search("takeout_keep", text=question, k=2)
    if found.ok:
        _say(f"\n▶ lake search takeout_keep {question!r} -k 2")
        cols = ["title", "text", "_score"]
        body = found.body
        rows = [[row[body["columns"].index(c)] for c in cols] for row in body["rows"]]
        _say(render_table(cols, rows, max_width=70))


def _vectors_step(settings: Settings, samples: Path, client: LakeClient) -> None:
    """9. Support tickets get MiniLM vectors in Lance beside their table, then hybrid search."""
    from lake.cli.output import render_table
    from lakehouse.errors import EmbedderUnavailable

    path = samples / "support_tickets.ndjson"
    key = f"support_tickets/{path.name}"
    _upload_once(settings, path, key)
    try:
        report = deliver(settings, settings.landing_bucket, key)["reports"][0]
    except EmbedderUnavailable as e:
        _say(f"\n9. Vectors skipped: {e}")
        return
    if report["duplicate"]:
        _say(f"\n9. Vectors: {key}: already ingested (snapshot {report['snapshot_id']}), nothing added.")
    else:
        _say(
            f"\n9. Vectors: {key}: {report['rows_accepted']} rows in lake.support_tickets and "
            f"{report['vectors_written'] or 0} MiniLM vectors under the same _row_id in "
            f"vectors/support_tickets.lance (Lance version {report['lance_version']}, recorded in the "
            f"table's snapshot {report['snapshot_id']})."
        )
    for text, mode in (("my screen broke when it fell", "hybrid"), ("INV-20931", "text")):
        found = client.search("support_tickets", text=text, k=3, mode=mode).body
        _say(f"\n▶ POST /search {{text: {text!r}, mode: {mode}, k: 3}}")
        cols = ["ticket_id", "product", "body", "_score"]
        rows = [[row[found["columns"].index(c)] for c in cols] for row in found["rows"]]
        _say(render_table(cols, rows, max_width=70))
