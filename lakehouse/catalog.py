"""The one way into the Iceberg catalog: :func:`get_catalog`.

Precedence of the connection settings is that of :func:`lakehouse.config.load_settings`:
explicit settings, then ``LAKE_*`` environment variables, then the running local stack, then
the embedded default (an SQLite SQL catalog under ``LAKE_HOME``).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
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


def current_location(catalog: Catalog, ident: str) -> tuple[str | None, Callable[[], Table]]:
    """The table's current metadata location by one catalog read, and how to load the table from
    that read (location None: the catalog cannot say; load it the usual way)."""
    from pyiceberg.exceptions import NoSuchTableError

    namespace, _, name = ident.rpartition(".")
    try:
        from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
    except ImportError:  # the SQL catalog's extras are not installed: not that catalog
        SqlCatalog = None  # type: ignore[assignment,misc]  # noqa: N806
    if SqlCatalog is not None and isinstance(catalog, SqlCatalog):
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        with Session(catalog.engine) as session:
            stmt = select(IcebergTables).where(
                IcebergTables.catalog_name == catalog.name,
                IcebergTables.table_namespace == namespace,
                IcebergTables.table_name == name,
            )
            if (type_filter := catalog._iceberg_type_filter()) is not None:
                stmt = stmt.where(type_filter)
            row = session.scalar(stmt)
        if row is None:
            raise NoSuchTableError(f"Table does not exist: {ident}")
        return row.metadata_location, functools.partial(catalog._convert_orm_to_iceberg, row)
    from pyiceberg.catalog.glue import GlueCatalog

    if isinstance(catalog, GlueCatalog):
        glue_table = catalog._get_glue_table(database_name=namespace, table_name=name)
        location = (glue_table.get("Parameters") or {}).get("metadata_location")
        return location, functools.partial(catalog._convert_glue_to_iceberg, glue_table)
    return None, functools.partial(catalog.load_table, ident)
