"""Streaming the elements of a JSON array out of a (possibly multi-GB) member, with the stdlib.

``Records.json`` is one object holding one array of millions of locations; ``json.load`` would
hold all of it in memory. :func:`iter_array` decodes one element at a time with
``json.JSONDecoder.raw_decode`` over a sliding text buffer, so memory is bounded by the largest
element, not the member.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from typing import IO, Any

from lakehouse.errors import UnparseableMember

CHUNK = 1 << 20
_WS = " \t\r\n"


class _Buffer:
    def __init__(self, stream: IO[bytes], member: str) -> None:
        self.stream = stream
        self.member = member
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.text = ""
        self.pos = 0
        self.eof = False

    def fill(self, at_least: int = CHUNK) -> bool:
        """Read more; False at the end of the member."""
        if self.eof:
            return False
        raw = self.stream.read(max(CHUNK, at_least))
        try:
            more = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as e:
            raise UnparseableMember("parse", f"{self.member}: not UTF-8 text: {e}") from e
        if not raw:
            self.eof = True
        self.text = self.text[self.pos :] + more
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next non-blank character ('' at the end)."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return ""

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            found = repr(c) if c else "the end of the member"
            raise UnparseableMember("parse", f"{self.member}: expected {what}, found {found}")
        self.pos += 1
        return c

    def value(self, scan: Callable[[str, int], tuple[Any, int]]) -> Any:
        """Decode the next JSON value, reading more while it is cut off by the buffer's end."""
        self.peek()
        while True:
            try:
                obj, end = scan(self.text, self.pos)  # what raw_decode calls, minus a frame
            except StopIteration as e:
                if self.fill(len(self.text) - self.pos):
                    continue
                raise UnparseableMember(
                    "parse", f"{self.member}: invalid or truncated JSON at character {e.value}"
                ) from e
            except json.JSONDecodeError as e:
                if self.fill(len(self.text) - self.pos):
                    continue
                raise UnparseableMember(
                    "parse", f"{self.member}: invalid or truncated JSON at character {e.pos}: {e.msg}"
                ) from e
            if end == len(self.text) and not self.eof and self.fill(len(self.text) - self.pos):
                continue  # a number could go on in the next chunk
            self.pos = end
            return obj


def iter_array(stream: IO[bytes], member: str, key: str | None = None) -> Iterator[Any]:
    """Elements of the top-level array, or of the array under top-level ``key`` of an object.

    Raises:
        UnparseableMember: the member is not JSON of that shape (the message says where).
    """
    buf = _Buffer(stream, member)
    stdlib: Any = json.JSONDecoder()
    decoder: Callable[[str, int], tuple[Any, int]] = stdlib.scan_once  # the C scanner raw_decode uses
    if key is not None:
        buf.expect("{", f"a JSON object with {key!r}")
        while True:
            if buf.peek() == "}":
                raise UnparseableMember("parse", f"{member}: no {key!r} array in the top-level object")
            name = buf.value(decoder)
            buf.expect(":", "':'")
            if name == key:
                break
            buf.value(decoder)  # another key's value: skipped
            buf.expect(",}", "',' or '}'")
            if buf.text[buf.pos - 1] == "}":
                raise UnparseableMember("parse", f"{member}: no {key!r} array in the top-level object")
    buf.expect("[", "a JSON array" if key is None else f"an array under {key!r}")
    if buf.peek() == "]":
        buf.pos += 1
        return
    while True:
        yield buf.value(decoder)
        if buf.expect(",]", "',' or ']'") == "]":
            return


def load_object(stream: IO[bytes], member: str, limit: int = 64 << 20) -> dict[str, Any]:
    """A small member holding one JSON object (a Keep note)."""
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise UnparseableMember("parse", f"{member}: over {limit} bytes for a single JSON object")
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnparseableMember("parse", f"{member}: not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise UnparseableMember("parse", f"{member}: expected a JSON object, found {type(obj).__name__}")
    return obj
