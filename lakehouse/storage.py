"""Object-store clients built from the settings: boto3 clients (one per service and store, per
process) and Arrow's S3 filesystem for reading and writing objects.

Reads of uploads and archives, and the audit spool's writes, go through Arrow's S3 client, the
one pyiceberg's file IO already sets up: a cold function neither imports a second S3 stack
(s3fs, aiobotocore, aiohttp) nor loads botocore's S3 model when no boto3 call is needed.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs

from lakehouse.config import Settings, get_settings
from lakehouse.errors import SourceVersionGone

_clients: dict[tuple[Any, ...], Any] = {}
_filesystems: dict[tuple[Any, ...], pyarrow.fs.S3FileSystem] = {}
_lock = threading.Lock()


def _store_key(settings: Settings) -> tuple[Any, ...]:
    """What identifies a store connection: endpoint, credentials, region, retries, timeouts."""
    return (
        settings.s3_endpoint,
        settings.access_key_id,
        settings.secret_access_key,
        settings.region,
        settings.s3_max_attempts,
        settings.s3_connect_timeout,
        settings.s3_read_timeout,
    )


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the configured endpoint (one per store and process; boto3 clients
    are thread-safe, and a warm function reuses its connections)."""
    key = ("s3", *_store_key(settings))
    with _lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                config=Config(
                    retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
                    connect_timeout=settings.s3_connect_timeout,
                    read_timeout=settings.s3_read_timeout,
                    s3={"addressing_style": "path"},
                ),
                **settings.s3_client_kwargs(),
            )
            _clients[key] = client
    return client


def list_objects(settings: Settings, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
    """(key, size) of every object under ``prefix``, in key order, page by page."""
    pages = s3_client(settings).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            yield obj["Key"], int(obj["Size"])


def sqs_client(settings: Settings) -> Any:
    """A boto3 SQS client (the ingest DLQ), on the same endpoint as S3 when one is set."""
    key = ("sqs", *_store_key(settings))
    with _lock:
        client = _clients.get(key)
        if client is None:
            import boto3

            client = _clients[key] = boto3.client("sqs", **settings.s3_client_kwargs())
    return client


def arrow_filesystem(settings: Settings) -> pyarrow.fs.S3FileSystem:
    """Arrow's S3 filesystem for the configured store (one per store and process); without
    explicit keys it takes the default AWS credential chain (the function's role)."""
    key = _store_key(settings)
    with _lock:
        fs = _filesystems.get(key)
        if fs is None:
            retries = pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=settings.s3_max_attempts)
            kwargs: dict[str, Any] = {
                "region": settings.region,
                "connect_timeout": settings.s3_connect_timeout,
                "request_timeout": settings.s3_read_timeout,
                "retry_strategy": retries,
            }
            if settings.s3_endpoint:
                kwargs["endpoint_override"] = settings.s3_endpoint
            if settings.access_key_id and settings.secret_access_key:
                kwargs["access_key"] = settings.access_key_id
                kwargs["secret_key"] = settings.secret_access_key
            fs = _filesystems[key] = pyarrow.fs.S3FileSystem(**kwargs)
    return fs


class ObjectReader(io.RawIOBase):
    """One object as a seekable raw stream of ranged GETs, hashing what it reads.

    A read the store fails part-way (a dropped connection, which Arrow's retry strategy does not
    cover) is retried at the same offset, up to ``LAKE_S3_MAX_ATTEMPTS`` tries; then the
    ``OSError`` is raised. :meth:`content_hash` is the SHA-256 of the whole object: bytes read in
    order are hashed as they pass, the rest is read when it is asked for.
    """

    def __init__(self, read_at: Callable[[int, int], bytes], size: int, attempts: int) -> None:
        super().__init__()
        self._read_at = read_at
        self._size = size
        self._pos = 0
        self._attempts = max(1, attempts)
        self._hash = hashlib.sha256()
        self._hashed = 0

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def _fetch(self, n: int, pos: int) -> bytes:
        for attempt in range(self._attempts):
            try:
                data = self._read_at(n, pos)
                break
            except OSError:
                if attempt + 1 == self._attempts:
                    raise
                time.sleep(min(2.0, 0.05 * 2**attempt))
        if pos == self._hashed:
            self._hash.update(data)
            self._hashed += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._fetch(n, self._pos)
        got = len(data)
        view[:got] = data
        self._pos += got
        return got

    def readall(self) -> bytes:
        """The rest of the object, in GETs of 8 MiB (not io's default of 8 KiB each)."""
        chunks = []
        while chunk := self.read(8 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def content_hash(self) -> str:
        """``sha256:<hex>`` of the whole object (reads what was skipped or not yet read)."""
        while self._hashed < self._size:
            if not self._fetch(min(8 << 20, self._size - self._hashed), self._hashed):
                break
        return f"sha256:{self._hash.hexdigest()}"


def _arrow_reader(settings: Settings, bucket: str, key: str) -> ObjectReader:
    file = arrow_filesystem(settings).open_input_file(f"{bucket}/{key}")  # FileNotFoundError if none
    return ObjectReader(file.read_at, file.size(), settings.s3_max_attempts)


def _version_reader(
    settings: Settings, bucket: str, key: str, version_id: str | None, etag: str | None
) -> ObjectReader:
    """Ranged GETs of one version (``VersionId``), or of the object only while its ETag matches."""
    from botocore.exceptions import ClientError

    s3 = s3_client(settings)
    pin: dict[str, str] = {}
    if version_id:
        pin["VersionId"] = version_id
    elif etag:
        pin["IfMatch"] = '"' + etag.strip('"') + '"'
    name = f"s3://{bucket}/{key}" + (f" version {version_id}" if version_id else f" etag {etag}")

    def gone(e: ClientError) -> Exception:
        code = e.response.get("Error", {}).get("Code", "")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchVersion", "PreconditionFailed", "InvalidArgument") or status in (400, 412):
            return SourceVersionGone(f"{name} no longer exists; nothing was read from another version")
        if code in ("NoSuchKey", "404") or status == 404:
            if version_id or etag:
                return SourceVersionGone(f"{name} no longer exists; nothing was read from another version")
            return FileNotFoundError(name)
        return OSError(f"{name}: {e}")

    try:
        head = s3.head_object(Bucket=bucket, Key=key, **pin)
    except ClientError as e:
        raise gone(e) from e

    def read_at(n: int, pos: int) -> bytes:
        try:
            got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={pos}-{pos + n - 1}", **pin)
            data: bytes = got["Body"].read()
        except ClientError as e:
            raise gone(e) from e
        return data

    return ObjectReader(read_at, int(head["ContentLength"]), settings.s3_max_attempts)


def open_object(
    settings: Settings,
    bucket: str,
    key: str,
    buffer_size: int = 8 << 20,
    version_id: str | None = None,
    etag: str | None = None,
) -> io.BufferedReader:
    """A seekable, buffered reader of ``s3://bucket/key`` (each refill one ranged GET of
    ``buffer_size`` bytes); ``reader.raw.content_hash()`` is the object's SHA-256.

    With ``version_id`` exactly that version is read; with only ``etag`` the object is read only
    while its ETag still matches. Raises ``FileNotFoundError`` when the object does not exist and
    :class:`~lakehouse.errors.SourceVersionGone` when the version (or ETag) asked for does not.
    """
    if version_id or etag:
        raw = _version_reader(settings, bucket, key, version_id, etag)
    else:
        raw = _arrow_reader(settings, bucket, key)
    return io.BufferedReader(raw, buffer_size=buffer_size)


def put_object(settings: Settings, bucket: str, key: str, body: bytes) -> None:
    """Write one object through Arrow's S3 client."""
    with arrow_filesystem(settings).open_output_stream(f"{bucket}/{key}") as out:
        out.write(body)


def put_if_absent(settings: Settings, bucket: str, key: str, body: bytes) -> bool:
    """Create an object only if no object has its key (``If-None-Match: *``, atomic on S3);
    False when one already does.

    Raises:
        StoreUnavailable: the store refused or could not be reached (transient).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from lakehouse.errors import StoreUnavailable

    try:
        s3_client(settings).put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise StoreUnavailable(f"write of s3://{bucket}/{key} failed: {e}") from e
    except BotoCoreError as e:
        raise StoreUnavailable(f"write of s3://{bucket}/{key} failed: {e}") from e


class LakeS3RetryStrategy(pyarrow.fs.AwsStandardS3RetryStrategy):
    """pyiceberg's Arrow S3 file IO retries as many times as the other clients (``LAKE_S3_MAX_ATTEMPTS``)."""

    def __init__(self) -> None:
        super().__init__(max_attempts=get_settings().s3_max_attempts)


def cached(settings: Settings, key: str, size: int | None = None) -> Path:
    """A local copy of the immutable warehouse object ``key`` under ``$LAKE_HOME/vector-cache``.

    Downloaded when missing (or, given ``size``, of another size); written beside and renamed
    into place, so a concurrent reader sees all of a file or none.
    """
    target = settings.home / "vector-cache" / key
    if target.exists() and (size is None or target.stat().st_size == size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    s3_client(settings).download_file(settings.warehouse_bucket, key, str(partial))
    os.replace(partial, target)
    return target
