"""GET /timeseries and GET /geo against references: rollups against the same aggregation done by
a plain DuckDB over the same rows, location queries against a brute-force haversine."""

from __future__ import annotations

import datetime as dt
import io
import math
import random
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.query.geo import EARTH_RADIUS_M, haversine_m

pytestmark = pytest.mark.integration

CONTRACT = """
name: {name}
event_time: ts
retention_months: 1200
columns:
  ts:     {type: timestamp, required: true}
  id:     {type: long, required: true}
  device: {type: string}
  value:  {type: double}
  lat:    {type: double, min: -90, max: 90}
  lon:    {type: double, min: -180, max: 180}
"""
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def make_rows(n: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lat = rng.uniform(-89.9, 89.9) if i % 4 else rng.uniform(40, 60)  # a dense cluster too
        lon = rng.uniform(-180, 180) if i % 4 else rng.uniform(-10, 20)
        rows.append(
            {
                "ts": START + dt.timedelta(seconds=rng.randrange(14 * 30 * 86400)),
                "id": i,
                "device": f"d{i % 3}",
                "value": round(rng.gauss(20, 5), 3) if i % 17 else None,
                "lat": lat,
                "lon": lon,
            }
        )
    return rows


def parquet(rows: list[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def series(stack: dict[str, Any]) -> dict[str, Any]:
    """One dataset of 3000 rows over 14 months, ingested through the ingest function."""
    import uuid

    from lake.local.serve import deliver
    from lakehouse.config import load_settings
    from lakehouse.storage import s3_client

    settings = load_settings()
    name = f"t_{uuid.uuid4().hex[:10]}"
    (settings.contracts_dir / f"{name}.yaml").write_text(CONTRACT.replace("{name}", name))
    rows = make_rows(3000)
    key = f"{name}/rows.parquet"
    s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=parquet(rows))
    report = deliver(settings, settings.landing_bucket, key)["reports"][0]
    assert report["rows_accepted"] == 3000
    return {"name": name, "rows": rows}


def reference(rows: list[dict[str, Any]], sql: str) -> list[list[Any]]:
    """The same aggregation in a plain in-memory DuckDB over the same rows."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", pa.Table.from_pylist(rows))
    out = con.execute(sql).fetchall()
    con.close()
    return [[v.isoformat() if isinstance(v, dt.datetime) else v for v in row] for row in out]


def same(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:-1] == w[:-1]
        assert g[-1] == (None if w[-1] is None else pytest.approx(w[-1], rel=1e-9, abs=1e-9))


@pytest.mark.parametrize(
    ("bucket", "aggs"),
    [("1d", ("avg", "min", "max", "sum", "count")), ("1h", ("avg",)), ("1w", ("max",)), ("1mo", ("sum",))],
)
def test_rollups_agree_with_duckdb(
    series: dict[str, Any], client: Any, bucket: str, aggs: tuple[str, ...]
) -> None:
    unit = {"1h": "hour", "1d": "day", "1w": "week", "1mo": "month"}[bucket]
    for agg in aggs:
        body = client.timeseries(series["name"], agg, bucket, column="value").body
        assert body["columns"] == ["bucket", "value"], body
        want = reference(
            series["rows"], f"SELECT date_trunc('{unit}', ts) AS b, {agg}(value) FROM t GROUP BY 1 ORDER BY 1"
        )
        same(body["rows"], want)


def test_rollup_with_group_by_and_time_range(series: dict[str, Any], client: Any) -> None:
    body = client.timeseries(
        series["name"],
        "avg",
        "1d",
        column="value",
        start="2025-03-01",
        end="2025-04-15T12:00:00Z",
        group_by="device",
    ).body
    assert body["columns"] == ["bucket", "device", "value"]
    want = reference(
        series["rows"],
        "SELECT date_trunc('day', ts), device, avg(value) FROM t "
        "WHERE ts >= TIMESTAMPTZ '2025-03-01 00:00:00+00' AND ts < TIMESTAMPTZ '2025-04-15 12:00:00+00' "
        "GROUP BY ALL ORDER BY ALL",
    )
    same(body["rows"], want)
    counted = client.timeseries(series["name"], "count", "1mo").body["rows"]
    assert sum(r[1] for r in counted) == 3000


def test_a_rollup_reads_only_the_months_it_covers(series: dict[str, Any], client: Any) -> None:
    body = client.timeseries(
        series["name"], "sum", "1d", column="value", start="2025-06-01", end="2025-07-01", explain=True
    ).body
    assert body["stats"]["files_read"] == 1


def test_rollup_requests_are_checked(series: dict[str, Any], client: Any) -> None:
    name = series["name"]
    cases = [
        (client.timeseries(name, "median", "1d", column="value"), "agg 'median' is not one of"),
        (client.timeseries(name, "avg", "2d", column="value"), "bucket '2d' is not one of"),
        (client.timeseries(name, "avg", "1d", column="nope"), "column 'nope' is not a column"),
        (client.timeseries(name, "avg", "1d", column="device"), "avg needs a numeric column"),
        (client.timeseries(name, "avg", "1d", column="value", start="yesterday"), "not an ISO-8601"),
        (client.timeseries(name, "avg", "1d", column="value; DROP TABLE x"), "is not a column"),
    ]
    for response, message in cases:
        assert response.status == 400 and message in response.body["message"], response.body
    assert client.timeseries("no_such_table", "count", "1d").status == 404


# --- geo ---------------------------------------------------------------------------------------


def _ids(body: dict[str, Any]) -> list[int]:
    return [r[body["columns"].index("id")] for r in body["rows"]]


def in_box(r: dict[str, Any], min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> bool:
    if min_lon > max_lon:  # across the antimeridian
        lon_ok = r["lon"] >= min_lon or r["lon"] <= max_lon
    else:
        lon_ok = min_lon <= r["lon"] <= max_lon
    return lon_ok and min_lat <= r["lat"] <= max_lat


def test_bounding_boxes_agree_with_brute_force(series: dict[str, Any], client: Any) -> None:
    rows = series["rows"]
    boxes = [
        (-10.0, 40.0, 20.0, 60.0),
        (100.0, -50.0, 179.0, 10.0),
        (170.0, -30.0, -170.0, 30.0),
    ]  # last: across ±180
    for box in boxes:
        body = client.geo(series["name"], bbox=box).body
        want = sorted(r["id"] for r in rows if in_box(r, *box))
        assert sorted(_ids(body)) == want and want


def test_radius_queries_agree_with_brute_force_haversine(series: dict[str, Any], client: Any) -> None:
    rows = series["rows"]
    probes = [
        (5.0, 50.0, 300_000.0),  # in the dense cluster
        (179.5, 0.0, 2_000_000.0),  # across the antimeridian
        (0.0, 88.0, 700_000.0),  # over the pole
        (-60.0, -20.0, 5_000_000.0),  # a big circle
    ]
    for lon, lat, radius in probes:
        body = client.geo(series["name"], near=(lon, lat), radius_m=radius).body
        assert body["columns"][-1] == "distance_m"
        want = sorted(
            (d, r["id"]) for r in rows if (d := haversine_m(lon, lat, r["lon"], r["lat"])) <= radius
        )
        got = [(row[-1], row[body["columns"].index("id")]) for row in body["rows"]]
        assert [i for _, i in got] == [i for _, i in want] and want
        for (gd, _), (wd, _) in zip(got, want, strict=True):
            assert gd == pytest.approx(wd, rel=1e-9, abs=1e-6)


def test_geo_with_time_range_over_http(series: dict[str, Any], http_client: Any) -> None:
    body = http_client.geo(
        series["name"], near=(5.0, 50.0), radius_m=500_000, start="2025-02-01", end="2025-03-01"
    ).body
    lo, hi = dt.datetime(2025, 2, 1, tzinfo=dt.UTC), dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    want = {
        r["id"]
        for r in series["rows"]
        if lo <= r["ts"] < hi and haversine_m(5.0, 50.0, r["lon"], r["lat"]) <= 5e5
    }
    assert set(_ids(body)) == want and want


def test_geo_prunes_files_by_coordinate_statistics(
    dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: Any
) -> None:
    name = dataset(CONTRACT)
    north = [{"ts": START, "id": i, "lat": 45.0 + i / 100, "lon": 7.0} for i in range(50)]
    south = [{"ts": START, "id": 100 + i, "lat": -33.0 - i / 100, "lon": 151.0} for i in range(50)]
    upload(name, "north.parquet", parquet(north))
    upload(name, "south.parquet", parquet(south))
    body = client.geo(name, bbox=(0.0, 40.0, 10.0, 50.0), explain=True).body
    assert sorted(_ids(body)) == list(range(50))
    assert body["stats"]["files_read"] == 1
    near = client.geo(name, near=(151.0, -33.0), radius_m=1000.0, explain=True).body
    assert _ids(near) == [100] and near["stats"]["files_read"] == 1


def test_geo_requests_are_checked(series: dict[str, Any], client: Any) -> None:
    name = series["name"]
    cases = [
        (client.request("GET", f"/geo/{name}", query={"bbox": "1,2,3"}), "4 comma-separated"),
        (client.request("GET", f"/geo/{name}", query={"bbox": "0,50,10,40"}), "minlat is above maxlat"),
        (
            client.request("GET", f"/geo/{name}", query={"near": "0,95", "radius_m": "10"}),
            "latitude in [-90, 90]",
        ),
        (client.request("GET", f"/geo/{name}", query={"near": "0,0"}), "needs radius_m"),
        (client.request("GET", f"/geo/{name}", query={}), "exactly one of"),
    ]
    for response, message in cases:
        assert response.status == 400 and message in response.body["message"], response.body
    assert math.isclose(haversine_m(0, 0, 180, 0), math.pi * EARTH_RADIUS_M)
