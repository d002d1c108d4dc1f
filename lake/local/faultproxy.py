"""A fault-injecting HTTP proxy for the local S3 endpoint: Lake's own failure drills.

It forwards every request to the upstream endpoint, except that, at a set rate, it answers
``503 SlowDown``, ``500 InternalError`` or drops the connection without a word. Ingest, query and
maintenance are expected to ride through it on their retries (``LAKE_S3_MAX_ATTEMPTS``).
``python -m lake.local.faultproxy --upstream URL --rate 0.1`` runs one by hand.
"""

from __future__ import annotations

import argparse
import http.client
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
FAULTS = ("slowdown", "internal", "drop")
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>lake-faultproxy</RequestId></Error>"
)


class FaultProxy(ThreadingHTTPServer):
    """Forwards to ``upstream``; fails ``rate`` of the requests. ``injected`` counts each fault."""

    daemon_threads = True

    def __init__(self, upstream: str, rate: float, seed: int | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.upstream = urlsplit(upstream)
        self.rate = rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.forwarded = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def pick_fault(self) -> str | None:
        with self.lock:
            if self.random.random() >= self.rate:
                self.forwarded += 1
                return None
            fault = self.random.choice(FAULTS)
            self.injected[fault] += 1
            return fault

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="lake-faultproxy", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._body()
        fault = self.server.pick_fault()
        if fault == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if fault is not None:
            status, code, message = (
                (503, "SlowDown", "Please reduce your request rate.")
                if fault == "slowdown"
                else (500, "InternalError", "We encountered an internal error. Please try again.")
            )
            # As S3 does: an XML error body, except for HEAD, whose error answers have no body.
            xml = _ERROR_XML.format(code=code, message=message).encode()
            payload = b"" if self.command == "HEAD" else xml
            self.send_response(status)
            if payload:
                self.send_header("content-type", "application/xml")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self._forward(body)

    def _forward(self, body: bytes) -> None:
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port or 80, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["content-length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        # A HEAD answer carries the object's length and no body.
        length = response.getheader("content-length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("content-length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        return


def main() -> None:
    parser = argparse.ArgumentParser(description="Fault-injecting proxy in front of an S3 endpoint.")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    proxy = FaultProxy(args.upstream, args.rate, args.seed, args.port)
    print(proxy.url, flush=True)
    proxy.serve_forever()


if __name__ == "__main__":
    main()
