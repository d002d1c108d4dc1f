"""``lake contract infer``: a draft contract from a sample file."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from lakehouse.contracts.model import COLUMN_PATTERN, RAW, ROW, Column, Contract
from lakehouse.contracts.validate import cast_expr, ident
from lakehouse.errors import ContractInvalid
from lakehouse.ingest.readers import MalformedRow, detect_format, read_batches

TIME_NAMES = ("event_time", "timestamp", "ts", "time", "datetime", "created_at", "date")
# A draft takes the type most sample values fit (the misfits would be quarantined, and are noted).
TOLERATED = 0.5
# Tried in order on text values: the first type every non-null sample value casts to.
CANDIDATES = ("boolean", "long", "double", "date", "timestamp")


def _arrow_kind(t: pa.DataType) -> str | None:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "int" if t.bit_width <= 32 else "long"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return None


def infer_contract(
    path: Path, dataset: str, sample_rows: int = 10_000, notes: list[str] | None = None
) -> tuple[Contract, int]:
    """Infer a draft contract and return it with the number of rows sampled; ``notes`` gets a line
    per column whose type only most of the sample values fit."""
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
        kind = _arrow_kind(arrow_type)
        col = ident(name)
        nulls, distinct = con.execute(
            f"SELECT count(*) - count({col}), count(DISTINCT {col}) FROM sample"
        ).fetchone()  # type: ignore[misc]
        if kind is None:
            kind = "string"
            for candidate in CANDIDATES:
                misfit = f"{col} IS NOT NULL AND {cast_expr(col, candidate)} IS NULL"
                failures = con.execute(f"SELECT count(*) FROM sample WHERE {misfit}").fetchone()[0]  # type: ignore[index]
                if distinct > 0 and failures < TOLERATED * (sample.num_rows - nulls):
                    kind = candidate
                    if failures and notes is not None:
                        notes.append(
                            f"{name}: {failures} of {sample.num_rows - nulls} values are not {candidate}; "
                            "rows holding them would be quarantined"
                        )
                    break
        enum = None
        if kind == "string" and 0 < distinct <= 8 and sample.num_rows >= 50:
            enum = sorted(
                str(v)
                for (v,) in con.execute(
                    f"SELECT DISTINCT {col} FROM sample WHERE {col} IS NOT NULL"
                ).fetchall()
            )
        columns[name] = Column(type=kind, required=nulls == 0, enum=enum)  # type: ignore[arg-type]
    times = [n for n, c in columns.items() if c.type in ("timestamp", "date")]
    if not times:
        raise ContractInvalid(
            f"{path}: no timestamp or date column found; a contract needs an event_time column"
        )
    event_time = next((n for key in TIME_NAMES for n in times if n.lower() == key), times[0])
    contract = Contract(
        name=dataset,
        description=f"Draft inferred from {path.name}",
        event_time=event_time,
        version=1,
        retention_months=12,
        columns=columns,
    )
    return contract, sample.num_rows
