"""The artifact store: schemas, macros, documentation, configuration and logs kept in the lake.

Content lives as content-addressed objects in the warehouse bucket; every change (store,
update, delete) is one commit to the Iceberg table ``<namespace>.artifacts``, so artifacts have
a history and can be read as of any snapshot; a Lance table beside the vectors makes them
searchable by words and by meaning. See :class:`ArtifactStore`.
"""

from __future__ import annotations

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
from lakehouse.artifacts.store import ArtifactStore, BlockingArtifactStore, store_for

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
