"""What the ``lake`` command prints, and the client its read commands use."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from lakehouse.config import load_settings


def out(text: str = "") -> None:
    print(text, flush=True)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 48) -> str:
    """A plain text table."""

    def cell(v: Any) -> str:
        s = "" if v is None else json.dumps(v) if isinstance(v, dict | list) else str(v)
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    body = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join(
        [line, sep] + ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    )


def client_for(args: argparse.Namespace) -> Any:
    from lake.client import LakeClient

    return LakeClient(getattr(args, "url", None), key=getattr(args, "key", None) or settings_key())


def settings_key() -> str | None:
    """The API key for ``--url`` calls: ``LAKE_API_KEY``."""
    return load_settings().api_key


def check(response: Any) -> Any:
    if not response.ok:
        body = response.body or {}
        raise SystemExit(f"error {response.status}: {body.get('error', '')}: {body.get('message', body)}")
    return response.body
