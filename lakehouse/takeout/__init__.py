"""Google Takeout archives into the lake: archive reading, product parsers, blobs, the pipeline."""

from __future__ import annotations

from lakehouse.takeout.pipeline import (
    TakeoutReport,
    ingest_archive,
    ingest_range_message,
    is_takeout_key,
)

__all__ = ["TakeoutReport", "ingest_archive", "ingest_range_message", "is_takeout_key"]
