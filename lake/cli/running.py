"""The ``lake serve`` of a ``LAKE_HOME``: where it listens, so read commands can use it.

``lake serve`` writes ``$LAKE_HOME/serve.json`` (owner-only: it holds the key the server made
for the command line) and removes it when it stops. A read command (``lake sql``, ``lake
search``, ...) finds it here and asks that warm process instead of loading the query engine,
the catalog and the embedding models itself. Standard library only: this runs before anything
heavy is imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SERVE_FILE = "serve.json"
STACK_FILE = "stack.json"  # lakehouse.config.STACK_FILE, without importing the settings


def lake_home() -> Path:
    """``LAKE_HOME`` as the settings would resolve it, without loading them."""
    from lakehouse.paths import default_home

    explicit = os.environ.get("LAKE_HOME")
    return Path(explicit) if explicit else default_home()


def alive(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def register(home: Path, url: str, token: str | None) -> None:
    """Record this process as the home's server (for the stack running now)."""
    stack = _read(home / STACK_FILE) or {}
    record = {"url": url, "token": token, "pid": os.getpid(), "stack_pid": stack.get("pid")}
    tmp = home / (SERVE_FILE + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    tmp.replace(home / SERVE_FILE)


def unregister(home: Path) -> None:
    """Forget this process as the home's server (another server's record stays)."""
    record = _read(home / SERVE_FILE)
    if record is not None and record.get("pid") == os.getpid():
        (home / SERVE_FILE).unlink(missing_ok=True)


def find(home: Path) -> dict[str, Any] | None:
    """The running server of ``home`` (``url``, ``token``), if it serves the stack running now."""
    record = _read(home / SERVE_FILE)
    stack = _read(home / STACK_FILE)
    if record is None or stack is None or record.get("stack_pid") != stack.get("pid"):
        return None
    if not (alive(int(record["pid"])) and alive(int(stack["pid"]))):
        return None
    return record
