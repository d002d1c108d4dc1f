"""Vectorised validation and casting of a record batch against a contract, in DuckDB.

One SQL statement per batch casts every column to its contract type (``TRY_CAST``; timestamps
normalised to UTC) and collects, per row, a list of ``{column, rule, reason}`` failures. Rows
with no failure are accepted; the others become quarantine rows carrying the raw record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.contracts import DUCKDB_TYPES, NUMERIC, Contract
from lakehouse.readers import RAW, ROW

if TYPE_CHECKING:
    import duckdb

ERRORS = "__lake_errors"
ERROR_TYPE = pa.list_(pa.struct([("column", pa.string()), ("rule", pa.string()), ("reason", pa.string())]))


@dataclass
class Checked:
    """A validated batch: accepted rows (contract schema) and rejected ones (with their failures)."""

    accepted: pa.Table
    rejected: pa.Table  # columns: __lake_row, __lake_errors, __lake_raw


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _error(column: str, rule: str, reason_sql: str) -> str:
    return f"{{'column': {literal(column)}, 'rule': {literal(rule)}, 'reason': {reason_sql}}}"


def _shown(expr: str) -> str:
    """A value as it appears in a reason: quoted, cut to 80 characters."""
    return f"'''' || left(CAST({expr} AS VARCHAR), 80) || ''''"


def _rule(condition: str, column: str, rule: str, value: str, why: str) -> str:
    """A CASE yielding one failure struct when ``condition`` holds."""
    return f"CASE WHEN {condition} THEN {_error(column, rule, _shown(value) + ' || ' + literal(why))} END"


def cast_expr(src: str, kind: str) -> str:
    """SQL casting ``src`` to a contract type, NULL where the value does not fit.

    Integers must be integral: DuckDB's own cast would round '3.7' to 4. Dates must be dates,
    not timestamps cut to their day.
    """
    target = DUCKDB_TYPES[kind]
    if kind in ("int", "long"):
        return (
            f"CASE WHEN TRY_CAST({src} AS DECIMAL(38, 9)) = TRY_CAST({src} AS HUGEINT) "
            f"THEN TRY_CAST({src} AS {target}) END"
        )
    if kind == "date":
        return (
            f"CASE WHEN TRY_CAST({src} AS TIMESTAMP) = TRY_CAST({src} AS DATE) "
            f"THEN TRY_CAST({src} AS DATE) END"
        )
    return f"TRY_CAST({src} AS {target})"


def build_sql(contract: Contract, input_columns: list[str]) -> str:
    """The validation statement over a registered relation ``batch``."""
    present = set(input_columns)
    typed: list[str] = []
    checks: list[str] = []
    for name, col in contract.columns.items():
        src = ident(name) if name in present else "NULL"
        target = DUCKDB_TYPES[col.type]
        cast = cast_expr(src, col.type)
        typed.append(f"{cast} AS {ident(name)}")
        if contract.is_required(name):
            why = "'missing value'" if name in present else "'column missing from the file'"
            checks.append(f"CASE WHEN {src} IS NULL THEN {_error(name, 'required', why)} END")
        if name not in present:
            continue
        checks.append(
            _rule(f"{src} IS NOT NULL AND {cast} IS NULL", name, "type", src, f" is not a valid {col.type}")
        )
        if col.type in NUMERIC and col.min is not None:
            checks.append(
                _rule(f"{cast} < {col.min!r}", name, "min", cast, f" is below the minimum {col.min:g}")
            )
        if col.type in NUMERIC and col.max is not None:
            checks.append(
                _rule(f"{cast} > {col.max!r}", name, "max", cast, f" is above the maximum {col.max:g}")
            )
        if col.enum is not None:
            allowed = ", ".join(f"TRY_CAST({literal(v)} AS {target})" for v in col.enum)
            listed = ", ".join(str(v) for v in col.enum)
            checks.append(
                _rule(
                    f"{cast} IS NOT NULL AND {cast} NOT IN ({allowed})",
                    name,
                    "enum",
                    cast,
                    f" is not one of [{listed}]",
                )
            )
    failures = f"list_filter([{', '.join(checks)}], e -> e IS NOT NULL)" if checks else "[]"
    originals = [c for c in input_columns if c not in (ROW, RAW)]
    if RAW in present:
        raw = ident(RAW)
    else:
        raw = (
            "to_json(struct_pack(" + ", ".join(f"{ident(c)} := {ident(c)}" for c in originals) + "))::VARCHAR"
        )
    return (
        f"SELECT {ident(ROW)}, {', '.join(typed)}, {ERRORS}, "
        f"CASE WHEN len({ERRORS}) > 0 THEN {raw} END AS {ident(RAW)} "
        f"FROM (SELECT *, {failures} AS {ERRORS} FROM batch)"
    )


def check_batch(
    con: duckdb.DuckDBPyConnection, batch: pa.RecordBatch, contract: Contract, target: pa.Schema
) -> Checked:
    """Validate one batch; ``target`` is the table's Arrow schema."""
    con.register("batch", batch)
    try:
        out = con.execute(build_sql(contract, batch.schema.names)).to_arrow_table()
    finally:
        con.unregister("batch")
    ok = pc.equal(pc.list_value_length(out[ERRORS]), 0)
    accepted = out.filter(ok).select(list(contract.columns)).cast(target)
    rejected = out.filter(pc.invert(ok)).select([ROW, ERRORS, RAW])
    return Checked(accepted=accepted, rejected=rejected)
