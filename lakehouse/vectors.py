"""Vectors beside the tables: Lance datasets at ``s3://<warehouse>/vectors/<dataset>.lance``.

Only this module (and the modules that use it) import lancedb, which is slow to import and
must never be used from a forked child: processes that touch Lance are started with ``spawn``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.config import Settings

if TYPE_CHECKING:
    import lancedb


def vectors_uri(settings: Settings) -> str:
    """Where the Lance datasets live: ``s3://<warehouse>/vectors``."""
    return f"s3://{settings.warehouse_bucket}/vectors"


def storage_options(settings: Settings) -> dict[str, str]:
    """Lance object-store options for the configured endpoint and credentials."""
    options = {"aws_region": settings.region}
    if settings.s3_endpoint:
        options["aws_endpoint"] = settings.s3_endpoint
        if settings.s3_endpoint.startswith("http://"):
            options["allow_http"] = "true"
    if settings.access_key_id and settings.secret_access_key:
        options["aws_access_key_id"] = settings.access_key_id
        options["aws_secret_access_key"] = settings.secret_access_key
    return options


def connect(settings: Settings) -> lancedb.DBConnection:
    """A LanceDB connection to the warehouse's ``vectors/`` folder."""
    import lancedb

    return lancedb.connect(vectors_uri(settings), storage_options=storage_options(settings))
