"""Schema evolution: keep a dataset's table schema in step with its contract and its uploads.

* A contract version that adds columns adds them to the table (nullable: Iceberg cannot add a
  required column to existing rows; ``required`` is enforced by validation instead).
* A column whose contract type widens safely (``int`` → ``long``, ``float`` → ``double``,
  ``decimal(p,s)`` → ``decimal(P,s)`` with P > p) is widened in place; a struct column gains
  the fields a new contract version adds to it; any other type change is refused with the
  column named.
* ``evolution: add_columns`` adds the columns of an upload the contract does not name (nullable,
  typed from the file: strings for CSV and JSON, the Parquet type for Parquet); ``strict``
  refuses such an upload; ``ignore`` (the default) drops those columns.

Schema changes are metadata-only commits; old snapshots keep their schema and stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakehouse.config import Settings
from lakehouse.contracts.model import RAW, ROW, ROW_ID, Contract
from lakehouse.contracts.types import DataType, from_iceberg
from lakehouse.errors import CommitConflict, SchemaEvolutionRefused

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table
    from pyiceberg.types import IcebergType

SAFE_WIDENINGS = {("int", "long"), ("float", "double")}


@dataclass(frozen=True)
class Change:
    """One schema change: ``add``, ``widen`` or ``optional`` of a column or (dotted) struct field."""

    kind: str
    column: str
    type: Any = None

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.column.split("."))


def iceberg_type_of(field: pa.Field) -> IcebergType:
    """The Iceberg type of an upload's column (``add_columns``)."""
    from pyiceberg import types as t

    kind = field.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return t.StringType()
    if pa.types.is_boolean(kind):
        return t.BooleanType()
    if pa.types.is_integer(kind):
        return t.IntegerType() if kind.bit_width <= 32 and pa.types.is_signed_integer(kind) else t.LongType()
    if pa.types.is_float32(kind):
        return t.FloatType()
    if pa.types.is_floating(kind):
        return t.DoubleType()
    if pa.types.is_date(kind):
        return t.DateType()
    if pa.types.is_timestamp(kind):
        return t.TimestamptzType() if kind.tz else t.TimestampType()
    if pa.types.is_decimal(kind):
        return t.DecimalType(kind.precision, kind.scale)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return t.BinaryType()
    if pa.types.is_time(kind):
        return t.TimeType()
    raise SchemaEvolutionRefused(f"column {field.name!r} has type {kind}, which evolution cannot add")


def _widens(have: DataType, want: DataType) -> bool:
    if (have.kind, want.kind) in SAFE_WIDENINGS:
        return True
    return (
        have.kind == want.kind == "decimal" and want.scale == have.scale and want.precision > have.precision
    )


def _compare(name: str, have: IcebergType, want: DataType, origin: str) -> list[Change]:
    try:
        held = from_iceberg(have)
    except ValueError:
        held = None
    if held == want:
        return []
    if held is not None and held.kind == want.kind == "struct":
        changes: list[Change] = []
        for field_name, field_type in want.fields:
            old = held.child(field_name)
            path = f"{name}.{field_name}"
            if old is None:
                changes.append(Change("add", path, field_type.iceberg()))
            else:
                inner = next(f for f in have.fields if f.name == field_name).field_type  # type: ignore[attr-defined]
                changes += _compare(path, inner, field_type, origin)
        return changes  # fields the contract no longer names stay (nullable) in the table
    if held is not None and _widens(held, want):
        return [Change("widen", name, want.iceberg())]
    raise SchemaEvolutionRefused(
        f"column {name!r}: the table holds {have}, {origin} {want}; only int→long, float→double, "
        "a larger decimal precision (same scale) and new struct fields evolve safely"
    )


def plan(schema: Schema, contract: Contract, extras: dict[str, IcebergType] | None = None) -> list[Change]:
    """The changes that make ``schema`` hold the contract's columns and the upload's ``extras``."""
    from pyiceberg.types import StringType

    changes: list[Change] = []
    stored = contract.stored_columns()
    names = {f.name: f for f in schema.fields}
    for name in stored:
        want = contract.columns[name].data_type
        have = names.get(name)
        if have is None:
            changes.append(Change("add", name, want.iceberg()))
            continue
        changes += _compare(name, have.field_type, want, "the contract asks for")
        if have.required and not contract.is_required(name):
            changes.append(Change("optional", name))
    for name, kind in (extras or {}).items():
        have = names.get(name)
        if have is None:
            changes.append(Change("add", name, kind))
        else:
            changes += _compare(name, have.field_type, from_iceberg(kind), "the upload has")
    if contract.vectors is not None and ROW_ID not in names:
        changes.append(Change("add", ROW_ID, StringType()))
    for name, f in names.items():
        if name not in stored and f.required:
            changes.append(Change("optional", name))  # no longer in the contract: new rows leave it null
    return changes


def extra_columns(contract: Contract, file_schema: pa.Schema) -> dict[str, IcebergType]:
    """The upload's columns the contract does not name, by the contract's evolution mode."""
    vector_field = contract.vectors.embedding if contract.vectors else None
    extras = [
        f
        for f in file_schema
        if f.name not in contract.columns and f.name not in (ROW, RAW, ROW_ID) and f.name != vector_field
    ]
    if not extras or contract.evolution == "ignore":
        return {}
    if contract.evolution == "strict":
        raise SchemaEvolutionRefused(
            f"the upload has column(s) {', '.join(f.name for f in extras)} that contract "
            f"{contract.name} v{contract.version} does not name (evolution: strict)"
        )
    return {f.name: iceberg_type_of(f) for f in extras}


def evolve(
    table: Table, contract: Contract, settings: Settings, extras: dict[str, IcebergType] | None = None
) -> list[Change]:
    """Apply :func:`plan` to the table in one schema commit (retried on conflicts); the changes."""
    from pyiceberg.exceptions import CommitFailedException

    for attempt in range(settings.commit_retries + 1):
        changes = plan(table.schema(), contract, extras)
        if not changes:
            return []
        try:
            with table.update_schema() as update:
                for change in changes:
                    if change.kind == "add":
                        update.add_column(change.path, change.type)
                    elif change.kind == "widen":
                        update.update_column(change.path, field_type=change.type)
                    else:
                        update.make_column_optional(change.path)
            return changes
        except CommitFailedException as e:
            if attempt == settings.commit_retries:
                raise CommitConflict(f"{table.name()}: schema update lost to concurrent writers") from e
            table.refresh()
    raise AssertionError("unreachable")
