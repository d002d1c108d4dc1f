"""``lake serve``: the function URL API on 127.0.0.1, and new landing objects turned into ingest
events, so a plain boto3 or ``aws s3 cp`` upload is ingested as it would be on AWS.

Both sides call the same handlers AWS calls, with the events AWS would send.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from lake.local.events import LambdaContext, function_url_event, s3_put_event
from lakehouse.config import Settings
from lakehouse.errors import LakeError
from lakehouse.storage import s3_client

log = logging.getLogger("lake.serve")


def invoke_ingest(event: dict[str, Any]) -> dict[str, Any]:
    """Call the ingest function with an S3 event, as Lambda would."""
    from functions.ingest.handler import lambda_handler

    context = cast(Any, LambdaContext("lake-ingest", memory_limit_in_mb=3008))
    result: dict[str, Any] = lambda_handler(event, context)
    return result


def deliver(settings: Settings, bucket: str, key: str, dead_letter: bool = True) -> dict[str, Any]:
    """Send the ObjectCreated event of an existing object to the ingest function; its response.

    An event that fails terminally is parked in the dead-letter queue (when one is configured),
    as Lambda does after its retries; ``lake dlq replay`` re-drives it after a fix.
    """
    from lake import dlq

    head = s3_client(settings).head_object(Bucket=bucket, Key=key)
    event = s3_put_event(
        bucket, key, int(head["ContentLength"]), head["ETag"], head.get("VersionId"), settings.region
    )
    try:
        return invoke_ingest(event)
    except LakeError as e:
        if dead_letter and e.terminal and settings.dlq_url:
            dlq.send(settings, event, e)
        raise


# A Lambda execution environment handles one request at a time, and the query function keeps
# per-request state in its module-level resolver (Powertools' ``app.context``): concurrent
# requests (the console sends several at once) must not interleave inside it.
_ONE_AT_A_TIME = threading.Lock()


class _Api(BaseHTTPRequestHandler):
    server_version = "lake"

    def _handle(self) -> None:
        from functions.query.handler import lambda_handler

        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = raw.decode("utf-8", errors="replace") if raw else None
        event = function_url_event(
            self.command,
            parts.path,
            body,
            dict(parse_qsl(parts.query)),
            dict(self.headers.items()),
            self.client_address[0],
        )
        with _ONE_AT_A_TIME:
            result = lambda_handler(event, cast(Any, LambdaContext("lake-query", timeout_seconds=60)))
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self.send_response(int(result.get("statusCode", 200)))
        for name, value in (result.get("headers") or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        log.info("%s %s", self.address_string(), format % args)


class Watcher(threading.Thread):
    """Polls the landing bucket and delivers an event for each new object version."""

    def __init__(self, settings: Settings, interval: float = 2.0) -> None:
        super().__init__(name="lake-watcher", daemon=True)
        self.settings = settings
        self.interval = interval
        self.seen: set[tuple[str, str]] = set()
        self.stop_event = threading.Event()
        self.reports: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []

    def poll(self) -> int:
        """One pass over the bucket; returns how many objects were delivered."""
        s3 = s3_client(self.settings)
        delivered = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.settings.landing_bucket):
            for obj in page.get("Contents", []):
                ident = (obj["Key"], obj["ETag"])
                if ident in self.seen:
                    continue
                self.seen.add(ident)
                delivered += 1
                try:
                    response = deliver(self.settings, self.settings.landing_bucket, obj["Key"])
                    self.reports.extend(response["reports"])
                    for report in response["reports"]:
                        print(json.dumps({"ingested": report}), flush=True)
                except LakeError as e:
                    failure = {"key": obj["Key"], **e.to_dict()}
                    self.failures.append(failure)
                    print(json.dumps({"failed": failure}), flush=True)
                    if not e.terminal:
                        self.seen.discard(ident)  # transient: try again on the next pass
        return delivered

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.poll()
            except Exception as e:  # noqa: BLE001 - keep watching; the store may come back
                log.warning("landing poll failed: %s", e)
            self.stop_event.wait(self.interval)


def make_server(port: int = 0) -> ThreadingHTTPServer:
    """The HTTP server of the query API on 127.0.0.1 (``port`` 0 picks a free one)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Api)
    server.daemon_threads = True
    return server
