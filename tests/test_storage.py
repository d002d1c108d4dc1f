"""Object-store access: the seekable object reader over Arrow's S3 client, and per-process clients."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest

from lakehouse.config import Settings
from lakehouse.storage import ObjectReader, open_object, put_object, s3_client, sqs_client

BODY = bytes(range(256)) * 40_000  # 10 MiB and a bit: more than one buffer


@pytest.mark.integration
def test_open_object_reads_seeks_and_tells_like_a_file(settings: Settings) -> None:
    key = f"storage/{uuid.uuid4().hex}.bin"
    s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=BODY)
    with open_object(settings, settings.landing_bucket, key, buffer_size=1 << 20) as f:
        assert f.read(10) == BODY[:10] and f.tell() == 10
        f.seek(5_000_000)
        assert f.read(100) == BODY[5_000_000:5_000_100]
        f.seek(-50, io.SEEK_END)
        assert f.read() == BODY[-50:] and f.read(1) == b""
        f.seek(0)
        assert f.read() == BODY


@pytest.mark.integration
def test_open_object_of_a_missing_key_is_file_not_found(settings: Settings) -> None:
    with pytest.raises(FileNotFoundError):
        open_object(settings, settings.landing_bucket, f"storage/{uuid.uuid4().hex}.missing")


@pytest.mark.integration
def test_put_object_writes_what_boto3_reads(settings: Settings) -> None:
    key = f"storage/{uuid.uuid4().hex}.bin"
    put_object(settings, settings.warehouse_bucket, key, b"spooled")
    got = s3_client(settings).get_object(Bucket=settings.warehouse_bucket, Key=key)["Body"].read()
    assert got == b"spooled"


def test_clients_are_kept_per_store_and_process(settings: Settings) -> None:
    assert s3_client(settings) is s3_client(settings)
    assert sqs_client(settings) is sqs_client(settings)
    other = settings.model_copy(update={"s3_endpoint": "http://127.0.0.1:9"})
    assert s3_client(other) is not s3_client(settings)


class _Flaky:
    """An Arrow input file whose reads fail ``failures`` times (a connection dropped mid-body)."""

    def __init__(self, data: bytes, failures: int) -> None:
        self.data = data
        self.failures = failures
        self.reads = 0

    def size(self) -> int:
        return len(self.data)

    def read_at(self, n: int, offset: int) -> bytes:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            raise OSError("connection reset by peer")
        return self.data[offset : offset + n]

    def close(self) -> None:
        pass


def test_a_dropped_read_is_retried_at_its_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lakehouse.storage.time.sleep", lambda s: None)
    flaky = _Flaky(b"0123456789", failures=2)
    reader = io.BufferedReader(ObjectReader(flaky.read_at, flaky.size(), attempts=3), buffer_size=4)
    reader.seek(3)
    assert reader.read(4) == b"3456"
    assert flaky.reads == 3


def test_a_read_failing_every_attempt_raises_the_os_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lakehouse.storage.time.sleep", lambda s: None)
    flaky = _Flaky(b"0123456789", failures=5)
    reader: Any = ObjectReader(flaky.read_at, flaky.size(), attempts=3)
    with pytest.raises(OSError, match="connection reset"):
        reader.read(4)


def test_the_content_hash_covers_every_byte_whatever_was_read() -> None:
    import hashlib

    data = bytes(range(256)) * 40
    whole = f"sha256:{hashlib.sha256(data).hexdigest()}"
    for reads in ([(0, 10_240)], [(10_000, 240), (0, 100)], []):
        flaky = _Flaky(data, failures=0)
        reader = ObjectReader(flaky.read_at, len(data), attempts=1)
        for pos, n in reads:
            reader.seek(pos)
            assert reader.read(n) == data[pos : pos + n]
        assert reader.content_hash() == whole


def test_a_version_is_read_as_it_was_and_a_gone_version_is_terminal(settings: Settings) -> None:
    from lakehouse.errors import SourceVersionGone

    s3 = s3_client(settings)
    key = f"storage/{uuid.uuid4().hex}.txt"
    v1 = s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=b"first")
    v2 = s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=b"second")
    with open_object(settings, settings.landing_bucket, key, version_id=v1["VersionId"]) as f:
        assert f.read() == b"first"
    with open_object(settings, settings.landing_bucket, key, etag=v2["ETag"]) as f:
        assert f.read() == b"second"
    with pytest.raises(SourceVersionGone):
        open_object(settings, settings.landing_bucket, key, etag=v1["ETag"])  # no longer current
    s3.delete_object(Bucket=settings.landing_bucket, Key=key, VersionId=v1["VersionId"])
    with pytest.raises(SourceVersionGone, match="no longer exists"):
        open_object(settings, settings.landing_bucket, key, version_id=v1["VersionId"])
