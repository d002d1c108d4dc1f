"""Google Takeout archives into the lake: archive reading, product parsers, blobs, the pipeline.

The pipeline (and what it imports) loads on first use of its names: routing an upload by its
key, or importing a submodule such as the rollups, does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakehouse.takeout.pipeline import TakeoutReport, ingest_archive, ingest_range_message

PREFIX = "takeout/"

__all__ = ["PREFIX", "TakeoutReport", "ingest_archive", "ingest_range_message", "is_takeout_key"]


def is_takeout_key(key: str) -> bool:
    """Uploads under ``takeout/`` are archives for this pipeline."""
    return key.startswith(PREFIX)


def __getattr__(name: str) -> Any:
    if name in ("TakeoutReport", "ingest_archive", "ingest_range_message"):
        from lakehouse.takeout import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
