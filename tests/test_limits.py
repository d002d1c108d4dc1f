"""Bounded input: SQL, JSON bodies, result shapes, time, and the HTTP server under `lake serve`.

Every violation is a JSON 4xx that names the limit; never a dropped connection, a 5xx or a
traceback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from lake.client import LakeClient
from lakehouse.config import Settings

pytestmark = pytest.mark.integration


def raw_request(url: str, data: bytes, timeout: float = 30) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send raw bytes to the server; its status, headers and JSON body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture()
def small_server(settings: Settings) -> Iterator[tuple[str, Settings]]:
    """`lake serve`'s HTTP layer in process with tight limits (no keys: LAKE_AUTH=none)."""
    from lake.local.serve import make_server

    tight = settings.model_copy(
        update={"request_read_timeout": 0.5, "max_concurrent_requests": 1, "max_request_bytes": 4096}
    )
    server = make_server(0, tight, stop_on_sigterm=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}", tight
    server.shutdown()
    server.server_close()


def test_malformed_content_length_methods_size_and_utf8_get_json_4xx(serve_url: str) -> None:
    for length in ("abc", "-5", "1e3"):
        status, _, body = raw_request(
            serve_url, request_bytes("POST", "/sql", b"{}", {"Content-Length": length})
        )
        assert status == 400 and "Content-Length" in body["message"], (length, body)
    for method in ("PATCH", "OPTIONS", "TRACE"):
        status, headers, body = raw_request(serve_url, request_bytes(method, "/sql"))
        assert status == 405 and body["error"] == "MethodNotAllowed" and "POST" in headers["allow"], method
    big = b"x" * ((8 << 20) + 10)
    status, _, body = raw_request(
        serve_url, request_bytes("POST", "/sql", big, {"Content-Length": str(len(big))})
    )
    assert status == 413 and "LAKE_MAX_REQUEST_BYTES" in body["message"]
    bad = b'{"sql": "SELECT \xff\xfe"}'
    status, _, body = raw_request(
        serve_url, request_bytes("POST", "/sql", bad, {"Content-Length": str(len(bad))})
    )
    assert status == 400 and "UTF-8" in body["message"]


def test_a_deep_body_is_refused_before_authentication(serve_url: str) -> None:
    deep = b'{"sql": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    status, _, body = raw_request(
        serve_url,
        request_bytes(
            "POST", "/sql", deep, {"Content-Length": str(len(deep)), "Content-Type": "application/json"}
        ),
    )
    assert status == 400 and "LAKE_QUERY_MAX_NESTING" in body["message"]  # not 401: no key was looked up


def test_deep_sql_and_nested_results_are_refused_with_the_limit_named(http_client: LakeClient) -> None:
    subqueries = "SELECT 1"
    for _ in range(400):
        subqueries = f"SELECT * FROM ({subqueries})"
    nested_list = "SELECT " + "[" * 3000 + "1" + "]" * 3000
    for sql in (subqueries, nested_list):
        response = http_client.sql(sql)
        assert response.status == 400 and "query_max_nesting" in response.body["message"], response.body
    long = http_client.sql("SELECT 1" + " " * 100_001)
    assert long.status == 400 and "100000" in long.body["message"]
    # Nesting built without deep brackets is caught on the result's shape.
    ctes = ", ".join(f"c{i} AS (SELECT [x] AS x FROM c{i - 1})" for i in range(1, 70))
    deep_result = http_client.sql(f"WITH c0 AS (SELECT 1 AS x), {ctes} SELECT x FROM c69")
    assert deep_result.status == 400 and "nest" in deep_result.body["message"]


def test_time_limits_hold_within_ten_percent(settings: Settings) -> None:
    from lakehouse.errors import QueryLimitExceeded
    from lakehouse.query.engine import run_sql

    tight = settings.model_copy(update={"query_timeout_seconds": 2.0, "query_cache": False})
    run_sql(settings, "SELECT 1")  # the modules a first query imports are not the query's time
    started = time.perf_counter()
    with pytest.raises(QueryLimitExceeded, match="time limit of 2s"):
        run_sql(tight, "SELECT sum(a.range * b.range) FROM range(100000000) a, range(100000000) b")
    assert time.perf_counter() - started < 2.2


def test_the_server_caps_concurrency_and_times_out_slow_bodies(small_server: tuple[str, Settings]) -> None:
    url, _ = small_server
    # A body that never arrives: 408 after the read timeout, and the slot is free again.
    status, _, body = raw_request(
        url, request_bytes("POST", "/sql", b"{", {"Content-Length": "100"}), timeout=10
    )
    assert status == 408 and "LAKE_REQUEST_READ_TIMEOUT" in body["message"]
    # One request holds the only slot (its body is late); the next one is turned away.
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as holder:
        holder.sendall(request_bytes("POST", "/sql", b"", {"Content-Length": "50"}))
        time.sleep(0.1)
        status, headers, body = raw_request(url, request_bytes("GET", "/health/live"))
        assert status == 503 and headers["retry-after"] == "1" and body["error"] == "TooManyRequests"
    time.sleep(0.7)
    assert LakeClient(url).health("live").status == 200
    small = LakeClient(url).request("POST", "/sql", {"sql": "SELECT '" + "x" * 5000 + "'"})
    assert small.status == 413


def test_snapshot_ids_are_strings_too_and_accepted_in_either_form(
    http_client: LakeClient, dataset: Any, upload: Any
) -> None:
    from tests.conftest import SENSOR_CONTRACT

    name = dataset(SENSOR_CONTRACT)
    first = upload(name, "a.csv", b"ts,sensor_id,temp_c,status\n2025-01-01T00:00:00Z,s1,1.5,ok\n")
    upload(name, "b.csv", b"ts,sensor_id,temp_c,status\n2025-01-02T00:00:00Z,s2,2.5,ok\n")
    sid = first["snapshot_id"]
    body = http_client.sql(f"SELECT count(*) FROM lake.{name}").body
    assert body["snapshots_str"] == {f"lake.{name}": str(body["snapshots"][f"lake.{name}"])}
    for as_of in (sid, str(sid)):
        assert http_client.sql(f"SELECT count(*) FROM lake.{name}", as_of=as_of).body["rows"] == [[1]]
    snaps = http_client.snapshots(name).body
    assert snaps["current_snapshot_id_str"] == str(snaps["current_snapshot_id"])
    assert all(s["snapshot_id_str"] == str(s["snapshot_id"]) for s in snaps["snapshots"])
    changes = http_client.changes(name, str(sid)).body
    assert changes["from_snapshot_id_str"] == str(sid) and changes["row_count"] == 1
    assert http_client.sql("SELECT 1", as_of="not a time").status == 400


def test_concurrent_requests_each_get_their_own_answer(http_client: LakeClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: http_client.sql(f"SELECT {i} AS n"), range(16)))
    assert [a.body["rows"] for a in answers] == [[[i]] for i in range(16)]
