"""The one way into the Iceberg catalog: :func:`get_catalog`.

Precedence of the connection settings is that of :func:`lakehouse.config.load_settings`:
explicit settings, then ``LAKE_*`` environment variables, then the running local stack, then
the embedded default (an SQLite SQL catalog under ``LAKE_HOME``).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from lakehouse.config import Settings
from lakehouse.errors import StoreUnavailable, TableNotFound

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


def catalog_properties(settings: Settings) -> dict[str, Any]:
    """The pyiceberg properties for the configured catalog."""
    props: dict[str, Any] = {"warehouse": settings.warehouse, **settings.pyiceberg_io_properties()}
    if settings.catalog_type == "sql":
        uri = settings.catalog_uri or f"sqlite:///{(settings.home / 'catalog.db').resolve()}"
        props.update({"type": "sql", "uri": uri, "init_catalog_tables": "true"})
    elif settings.catalog_type == "glue":
        props.update({"type": "glue", "glue.region": settings.region})
    else:
        props.update({"type": "rest", "uri": settings.catalog_uri or ""})
    props.update(settings.catalog_properties)
    return props


_catalogs: dict[str, Catalog] = {}
_catalogs_lock = threading.Lock()


def get_catalog(settings: Settings) -> Catalog:
    """The configured catalog, with the default namespace in it.

    One catalog per configuration and process: a warm function reuses its connections.
    """
    from pyiceberg.catalog import load_catalog
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    props = catalog_properties(settings)
    key = json.dumps([settings.catalog_name, settings.namespace, props], sort_keys=True, default=str)
    with _catalogs_lock:
        if key in _catalogs:
            return _catalogs[key]
    if settings.catalog_type == "sql":
        settings.home.mkdir(parents=True, exist_ok=True)
    try:
        catalog = load_catalog(settings.catalog_name, **props)
        try:
            catalog.create_namespace_if_not_exists(settings.namespace)
        except NamespaceAlreadyExistsError:  # a concurrent creator won
            pass
        except Exception:  # the SQL catalog reports a lost creation race as a constraint violation
            if not catalog.namespace_exists(settings.namespace):
                raise
    except OSError as e:
        raise StoreUnavailable(f"catalog unreachable: {e}") from e
    with _catalogs_lock:
        return _catalogs.setdefault(key, catalog)


def qualify(settings: Settings, name: str) -> str:
    """``table`` or ``namespace.table`` → ``namespace.table``."""
    return name if "." in name else f"{settings.namespace}.{name}"


def load_table(catalog: Catalog, settings: Settings, name: str) -> Table:
    """Load a table by (optionally qualified) name, with a clear error when it is missing."""
    from pyiceberg.exceptions import NoSuchTableError

    ident = qualify(settings, name)
    if any(not part.strip() for part in ident.split(".")):  # pyiceberg would raise ValueError
        raise TableNotFound(f"{name!r} is not a table name (empty namespace or table segment)")
    try:
        return catalog.load_table(ident)
    except NoSuchTableError as e:
        raise TableNotFound(f"no table {ident!r} in the catalog") from e


def list_tables(catalog: Catalog, settings: Settings) -> list[str]:
    """Qualified names of every table in the default namespace, sorted."""
    return sorted(".".join(ident) for ident in catalog.list_tables(settings.namespace))
