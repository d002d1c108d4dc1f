"""Time-series rollups: one column of a Lake table aggregated per time bucket, with DuckDB.

A rollup is one generated read-only SELECT run by :func:`lakehouse.query.engine.run_sql` (the same
gate, tenancy filter and limits as ``POST /sql``). The time range filters the table's event-time
column, so DuckDB's ``iceberg_scan`` reads only the month partitions the range touches. Every
name in the statement is checked against the table's schema first and quoted; values are
parsed, never pasted.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.access.auth import LOCAL, Principal
from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.duck import ident, literal
from lakehouse.duck import parse_time as parse_iso
from lakehouse.errors import BadRequest, TableNotFound
from lakehouse.query.engine import QueryResult, run_sql
from lakehouse.query.scan import current_table, row_filter

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.schema import Schema

AGGREGATES = ("avg", "min", "max", "sum", "count")
BUCKETS = {"1m": "minute", "1h": "hour", "1d": "day", "1w": "week", "1mo": "month", "1y": "year"}
NUMERIC_TYPES = ("int", "long", "float", "double", "decimal")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class TableInfo:
    """What a generated query needs to know about a table."""

    name: str  # unqualified
    columns: dict[str, str]  # name -> Iceberg type
    event_time: str | None


def table_info(
    settings: Settings, name: str, catalog: Catalog | None = None, principal: Principal = LOCAL
) -> TableInfo:
    """Columns and event-time column of a Lake table (``name`` or ``<namespace>.name``).

    The principal's right to read the table is checked first: a key that may not read it gets a
    403 before anything about the table (its columns) can show in an error.
    """
    bare = name.split(".", 1)[1] if name.startswith(f"{settings.namespace}.") else name
    if not _NAME.match(bare):
        raise TableNotFound(f"no table {name!r}: table names are letters, digits and underscores")
    row_filter(settings, principal, bare)
    table = current_table(catalog or get_catalog(settings), settings, bare)
    schema: Schema = table.schema()
    columns = {f.name: str(f.field_type) for f in schema.fields}
    event_time = table.properties.get("lake.event-time")
    if event_time == "":  # the contract declares none (a reference table)
        return TableInfo(bare, columns, None)
    if event_time not in columns:
        event_time = next((c for c, t in columns.items() if t.startswith("timestamp")), None)
    return TableInfo(bare, columns, event_time)


def column(info: TableInfo, name: str, what: str) -> str:
    if name not in info.columns:
        known = ", ".join(info.columns)
        raise BadRequest(f"{what} {name!r} is not a column of {info.name} (columns: {known})")
    return name


def parse_time(value: str | None, what: str) -> dt.datetime | None:
    """An ISO-8601 date or time (naive means UTC)."""
    if value is None or value == "":
        return None
    return parse_iso(value, what)


def time_filter(info: TableInfo, start: str | None, end: str | None) -> list[str]:
    """``event_time >= start AND event_time < end`` (either side optional)."""
    lo, hi = parse_time(start, "from"), parse_time(end, "to")
    if lo and hi and lo >= hi:
        raise BadRequest(f"from ({lo.isoformat()}) must be before to ({hi.isoformat()})")
    if (lo or hi) and info.event_time is None:
        raise BadRequest(
            f"{info.name} has no event time (its contract names no event_time): from/to cannot filter it"
        )
    conds = []
    if lo:
        conds.append(f"{ident(info.event_time or '')} >= TIMESTAMPTZ {literal(lo.isoformat())}")
    if hi:
        conds.append(f"{ident(info.event_time or '')} < TIMESTAMPTZ {literal(hi.isoformat())}")
    return conds


def rollup_sql(
    info: TableInfo,
    settings: Settings,
    column_name: str | None,
    agg: str,
    bucket: str,
    start: str | None = None,
    end: str | None = None,
    group_by: str | None = None,
) -> str:
    """The rollup statement: ``bucket[, group], value`` ordered by bucket (then group)."""
    if agg not in AGGREGATES:
        raise BadRequest(f"agg {agg!r} is not one of {', '.join(AGGREGATES)}")
    if bucket not in BUCKETS:
        raise BadRequest(f"bucket {bucket!r} is not one of {', '.join(BUCKETS)}")
    if info.event_time is None:
        raise BadRequest(
            f"{info.name} has no event time (its contract names no event_time): there is no time to "
            "bucket by; query it with POST /sql"
        )
    if column_name:
        column(info, column_name, "column")
        if agg in ("avg", "sum") and not info.columns[column_name].startswith(NUMERIC_TYPES):
            raise BadRequest(f"{agg} needs a numeric column; {column_name} is {info.columns[column_name]}")
        value = f"{agg}({ident(column_name)})"
    elif agg == "count":
        value = "count(*)"
    else:
        raise BadRequest(f"agg {agg} needs a column")
    select = [f"date_trunc({literal(BUCKETS[bucket])}, {ident(info.event_time)}) AS bucket"]
    if group_by:
        select.append(ident(column(info, group_by, "group_by")))
    select.append(f"{value} AS value")
    where = time_filter(info, start, end)
    return (
        f"SELECT {', '.join(select)} FROM {ident(settings.namespace)}.{ident(info.name)}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " GROUP BY ALL ORDER BY ALL"
    )


def rollup(
    settings: Settings,
    table: str,
    column_name: str | None,
    agg: str,
    bucket: str,
    start: str | None = None,
    end: str | None = None,
    group_by: str | None = None,
    explain: bool = False,
    catalog: Catalog | None = None,
    principal: Principal = LOCAL,
) -> QueryResult:
    """Aggregate ``column_name`` with ``agg`` per ``bucket`` of the event time in ``[start, end)``.

    Raises:
        BadRequest: unknown column, aggregate or bucket; bad times (HTTP 400).
        TableNotFound: no such table (HTTP 404).
    """
    catalog = catalog or get_catalog(settings)
    info = table_info(settings, table, catalog, principal)
    sql = rollup_sql(info, settings, column_name, agg, bucket, start, end, group_by)
    return run_sql(settings, sql, explain=explain, catalog=catalog, principal=principal)
