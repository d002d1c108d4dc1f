"""Small JSON documents in the warehouse bucket, updated with compare-and-swap.

Used for Lake's own state (API keys). Every update is a conditional PUT (``If-Match`` on the
ETag read, ``If-None-Match: *`` for a new document), retried when another writer got there first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lakehouse.config import Settings
from lakehouse.errors import CommitConflict
from lakehouse.storage import s3_client

PREFIX = "_lake/"


def read_json(settings: Settings, name: str) -> tuple[Any, str | None]:
    """The document and its ETag, or (None, None) when it does not exist."""
    s3 = s3_client(settings)
    try:
        obj = s3.get_object(Bucket=settings.warehouse_bucket, Key=PREFIX + name)
    except s3.exceptions.NoSuchKey:
        return None, None
    return json.loads(obj["Body"].read()), str(obj["ETag"])


def update_json(settings: Settings, name: str, change: Callable[[Any], Any], attempts: int = 10) -> Any:
    """Apply ``change`` to the document (None when new) and store the result atomically."""
    from botocore.exceptions import ClientError

    s3 = s3_client(settings)
    for _ in range(attempts):
        current, etag = read_json(settings, name)
        updated = change(current)
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            s3.put_object(
                Bucket=settings.warehouse_bucket,
                Key=PREFIX + name,
                Body=json.dumps(updated, indent=1).encode(),
                ContentType="application/json",
                **condition,
            )
            return updated
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                raise
    raise CommitConflict(f"{name}: too many concurrent updates")
