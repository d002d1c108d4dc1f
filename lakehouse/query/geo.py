"""Location queries over a table with latitude/longitude columns: bounding box and radius.

Both run as one generated read-only SELECT through :func:`lakehouse.query.engine.run_sql`. The box
(for a radius: the smallest lat/lon box holding the circle) is a plain range filter on the
coordinate columns, so DuckDB's ``iceberg_scan`` skips data files whose column statistics lie
outside it; an optional time range prunes month partitions. A radius query then keeps rows
whose exact great-circle distance (haversine on the mean Earth radius, in metres) is within
the radius, nearest first, with the distance as ``distance_m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.access.auth import LOCAL, Principal
from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.duck import ident
from lakehouse.errors import BadRequest
from lakehouse.query.engine import QueryResult, run_sql
from lakehouse.query.timeseries import NUMERIC_TYPES, TableInfo, column, table_info, time_filter

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean Earth radius
MAX_RADIUS_M = math.pi * EARTH_RADIUS_M  # half the circumference: the whole sphere
_PAD = 1e-9  # degrees added to derived boxes so float rounding never drops a boundary row


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two points (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class Box:
    """A lat/lon box; ``min_lon > max_lon`` means it crosses the antimeridian."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float
    all_lons: bool = False


def _floats(text: str, n: int, what: str) -> list[float]:
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError as e:
        raise BadRequest(f"{what} {text!r} must be {n} comma-separated numbers") from e
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise BadRequest(f"{what} {text!r} must be {n} comma-separated finite numbers")
    return values


def _check_point(lon: float, lat: float, what: str) -> None:
    if not -180 <= lon <= 180 or not -90 <= lat <= 90:
        raise BadRequest(f"{what}: longitude must be in [-180, 180] and latitude in [-90, 90]")


def parse_bbox(text: str) -> Box:
    """``minlon,minlat,maxlon,maxlat`` (``minlon > maxlon``: across the antimeridian)."""
    min_lon, min_lat, max_lon, max_lat = _floats(text, 4, "bbox")
    _check_point(min_lon, min_lat, "bbox")
    _check_point(max_lon, max_lat, "bbox")
    if min_lat > max_lat:
        raise BadRequest(f"bbox {text!r}: minlat is above maxlat")
    return Box(min_lon, min_lat, max_lon, max_lat)


def circle_box(lon: float, lat: float, radius_m: float) -> Box:
    """The smallest lat/lon box that holds every point within ``radius_m`` of (lon, lat)."""
    angle = radius_m / EARTH_RADIUS_M
    dlat = math.degrees(angle)
    min_lat, max_lat = lat - dlat - _PAD, lat + dlat + _PAD
    if min_lat <= -90 or max_lat >= 90 or angle >= math.pi / 2:
        return Box(-180, max(min_lat, -90), 180, min(max_lat, 90), all_lons=True)
    dlon = math.degrees(math.asin(min(1.0, math.sin(angle) / math.cos(math.radians(lat))))) + _PAD
    min_lon, max_lon = lon - dlon, lon + dlon
    if min_lon < -180:
        min_lon += 360
    if max_lon > 180:
        max_lon -= 360
    return Box(min_lon, min_lat, max_lon, max_lat)


def box_filter(box: Box, lon: str, lat: str) -> list[str]:
    conds = [f"{lat} BETWEEN {box.min_lat!r} AND {box.max_lat!r}"]
    if box.all_lons:
        return conds
    if box.min_lon <= box.max_lon:
        conds.append(f"{lon} BETWEEN {box.min_lon!r} AND {box.max_lon!r}")
    else:
        conds.append(f"({lon} >= {box.min_lon!r} OR {lon} <= {box.max_lon!r})")
    return conds


def _coordinates(info: TableInfo, lat_column: str, lon_column: str) -> tuple[str, str]:
    for name, what in ((lat_column, "lat_column"), (lon_column, "lon_column")):
        column(info, name, what)
        if not info.columns[name].startswith(NUMERIC_TYPES):
            raise BadRequest(f"{what} {name} is {info.columns[name]}, not a number")
    return ident(lat_column), ident(lon_column)


def geo_sql(
    info: TableInfo,
    settings: Settings,
    bbox: str | None = None,
    near: str | None = None,
    radius_m: float | None = None,
    start: str | None = None,
    end: str | None = None,
    lat_column: str = "lat",
    lon_column: str = "lon",
) -> str:
    lat, lon = _coordinates(info, lat_column, lon_column)
    table = f"{ident(settings.namespace)}.{ident(info.name)}"
    where = time_filter(info, start, end)
    if (bbox is None) == (near is None):
        raise BadRequest("give exactly one of bbox=minlon,minlat,maxlon,maxlat or near=lon,lat&radius_m=")
    order = ident(info.event_time) if info.event_time else lat
    if bbox is not None:
        if radius_m is not None:
            raise BadRequest("radius_m goes with near=, not bbox=")
        where += box_filter(parse_bbox(bbox), lon, lat)
        return f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY {order}"
    assert near is not None
    lon0, lat0 = _floats(near, 2, "near")
    _check_point(lon0, lat0, "near")
    if radius_m is None or not math.isfinite(radius_m) or radius_m <= 0:
        raise BadRequest("near= needs radius_m=, a positive number of metres")
    where += box_filter(circle_box(lon0, lat0, min(radius_m, MAX_RADIUS_M)), lon, lat)
    distance = (
        f"2 * {EARTH_RADIUS_M!r} * asin(least(1.0, sqrt("
        f"pow(sin(radians({lat} - {lat0!r}) / 2), 2) + "
        f"cos(radians({lat0!r})) * cos(radians({lat})) * pow(sin(radians({lon} - {lon0!r}) / 2), 2))))"
    )
    return (
        f"SELECT * FROM (SELECT *, {distance} AS distance_m FROM {table} WHERE {' AND '.join(where)}) "
        f"WHERE distance_m <= {float(radius_m)!r} ORDER BY distance_m, {order}"
    )


def geo_query(
    settings: Settings,
    table: str,
    bbox: str | None = None,
    near: str | None = None,
    radius_m: float | None = None,
    start: str | None = None,
    end: str | None = None,
    lat_column: str = "lat",
    lon_column: str = "lon",
    explain: bool = False,
    catalog: Catalog | None = None,
    principal: Principal = LOCAL,
) -> QueryResult:
    """Rows inside a bounding box, or within ``radius_m`` metres of a point (nearest first).

    Raises:
        BadRequest: bad box, point, radius, columns or times (HTTP 400).
        TableNotFound: no such table (HTTP 404).
    """
    catalog = catalog or get_catalog(settings)
    info = table_info(settings, table, catalog, principal)
    sql = geo_sql(info, settings, bbox, near, radius_m, start, end, lat_column, lon_column)
    return run_sql(settings, sql, explain=explain, catalog=catalog, principal=principal)
