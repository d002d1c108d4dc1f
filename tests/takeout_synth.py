"""A synthetic Google Takeout export: every product Lake parses, two export-year variants each,
some bad records, some corrupt members, and members Lake keeps only as blobs.

``build()`` returns the members (path → bytes) and the counts Lake must report; ``to_zip`` and
``to_tgz`` pack them, and ``corrupt_crc`` breaks one member's bytes inside a zip.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

T = "Takeout/"


def _iso(t: dt.datetime, fraction: str = "ms") -> str:
    if fraction == "none":
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if fraction == "us":
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _ms(t: dt.datetime) -> str:
    return str(int(t.timestamp() * 1000))


def _usec(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


@dataclass
class Export:
    members: dict[str, bytes] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)  # table -> rows
    quarantined_rows: dict[str, int] = field(default_factory=dict)  # table -> rows
    quarantined_members: dict[str, str] = field(default_factory=dict)  # member -> rule
    stored: set[str] = field(default_factory=set)  # members kept as blobs only
    place_visits: int = 0
    html_activity: int = 0  # takeout_activity rows from MyActivity.html members

    def add(self, path: str, content: Any) -> None:
        self.members[T + path] = content if isinstance(content, bytes) else json.dumps(content).encode()


def _when(rng: random.Random, year: int) -> dt.datetime:
    start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    return start + dt.timedelta(seconds=rng.randrange(365 * 86400), microseconds=rng.randrange(1_000_000))


def _html_date(t: dt.datetime, zone: str | None) -> str:
    """``Jan 5, 2021, 10:04:01 AM`` plus `` <zone>`` (``t`` is shifted to the zone's time)."""
    offsets = {"UTC": 0, "GMT": 0, "PST": -8, "CET": 1}
    local = t + dt.timedelta(hours=offsets[zone or "UTC"])
    text = f"{local:%b} {local.day}, {local.year}, {local.hour % 12 or 12}:{local:%M:%S %p}"
    return f"{text} {zone}" if zone else text


def html_cell(
    header: str,
    title: str,
    url: str | None,
    date: str | None,
    *,
    subtitles: Sequence[tuple[str, str]] = (),
    products: Sequence[str] = (),
    details: Sequence[str] = (),
) -> str:
    """One activity of an HTML ``MyActivity.html`` in the shape Google's exports use."""
    verb, _, rest = title.partition(" ")
    body = f'{verb}&nbsp;<a href="{url}">{rest}</a>' if url else title
    for name, link in subtitles:
        body += f'<br><a href="{link}">{name}</a>'
    if date is not None:
        body += f"<br>{date}"
    caption = ""
    if products:
        caption += "<b>Products:</b><br>" + "".join(f"&emsp;{p}<br>" for p in products)
    if details:
        caption += "<b>Details:</b><br>" + "".join(f"&emsp;{d}<br>" for d in details)
    return (
        '<div class="outer-cell mdl-cell mdl-cell--12-col mdl-shadow--2dp"><div class="mdl-grid">'
        '<div class="header-cell mdl-cell mdl-cell--12-col">'
        f'<p class="mdl-typography--title">{header}<br></p></div>'
        f'<div class="content-cell mdl-cell mdl-cell--6-col mdl-typography--body-1">{body}</div>'
        '<div class="content-cell mdl-cell mdl-cell--6-col mdl-typography--body-1 '
        'mdl-typography--text-right"></div>'
        '<div class="content-cell mdl-cell mdl-cell--12-col mdl-typography--caption">'
        f"{caption}</div></div></div>\n"
    )


def html_page(cells: list[str]) -> bytes:
    return (
        '<html><head><meta charset="UTF-8"><title>My Activity</title><style>.x{}</style></head>'
        '<body><div class="mdl-grid">\n' + "".join(cells) + "</div></body></html>"
    ).encode()


def build(seed: int = 7) -> Export:
    rng = random.Random(seed)
    e = Export()

    # My Activity: 2019 shape (no products, ms fractions) and 2023 shape (µs, products, details).
    e.add(
        "My Activity/Search/MyActivity.json",
        [
            {
                "header": "Search",
                "title": f"Searched for thing {i}",
                "titleUrl": f"https://www.google.com/search?q={i}",
                "time": _iso(_when(rng, 2019)),
            }
            for i in range(30)
        ],
    )
    maps = [
        {
            "header": "Maps",
            "title": f"Viewed place {i}",
            "titleUrl": f"https://maps.google.com/?q={i}",
            "time": _iso(_when(rng, 2023), "us"),
            "products": ["Maps"],
            "details": [{"name": "From Google Ads"}],
            "subtitles": [{"name": "Somewhere", "url": "https://example.com"}],
            "activityControls": ["Web & App Activity"],
        }
        for i in range(25)
    ]
    maps.insert(7, {"header": "Maps", "title": "bad time", "time": "not-a-time", "products": ["Maps"]})
    e.add("My Activity/Maps/MyActivity.json", maps)
    e.members[T + "My Activity/YouTube/MyActivity.json"] = (b'[{"header": "YouTube", "title": "Watched')
    # My Activity as HTML (older exports): the pre-2018 shape (dates without a zone, products
    # only) with one cell that has no date, and the 2020 shape (zones, details, a title without
    # a link) split into MyActivity.html and MyActivity-2.html.
    old = [
        html_cell(
            "Search",
            f"Searched for html {i}",
            f"https://www.google.com/search?q=html+{i}",
            _html_date(_when(rng, 2016), "GMT" if i == 5 else None),
            products=["Search"],
        )
        for i in range(6)
    ]
    old.insert(2, html_cell("Search", "Searched for nothing", "https://www.google.com/search?q=x", None))
    e.members[T + "My Activity/Search/MyActivity.html"] = html_page(old)
    chrome_cells = [
        html_cell(
            "Chrome",
            f"Visited page {i}" if i != 2 else "Used Chrome",
            f"https://example.org/{i}" if i != 2 else None,
            _html_date(_when(rng, 2020), ("UTC", "PST", "CET")[i % 3]),
            products=["Chrome"],
            details=["From Google Ads"] if i == 0 else [],
        )
        for i in range(5)
    ]
    e.members[T + "My Activity/Chrome/MyActivity.html"] = html_page(chrome_cells[:3])
    e.members[T + "My Activity/Chrome/MyActivity-2.html"] = html_page(chrome_cells[3:])
    e.accepted["takeout_activity"] = 55 + 6 + 5
    e.quarantined_rows["takeout_activity"] = 1 + 1
    e.html_activity = 11
    e.quarantined_members[T + "My Activity/YouTube/MyActivity.json"] = "parse"

    # Location History: pre-2019 "Location History.json" with timestampMs; 2022 Records.json, ISO.
    old_locations = []
    for _ in range(40):
        t = _when(rng, 2018)
        old_locations.append(
            {
                "timestampMs": _ms(t),
                "latitudeE7": rng.randrange(-900_000_000, 900_000_000),
                "longitudeE7": rng.randrange(-1_800_000_000, 1_800_000_000),
                "accuracy": rng.randrange(5, 2000),
                "activity": [
                    {
                        "timestampMs": _ms(t),
                        "activity": [
                            {"type": "STILL", "confidence": 70},
                            {"type": "ON_FOOT", "confidence": 20},
                        ],
                    }
                ],
            }
        )
    e.add("Location History/Location History.json", {"locations": old_locations})
    new_locations: list[dict[str, Any]] = []
    for _ in range(59):
        t = _when(rng, 2022)
        new_locations.append(
            {
                "latitudeE7": rng.randrange(-900_000_000, 900_000_000),
                "longitudeE7": rng.randrange(-1_800_000_000, 1_800_000_000),
                "accuracy": rng.randrange(5, 200),
                "source": "WIFI",
                "deviceTag": rng.randrange(1, 10**9),
                "timestamp": _iso(t),
                "activity": [{"timestamp": _iso(t), "activity": [{"type": "IN_VEHICLE", "confidence": 90}]}],
            }
        )
    new_locations.insert(3, {"latitudeE7": "abc", "longitudeE7": 1, "timestamp": "2022-01-01T00:00:00Z"})
    e.add("Location History/Records.json", {"locations": new_locations})
    e.accepted["takeout_location"] = 99
    e.quarantined_rows["takeout_location"] = 1

    # Semantic Location History: 2018 (timestampMs durations) and 2023 (ISO, "(Timeline)" folder).
    def semantic(year: int, visits: int, segments: int, iso: bool) -> dict[str, Any]:
        objects: list[dict[str, Any]] = []
        for i in range(visits + segments):
            t = _when(rng, year)
            u = t + dt.timedelta(minutes=30)
            duration = (
                {"startTimestamp": _iso(t), "endTimestamp": _iso(u)}
                if iso
                else {"startTimestampMs": _ms(t), "endTimestampMs": _ms(u)}
            )
            if i < visits:
                objects.append(
                    {
                        "placeVisit": {
                            "location": {
                                "latitudeE7": rng.randrange(-800_000_000, 800_000_000),
                                "longitudeE7": rng.randrange(-1_700_000_000, 1_700_000_000),
                                "placeId": f"ChIJ{year}{i}",
                                "address": f"{i} Main St",
                                "name": f"Place {i}",
                                "locationConfidence": 80.5,
                            },
                            "duration": duration,
                            "placeConfidence": "HIGH_CONFIDENCE",
                        }
                    }
                )
            else:
                objects.append(
                    {
                        "activitySegment": {
                            "startLocation": {"latitudeE7": 515_000_000, "longitudeE7": -1_000_000},
                            "endLocation": {"latitudeE7": 516_000_000, "longitudeE7": -1_200_000},
                            "duration": duration,
                            "distance": 1234,
                            "activityType": "CYCLING",
                            "confidence": "HIGH",
                        }
                    }
                )
        return {"timelineObjects": objects}

    e.add(
        "Location History/Semantic Location History/2018/2018_JANUARY.json", semantic(2018, 5, 4, iso=False)
    )
    e.add(
        "Location History (Timeline)/Semantic Location History/2023/2023_MARCH.json",
        semantic(2023, 6, 3, iso=True),
    )
    e.accepted["takeout_places"] = 18
    e.place_visits = 11

    # Chrome: BrowserHistory.json (to 2023) and History.json (2024+), one item without a url.
    def chrome(n: int, year: int, extra: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "favicon_url": "https://example.com/favicon.ico",
                "page_transition": "LINK",
                "title": f"Page {i}",
                "url": f"https://example.com/{year}/{i}",
                "client_id": "abc==",
                "time_usec": _usec(_when(rng, year)),
                **extra,
            }
            for i in range(n)
        ]

    e.add("Chrome/BrowserHistory.json", {"Browser History": chrome(20, 2020, {})})
    new_chrome = chrome(14, 2024, {"ptoken": {}})
    new_chrome.append({"title": "no url", "time_usec": _usec(_when(rng, 2024))})
    e.add("Chrome/History.json", {"Browser History": new_chrome})
    e.accepted["takeout_chrome"] = 34
    e.quarantined_rows["takeout_chrome"] = 1

    # YouTube: pre-2017 "YouTube/" with snippet records; 2023 "YouTube and YouTube Music/" activity shape.
    def snippets(n: int, what: str) -> list[dict[str, Any]]:
        return [
            {"snippet": {"title": f"{what} {i}", "description": "", "publishedAt": _iso(_when(rng, 2016))}}
            for i in range(n)
        ]

    e.add("YouTube/history/watch-history.json", snippets(10, "Watched"))
    e.add("YouTube/history/search-history.json", snippets(5, "Searched for"))
    e.add(
        "YouTube and YouTube Music/history/watch-history.json",
        [
            {
                "header": "YouTube",
                "title": f"Watched video {i}",
                "titleUrl": f"https://www.youtube.com/watch?v={i}",
                "subtitles": [
                    {"name": f"Channel {i % 3}", "url": f"https://www.youtube.com/channel/{i % 3}"}
                ],
                "time": _iso(_when(rng, 2023)),
                "products": ["YouTube"],
                "activityControls": ["YouTube watch history"],
            }
            for i in range(12)
        ],
    )
    e.add(
        "YouTube and YouTube Music/history/search-history.json",
        [
            {
                "header": "YouTube",
                "title": f"Searched for cats {i}",
                "titleUrl": f"https://www.youtube.com/results?search_query=cats+{i}",
                "time": _iso(_when(rng, 2023)),
                "products": ["YouTube"],
            }
            for i in range(8)
        ],
    )
    # The HTML watch history of older exports: the channel is the line under the title.
    e.members[T + "YouTube/history/watch-history.html"] = html_page(
        [
            html_cell(
                "YouTube",
                f"Watched html video {i}",
                f"https://www.youtube.com/watch?v=h{i}",
                _html_date(_when(rng, 2019), "UTC"),
                subtitles=[(f"Channel {i}", f"https://www.youtube.com/channel/h{i}")],
                products=["YouTube"],
            )
            for i in range(4)
        ]
    )
    e.accepted["takeout_youtube"] = 35 + 4

    # Keep: 2018 notes (text only, no labels) and 2023 notes (checklists, labels, HTML).
    for i in range(4):
        t = _when(rng, 2018)
        e.add(
            f"Keep/Note {i}.json",
            {
                "color": "DEFAULT",
                "isTrashed": False,
                "isPinned": i == 0,
                "isArchived": False,
                "textContent": f"remember {i}",
                "title": f"Note {i}",
                "userEditedTimestampUsec": _usec(t),
                "createdTimestampUsec": _usec(t),
            },
        )
    for i in range(3):
        t = _when(rng, 2023)
        e.add(
            f"Keep/List {i}.json",
            {
                "color": "YELLOW",
                "isTrashed": False,
                "isPinned": False,
                "isArchived": i == 2,
                "title": f"List {i}",
                "userEditedTimestampUsec": _usec(t + dt.timedelta(days=1)),
                "createdTimestampUsec": _usec(t),
                "listContent": [
                    {"textHtml": "milk", "text": "milk", "isChecked": False},
                    {"textHtml": "eggs", "text": "eggs", "isChecked": True},
                ],
                "labels": [{"name": "shopping"}, {"name": "home"}],
                "textContentHtml": "<p>x</p>",
            },
        )
    e.members[T + "Keep/Broken.json"] = b"{not json"
    e.accepted["takeout_keep"] = 7
    e.quarantined_members[T + "Keep/Broken.json"] = "parse"

    # Kept as blobs only: an HTML index, a photo, a nested archive.
    e.members[T + "archive_browser.html"] = b"<html><body>Takeout</body></html>"
    e.members[T + "Google Photos/Trip/IMG_0001.jpg"] = bytes(rng.randrange(256) for _ in range(4096))
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as z:
        z.writestr("inner.txt", "hello")
    e.members[T + "Drive/backup.zip"] = nested.getvalue()
    e.stored |= {T + "archive_browser.html", T + "Google Photos/Trip/IMG_0001.jpg", T + "Drive/backup.zip"}
    return e


CORRUPT_MEMBER = T + "Fit/corrupt.json"


def to_zip(members: dict[str, bytes], corrupt: bool = True) -> bytes:
    """A zip of the members (deflated), plus one stored member whose bytes fail their CRC."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in members.items():
            z.writestr(path, data)
        if corrupt:
            z.writestr(zipfile.ZipInfo(CORRUPT_MEMBER), b'{"fit": "' + b"x" * 200 + b'"}', zipfile.ZIP_STORED)
    data = bytearray(buf.getvalue())
    if corrupt:
        info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(CORRUPT_MEMBER)
        start = info.header_offset + 30 + len(CORRUPT_MEMBER.encode())
        data[start + 20] ^= 0xFF  # flip a byte of the stored content: the CRC no longer matches
    return bytes(data)


def to_tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def set_zip_flag(data: bytes, name: str, flag: int) -> bytes:
    """Set a general-purpose flag bit (0x1: encrypted) of one member, in both of its headers."""
    out = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    out[info.header_offset + 6] |= flag
    raw = name.encode()
    pos = out.find(b"PK\x01\x02")
    while pos != -1:
        length = int.from_bytes(out[pos + 28 : pos + 30], "little")
        if bytes(out[pos + 46 : pos + 46 + length]) == raw:
            out[pos + 8] |= flag
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)
