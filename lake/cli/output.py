"""What the ``lake`` command prints, and the client its read commands use.

Light on purpose (no settings machinery at import): ``lake --help`` and the commands a running
``lake serve`` answers import only this.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

JSON_HELP = "print the result as JSON"


def remote_options(s: argparse.ArgumentParser) -> None:
    """``--url`` and ``--no-server`` for commands that go through the query API."""
    s.add_argument(
        "--url", help="query API base URL (default: the running `lake serve`, else in this process)"
    )
    s.add_argument(
        "--no-server", action="store_true", help="run in this process even when a `lake serve` runs"
    )
    s.set_defaults(server_ok=True)


def out(text: str = "") -> None:
    print(text, flush=True)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``0 artifacts``."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def rate(rows_per_second: float) -> str:
    """`` (310,000 rows/s)``; nothing for a handful of rows, where a rate says nothing."""
    return f" ({rows_per_second:,.0f} rows/s)" if rows_per_second >= 1 else ""


def render_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 48, wide: Sequence[str] = ()
) -> str:
    """A plain text table: each value printed as its type prints in SQL (``-5``, not ``'-5.0'``;
    ``true``, not ``True``; nested values as JSON; NULL as nothing); values longer than
    ``max_width`` are cut, except in the ``wide`` columns."""

    def cell(v: Any, column: str) -> str:
        if v is None:
            s = ""
        elif isinstance(v, bool):
            s = "true" if v else "false"
        else:
            s = json.dumps(v) if isinstance(v, dict | list) else str(v)
        return s if len(s) <= max_width or column in wide else s[: max_width - 1] + "…"

    body = [[cell(v, c) for v, c in zip(row, columns, strict=True)] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join(
        [line, sep] + ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    )


def client_for(args: argparse.Namespace) -> Any:
    """The query API client of a command: in this process, or ``--url`` (or the running server)."""
    from lake.client import LakeClient

    url = getattr(args, "url", None)
    key = getattr(args, "key", None) or (settings_key() if url else None)
    return LakeClient(url, key=key)


def settings_key() -> str | None:
    """The API key for ``--url`` calls: ``LAKE_API_KEY``."""
    from lakehouse.config import load_settings

    return load_settings().api_key


def check(response: Any) -> Any:
    if not response.ok:
        body = response.body or {}
        raise SystemExit(f"error {response.status}: {body.get('error', '')}: {body.get('message', body)}")
    return response.body
