"""The artifact store: schemas, macros, documentation, configuration and logs kept in the lake.

Content lives as content-addressed objects in the warehouse bucket; every change (store,
update, delete) is one commit to the Iceberg table ``<namespace>.artifacts``, so artifacts have
a history and can be read as of any snapshot; a Lance table beside the vectors makes them
searchable by words and by meaning. See :class:`ArtifactStore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakehouse.artifacts.model import (
    DATA_TYPES,
    Artifact,
    ArtifactError,
    DataType,
    NotFoundError,
    SearchHit,
    SearchResults,
    ValidationError,
)

if TYPE_CHECKING:
    from lakehouse.artifacts.store import ArtifactStore, BlockingArtifactStore, store_for

_LAZY = {"ArtifactStore", "BlockingArtifactStore", "store_for"}


def __getattr__(name: str) -> Any:
    """The store itself (pyarrow, pyiceberg) is imported on first use: the query function's
    cold start does not pay for it unless an artifact route is called."""
    if name in _LAZY:
        from lakehouse.artifacts import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DATA_TYPES",
    "Artifact",
    "ArtifactError",
    "ArtifactStore",
    "BlockingArtifactStore",
    "DataType",
    "NotFoundError",
    "SearchHit",
    "SearchResults",
    "ValidationError",
    "store_for",
]
