"""Writes ``takeout-20250101T000000Z-001.zip``: a small Google Takeout export for ``make demo``
and the README's Takeout examples (Keep notes, search activity, Chrome history, places).

Run from the repository root: ``python infra/samples/make_takeout_sample.py``. The output is
byte-for-byte the same on every run (fixed times, fixed member order).
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "takeout-20250101T000000Z-001.zip"
FIXED = (2025, 1, 1, 0, 0, 0)  # zip member timestamps

NOTES = [
    ("Shopping list", "Buy milk, eggs, bread and coffee beans from the shop on the corner.", 2024, 3),
    ("Bike repair", "The rear brake squeaks; new pads and a chain oil before the weekend ride.", 2024, 5),
    ("Book club", "Read chapters 4 to 7 of the novel and bring questions for Thursday.", 2024, 6),
    ("Trip to Paris", "Eiffel tower at sunset, then dinner near the river. Passport in the drawer.", 2024, 7),
    ("Garden", "Water the tomatoes every morning; plant basil next to them in spring.", 2024, 8),
]


def _usec(year: int, month: int, day: int = 5, hour: int = 9) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=dt.UTC).timestamp() * 1_000_000)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def members() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for title, text, year, month in NOTES:
        note = {
            "color": "DEFAULT",
            "isTrashed": False,
            "isPinned": False,
            "isArchived": False,
            "textContent": text,
            "title": title,
            "userEditedTimestampUsec": _usec(year, month, 6),
            "createdTimestampUsec": _usec(year, month),
        }
        out[f"Takeout/Keep/{title}.json"] = json.dumps(note, indent=1).encode()
    searches = [
        {
            "header": "Search",
            "title": f"Searched for {what}",
            "titleUrl": f"https://www.google.com/search?q={what.replace(' ', '+')}",
            "time": _iso(dt.datetime(2024, month, 10 + i, 20, tzinfo=dt.UTC)),
            "products": ["Search"],
        }
        for i, (what, month) in enumerate(
            [("bike brake pads", 5), ("paris museums", 6), ("basil growing", 8), ("coffee grinder", 3)]
        )
    ]
    out["Takeout/My Activity/Search/MyActivity.json"] = json.dumps(searches, indent=1).encode()
    history = [
        {
            "page_transition": "LINK",
            "title": title,
            "url": url,
            "time_usec": _usec(2024, month, 12),
        }
        for title, url, month in [
            ("Brake pads guide", "https://example.org/bikes/brakes", 5),
            ("Paris travel tips", "https://example.org/travel/paris", 6),
            ("Growing basil", "https://example.org/garden/basil", 8),
        ]
    ]
    out["Takeout/Chrome/BrowserHistory.json"] = json.dumps({"Browser History": history}).encode()
    near_the_tower = [(48.8584, 2.2945), (48.8589, 2.2950), (48.8606, 2.2930), (48.8530, 2.3499)]
    locations = [
        {
            "latitudeE7": round(lat * 1e7),
            "longitudeE7": round(lon * 1e7),
            "accuracy": 20,
            "source": "WIFI",
            "timestamp": _iso(dt.datetime(2024, 7, 14, 18 + i, tzinfo=dt.UTC)),
        }
        for i, (lat, lon) in enumerate(near_the_tower)
    ]
    out["Takeout/Location History (Timeline)/Records.json"] = json.dumps({"locations": locations}).encode()
    out["Takeout/archive_browser.html"] = b"<html><body>Your Google Takeout export</body></html>"
    return out


def main() -> None:
    with zipfile.ZipFile(OUT, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members().items():
            z.writestr(zipfile.ZipInfo(name, FIXED), data, zipfile.ZIP_DEFLATED)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
