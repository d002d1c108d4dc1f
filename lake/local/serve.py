"""``lake serve``: the function URL API on 127.0.0.1, and new landing objects turned into ingest
events, so a plain boto3 or ``aws s3 cp`` upload is ingested as it would be on AWS.

Both sides call the same handlers AWS calls, with the events AWS would send.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler
from werkzeug.serving import make_server as werkzeug_server

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


def deliver(
    settings: Settings,
    bucket: str,
    key: str,
    dead_letter: bool = True,
    version_id: str | None = None,
    etag: str | None = None,
    size: int | None = None,
) -> dict[str, Any]:
    """Send the ObjectCreated event of an existing object to the ingest function; its response.

    The event names ``version_id``/``etag`` when given (the version a watcher saw), else the
    object's current version. An event that fails terminally is parked in the dead-letter queue
    (when one is configured), as Lambda does after its retries; ``lake dlq replay`` re-drives it.
    """
    from lake import dlq

    if etag is None or size is None:
        head = s3_client(settings).head_object(
            Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {})
        )
        etag, size, version_id = head["ETag"], int(head["ContentLength"]), head.get("VersionId")
    event = s3_put_event(bucket, key, size, etag, version_id, settings.region)
    try:
        return invoke_ingest(event)
    except LakeError as e:
        if dead_letter and e.terminal and settings.dlq_url:
            dlq.send(settings, event, e)
        raise


METHODS = ("GET", "POST", "PUT", "DELETE")
DRAIN_BYTES = 64 << 20  # most bytes of a refused body read (and dropped) before answering


def _drain(stream: Any, length: int) -> None:
    try:
        while length > 0 and (chunk := stream.read(min(length, 1 << 16))):
            length -= len(chunk)
    except (TimeoutError, OSError):
        pass


def _json(
    start_response: Callable[..., Any],
    status: int,
    body: dict[str, Any],
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = HTTPStatus(status).phrase
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(headers or [])],
    )
    return [data]


class QueryApp:
    """The query function's HTTP face on 127.0.0.1, as a WSGI application.

    Requests go through the function one at a time, as through one Lambda instance. Before the
    function sees a request: its method is one the API has (else 405 with ``Allow``),
    fewer than ``LAKE_MAX_CONCURRENT_REQUESTS`` requests are being answered (else 503 with
    ``Retry-After``), its ``Content-Length`` is a number within ``LAKE_MAX_REQUEST_BYTES`` (else
    400 / 413), its body arrives within ``LAKE_REQUEST_READ_TIMEOUT`` (else 408) and is UTF-8
    (else 400). Every refusal is a JSON body naming the limit.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slots = threading.BoundedSemaphore(settings.max_concurrent_requests)
        # The function's resolver keeps the current request on itself (as a Lambda instance may:
        # it answers one invocation at a time), so requests enter it one by one; the others wait
        # in their slot.
        self.invoke = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = str(environ.get("REQUEST_METHOD", ""))
        if method not in METHODS:
            return _json(
                start_response,
                405,
                {
                    "error": "MethodNotAllowed",
                    "message": f"{method} is not supported; use {', '.join(METHODS)}",
                },
                [("Allow", ", ".join(METHODS))],
            )
        if not self.slots.acquire(blocking=False):
            return _json(
                start_response,
                503,
                {
                    "error": "TooManyRequests",
                    "message": f"{self.settings.max_concurrent_requests} requests are being answered "
                    "(LAKE_MAX_CONCURRENT_REQUESTS); try again shortly",
                },
                [("Retry-After", "1")],
            )
        try:
            return self._answer(environ, start_response, method)
        finally:
            self.slots.release()

    def _body(self, environ: dict[str, Any]) -> bytes | tuple[int, dict[str, str]]:
        limit = self.settings.max_request_bytes
        declared = str(environ.get("CONTENT_LENGTH") or "").strip()
        chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
        if declared and not declared.isdigit():
            return 400, {
                "error": "BadRequest",
                "message": f"Content-Length {declared[:40]!r} is not a byte count",
            }
        length = int(declared) if declared else 0
        stream = environ["wsgi.input"]
        if length > limit:
            _drain(stream, min(length, DRAIN_BYTES))  # a client that sends before it reads gets its answer
            return 413, {
                "error": "RequestTooLarge",
                "message": f"the body has {length} bytes; the limit is {limit} (LAKE_MAX_REQUEST_BYTES)",
            }
        try:
            raw = stream.read(limit + 1) if chunked else (stream.read(length) if length else b"")
        except TimeoutError:
            return 408, {
                "error": "RequestTimeout",
                "message": f"the body did not arrive within {self.settings.request_read_timeout:g}s "
                "(LAKE_REQUEST_READ_TIMEOUT)",
            }
        if len(raw) > limit:
            return 413, {
                "error": "RequestTooLarge",
                "message": f"the body is over {limit} bytes (LAKE_MAX_REQUEST_BYTES)",
            }
        if len(raw) < length:
            return 400, {
                "error": "BadRequest",
                "message": f"the body ended after {len(raw)} of {length} bytes",
            }
        return bytes(raw)

    def _answer(
        self, environ: dict[str, Any], start_response: Callable[..., Any], method: str
    ) -> list[bytes]:
        from functions.query.handler import lambda_handler

        raw = self._body(environ)
        if isinstance(raw, tuple):
            return _json(start_response, *raw)
        try:
            body = raw.decode("utf-8") if raw else None
        except UnicodeDecodeError as e:
            return _json(
                start_response,
                400,
                {"error": "BadRequest", "message": f"the body is not UTF-8: {e.reason} at byte {e.start}"},
            )
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = str(environ[key])
        # The path as sent (still percent-encoded), as the function URL passes it on.
        raw_uri = str(environ.get("REQUEST_URI") or environ.get("RAW_URI") or "")
        path = urlsplit(raw_uri).path or str(environ.get("PATH_INFO") or "/")
        query = dict(parse_qsl(str(environ.get("QUERY_STRING") or ""), keep_blank_values=True))
        event = function_url_event(
            method, path, body, query, headers, str(environ.get("REMOTE_ADDR") or "127.0.0.1")
        )
        with self.invoke:  # one invocation at a time, as on one Lambda instance
            result = lambda_handler(event, cast(Any, LambdaContext("lake-query", timeout_seconds=60)))
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        status = int(result.get("statusCode", 200))
        out = [
            (name, str(value))
            for name, value in (result.get("headers") or {}).items()
            if name.lower() != "content-length"
        ]
        start_response(f"{status} {HTTPStatus(status).phrase}", [*out, ("Content-Length", str(len(data)))])
        return [data]


# --- the watcher, its writer pool and the committer (ingest side of `lake serve`) --------------


def _worker_init() -> None:
    """A writer process stages its commit requests; the committer of `lake serve` commits them."""
    import os

    from lakehouse.config import get_settings

    os.environ["LAKE_COMMIT_MODE"] = "staged"
    get_settings.cache_clear()


def _write(
    settings: Settings, bucket: str, key: str, version_id: str | None, etag: str, size: int
) -> dict[str, Any]:
    """One upload in a writer process: its reports, or its failure (errors do not cross processes)."""
    try:
        return {"reports": deliver(settings, bucket, key, True, version_id, etag, size)["reports"]}
    except LakeError as e:
        return {"failure": {"key": key, **e.to_dict()}}


class Watcher(threading.Thread):
    """Polls the landing bucket and hands each object version not delivered before to a pool of
    ``LAKE_SERVE_WORKERS`` writer processes (standing in for concurrent function instances); a
    committer thread commits what they stage, one batch per table.

    "Not delivered before" is the ledger's: a version it holds (loaded, or failed once and sent
    to the DLQ) is not delivered again, across restarts; ``lake dlq replay`` re-drives failures.
    """

    def __init__(self, settings: Settings, interval: float = 2.0, workers: int | None = None) -> None:
        super().__init__(name="lake-watcher", daemon=True)
        from lakehouse.tables.committer import Committer

        self.settings = settings.model_copy(update={"commit_mode": "staged"})
        self.interval = interval
        self.workers = settings.serve_workers if workers is None else workers
        self.seen: set[tuple[str, str]] = set()
        self.stop_event = threading.Event()
        self.reports: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.committed: list[dict[str, Any]] = []
        self.committer = Committer(self.settings, on_batch=self._committed)
        self._pool: Any = None
        self._lock = threading.Lock()

    def _committed(self, result: Any) -> None:
        from dataclasses import asdict

        with self._lock:
            self.committed.append(asdict(result))
        print(json.dumps({"committed": asdict(result)}), flush=True)

    def _executor(self) -> Any:
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a forked child of a process that used lancedb hangs
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
            )
        return self._pool

    def _known(self, key: str, version: str) -> bool:
        from lakehouse.tables.ledger import Ledger

        dataset = key.split("/", 1)[0] if "/" in key else ""
        if not dataset:
            return False
        ledger = Ledger(self.settings, dataset)
        return ledger.lookup(key, version) is not None or ledger.failure(key, version) is not None

    def _done(self, ident: tuple[str, str], result: dict[str, Any]) -> None:
        with self._lock:
            if "failure" in result:
                failure = result["failure"]
                self.failures.append(failure)
                print(json.dumps({"failed": failure}), flush=True)
                if not failure["terminal"]:
                    self.seen.discard(ident)  # transient: try again on the next pass
                return
            self.reports.extend(result["reports"])
            for report in result["reports"]:
                print(json.dumps({"ingested": report}), flush=True)

    def poll(self) -> int:
        """One pass over the bucket; returns how many object versions were handed to writers."""
        s3 = s3_client(self.settings)
        bucket = self.settings.landing_bucket
        handed = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for obj in page.get("Versions", []):
                version = obj.get("VersionId") or "null"
                ident = (obj["Key"], version)
                if ident in self.seen:
                    continue
                self.seen.add(ident)
                pinned = None if version == "null" else version
                if self._known(obj["Key"], pinned or obj["ETag"].strip('"')):
                    continue
                handed += 1
                future = self._executor().submit(
                    _write, self.settings, bucket, obj["Key"], pinned, obj["ETag"], int(obj["Size"])
                )
                future.add_done_callback(lambda f, ident=ident: self._done(ident, f.result()))
        return handed

    def run(self) -> None:
        self.committer.start()
        try:
            while not self.stop_event.is_set():
                try:
                    self.poll()
                except Exception as e:  # noqa: BLE001 - keep watching; the store may come back
                    log.warning("landing poll failed: %s", e)
                self.stop_event.wait(self.interval)
        finally:
            self.committer.stop_event.set()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)  # unwinds serve_forever: the audit rows not yet written are flushed at exit


def make_server(
    port: int = 0, settings: Settings | None = None, stop_on_sigterm: bool = True
) -> BaseWSGIServer:
    """The HTTP server of the query API on 127.0.0.1 (``port`` 0 picks a free one): Werkzeug's
    threaded WSGI server in front of :class:`QueryApp`. With ``stop_on_sigterm`` (from the main
    thread) SIGTERM stops it as Ctrl-C does, so the process exits cleanly."""
    import signal

    from lakehouse.config import get_settings

    if stop_on_sigterm and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)

    chosen = settings or get_settings()

    class Handler(WSGIRequestHandler):
        timeout = chosen.request_read_timeout  # socket timeout while reading a request

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            log.info("%s %s %s", self.address_string(), self.requestline, code)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return werkzeug_server("127.0.0.1", port, QueryApp(chosen), threaded=True, request_handler=Handler)
