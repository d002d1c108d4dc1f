"""Where a Lake checkout lives: the folder of ``LAKE_HOME`` and of the contracts by default.

Standard library only, so the ``lake`` command can find a running ``lake serve`` without
loading the settings machinery.
"""

from __future__ import annotations

from pathlib import Path

CONTRACTS = Path("catalog") / "datasets"


def project_root(start: Path | None = None) -> Path:
    """The Lake project holding ``start`` (default: the working folder): the nearest folder, from
    ``start`` upwards, with a ``catalog/datasets`` folder; else the checkout Lake runs from (an
    editable install); else ``start`` itself."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONTRACTS).is_dir():
            return folder
    source = Path(__file__).resolve().parent.parent
    if (source / CONTRACTS).is_dir():
        return source
    return here


def default_home() -> Path:
    """``LAKE_HOME`` when it is not set: ``.lake`` in the project root."""
    return project_root() / ".lake"


def default_contracts_dir() -> Path:
    """``LAKE_CONTRACTS_DIR`` when it is not set: ``catalog/datasets`` in the project root."""
    return project_root() / CONTRACTS
