"""Object-store clients (boto3 and s3fs) built from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow.fs

from lakehouse.config import Settings, get_settings

if TYPE_CHECKING:
    import s3fs


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the configured endpoint."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        config=Config(
            retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            s3={"addressing_style": "path"},
        ),
        **settings.s3_client_kwargs(),
    )


def filesystem(settings: Settings) -> s3fs.S3FileSystem:
    """An s3fs filesystem for streamed, ranged reads of uploads."""
    import s3fs

    client_kwargs: dict[str, Any] = {"region_name": settings.region}
    if settings.s3_endpoint:
        client_kwargs["endpoint_url"] = settings.s3_endpoint
    kwargs: dict[str, Any] = {
        "client_kwargs": client_kwargs,
        "use_listings_cache": False,
        "config_kwargs": {
            "retries": {"max_attempts": settings.s3_max_attempts, "mode": "standard"},
            "connect_timeout": settings.s3_connect_timeout,
            "read_timeout": settings.s3_read_timeout,
        },
    }
    if settings.access_key_id and settings.secret_access_key:
        kwargs["key"] = settings.access_key_id
        kwargs["secret"] = settings.secret_access_key
    return s3fs.S3FileSystem(**kwargs)


def sqs_client(settings: Settings) -> Any:
    """A boto3 SQS client (the ingest DLQ), on the same endpoint as S3 when one is set."""
    import boto3

    return boto3.client("sqs", **settings.s3_client_kwargs())


class LakeS3RetryStrategy(pyarrow.fs.AwsStandardS3RetryStrategy):
    """pyiceberg's Arrow S3 file IO retries as many times as the other clients (``LAKE_S3_MAX_ATTEMPTS``)."""

    def __init__(self) -> None:
        super().__init__(max_attempts=get_settings().s3_max_attempts)
