"""Unit tests of the Takeout building blocks: member checks, limited reads, ranges, the JSON
array stream, product parsers, and the geo helpers (no object store needed)."""

from __future__ import annotations

import io
import json
import math
import random
from typing import Any

import pytest

from lakehouse.config import Settings
from lakehouse.errors import CorruptMember, UnparseableMember, UnsafeMember
from lakehouse.query.geo import EARTH_RADIUS_M, circle_box, haversine_m
from lakehouse.takeout import jsonstream
from lakehouse.takeout.archive import LimitedReader, Member, check_member, plan_ranges, safe_path
from lakehouse.takeout.products import iso_from_epoch, relative, route


def settings(**kw: Any) -> Settings:
    return Settings(**kw)


@pytest.mark.parametrize("path", ["../x.json", "a/../../x", "/etc/passwd", "C:/x", "\\\\server\\x", "a\x00b"])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafeMember) as info:
        safe_path(path)
    assert info.value.rule == "path"


def test_safe_paths_pass() -> None:
    assert safe_path("Takeout/My Activity/Search/MyActivity.json").endswith(".json")
    assert safe_path("Takeout/a..b/c.json")


def test_member_checks_name_their_rule() -> None:
    s = settings(takeout_max_ratio=10, takeout_max_member_bytes=50 << 20)
    cases = {
        "symlink": Member(0, "a", 10, 10, is_symlink=True),
        "special": Member(0, "a", 10, 10, is_special=True),
        "encrypted": Member(0, "a", 10, 10, encrypted=True),
        "size": Member(0, "a", 60 << 20, 60 << 20),
        "ratio": Member(0, "a", 20 << 20, 1 << 20),
    }
    for rule, member in cases.items():
        with pytest.raises(UnsafeMember) as info:
            check_member(member, s)
        assert info.value.rule == rule
    check_member(Member(0, "a", 5 << 20, 1 << 20), s)  # ratio 5: fine
    check_member(Member(0, "a", 1000, 1), s)  # tiny: no ratio check


def test_a_member_that_inflates_past_its_header_is_stopped() -> None:
    s = settings(takeout_max_ratio=10)
    member = Member(0, "a", size=100, compressed_size=100)  # the header lies: 100 bytes
    reader = LimitedReader(io.BytesIO(b"\0" * (3 << 20)), member, s)
    with pytest.raises(UnsafeMember) as info:
        while reader.read(1 << 16):
            pass
    assert info.value.rule == "ratio" and reader.read_bytes > 1 << 20


def test_read_errors_become_corrupt_members() -> None:
    import zlib

    class Broken(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            raise zlib.error("invalid stored block lengths")

    with pytest.raises(CorruptMember, match="invalid stored block"):
        LimitedReader(Broken(), Member(0, "a", 10, 10), settings()).read(10)


def test_ranges_cover_every_member_once_in_order() -> None:
    rng = random.Random(3)
    members = [Member(i, f"m{i}", rng.randrange(1, 1000), 1) for i in range(200)]
    ranges = plan_ranges(members, 5000)
    assert ranges[0][0] == 0 and ranges[-1][1] == 200
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    for start, end in ranges:
        size = sum(m.size for m in members[start:end])
        assert size <= 5000 or end - start == 1
    assert plan_ranges([], 10) == []


class Trickle(io.BytesIO):
    """Returns at most 3 bytes per read: every token straddles a chunk boundary."""

    def read(self, n: int | None = -1) -> bytes:
        return super().read(3)


def test_json_arrays_stream_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonstream, "CHUNK", 3)
    doc = {"skip": {"a": [1, "]}"]}, "locations": [{"k": "v" * 20}, 12345, "s,]", [], 1.5e3], "after": 1}
    got = list(jsonstream.iter_array(Trickle(json.dumps(doc).encode()), "m", key="locations"))
    assert got == doc["locations"]
    assert list(jsonstream.iter_array(Trickle(b"\xef\xbb\xbf [ ] "), "m")) == []


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        (b'[{"a": 1}, {"b": ', None, "truncated"),
        (b'{"other": []}', "locations", "no 'locations' array"),
        (b'{"locations": {}}', "locations", "expected an array"),
        (b"[1 2]", None, "expected ',' or ']'"),
        (b"\xff\xfe[]", None, "not UTF-8"),
        (b"", None, "expected a JSON array, found the end"),
    ],
)
def test_bad_json_members_are_unparseable_with_a_reason(data: bytes, key: str | None, message: str) -> None:
    with pytest.raises(UnparseableMember, match=message) as info:
        list(jsonstream.iter_array(io.BytesIO(data), "m", key=key))
    assert info.value.rule == "parse"


def test_routing_and_helpers() -> None:
    assert relative("takeout-2024/Takeout/Keep/a.json") == "Keep/a.json"
    assert route("Takeout/Keep/a.json")[0].table == "takeout_keep"  # type: ignore[index]
    assert route("Takeout/Chrome/History.json")[0].table == "takeout_chrome"  # type: ignore[index]
    assert route("Takeout/Keep/attachment.png") is None
    assert iso_from_epoch("1700000000123", 1000) == "2023-11-14T22:13:20.123000+00:00"
    assert iso_from_epoch("soon", 1000) == "soon"


def test_circle_boxes_hold_their_circles() -> None:
    rng = random.Random(5)
    for _ in range(300):
        lon, lat = rng.uniform(-180, 180), rng.uniform(-89, 89)
        radius = 10 ** rng.uniform(1, 6.9)
        box = circle_box(lon, lat, radius)
        for _ in range(20):  # points on the circle's edge
            bearing = rng.uniform(0, 2 * math.pi)
            d = radius / EARTH_RADIUS_M * 0.999999
            p1, l1 = math.radians(lat), math.radians(lon)
            p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))
            l2 = l1 + math.atan2(
                math.sin(bearing) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
            )
            plat, plon = math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180
            assert haversine_m(lon, lat, plon, plat) <= radius
            assert box.min_lat <= plat <= box.max_lat
            if not box.all_lons:
                inside = (
                    box.min_lon <= plon <= box.max_lon
                    if box.min_lon <= box.max_lon
                    else (plon >= box.min_lon or plon <= box.max_lon)
                )
                assert inside, (lon, lat, radius, plon, plat, box)


# --- HTML My Activity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "iso"),
    [
        ("Jun 23, 2015, 2:43:45 PM", "2015-06-23T14:43:45+00:00"),  # pre-2018: no zone, UTC
        ("Jan 22, 2020, 8:34:00 PM UTC", "2020-01-22T20:34:00+00:00"),
        ("Jan 25, 2019, 8:23:48 AM GMT", "2019-01-25T08:23:48+00:00"),
        ("Sep 10, 2019, 8:51:45 PM PDT", "2019-09-11T03:51:45+00:00"),
        ("Jan 5, 2021, 10:04:01\u202fAM CET", "2021-01-05T09:04:01+00:00"),  # newer narrow space
        ("Jan\xa05, 2021, 12:04:01 AM EST", "2021-01-05T05:04:01+00:00"),
        ("Jan 5, 2021, 10:04:01 AM XYZ", None),  # a zone Lake does not know: the row is quarantined
        ("05.01.2021, 10:04:01 MEZ", None),  # another language
        ("Feb 30, 2021, 10:04:01 AM UTC", None),
    ],
)
def test_html_activity_dates(line: str, iso: str | None) -> None:
    from lakehouse.takeout.htmlactivity import parse_date

    assert parse_date(line) == iso


def test_html_activity_streams_cells_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.takeout import htmlactivity
    from tests.takeout_synth import html_cell, html_page

    monkeypatch.setattr(htmlactivity, "CHUNK", 7)
    page = html_page(
        [
            html_cell(
                "YouTube",
                "Watched Cats & dogs",
                "https://www.youtube.com/watch?v=1&t=2",
                "Jan 5, 2021, 10:04:01 AM UTC",
                subtitles=[("Chan", "https://www.youtube.com/channel/c")],
                products=["YouTube"],
                details=["From Google Ads", "Watched on TV"],
            ),
            html_cell("Search", "Searched for x", "https://g.co/x", None),
            html_cell("Maps", "Used Maps", None, "Jun 23, 2015, 2:43:45 PM", products=["Maps", "Search"]),
        ]
    ).replace(b"&t=2", b"&amp;t=2")
    got = list(htmlactivity.iter_activities(Trickle(page), "m.html"))
    assert got == [
        {
            "header": "YouTube",
            "title": "Watched Cats & dogs",
            "titleUrl": "https://www.youtube.com/watch?v=1&t=2",
            "time": "2021-01-05T10:04:01+00:00",
            "subtitles": [{"name": "Chan", "url": "https://www.youtube.com/channel/c"}],
            "products": ["YouTube"],
            "details": [{"name": "From Google Ads"}, {"name": "Watched on TV"}],
        },
        ("an activity cell without a title and a date", {"header": "Search", "lines": ["Searched for x"]}),
        {
            "header": "Maps",
            "title": "Used Maps",
            "time": "2015-06-23T14:43:45+00:00",
            "products": ["Maps", "Search"],
        },
    ]
    with pytest.raises(UnparseableMember, match="not UTF-8"):
        list(htmlactivity.iter_activities(io.BytesIO(b"<div>\xff\xfe</div>"), "m.html"))


def test_html_members_route_to_activity_and_youtube() -> None:
    assert route("Takeout/My Activity/Search/MyActivity.html")[0].table == "takeout_activity"  # type: ignore[index]
    assert route("Takeout/My Activity/Chrome/MyActivity-12.html")[0].table == "takeout_activity"  # type: ignore[index]
    assert route("Takeout/YouTube/history/search-history.html")[0].table == "takeout_youtube"  # type: ignore[index]
    assert route("Takeout/archive_browser.html") is None
