"""Lambda events and context, shaped as AWS sends them (and as ``sam local generate-event`` prints).

Used wherever Lake calls a handler itself: ``lake put``, ``lake serve``, ``lake sql`` and the
test client.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 1024
    timeout_seconds: float = 900.0
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{dt.date.today():%Y/%m/%d}/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        left = self.timeout_seconds - (time.monotonic() - self._started)
        return max(0, int(left * 1000))


def s3_put_event(
    bucket: str, key: str, size: int, etag: str, version_id: str | None = None, region: str = "us-east-1"
) -> dict[str, Any]:
    """An ``ObjectCreated:Put`` notification for one object (keys URL-encoded, as S3 sends them)."""
    obj: dict[str, Any] = {
        "key": quote_plus(key, safe="/"),
        "size": size,
        "eTag": etag.strip('"'),
        "sequencer": f"{time.time_ns():X}",
    }
    if version_id:
        obj["versionId"] = version_id
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:LAKE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                    "x-amz-id-2": uuid.uuid4().hex,
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "lake-landing",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "LAKE"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": obj,
                },
            }
        ]
    }


def function_url_event(
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """A function URL request (payload format 2.0)."""
    raw_body: str | None
    if body is None:
        raw_body = None
    elif isinstance(body, bytes):
        raw_body = base64.b64encode(body).decode()
    else:
        raw_body = body if isinstance(body, str) else json.dumps(body)
    all_headers = {
        "host": "localhost",
        "user-agent": "lake",
        **{k.lower(): v for k, v in (headers or {}).items()},
    }
    if raw_body is not None and not isinstance(body, bytes):
        all_headers.setdefault("content-type", "application/json")
    now = dt.datetime.now(dt.UTC)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": all_headers,
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "lake",
            "domainName": "localhost",
            "domainPrefix": "lake",
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": all_headers["user-agent"],
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": raw_body,
        "isBase64Encoded": isinstance(body, bytes),
    }
