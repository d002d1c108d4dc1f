"""Progress of a long ingest: bytes read and rows validated, reported to whoever listens.

The ingest reports to the listener of the current context (none on Lambda); ``lake put``
installs its progress bar (``lake.cli.progress``) for large files.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class Listener(Protocol):
    def update(self, bytes_read: int, rows: int) -> None: ...


_current: ContextVar[Listener | None] = ContextVar("lake_progress", default=None)


def current() -> Listener | None:
    """The listener of this context, if any."""
    return _current.get()


@contextmanager
def reporting(listener: Listener) -> Iterator[Listener]:
    """Send the progress of ingests run inside the block to ``listener``."""
    token = _current.set(listener)
    try:
        yield listener
    finally:
        _current.reset(token)
