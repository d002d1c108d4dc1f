"""The query result cache: identical read-only queries over unchanged snapshots are answered
from a cache keyed by the SQL, the snapshot ids read, the caller's row filter and the limits.

A commit makes a new snapshot id, so it invalidates by construction: nothing is ever purged
for correctness. Entries live in a local folder (``$LAKE_HOME/query-cache``; on Lambda under
/tmp) and in the warehouse (``_lake/query-cache/``), so warm functions and other instances share
them. The local folder keeps the most recent ``LAKE_QUERY_CACHE_ENTRIES`` entries.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lakehouse.config import Settings

PREFIX = "_lake/query-cache/"


def cache_key(
    sql: str, snapshots: dict[str, int | None], filters: dict[str, str | None], settings: Settings
) -> str:
    material = {
        "sql": sql,
        "snapshots": snapshots,
        "filters": filters,
        "limits": [settings.query_max_rows, settings.query_max_bytes],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _local(settings: Settings) -> Path:
    return settings.home / "query-cache"


def get(settings: Settings, key: str) -> dict[str, Any] | None:
    """A cached result body, from the local folder first, then the warehouse."""
    from botocore.exceptions import BotoCoreError, ClientError

    from lakehouse.storage import s3_client

    path = _local(settings) / f"{key}.json"
    if path.exists():
        path.touch()
        body: dict[str, Any] = json.loads(path.read_text())
        return body
    try:
        obj = s3_client(settings).get_object(Bucket=settings.warehouse_bucket, Key=f"{PREFIX}{key}.json")
    except (ClientError, BotoCoreError):
        return None
    raw = obj["Body"].read()
    _store_local(settings, key, raw)
    found: dict[str, Any] = json.loads(raw)
    return found


def put(settings: Settings, key: str, body: dict[str, Any]) -> None:
    """Keep a result body (best effort in the warehouse: a read-only function still caches locally)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from lakehouse.storage import s3_client

    raw = json.dumps(body).encode()
    _store_local(settings, key, raw)
    try:
        s3_client(settings).put_object(Bucket=settings.warehouse_bucket, Key=f"{PREFIX}{key}.json", Body=raw)
    except (ClientError, BotoCoreError):
        pass  # the local entry still serves this instance


def _store_local(settings: Settings, key: str, raw: bytes) -> None:
    folder = _local(settings)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{key}.tmp"
    tmp.write_bytes(raw)
    tmp.replace(folder / f"{key}.json")
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    for old in entries[: max(0, len(entries) - settings.query_cache_entries)]:
        old.unlink(missing_ok=True)
