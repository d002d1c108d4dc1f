"""Extension point: Takeout text to Lance vectors, once the vectors capability has landed.

Keep notes and activity titles are what a person wants to search in their own history. Lake's
vectors capability (``lakehouse.vectors``, a separate issue) is not in this tree yet, so
nothing is embedded and reports say ``vectors: "unavailable"``. When it lands it must offer::

    index_table(settings: Settings, table: str, snapshot_id: int, text_columns: tuple[str, ...]) -> None

embedding ``text_columns`` of the rows that snapshot added (keyed by row id, the Iceberg
snapshot id recorded with the Lance version, as DESIGN.md says); this module then calls it
after each committed member range, and nothing else changes.
"""

from __future__ import annotations

import importlib
import importlib.util

from lakehouse.config import Settings

VECTORS_MODULE = "lakehouse.vectors"
# Table → the text columns worth embedding.
VECTOR_TEXT: dict[str, tuple[str, ...]] = {
    "takeout_keep": ("title", "text"),
    "takeout_activity": ("title",),
}


def vectors_available() -> bool:
    return importlib.util.find_spec(VECTORS_MODULE) is not None


def index_committed(settings: Settings, snapshots: dict[str, int]) -> str:
    """Hand newly committed text to the vectors capability; ``unavailable`` until it exists."""
    if not vectors_available():
        return "unavailable"
    vectors = importlib.import_module(VECTORS_MODULE)
    index_table = getattr(vectors, "index_table", None)
    if index_table is None:
        return "unavailable"
    for table, columns in VECTOR_TEXT.items():
        if table in snapshots:
            index_table(settings, table, snapshots[table], columns)
    return "indexed"
