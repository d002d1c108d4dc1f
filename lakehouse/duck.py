"""What every module that speaks SQL or answers in JSON shares: quoting, ``as_of``, JSON values.

* :func:`ident` / :func:`literal`: SQL quoting of names and values for generated statements.
* :func:`parse_time` / :func:`parse_as_of`: the one reading of "a snapshot id or an ISO-8601
  time" (naive times are UTC). Snapshot ids are accepted as JSON numbers or as strings: ids
  above 2^53 do not survive a JavaScript client as numbers.
* :func:`json_value` / :func:`arrow_rows`: Arrow and Python values as JSON-ready values
  (times as ISO-8601 text, decimals as text, bytes as base64, durations as seconds).
* :func:`with_id_strings`: every snapshot id of a response body also as a string
  (``<key>_str``).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import re
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from lakehouse.errors import BadRequest

if TYPE_CHECKING:
    import pyarrow as pa

AsOf = int | str | dt.datetime | None


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    """``value`` as an SQL literal (text quoted, numbers as written)."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def parse_time(value: str | dt.datetime, what: str = "time") -> dt.datetime:
    """An ISO-8601 date or time, timezone-aware (naive means UTC).

    Raises:
        BadRequest: not an ISO-8601 date or time.
    """
    if isinstance(value, dt.datetime):
        when = value
    else:
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as e:
            raise BadRequest(f"{what} {value!r} is not an ISO-8601 date or time") from e
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def snapshot_id(value: int | str) -> int | None:
    """``value`` as a snapshot id when it is one (an integer, or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = value.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def parse_as_of(value: AsOf, what: str = "as_of") -> int | dt.datetime | None:
    """A snapshot id (int), a timezone-aware time, or None (the current snapshot).

    Raises:
        BadRequest: neither a snapshot id nor an ISO-8601 time.
    """
    if value is None or isinstance(value, dt.datetime):
        return value if value is None else parse_time(value, what)
    if (sid := snapshot_id(value)) is not None:
        return sid
    try:
        return parse_time(str(value), what)
    except BadRequest as e:
        raise BadRequest(f"{what} {value!r} is neither a snapshot id nor an ISO-8601 time") from e


def epoch_ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def json_value(value: Any) -> Any:
    """A Python value (as Arrow's ``to_pylist`` gives it) ready for JSON."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


_PLAIN = ("int", "uint", "float", "double", "bool", "string", "large_string", "halffloat", "null")


def arrow_rows(data: pa.Table) -> list[list[Any]]:
    """The rows of ``data`` as lists of JSON-ready values (plain columns are not walked twice)."""
    columns: list[list[Any]] = []
    for i in range(data.num_columns):
        values = data.column(i).to_pylist()
        if not str(data.schema.types[i]).startswith(_PLAIN):
            values = [json_value(v) for v in values]
        columns.append(values)
    return [list(r) for r in zip(*columns, strict=True)] if columns else []


ID_KEYS = frozenset(
    {"snapshot_id", "parent_id", "current_snapshot_id", "from_snapshot_id", "to_snapshot_id", "snapshots"}
)


def with_id_strings(body: Any) -> Any:
    """``body`` with every snapshot id also as a string: ``<key>_str`` next to ``snapshot_id``,
    ``parent_id``, ``current_snapshot_id``, ``from_snapshot_id``, ``to_snapshot_id`` and
    ``snapshots`` (a list of ids, or a map of table to id)."""
    if isinstance(body, list):
        return [with_id_strings(v) for v in body]
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        out[key] = with_id_strings(value) if isinstance(value, dict | list) and key not in ID_KEYS else value
        if key in ID_KEYS:
            if isinstance(value, int) and not isinstance(value, bool):
                out[f"{key}_str"] = str(value)
            elif value is None and key != "snapshots":
                out[f"{key}_str"] = None
            elif isinstance(value, list) and all(isinstance(v, int) for v in value):
                out[f"{key}_str"] = [str(v) for v in value]
            elif isinstance(value, list):
                out[key] = with_id_strings(value)
            elif isinstance(value, dict) and all(v is None or isinstance(v, int) for v in value.values()):
                out[f"{key}_str"] = {k: None if v is None else str(v) for k, v in value.items()}
    return out


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_DEPTH = str.maketrans({"[": "+", "{": "+", "]": "-", "}": "-"})


def json_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest, without parsing it (no recursion)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text)).translate(_DEPTH)
    return max(accumulate(1 if c == "+" else -1 for c in brackets), default=0)
