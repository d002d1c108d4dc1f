"""Content-addressed copies of archive members in the warehouse: ``blobs/sha256/<ab>/<sha256>``.

A member is spooled once (in memory up to a few MiB, then to a temporary file) while its
SHA-256 is computed; the same spool is then uploaded (skipped when the key already exists:
the same bytes from any archive are kept once) and parsed. Memory stays bounded by the spool
threshold whatever the member's size.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from typing import IO, TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from lakehouse.config import Settings
from lakehouse.errors import StoreUnavailable

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig

SPOOL_IN_MEMORY = 8 << 20
COPY_CHUNK = 1 << 20


@functools.cache
def upload_config() -> TransferConfig:
    """Multipart uploads of large members: 8 MiB parts, 2 in flight (each worker uploads its own
    member) and at most 3 read ahead (s3transfer's default of 10 would hold 80 MiB per worker).
    Built on the first upload: an archive without blobs never imports s3transfer."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=8 << 20, max_concurrency=2)
    config.max_in_memory_upload_chunks = 3  # s3transfer's setting, not a boto3 keyword
    return config


class Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


def spool(reader: Readable) -> tuple[IO[bytes], str, int]:
    """Copy a member into a spooled temporary file; returns (file at offset 0, sha256 hex, size)."""
    digest = hashlib.sha256()
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - caller closes
    size = 0
    try:
        while True:
            chunk = reader.read(COPY_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out, digest.hexdigest(), size


class _KeepOpen:
    """The spool, minus ``close``: the upload closes what it is given, the parser still reads it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def close(self) -> None:
        pass


def blob_key(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def put_blob(settings: Settings, data: IO[bytes], sha256: str, size: int) -> tuple[str, bool]:
    """Store ``data`` (``size`` bytes) under its content address; returns (s3 URI, newly written).

    The existence check is one HEAD through Arrow's S3 client. A member that fits the in-memory
    spool is written with one Arrow PUT; a larger one goes through boto3's multipart upload
    (bounded parts in flight, aborted on failure), whose client is only built when one is needed.
    """
    from lakehouse.storage import arrow_filesystem, put_object

    key = blob_key(sha256)
    bucket = settings.warehouse_bucket
    uri = f"s3://{bucket}/{key}"
    try:
        try:
            arrow_filesystem(settings).open_input_file(f"{bucket}/{key}").close()
            return uri, False
        except FileNotFoundError:
            pass
        data.seek(0)
        if size <= SPOOL_IN_MEMORY:
            put_object(settings, bucket, key, data.read())
        else:
            from lakehouse.storage import s3_client

            s3_client(settings).upload_fileobj(_KeepOpen(data), bucket, key, Config=upload_config())
    except (OSError, ClientError, BotoCoreError) as e:
        raise StoreUnavailable(f"could not store blob {uri}: {e}") from e
    finally:
        data.seek(0)
    return uri, True
