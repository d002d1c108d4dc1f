"""POST /ingest/{dataset} and GET /ingest/{id}: small batches over HTTP, stored in the landing
bucket and ingested like any upload (same validation, quarantine, ledger, committer)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, cast

import pytest

from lake.local.events import LambdaContext, function_url_event
from lake.local.serve import deliver
from lakehouse.config import Settings, get_settings
from tests.conftest import SENSOR_CONTRACT

pytestmark = pytest.mark.integration

NDJSON = b'{"ts": "2025-01-01T00:00:00Z", "sensor_id": "a", "temp_c": 1.5, "status": "ok"}\n' * 3


def call(method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    from functions.query.handler import lambda_handler

    event = function_url_event(method, path, body.decode() if body else None, None, headers or {})
    result = lambda_handler(event, cast(Any, LambdaContext("lake-query", timeout_seconds=60)))
    return result["statusCode"], json.loads(result["body"]), result.get("headers") or {}


def test_a_posted_batch_is_stored_ingested_and_reported(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    status, body, _ = call("POST", f"/ingest/{name}", NDJSON, {"content-type": "application/x-ndjson"})
    assert status == 202 and body["status"] == "pending" and body["key"].startswith(f"{name}/_api/")
    assert call("GET", f"/ingest/{body['id']}")[1]["status"] == "pending"
    deliver(settings, settings.landing_bucket, body["key"])  # the bucket's ObjectCreated event
    status, done, _ = call("GET", f"/ingest/{body['id']}")
    assert status == 200 and done["status"] == "committed" and done["report"]["rows_accepted"] == 3

    csv = b"ts,sensor_id,temp_c,status\n2025-01-01T00:00:00Z,b,1.5,ok\nnot-a-time,c,1,ok\n"
    status, body, _ = call("POST", f"/ingest/{name}", csv, {"content-type": "text/csv; charset=utf-8"})
    deliver(settings, settings.landing_bucket, body["key"])
    report = call("GET", f"/ingest/{body['id']}")[1]["report"]
    assert (report["rows_accepted"], report["rows_quarantined"]) == (1, 1)  # the same quarantine


def test_bad_batches_get_a_clear_4xx_and_store_nothing(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    ndjson = {"content-type": "application/x-ndjson"}
    assert call("POST", "/ingest/no_such_dataset", NDJSON, ndjson)[0] == 404
    assert call("POST", f"/ingest/{name}", NDJSON, {"content-type": "application/pdf"})[0] == 400
    assert call("POST", f"/ingest/{name}", b"  \n", ndjson)[0] == 400
    big = b"x" * (settings.ingest_api_max_bytes + 1)
    status, body, _ = call("POST", f"/ingest/{name}", big, ndjson)
    assert status == 413 and body["error"] == "PayloadTooLarge"
    assert call("GET", "/ingest/nope")[0] == 404
    assert call("GET", f"/ingest/{name}.{'0' * 32}")[0] == 404


def test_a_failed_batch_says_why(settings: Settings, dataset: Callable[[str], str]) -> None:
    name = dataset(
        SENSOR_CONTRACT.replace("retention_months: 12", "on_error: reject_file\nmax_bad_fraction: 0")
    )
    bad = b'{"ts": "never", "sensor_id": "a", "temp_c": 1.5, "status": "ok"}\n'
    body = call("POST", f"/ingest/{name}", bad, {"content-type": "application/x-ndjson"})[1]
    with pytest.raises(Exception, match="max_bad_fraction"):
        deliver(settings, settings.landing_bucket, body["key"])
    state = call("GET", f"/ingest/{body['id']}")[1]
    assert (
        state["status"] == "failed"
        and state["error"] == "FileRejected"
        and "max_bad_fraction" in state["reason"]
    )


def test_a_key_past_its_rate_gets_429_with_retry_after(
    monkeypatch: pytest.MonkeyPatch, dataset: Callable[[str], str]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    monkeypatch.setenv("LAKE_INGEST_API_RATE", "0.5")  # bursts of one
    get_settings.cache_clear()
    try:
        ndjson = {"content-type": "application/x-ndjson"}
        assert call("POST", f"/ingest/{name}", NDJSON, ndjson)[0] == 202
        status, body, headers = call("POST", f"/ingest/{name}", NDJSON, ndjson)
        assert status == 429 and body["error"] == "RateLimited" and int(headers["Retry-After"]) >= 1
    finally:
        monkeypatch.delenv("LAKE_INGEST_API_RATE")
        get_settings.cache_clear()


def test_post_over_http_needs_a_write_key(serve_url: str, make_key: Callable[..., str]) -> None:
    def post(key: str) -> int:
        req = urllib.request.Request(
            f"{serve_url}/ingest/sensor_readings",
            data=NDJSON,
            method="POST",
            headers={"authorization": f"Bearer {key}", "content-type": "application/x-ndjson"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    assert post(make_key("read")) == 403
    assert post(make_key("write")) == 202
