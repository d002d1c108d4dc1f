"""The progress bar ``lake put`` draws on stderr (stdout stays clean)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class StderrBar:
    """A one-line progress bar: ``[#####     ] 52%  1.1/2.0 GiB  9,500,000 rows  310,000 rows/s``."""

    def __init__(
        self, total_bytes: int, label: str = "", out: TextIO | None = None, every: float = 0.2
    ) -> None:
        self.total = max(1, total_bytes)
        self.label = label
        self.out = out or sys.stderr
        self.every = every
        self.started = time.monotonic()
        self._last = 0.0
        self.lines = 0

    def line(self, bytes_read: int, rows: int) -> str:
        fraction = min(1.0, bytes_read / self.total)
        filled = int(fraction * 30)
        elapsed = max(1e-9, time.monotonic() - self.started)
        return (
            f"{self.label}[{'#' * filled}{' ' * (30 - filled)}] {fraction:4.0%}  "
            f"{_size(bytes_read)}/{_size(self.total)}  {rows:,} rows  {rows / elapsed:,.0f} rows/s"
        )

    def update(self, bytes_read: int, rows: int) -> None:
        now = time.monotonic()
        if now - self._last < self.every and bytes_read < self.total:
            return
        self._last = now
        self.lines += 1
        self.out.write("\r" + self.line(bytes_read, rows))
        self.out.flush()

    def close(self) -> None:
        if self.lines:
            self.out.write("\n")
            self.out.flush()
