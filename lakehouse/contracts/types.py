"""Column types of a contract: the type text (``decimal(15,2)``, ``list<string>``,
``struct<street: string, zip: string>``, ``map<string, double>``) parsed into a
:class:`DataType`, and each type's DuckDB, Iceberg and Arrow form.

Primitive types: ``string int long float double boolean date timestamp time binary uuid`` and
``decimal(p,s)`` (1 ≤ p ≤ 38, 0 ≤ s ≤ p). Nested types: ``list<T>``, ``struct<name: T, ...>``
and ``map<string, T>`` (map keys are strings: JSON object keys are).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lakehouse.duck import ident

if TYPE_CHECKING:
    from pyiceberg.types import IcebergType

# DuckDB's name for each primitive contract type (used to cast and validate).
PRIMITIVES: dict[str, str] = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "time": "TIME",
    "binary": "BLOB",
    "uuid": "UUID",
}
NESTED = ("list", "struct", "map")
MAX_PRECISION = 38  # Iceberg's (and DuckDB's) largest decimal
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+)|([<>(),:]))")


@dataclass(frozen=True)
class DataType:
    """A parsed contract type."""

    kind: str  # a primitive name, "decimal", "list", "struct" or "map"
    precision: int = 0
    scale: int = 0
    element: DataType | None = None  # list element, map value
    fields: tuple[tuple[str, DataType], ...] = field(default=())

    def __str__(self) -> str:
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.kind == "list":
            return f"list<{self.element}>"
        if self.kind == "map":
            return f"map<string, {self.element}>"
        if self.kind == "struct":
            return "struct<" + ", ".join(f"{n}: {t}" for n, t in self.fields) + ">"
        return self.kind

    @property
    def nested(self) -> bool:
        return self.kind in NESTED

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "long", "float", "double", "decimal")

    @property
    def temporal(self) -> bool:
        return self.kind in ("date", "timestamp")

    def child(self, name: str) -> DataType | None:
        """The struct field ``name`` (None when absent or not a struct)."""
        return dict(self.fields).get(name)

    def duckdb(self) -> str:
        """The DuckDB type."""
        if self.kind == "decimal":
            return f"DECIMAL({self.precision},{self.scale})"
        if self.kind == "list":
            assert self.element is not None
            return f"{self.element.duckdb()}[]"
        if self.kind == "map":
            assert self.element is not None
            return f"MAP(VARCHAR, {self.element.duckdb()})"
        if self.kind == "struct":
            inner = ", ".join(f"{ident(n)} {t.duckdb()}" for n, t in self.fields)
            return f"STRUCT({inner})"
        return PRIMITIVES[self.kind]

    def iceberg(self, ids: Iterator[int] | None = None) -> IcebergType:
        """The Iceberg type; nested fields take their ids from ``ids`` (every nested field optional:
        ``required`` on struct fields is enforced by validation, as for columns added later)."""
        from pyiceberg import types as t

        primitive: dict[str, IcebergType] = {
            "string": t.StringType(),
            "int": t.IntegerType(),
            "long": t.LongType(),
            "float": t.FloatType(),
            "double": t.DoubleType(),
            "boolean": t.BooleanType(),
            "date": t.DateType(),
            "timestamp": t.TimestamptzType(),
            "time": t.TimeType(),
            "binary": t.BinaryType(),
            "uuid": t.UUIDType(),
        }
        if self.kind in primitive:
            return primitive[self.kind]
        if self.kind == "decimal":
            return t.DecimalType(self.precision, self.scale)
        if ids is None:
            ids = iter(range(1, 1 << 30))
        assert ids is not None
        if self.kind == "list":
            assert self.element is not None
            element_id = next(ids)
            return t.ListType(element_id, self.element.iceberg(ids), element_required=False)
        if self.kind == "map":
            assert self.element is not None
            key_id, value_id = next(ids), next(ids)
            return t.MapType(
                key_id, t.StringType(), value_id, self.element.iceberg(ids), value_required=False
            )
        numbered = [(next(ids), name, kind) for name, kind in self.fields]
        return t.StructType(
            *(t.NestedField(i, name, kind.iceberg(ids), required=False) for i, name, kind in numbered)
        )


def parse_type(text: str) -> DataType:
    """Parse a contract type; ``ValueError`` says what does not parse."""
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    result = parser.type()
    if parser.pos != len(tokens):
        raise ValueError(f"type {text!r} does not parse: unexpected {tokens[parser.pos]!r}")
    return result


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if not m:
            raise ValueError(f"type {text!r} does not parse: unexpected {stripped[pos : pos + 10]!r}")
        tokens.append(m.group(0).strip())
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.pos = 0

    def _fail(self, why: str) -> ValueError:
        return ValueError(f"type {self.text!r} does not parse: {why}")

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise self._fail(f"it ends where {expected or 'more'} was expected")
        if expected is not None and token != expected:
            raise self._fail(f"expected {expected!r}, found {token!r}")
        self.pos += 1
        return token

    def number(self, what: str) -> int:
        token = self.take()
        if not token.isdigit():
            raise self._fail(f"{what} must be a number, found {token!r}")
        return int(token)

    def type(self) -> DataType:
        name = self.take().lower()
        if name in PRIMITIVES:
            return DataType(name)
        if name == "decimal":
            self.take("(")
            precision = self.number("the precision")
            self.take(",")
            scale = self.number("the scale")
            self.take(")")
            if not 1 <= precision <= MAX_PRECISION:
                raise ValueError(
                    f"decimal({precision},{scale}): the precision must be 1..{MAX_PRECISION} (Iceberg's "
                    "largest decimal)"
                )
            if scale > precision:
                raise ValueError(f"decimal({precision},{scale}): the scale is larger than the precision")
            return DataType("decimal", precision, scale)
        if name == "list":
            self.take("<")
            element = self.type()
            self.take(">")
            return DataType("list", element=element)
        if name == "map":
            self.take("<")
            key = self.type()
            if key.kind != "string":
                raise self._fail(f"map keys must be string, not {key}")
            self.take(",")
            value = self.type()
            self.take(">")
            return DataType("map", element=value)
        if name == "struct":
            self.take("<")
            fields: list[tuple[str, DataType]] = []
            while True:
                field_name = self.take()
                if not _FIELD.match(field_name):
                    raise self._fail(f"{field_name!r} is not a struct field name")
                if any(n == field_name for n, _ in fields):
                    raise self._fail(f"struct field {field_name!r} appears twice")
                self.take(":")
                fields.append((field_name, self.type()))
                if self.peek() == ",":
                    self.take(",")
                    continue
                self.take(">")
                break
            return DataType("struct", fields=tuple(fields))
        known = ", ".join([*PRIMITIVES, "decimal(p,s)", "list<T>", "struct<name: T, ...>", "map<string, T>"])
        raise self._fail(f"unknown type {name!r} (known: {known})")


def from_iceberg(kind: IcebergType) -> DataType:
    """The contract type of an Iceberg type (the types Lake writes)."""
    from pyiceberg import types as t

    simple: dict[type, str] = {
        t.StringType: "string",
        t.IntegerType: "int",
        t.LongType: "long",
        t.FloatType: "float",
        t.DoubleType: "double",
        t.BooleanType: "boolean",
        t.DateType: "date",
        t.TimestamptzType: "timestamp",
        t.TimestampType: "timestamp",
        t.TimeType: "time",
        t.BinaryType: "binary",
        t.UUIDType: "uuid",
    }
    if type(kind) in simple:
        return DataType(simple[type(kind)])
    if isinstance(kind, t.DecimalType):
        return DataType("decimal", kind.precision, kind.scale)
    if isinstance(kind, t.ListType):
        return DataType("list", element=from_iceberg(kind.element_type))
    if isinstance(kind, t.MapType):
        return DataType("map", element=from_iceberg(kind.value_type))
    if isinstance(kind, t.StructType):
        return DataType("struct", fields=tuple((f.name, from_iceberg(f.field_type)) for f in kind.fields))
    raise ValueError(f"Iceberg type {kind} has no contract type")
