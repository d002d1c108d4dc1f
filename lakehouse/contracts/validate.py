"""Vectorised validation and casting of a record batch against a contract, in DuckDB.

One SQL statement per batch casts every column to its contract type (``TRY_CAST``; timestamps
normalised to UTC), evaluates every rule (column rules, ``unique`` against the values of the
earlier batches, the contract's SQL ``checks`` over the typed row) and collects, per row, a
list of ``{column, rule, reason}`` failures. Rows with no failure are accepted, with PII
masked, hashed or dropped; the others become quarantine rows carrying the raw record.

The statement is built in layers so that rules and checks see typed values under the
contract's column names::

    L1  originals renamed (__lake_in_<i>), extra columns kept
    L2  typed contract columns, duplicate ranks of ``unique`` columns
    L3  the failure list (+ PII detection flags)
    L4  stored values (PII applied), raw record of failing rows, key hashes of ``unique`` columns
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.contracts import pii
from lakehouse.contracts.model import RAW, ROW, Column, Contract
from lakehouse.contracts.types import DataType, parse_type
from lakehouse.duck import ident, literal
from lakehouse.errors import ContractInvalid

if TYPE_CHECKING:
    import duckdb

    from lakehouse.config import Settings

ERRORS = "__lake_errors"
ERROR_TYPE = pa.list_(pa.struct([("column", pa.string()), ("rule", pa.string()), ("reason", pa.string())]))
_IN = "__lake_in_"
_DUP = "__lake_dup_"
_SEEN = "__lake_seen_"
_HASH = "__lake_hash_"
_PII = "__lake_pii_"


@dataclass
class Checked:
    """A validated batch: accepted rows (table schema) and rejected ones (with their failures)."""

    accepted: pa.Table
    rejected: pa.Table  # columns: __lake_row, __lake_errors, __lake_raw
    accepted_rows: pa.Array = field(default_factory=lambda: pa.array([], pa.int64()))
    failures: Counter[str] = field(default_factory=Counter)  # rule -> failures
    pii: Counter[str] = field(default_factory=Counter)  # detected kind -> accepted rows holding it


__all__ = [
    "ERRORS",
    "ERROR_TYPE",
    "Checked",
    "Validator",
    "build_sql",
    "cast_expr",
    "conform",
]


def _error(column: str | None, rule: str, reason_sql: str) -> str:
    col = "NULL::VARCHAR" if column is None else literal(column)
    return f"{{'column': {col}, 'rule': {literal(rule)}, 'reason': {reason_sql}}}"


def _shown(expr: str) -> str:
    """A value as it appears in a reason: quoted, cut to 80 characters."""
    return f"'''' || left(CAST({expr} AS VARCHAR), 80) || ''''"


def _rule(condition: str, column: str, rule: str, value: str, why: str) -> str:
    """A CASE yielding one failure struct when ``condition`` holds."""
    return f"CASE WHEN {condition} THEN {_error(column, rule, _shown(value) + ' || ' + literal(why))} END"


_UUID_GROUPS = "^(.{8})(.{4})(.{4})(.{4})(.{12})$"
_UUID_DASHED = "\\1-\\2-\\3-\\4-\\5"


def _is_text(source: pa.DataType | None) -> bool:
    return source is None or pa.types.is_string(source) or pa.types.is_large_string(source)


def cast_expr(src: str, kind: DataType | str, source: pa.DataType | None = None) -> str:
    """SQL casting ``src`` (of Arrow type ``source``; None: text) to a contract type, NULL where
    the value does not fit.

    Integers must be integral: DuckDB's own cast would round '3.7' to 4, so the value must
    equal itself read as a double (a string-to-DECIMAL comparison does the same ~100× slower).
    Dates must be dates, not timestamps cut to their day. Decimals are read from text (a binary
    float goes through its shortest decimal spelling, so 0.1 stays 0.1); binary from base64 text;
    nested types from JSON text or from the file's own nested values.
    """
    kind = parse_type(kind) if isinstance(kind, str) else kind
    target = kind.duckdb()
    if kind.kind in ("int", "long"):
        return (
            f"CASE WHEN TRY_CAST({src} AS DOUBLE) = TRY_CAST({src} AS {target}) "
            f"THEN TRY_CAST({src} AS {target}) END"
        )
    if kind.kind == "date":
        return (
            f"CASE WHEN TRY_CAST({src} AS TIMESTAMP) = TRY_CAST({src} AS DATE) "
            f"THEN TRY_CAST({src} AS DATE) END"
        )
    if kind.kind == "decimal" and source is not None and pa.types.is_floating(source):
        return f"TRY_CAST(CAST({src} AS VARCHAR) AS {target})"
    if kind.kind == "binary" and _is_text(source):
        return f"try(from_base64({src}))"
    if kind.kind == "uuid" and source is not None and pa.types.is_fixed_size_binary(source):
        dashed = f"regexp_replace(hex({src}), {literal(_UUID_GROUPS)}, {literal(_UUID_DASHED)})"
        return f"TRY_CAST({dashed} AS UUID)"
    if kind.nested and _is_text(source):
        return f"TRY_CAST(TRY_CAST({src} AS JSON) AS {target})"
    return f"TRY_CAST({src} AS {target})"


def _too_many_decimals(src: str, typed: str, kind: DataType, source: pa.DataType | None) -> str:
    """SQL true when a value that cast to ``typed`` had more than the scale's decimals.

    Text in plain notation is judged by its digits after the point (trailing zeros aside), which
    holds at any precision; other values by reading them with every digit a decimal(38, …) can
    hold beside the integer digits (no room left at precision 38)."""
    wide = f"DECIMAL(38,{38 - (kind.precision - kind.scale)})"
    text = f"CAST({src} AS VARCHAR)" if source is not None and pa.types.is_floating(source) else src
    by_cast = f"TRY_CAST({text} AS {wide}) IS DISTINCT FROM {typed}"
    if not _is_text(source):
        return by_cast
    plain = r"^\s*[+-]?[0-9]*\.[0-9]+\s*$"
    fraction = f"length(rtrim(regexp_extract(trim({src}), '\\.([0-9]+)$', 1), '0'))"
    return f"CASE WHEN regexp_matches({src}, '{plain}') THEN {fraction} > {kind.scale} ELSE {by_cast} END"


def _nested_rules(name: str, src: str, kind: DataType, source: pa.DataType | None) -> list[str]:
    """Failures inside a nested value: a struct field, list element or map value that does not fit
    its type (the cast leaves it NULL, so the source is compared with the typed value)."""
    typed = ident(name)
    checks: list[str] = []
    json = _is_text(source)
    if json:
        src = f"CASE WHEN json_valid({src}) THEN {src} END"
    if kind.kind == "struct":
        for path, leaf in _leaves(kind):
            if json:
                present = f"json_extract_string({src}, {literal(_json_path(path))}) IS NOT NULL"
            else:
                if source is None or not _arrow_has(source, path):
                    continue
                present = f"{_struct_get(src, path)} IS NOT NULL"
            checks.append(
                f"CASE WHEN {present} AND {_struct_get(typed, path)} IS NULL THEN "
                f"{_error(name + '.' + '.'.join(path), 'type', literal('not a valid ' + str(leaf)))} END"
            )
        return checks
    if kind.kind in ("list", "map"):
        if json:
            wanted = "$[*]" if kind.kind == "list" else "$.*"
            given = f"len(list_filter(json_extract({src}, {literal(wanted)}), x -> json_type(x) <> 'NULL'))"
        else:
            given = f"list_count({src})" if kind.kind == "list" else f"list_count(map_values({src}))"
        have = f"list_count({typed})" if kind.kind == "list" else f"list_count(map_values({typed}))"
        what = "an element" if kind.kind == "list" else "a value"
        why = literal(f"{what} is not a valid {kind.element}")
        checks.append(
            f"CASE WHEN {typed} IS NOT NULL AND {given} <> {have} THEN {_error(name, 'type', why)} END"
        )
    return checks


def _leaves(kind: DataType, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], DataType]]:
    out: list[tuple[tuple[str, ...], DataType]] = []
    for field_name, field_type in kind.fields:
        path = (*prefix, field_name)
        if field_type.kind == "struct":
            out += _leaves(field_type, path)
        else:
            out.append((path, field_type))
    return out


def _json_path(path: tuple[str, ...]) -> str:
    return "$" + "".join('."' + p.replace('"', '\\"') + '"' for p in path)


def _struct_get(expr: str, path: tuple[str, ...]) -> str:
    return f"({expr})" + "".join(f"[{literal(p)}]" for p in path)


def _arrow_has(source: pa.DataType, path: tuple[str, ...]) -> bool:
    current = source
    for part in path:
        if not pa.types.is_struct(current) or current.get_field_index(part) < 0:
            return False
        current = current.field(part).type
    return True


def _required_fields(name: str, col: Column) -> list[str]:
    typed = ident(name)
    out = []
    for path in col.required_fields or []:
        parts = tuple(path.split("."))
        out.append(
            f"CASE WHEN {typed} IS NOT NULL AND {_struct_get(typed, parts)} IS NULL THEN "
            f"{_error(name + '.' + path, 'required', literal('missing value'))} END"
        )
    return out


def detect_columns(contract: Contract) -> list[str]:
    """Free-text columns scanned for PII: string columns without their own ``pii`` mode."""
    if not contract.detect_pii:
        return []
    keys = set(contract.primary_key or [])
    return [n for n, c in contract.columns.items() if c.type == "string" and c.pii is None and n not in keys]


def unique_columns(contract: Contract) -> list[str]:
    return [n for n, c in contract.columns.items() if c.unique]


def _time_literal(value: str | dt.datetime, kind: DataType) -> str:
    text = value.isoformat() if isinstance(value, dt.datetime) else value
    return f"CAST(TIMESTAMPTZ {literal(text)} AS {kind.duckdb()})"


def build_sql(
    contract: Contract,
    input_columns: list[str],
    *,
    now: dt.datetime | None = None,
    salt: str | None = None,
    extras: list[str] | None = None,
    seen_tables: bool = False,
    input_types: dict[str, pa.DataType] | None = None,
) -> str:
    """The validation statement over a registered relation ``batch``.

    Args:
        contract: the dataset contract.
        input_columns: the batch's columns.
        now: the moment ``not_future`` compares against (default: now).
        salt: the PII hash key (needed when a column is hashed).
        extras: file columns outside the contract that are kept (``evolution: add_columns``).
        seen_tables: compare ``unique`` columns with ``__lake_seen_<i>`` tables of earlier values.
        input_types: the batch's Arrow types (None: every column is text).
    """
    types = input_types or {}
    present = set(input_columns)
    originals = [c for c in input_columns if c not in (ROW, RAW)]
    renamed = {c: f"{_IN}{i}" for i, c in enumerate(originals)}
    extras = [c for c in (extras or []) if c in present and c not in contract.columns]
    now = now or dt.datetime.now(dt.UTC)

    l1 = [ident(ROW)] + [f"{ident(c)} AS {ident(renamed[c])}" for c in originals]
    if RAW in present:
        l1.append(ident(RAW))
    l1 += [f"{ident(c)} AS {ident('__lake_x_' + c)}" for c in extras]

    l2 = ["*"]
    checks: list[str] = []
    for name, col in contract.columns.items():
        src = ident(renamed[name]) if name in present else "NULL"
        l2.append(f"{cast_expr(src, col.data_type, types.get(name))} AS {ident(name)}")
    for i, name in enumerate(unique_columns(contract)):
        l2.append(f"row_number() OVER (PARTITION BY {ident(name)} ORDER BY {ident(ROW)}) AS {_DUP}{i}")

    for name, col in contract.columns.items():
        src = ident(renamed[name]) if name in present else "NULL"
        typed = ident(name)
        if contract.is_required(name):
            why = "'missing value'" if name in present else "'column missing from the file'"
            checks.append(f"CASE WHEN {src} IS NULL THEN {_error(name, 'required', why)} END")
        if name not in present:
            continue
        kind = col.data_type
        why = f" is not a valid {col.type}"
        if kind.kind == "decimal":
            digits = kind.precision - kind.scale
            why = f" is not a number of at most {digits} digits before the point ({col.type})"
        checks.append(_rule(f"{src} IS NOT NULL AND {typed} IS NULL", name, "type", src, why))
        if kind.kind == "decimal":
            checks.append(
                _rule(
                    f"{typed} IS NOT NULL AND ({_too_many_decimals(src, typed, kind, types.get(name))})",
                    name,
                    "scale",
                    src,
                    f" has more than {kind.scale} digits after the point ({col.type})",
                )
            )
        if kind.nested:
            checks += _nested_rules(name, src, kind, types.get(name))
        checks += _required_fields(name, col)
        if kind.numeric and col.min is not None:
            checks.append(
                _rule(f"{typed} < {col.min!r}", name, "min", src, f" is below the minimum {col.min:g}")
            )
        if kind.numeric and col.max is not None:
            checks.append(
                _rule(f"{typed} > {col.max!r}", name, "max", src, f" is above the maximum {col.max:g}")
            )
        if col.enum is not None:
            target = kind.duckdb()
            allowed = ", ".join(f"TRY_CAST({literal(v)} AS {target})" for v in col.enum)
            listed = ", ".join(str(v) for v in col.enum)
            checks.append(
                _rule(f"{typed} NOT IN ({allowed})", name, "enum", typed, f" is not one of [{listed}]")
            )
        if col.pattern is not None:
            checks.append(
                _rule(
                    f"NOT regexp_full_match({typed}, {literal(col.pattern)})",
                    name,
                    "pattern",
                    typed,
                    f" does not match {col.pattern}",
                )
            )
        if col.max_length is not None:
            checks.append(
                _rule(
                    f"length({typed}) > {col.max_length}",
                    name,
                    "max_length",
                    typed,
                    f" is longer than {col.max_length} characters",
                )
            )
        if col.not_future:
            checks.append(
                _rule(
                    f"{typed} > {_time_literal(now, kind)}",
                    name,
                    "not_future",
                    typed,
                    " is in the future",
                )
            )
        if col.not_before is not None:
            checks.append(
                _rule(
                    f"{typed} < {_time_literal(col.not_before, kind)}",
                    name,
                    "not_before",
                    typed,
                    f" is before {col.not_before}",
                )
            )
    for i, name in enumerate(unique_columns(contract)):
        if name not in present:
            continue
        typed = ident(name)
        earlier = f" OR hash({typed}) IN (SELECT h FROM {_SEEN}{i})" if seen_tables else ""
        checks.append(
            _rule(
                f"{typed} IS NOT NULL AND ({_DUP}{i} > 1{earlier})",
                name,
                "unique",
                typed,
                " repeats a value of an earlier row of the file",
            )
        )
    for check in contract.checks:
        why = f"check {check.name} failed: {check.description or check.sql}"
        checks.append(
            f"CASE WHEN NOT coalesce(CAST(({check.sql}) AS BOOLEAN), true) "
            f"THEN {_error(None, 'check:' + check.name, literal(why))} END"
        )
    failures = f"list_filter([{', '.join(checks)}], e -> e IS NOT NULL)" if checks else "[]"
    l3 = ["*", f"{failures} AS {ERRORS}"]
    flags: dict[str, list[str]] = {}
    for i, name in enumerate(detect_columns(contract)):
        flags[name] = []
        for finding in pii.DETECTORS:
            flag = f"{_PII}{i}_{finding}"
            l3.append(f"{pii.flag_expr(ident(name), finding)} AS {flag}")
            flags[name].append(flag)

    l4 = [ident(ROW)]
    for name in contract.stored_columns():
        col = contract.columns[name]
        value = ident(name)
        if col.pii is not None:
            value = pii.column_expr(value, col.pii, salt)
        elif name in flags:
            value = pii.detected_expr(value, flags[name], contract.pii_default, salt)
        if col.data_type.kind == "uuid":  # the table holds the 16 bytes (Arrow's uuid type)
            value = f"unhex(replace(CAST({value} AS VARCHAR), '-', ''))"
        l4.append(f"{value} AS {ident(name)}")
    l4 += [f"{ident('__lake_x_' + c)} AS {ident(c)}" for c in extras]
    l4.append(ERRORS)
    if RAW in present:
        raw = ident(RAW)
    elif originals:
        raw = (
            "to_json(struct_pack("
            + ", ".join(f"{ident(c)} := {ident(renamed[c])}" for c in originals)
            + "))::VARCHAR"
        )
    else:
        raw = "'{}'"
    l4.append(f"CASE WHEN len({ERRORS}) > 0 THEN {raw} END AS {ident(RAW)}")
    for i, name in enumerate(unique_columns(contract)):
        l4.append(f"CASE WHEN {ident(name)} IS NOT NULL THEN hash({ident(name)}) END AS {_HASH}{i}")
    l4 += [flag for group in flags.values() for flag in group]
    return (
        f"SELECT {', '.join(l4)} FROM (SELECT {', '.join(l3)} FROM (SELECT {', '.join(l2)} FROM "
        f"(SELECT {', '.join(l1)} FROM batch)))"
    )


def conform(data: pa.Table, target: pa.Schema) -> pa.Table:
    """``data`` with the target's columns in its order (missing ones null), cast to its types
    (UUIDs DuckDB returned as text become their 16 bytes)."""
    columns = []
    for f in target:
        column = data[f.name] if f.name in data.column_names else pa.nulls(data.num_rows, f.type)
        text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if _is_uuid(f.type) and (text or pa.types.is_string_view(column.type)):
            column = pa.array(
                [None if v is None else uuid.UUID(str(v)).bytes for v in column.to_pylist()], pa.binary(16)
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, names=target.names).cast(target)


def _is_uuid(kind: pa.DataType) -> bool:
    return getattr(kind, "extension_name", None) == "arrow.uuid" or (
        pa.types.is_fixed_size_binary(kind) and kind.byte_width == 16
    )


class Validator:
    """Validates the batches of one file; keeps the state rules need across batches (``unique``).

    The values of ``unique`` columns seen so far are kept as 64-bit hashes in DuckDB tables of
    the connection: 8 bytes per distinct value, spilled to disk past the connection's memory
    limit.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        contract: Contract,
        target: pa.Schema,
        *,
        salt: str | None = None,
        now: dt.datetime | None = None,
        extras: list[str] | None = None,
    ) -> None:
        self.con = con
        self.contract = contract
        self.target = target
        self.salt = salt
        self.now = now or dt.datetime.now(dt.UTC)
        self.extras = extras or []
        self._uniques = unique_columns(contract)
        for i in range(len(self._uniques)):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_SEEN}{i} (h UBIGINT)")
        self._sql: dict[tuple[str, ...], str] = {}

    def check(self, batch: pa.RecordBatch | pa.Table) -> Checked:
        import duckdb

        names = tuple(f"{f.name}:{f.type}" for f in batch.schema)
        sql = self._sql.get(names)
        if sql is None:
            sql = build_sql(
                self.contract,
                list(batch.schema.names),
                now=self.now,
                salt=self.salt,
                extras=self.extras,
                seen_tables=bool(self._uniques),
                input_types={f.name: f.type for f in batch.schema},
            )
            self._sql[names] = sql
        self.con.register("batch", batch)
        try:
            out = self.con.execute(sql).to_arrow_table()
        except duckdb.Error as e:
            raise ContractInvalid(f"{self.contract.name}: a rule or check cannot be evaluated: {e}") from e
        finally:
            self.con.unregister("batch")
        if self._uniques:
            self._remember(out)
        ok = pc.equal(pc.list_value_length(out[ERRORS]), 0)
        good = out.filter(ok)
        accepted = conform(good, self.target)
        rejected = out.filter(pc.invert(ok)).select([ROW, ERRORS, RAW])
        failures: Counter[str] = Counter()
        if rejected.num_rows:
            rules = pc.struct_field(pc.list_flatten(rejected[ERRORS]), "rule")
            for item in pc.value_counts(rules).to_pylist():
                failures[item["values"]] += item["counts"]
        found: Counter[str] = Counter()
        for name in out.column_names:
            if name.startswith(_PII):
                hits = pc.sum(good[name]).as_py() or 0
                if hits:
                    found[name.rsplit("_", 1)[1]] += hits
        return Checked(accepted, rejected, good[ROW].combine_chunks(), failures, found)

    def _remember(self, out: pa.Table) -> None:
        for i in range(len(self._uniques)):
            self.con.register("__lake_hashes", out.select([f"{_HASH}{i}"]))
            try:
                self.con.execute(
                    f"INSERT INTO {_SEEN}{i} SELECT {_HASH}{i} FROM __lake_hashes "
                    f"WHERE {_HASH}{i} IS NOT NULL"
                )
            finally:
                self.con.unregister("__lake_hashes")


def check_batch(
    con: duckdb.DuckDBPyConnection, batch: pa.RecordBatch, contract: Contract, target: pa.Schema
) -> Checked:
    """Validate one batch on its own; ``target`` is the table's Arrow schema."""
    return Validator(con, contract, target).check(batch)


_databases: dict[tuple[int, str, str], duckdb.DuckDBPyConnection] = {}
_databases_lock = threading.Lock()


def validation_connection(settings: Settings, threads: int = 2) -> duckdb.DuckDBPyConnection:
    """The connection batches are checked in: UTC, ``threads`` threads, the ingest memory limit
    with spilling, DuckDB's freed memory given back at once (a Lambda-sized ingest needs it), and
    no file access from contract SQL (checks run in it). Workers validate on cursors of their own.

    A cursor of one database kept per process and configuration (opening a database costs about
    100 ms, more than validating a small upload): its own temp tables and registrations, the
    database's locked configuration. Close it when done.
    """
    import tempfile

    import duckdb

    spill = str(settings.duckdb_home or tempfile.gettempdir())
    key = (threads, settings.ingest_memory_limit, spill)
    with _databases_lock:
        base = _databases.get(key)
        if base is None:
            base = duckdb.connect(config={"threads": threads})
            base.execute("SET GLOBAL TimeZone = 'UTC'")
            base.execute(f"SET memory_limit = '{settings.ingest_memory_limit}'")
            base.execute(f"SET temp_directory = '{spill}'")
            # DuckDB's allocator keeps up to 128 MiB (512 MiB after bulk frees) of freed memory by default.
            base.execute("SET allocator_flush_threshold = '8MB'")
            base.execute("SET allocator_bulk_deallocation_flush_threshold = '8MB'")
            base.execute("SET enable_external_access = false")
            base.execute("SET lock_configuration = true")
            _databases[key] = base
        return base.cursor()
