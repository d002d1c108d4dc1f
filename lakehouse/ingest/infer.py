"""``lake contract infer``: a draft contract from a sample file.

Typed files (Parquet) give their own types, nested ones included; text values (CSV, JSON) are
tried against boolean, long, decimal, double, date, timestamp, time and uuid, and JSON objects
and arrays become ``struct<...>`` and ``list<...>`` types. A column whose values mostly fit a
type gets that type, with a note in its description naming the values that do not (they would
be quarantined). A file without a time column drafts a reference table: no ``event_time``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa

from lakehouse.contracts.model import COLUMN_PATTERN, RAW, ROW, Column, Contract
from lakehouse.contracts.types import DataType
from lakehouse.contracts.validate import cast_expr
from lakehouse.duck import ident, literal
from lakehouse.errors import ContractInvalid
from lakehouse.ingest.readers import MalformedRow, detect_format, read_batches

TIME_NAMES = ("event_time", "timestamp", "ts", "time", "datetime", "created_at", "date")
# A draft takes the type most sample values fit (the misfits would be quarantined, and are noted).
TOLERATED = 0.5
# Tried in order on text values: the first type (almost) every non-null sample value casts to.
CANDIDATES = ("boolean", "long", "decimal", "double", "date", "timestamp", "time", "uuid")
_DECIMAL_TEXT = r"^\s*-?[0-9]+\.[0-9]+\s*$"


def arrow_kind(t: pa.DataType) -> DataType | None:
    """The contract type of an Arrow type (None: no contract type fits; read it as text)."""
    if pa.types.is_boolean(t):
        return DataType("boolean")
    if pa.types.is_integer(t):
        return DataType("int" if t.bit_width <= 32 and pa.types.is_signed_integer(t) else "long")
    if pa.types.is_floating(t):
        return DataType("double")
    if pa.types.is_decimal(t):
        return DataType("decimal", min(t.precision, 38), t.scale)
    if pa.types.is_date(t):
        return DataType("date")
    if pa.types.is_timestamp(t):
        return DataType("timestamp")
    if pa.types.is_time(t):
        return DataType("time")
    if getattr(t, "extension_name", None) == "arrow.uuid":
        return DataType("uuid")
    if pa.types.is_fixed_size_binary(t) and t.byte_width == 16:
        return DataType("uuid")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return DataType("binary")
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        element = arrow_kind(t.value_type)
        return DataType("list", element=element) if element else None
    if pa.types.is_map(t):
        value = arrow_kind(t.item_type)
        is_text = pa.types.is_string(t.key_type) or pa.types.is_large_string(t.key_type)
        return DataType("map", element=value) if value and is_text else None
    if pa.types.is_struct(t):
        fields = [(t.field(i).name, arrow_kind(t.field(i).type)) for i in range(t.num_fields)]
        if all(k is not None and re.match(COLUMN_PATTERN, n) for n, k in fields):
            return DataType("struct", fields=tuple((n, k) for n, k in fields if k is not None))
        return None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return None
    return None


def _json_kind(structure: object) -> DataType:
    """The contract type of a DuckDB ``json_group_structure`` result."""
    if isinstance(structure, dict):
        if structure and all(re.match(COLUMN_PATTERN, k) for k in structure):
            return DataType("struct", fields=tuple((k, _json_kind(v)) for k, v in structure.items()))
        return DataType("string")
    if isinstance(structure, list):
        return DataType("list", element=_json_kind(structure[0] if structure else "VARCHAR"))
    return DataType(
        {"BOOLEAN": "boolean", "UBIGINT": "long", "BIGINT": "long", "DOUBLE": "double"}.get(
            str(structure), "string"
        )
    )


def infer_contract(
    path: Path, dataset: str, sample_rows: int = 10_000, notes: list[str] | None = None
) -> tuple[Contract, int]:
    """Infer a draft contract and return it with the number of rows sampled; ``notes`` gets a line
    per column whose type only most of the sample values fit (also kept in its description)."""
    import duckdb

    fmt = detect_format(path.name)
    malformed: list[MalformedRow] = []
    with path.open("rb") as f:
        batch = next(iter(read_batches(f, fmt, None, sample_rows, malformed)), None)
    if batch is None:
        raise ContractInvalid(f"{path}: no rows to infer a contract from")
    sample = pa.Table.from_batches([batch]).drop_columns([c for c in (ROW, RAW) if c in batch.schema.names])
    bad = [c for c in sample.column_names if not re.match(COLUMN_PATTERN, c)]
    if bad:
        raise ContractInvalid(f"{path}: column names {bad} are not valid contract names ({COLUMN_PATTERN})")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("sample", sample)
    columns: dict[str, Column] = {}
    for name in sample.column_names:
        arrow_type = sample.schema.field(name).type
        col = ident(name)
        nulls, distinct = con.execute(
            f"SELECT count(*) - count({col}), count(DISTINCT {col}) FROM sample"
        ).fetchone()  # type: ignore[misc]
        values = sample.num_rows - nulls
        kind = arrow_kind(arrow_type)
        note = ""
        if kind is None and pa.types.is_dictionary(arrow_type) is False and distinct > 0:
            kind, note = _text_kind(con, col, values)
            if note and notes is not None:
                notes.append(f"{name}: {note.split(' (e.g.')[0]}; rows holding them would be quarantined")
            if note:
                note += ": rows holding them are quarantined"
        kind = kind or DataType("string")
        enum: list[str | int | float] | None = None
        if kind.kind == "string" and 0 < distinct <= 8 and sample.num_rows >= 50:
            enum = sorted(
                str(v)
                for (v,) in con.execute(
                    f"SELECT DISTINCT {col} FROM sample WHERE {col} IS NOT NULL"
                ).fetchall()
            )
        columns[name] = Column(type=str(kind), required=nulls == 0 and not note, enum=enum, description=note)
    con.close()
    times = [n for n, c in columns.items() if c.data_type.temporal]
    event_time = next(
        (n for key in TIME_NAMES for n in times if n.lower() == key), times[0] if times else None
    )
    contract = Contract(
        name=dataset,
        description=f"Draft inferred from {path.name}"
        + ("" if event_time else " (no date or time column: a reference table without an event time)"),
        event_time=event_time,
        version=1,
        retention_months=12 if event_time else None,
        columns=columns,
    )
    return contract, sample.num_rows


def _text_kind(con: object, col: str, values: int) -> tuple[DataType | None, str]:
    """The type most text values of ``col`` fit, and a note on those that do not."""
    import duckdb

    assert isinstance(con, duckdb.DuckDBPyConnection)
    looks_json = con.execute(
        f"SELECT count(*) FILTER (WHERE json_valid({col}) AND left(ltrim({col}), 1) IN ('{{', '[')) "
        f"FROM sample WHERE {col} IS NOT NULL"
    ).fetchone()[0]  # type: ignore[index]
    candidates: list[DataType] = []
    if looks_json > (1 - TOLERATED) * values:
        structure = con.execute(
            f"SELECT json_group_structure(TRY_CAST({col} AS JSON)) FROM sample WHERE json_valid({col})"
        ).fetchone()[0]  # type: ignore[index]
        candidates.append(_json_kind(json.loads(structure)))
    for candidate in CANDIDATES:
        if candidate == "decimal":
            low, scale, digits = con.execute(
                f"SELECT min(length(split_part(trim({col}), '.', 2))), "
                f"max(length(split_part(trim({col}), '.', 2))), "
                f"max(length(split_part(ltrim(trim({col}), '-'), '.', 1))) FROM sample "
                f"WHERE regexp_matches({col}, {literal(_DECIMAL_TEXT)})"
            ).fetchone()  # type: ignore[misc]
            if scale is None or low != scale or not 2 <= scale <= 4:
                continue  # fixed-point text (money: always 2 decimals) is a decimal; other numbers double
            candidates.append(DataType("decimal", min(38, max(digits + scale + 3, 15)), scale))
        else:
            candidates.append(DataType(candidate))
    for kind in candidates:
        misfit = f"{col} IS NOT NULL AND {cast_expr(col, kind)} IS NULL"
        if kind.kind == "decimal":
            misfit += f" OR NOT regexp_matches({col}, '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$')"
        failures, examples = con.execute(
            f"SELECT count(*), list(DISTINCT {col})[1:3] FROM sample WHERE {misfit}"
        ).fetchone()  # type: ignore[misc]
        if failures == 0:
            return kind, ""
        if failures < TOLERATED * values:
            shown = ", ".join(repr(v) for v in examples)
            return kind, f"{failures} of {values} values are not {kind} (e.g. {shown})"
    return None, ""
