"""Takeout products: which member paths hold which product, and how one JSON record becomes a row.

Each product has its own contract (``catalog/datasets/takeout_<product>.yaml``) and table. A
parser turns one record into a dict of the contract's columns (``archive`` and ``member`` are
added by the pipeline); values that do not fit are left as they are so the contract's
validation quarantines the row with a reason. Export years differ, and each known variant is
accepted:

* My Activity: ``header``/``time`` (2017+; ISO time with or without fractions, ``products``
  and ``details`` from 2020), records without ``header`` (older Chrome activity: the folder
  names the product); ``MyActivity.html`` of older exports (and split ``MyActivity-2.html``),
  read cell by cell by :mod:`lakehouse.takeout.htmlactivity` into the same records.
* Location History: ``Records.json`` (2019+, ISO ``timestamp``; older ``timestampMs``) or
  ``Location History.json`` (pre-2019 name); ``activity`` nested per timestamp either way.
  Semantic Location History: ``duration.startTimestamp`` (ISO, 2022+) or
  ``duration.startTimestampMs``; place visits and activity segments.
* Chrome: ``Chrome/BrowserHistory.json`` (until 2023) or ``Chrome/History.json`` (2024+),
  ``{"Browser History": [{time_usec, ...}]}``.
* YouTube: ``YouTube and YouTube Music/history/`` (2017+) or ``YouTube/history/`` (older),
  records in the My Activity shape or the old ``snippet``/``publishedAt`` shape, or the HTML
  ``watch-history.html``/``search-history.html`` (the channel is the first subtitle line).
* Keep: one JSON per note, ``textContent`` or ``listContent``, ``labels`` since 2019; old
  notes without ``createdTimestampUsec`` take their edit time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from lakehouse.errors import UnparseableMember
from lakehouse.takeout.htmlactivity import iter_activities
from lakehouse.takeout.jsonstream import iter_array, load_object

Row = dict[str, Any]
# One parsed record: a row, or the reason the record is not one (quarantined with it).
Record = Row | tuple[str, Any]

_PREFIX = re.compile(r"^(?:[^/]*/)?Takeout/")  # "Takeout/..." or "takeout-2024.../Takeout/..."


@dataclass(frozen=True)
class Product:
    """A Takeout product: its table (``takeout_<name>``), the paths it owns and its parser."""

    name: str
    pattern: re.Pattern[str]
    parse: Callable[[IO[bytes], str, re.Match[str]], Iterator[Record]]

    @property
    def table(self) -> str:
        return f"takeout_{self.name}"


def relative(path: str) -> str:
    """The member path below the export's ``Takeout/`` folder."""
    return _PREFIX.sub("", path, count=1)


# --- value helpers --------------------------------------------------------------------------


def iso_from_epoch(value: Any, per_second: int) -> Any:
    """An epoch count (seconds × ``per_second``) as ISO-8601 UTC; anything else unchanged."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        return value
    seconds, frac = divmod(n, per_second)
    micros = frac * 1_000_000 // per_second
    return (
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds, microseconds=micros)
    ).isoformat()


def time_of(d: dict[str, Any], key: str) -> Any:
    """``<key>`` (ISO) or ``<key>Ms`` (epoch milliseconds), whichever the export has."""
    if key in d:
        return d[key]
    if f"{key}Ms" in d:
        return iso_from_epoch(d[f"{key}Ms"], 1000)
    return None


def e7(value: Any) -> Any:
    """``latitudeE7``-style integers as degrees."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1e7
    return value


def _names(items: Any, key: str = "name") -> str | None:
    if not isinstance(items, list):
        return None
    names = [str(i[key]) for i in items if isinstance(i, dict) and key in i]
    return names or None  # type: ignore[return-value]


def _not_object(element: Any) -> tuple[str, Any]:
    return (f"expected a JSON object, found {type(element).__name__}", element)


# --- parsers --------------------------------------------------------------------------------


def _activity_row(element: dict[str, Any], fallback_product: str) -> Row:
    if "snippet" in element and isinstance(element["snippet"], dict):  # pre-2017 YouTube shape
        snippet = element["snippet"]
        return {
            "time": snippet.get("publishedAt"),
            "product": "YouTube",
            "title": snippet.get("title"),
            "url": None,
            "description": snippet.get("description"),
            "details": None,
            "products": None,
            "subtitles": None,
        }
    details = _names(element.get("details"))
    products = element.get("products")
    return {
        "time": element.get("time"),
        "product": element.get("header") or fallback_product,
        "title": element.get("title"),
        "url": element.get("titleUrl"),
        "description": element.get("description"),
        "details": " | ".join(details) if details else None,
        "products": ", ".join(str(p) for p in products) if isinstance(products, list) and products else None,
        "subtitles": element.get("subtitles"),
    }


def _elements(stream: IO[bytes], member: str) -> Iterator[Any]:
    """The activity records of a JSON array member, or of the cells of an HTML one."""
    if member.lower().endswith(".html"):
        return iter_activities(stream, member)
    return iter_array(stream, member)


def parse_activity(stream: IO[bytes], member: str, match: re.Match[str]) -> Iterator[Record]:
    folder = match.group(1)
    for element in _elements(stream, member):
        if isinstance(element, tuple):  # an HTML cell that is not an activity
            yield element
            continue
        if not isinstance(element, dict):
            yield _not_object(element)
            continue
        row = _activity_row(element, folder)
        row.pop("subtitles")
        yield row


def parse_youtube(stream: IO[bytes], member: str, match: re.Match[str]) -> Iterator[Record]:
    kind = match.group(2)
    for element in _elements(stream, member):
        if isinstance(element, tuple):
            yield element
            continue
        if not isinstance(element, dict):
            yield _not_object(element)
            continue
        row = _activity_row(element, "YouTube")
        subtitles = row.pop("subtitles")
        channel = (
            subtitles[0]
            if isinstance(subtitles, list) and subtitles and isinstance(subtitles[0], dict)
            else {}
        )
        yield {
            "time": row["time"],
            "kind": kind,
            "title": row["title"],
            "url": row["url"],
            "channel_name": channel.get("name"),
            "channel_url": channel.get("url"),
        }


def _top_activity(loc: dict[str, Any]) -> tuple[Any, Any]:
    activity = loc.get("activity")
    if not isinstance(activity, list) or not activity or not isinstance(activity[0], dict):
        return None, None
    candidates = activity[0].get("activity")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        return None, None
    def confidence(c: dict[str, Any]) -> float:
        value = c.get("confidence")
        return float(value) if isinstance(value, int | float) else -1.0

    best = max((c for c in candidates if isinstance(c, dict)), key=confidence)
    return best.get("type"), best.get("confidence")


def parse_records(stream: IO[bytes], member: str, match: re.Match[str]) -> Iterator[Record]:
    for loc in iter_array(stream, member, key="locations"):
        if not isinstance(loc, dict):
            yield _not_object(loc)
            continue
        activity, confidence = _top_activity(loc)
        yield {
            "time": time_of(loc, "timestamp"),
            "lat": e7(loc.get("latitudeE7")),
            "lon": e7(loc.get("longitudeE7")),
            "accuracy": loc.get("accuracy"),
            "altitude": loc.get("altitude"),
            "activity": activity,
            "activity_confidence": confidence,
            "source": loc.get("source"),
            "device_tag": loc.get("deviceTag"),
        }


def _place_row(visit: dict[str, Any]) -> Row:
    location = visit.get("location") if isinstance(visit.get("location"), dict) else {}
    duration = visit.get("duration") if isinstance(visit.get("duration"), dict) else {}
    assert isinstance(location, dict) and isinstance(duration, dict)
    return {
        "start_time": time_of(duration, "startTimestamp"),
        "end_time": time_of(duration, "endTimestamp"),
        "kind": "place_visit",
        "lat": e7(location.get("latitudeE7")),
        "lon": e7(location.get("longitudeE7")),
        "end_lat": None,
        "end_lon": None,
        "name": location.get("name"),
        "address": location.get("address"),
        "place_id": location.get("placeId"),
        "activity_type": None,
        "distance_m": None,
        "confidence": visit.get("placeConfidence"),
    }


def _segment_row(segment: dict[str, Any]) -> Row:
    start = segment.get("startLocation") if isinstance(segment.get("startLocation"), dict) else {}
    end = segment.get("endLocation") if isinstance(segment.get("endLocation"), dict) else {}
    duration = segment.get("duration") if isinstance(segment.get("duration"), dict) else {}
    assert isinstance(start, dict) and isinstance(end, dict) and isinstance(duration, dict)
    return {
        "start_time": time_of(duration, "startTimestamp"),
        "end_time": time_of(duration, "endTimestamp"),
        "kind": "activity_segment",
        "lat": e7(start.get("latitudeE7")),
        "lon": e7(start.get("longitudeE7")),
        "end_lat": e7(end.get("latitudeE7")),
        "end_lon": e7(end.get("longitudeE7")),
        "name": None,
        "address": None,
        "place_id": None,
        "activity_type": segment.get("activityType"),
        "distance_m": segment.get("distance"),
        "confidence": segment.get("confidence"),
    }


def parse_semantic(stream: IO[bytes], member: str, match: re.Match[str]) -> Iterator[Record]:
    for obj in iter_array(stream, member, key="timelineObjects"):
        if not isinstance(obj, dict):
            yield _not_object(obj)
        elif isinstance(obj.get("placeVisit"), dict):
            yield _place_row(obj["placeVisit"])
        elif isinstance(obj.get("activitySegment"), dict):
            yield _segment_row(obj["activitySegment"])
        else:
            yield ("neither a placeVisit nor an activitySegment", obj)


def parse_chrome(stream: IO[bytes], member: str, match: re.Match[str]) -> Iterator[Record]:
    for item in iter_array(stream, member, key="Browser History"):
        if not isinstance(item, dict):
            yield _not_object(item)
            continue
        yield {
            "time": iso_from_epoch(item.get("time_usec"), 1_000_000),
            "title": item.get("title"),
            "url": item.get("url"),
            "page_transition": item.get("page_transition"),
            "client_id": item.get("client_id"),
        }


def parse_keep(stream: IO[bytes], member: str, match: re.Match[str]) -> Iterator[Record]:
    note = load_object(stream, member)
    edited = note.get("userEditedTimestampUsec")
    created = note.get("createdTimestampUsec", edited)
    text = note.get("textContent")
    items = note.get("listContent")
    if text is None and isinstance(items, list):
        text = "\n".join(str(i.get("text", "")) for i in items if isinstance(i, dict))
    labels = _names(note.get("labels"))
    yield {
        "created_time": iso_from_epoch(created, 1_000_000),
        "edited_time": iso_from_epoch(edited, 1_000_000),
        "title": note.get("title"),
        "text": text,
        "labels": ", ".join(labels) if labels else None,
        "color": note.get("color"),
        "is_pinned": note.get("isPinned"),
        "is_archived": note.get("isArchived"),
        "is_trashed": note.get("isTrashed"),
    }


PRODUCTS: tuple[Product, ...] = (
    Product(
        "activity",
        re.compile(r"^My Activity/([^/]+)/My\s?Activity(?:-\d+)?\.(?:json|html)$"),
        parse_activity,
    ),
    Product(
        "location",
        re.compile(r"^Location History( \(Timeline\))?/(Records|Location History)\.json$"),
        parse_records,
    ),
    Product(
        "places",
        re.compile(r"^Location History( \(Timeline\))?/Semantic Location History/\d{4}/[^/]+\.json$"),
        parse_semantic,
    ),
    Product("chrome", re.compile(r"^Chrome/(BrowserHistory|History)\.json$"), parse_chrome),
    Product(
        "youtube",
        re.compile(r"^YouTube( and YouTube Music)?/history/(watch|search)-history\.(?:json|html)$"),
        parse_youtube,
    ),
    Product("keep", re.compile(r"^Keep/[^/]+\.json$"), parse_keep),
)


def route(path: str) -> tuple[Product, re.Match[str]] | None:
    """The product that parses a member, or None (the member is kept as a blob only)."""
    rel = relative(path)
    for product in PRODUCTS:
        match = product.pattern.match(rel)
        if match:
            return product, match
    return None


def parse_member(product: Product, match: re.Match[str], stream: IO[bytes], member: str) -> Iterator[Record]:
    """The member's records; :class:`UnparseableMember` when its shape is not the product's."""
    try:
        yield from product.parse(stream, member, match)
    except RecursionError as e:
        raise UnparseableMember("parse", f"{member}: JSON nested too deeply") from e
