"""My Activity as HTML (``MyActivity.html``, the format of older exports), streamed with the stdlib.

Each activity is an ``outer-cell`` div::

    <div class="outer-cell mdl-cell mdl-cell--12-col mdl-shadow--2dp"><div class="mdl-grid">
      <div class="header-cell ..."><p class="mdl-typography--title">Search<br></p></div>
      <div class="content-cell ... mdl-typography--body-1">Searched for&nbsp;<a href="URL">cats</a>
        <br>Jan 5, 2021, 10:04:01 AM UTC</div>
      <div class="content-cell ... mdl-typography--body-1 mdl-typography--text-right"></div>
      <div class="content-cell ... mdl-typography--caption"><b>Products:</b><br>&emsp;Search<br>
        <b>Details:</b><br>&emsp;From Google Ads<br></div>
    </div></div>

The body cell's lines (split at ``<br>``) are the title (its text and first link), subtitles
(text and link each: a YouTube channel) and, last, the date; the caption cell lists products,
details and locations under bold headings. :func:`iter_activities` yields each cell in the JSON
record shape (``header``, ``title``, ``titleUrl``, ``time``, ``subtitles``, ``products``,
``details``), so the JSON parsers make rows of both. The file is fed to
:class:`html.parser.HTMLParser` a chunk at a time: memory is bounded by the chunk and one cell.

Dates: ``Jun 23, 2015, 2:43:45 PM`` (no zone: UTC), ``... PM UTC`` / ``GMT``, and the common
North American and European zone abbreviations (as fixed offsets). Any other date is passed on
as written and the contract's validation quarantines that row with the reason.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import IO, Any

from lakehouse.errors import UnparseableMember

CHUNK = 1 << 20
_DATE = re.compile(
    r"^(?P<when>[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2}:\d{2}\s?[AP]M)(?:\s+(?P<zone>[A-Z]{2,5}))?$"
)
# Zone abbreviations of the English exports, as UTC offsets in hours.
ZONES: dict[str, float] = {
    "UTC": 0,
    "GMT": 0,
    "WET": 0,
    "BST": 1,
    "WEST": 1,
    "CET": 1,
    "CEST": 2,
    "EET": 2,
    "EEST": 3,
    "MSK": 3,
    "IST": 5.5,
    "JST": 9,
    "KST": 9,
    "AEST": 10,
    "AEDT": 11,
    "NZST": 12,
    "NZDT": 13,
    "HST": -10,
    "AKST": -9,
    "AKDT": -8,
    "PST": -8,
    "PDT": -7,
    "MST": -7,
    "MDT": -6,
    "CST": -6,
    "CDT": -5,
    "EST": -5,
    "EDT": -4,
    "AST": -4,
    "ADT": -3,
}


def parse_date(text: str) -> str | None:
    """An activity date line as ISO-8601 (UTC), or None when it is not one Lake knows."""
    match = _DATE.match(_clean(text))
    if match is None:
        return None
    zone = match.group("zone") or "UTC"
    if zone not in ZONES:
        return None
    when = match.group("when").replace("\u202f", " ")
    if not when[-3] == " ":  # "2:43:45PM"
        when = when[:-2] + " " + when[-2:]
    try:
        local = dt.datetime.strptime(when, "%b %d, %Y, %I:%M:%S %p")
    except ValueError:
        return None
    offset = dt.timezone(dt.timedelta(hours=ZONES[zone]))
    return local.replace(tzinfo=offset).astimezone(dt.UTC).isoformat()


def _clean(text: str) -> str:
    """Non-breaking and em spaces (``&nbsp;``, ``&emsp;``) as plain spaces; ends trimmed."""
    return " ".join(text.replace("\xa0", " ").replace("\u2003", " ").replace("\u202f", " ").split())


class _Line:
    __slots__ = ("bold", "href", "text")

    def __init__(self) -> None:
        self.text = ""
        self.href: str | None = None
        self.bold = False


class _Cell:
    """One ``outer-cell`` being read."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.header = ""
        self.body: list[_Line] = [_Line()]
        self.caption: list[_Line] = [_Line()]
        self.part: str | None = None  # "header", "body", "caption", or None (elsewhere)
        self.part_depth = 0

    def record(self) -> dict[str, Any] | tuple[str, Any]:
        lines = [line for line in self.body if _clean(line.text) or line.href]
        raw = {"header": _clean(self.header), "lines": [_clean(line.text) for line in lines]}
        if len(lines) < 2:
            return ("an activity cell without a title and a date", raw)
        date_text = _clean(lines[-1].text)
        title = lines[0]
        element: dict[str, Any] = {
            "header": _clean(self.header) or None,
            "title": _clean(title.text),
            "time": parse_date(date_text) or date_text,
        }
        if title.href:
            element["titleUrl"] = title.href
        subtitles = [
            {"name": _clean(line.text), **({"url": line.href} if line.href else {})} for line in lines[1:-1]
        ]
        if subtitles:
            element["subtitles"] = subtitles
        heading = ""
        for line in self.caption:
            text = _clean(line.text)
            if not text:
                continue
            if line.bold and text.endswith(":"):
                heading = text[:-1]
            elif heading == "Products":
                element.setdefault("products", []).append(text)
            elif heading == "Details":
                element.setdefault("details", []).append({"name": text})
        return element


class _ActivityParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0  # open divs
        self.cell: _Cell | None = None
        self.done: list[dict[str, Any] | tuple[str, Any]] = []
        self.bold = 0

    def _line(self) -> _Line | None:
        cell = self.cell
        if cell is None or cell.part not in ("body", "caption"):
            return None
        return (cell.body if cell.part == "body" else cell.caption)[-1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.handle_startendtag(tag, attrs)
            return
        if tag == "b":
            self.bold += 1
        if tag == "a" and (line := self._line()) is not None and line.href is None:
            line.href = dict(attrs).get("href")
        if tag != "div":
            return
        self.depth += 1
        classes = (dict(attrs).get("class") or "").split()
        if "outer-cell" in classes:
            self.cell = _Cell(self.depth)  # a cell left open is dropped for the next one
            return
        cell = self.cell
        if cell is None or cell.part is not None:
            return
        if "header-cell" in classes:
            cell.part = "header"
        elif "content-cell" in classes and "mdl-typography--text-right" not in classes:
            if "mdl-typography--caption" in classes:
                cell.part = "caption"
            elif "mdl-typography--body-1" in classes:
                cell.part = "body"
        if cell.part is not None:
            cell.part_depth = self.depth

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "br" or self.cell is None:
            return
        if self.cell.part == "body":
            self.cell.body.append(_Line())
        elif self.cell.part == "caption":
            self.cell.caption.append(_Line())

    def handle_endtag(self, tag: str) -> None:
        if tag == "b":
            self.bold = max(0, self.bold - 1)
        if tag != "div":
            return
        cell = self.cell
        if cell is not None:
            if cell.part is not None and self.depth == cell.part_depth:
                cell.part = None
            elif self.depth == cell.depth:
                self.done.append(cell.record())
                self.cell = None
        self.depth = max(0, self.depth - 1)

    def handle_data(self, data: str) -> None:
        cell = self.cell
        if cell is None:
            return
        if cell.part == "header":
            cell.header += data
        elif (line := self._line()) is not None:
            line.text += data
            line.bold = line.bold or bool(self.bold)


def iter_activities(stream: IO[bytes], member: str) -> Iterator[dict[str, Any] | tuple[str, Any]]:
    """Each activity cell of a ``MyActivity.html``: a JSON-shaped record, or (why, raw) when the
    cell has no title and date.

    Raises:
        UnparseableMember: the member is not UTF-8 text.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    parser = _ActivityParser()
    while True:
        raw = stream.read(CHUNK)
        try:
            parser.feed(decoder.decode(raw, final=not raw))
        except UnicodeDecodeError as e:
            raise UnparseableMember("parse", f"{member}: not UTF-8 text: {e}") from e
        if not raw:
            parser.close()
        done, parser.done = parser.done, []
        yield from done
        if not raw:
            return
