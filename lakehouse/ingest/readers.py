"""Readers: an uploaded file (CSV, NDJSON, JSON array, Parquet; plain or gzip) as a stream of
Arrow record batches.

Every batch carries ``__lake_row``, the row's position in the file (CSV: line number; NDJSON:
line number; JSON array: element number; Parquet: row number, all 1-based). Rows that cannot
be parsed at all (a CSV line with the wrong number of fields, an NDJSON line that is not a
JSON object) never reach a batch: they are appended to ``malformed`` with their row number,
so they can be quarantined while the good rows go on.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import tempfile
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pyarrow as pa

from lakehouse.contracts.model import RAW, ROW
from lakehouse.errors import UnreadableFile, UnsupportedFormat

if TYPE_CHECKING:
    import duckdb

# CSV values read as null. Not "NaN"/"nan" (pyarrow's default list has them): a NaN is a double,
# and silently nulling it would hide it from the contract's rules.
NULL_SPELLINGS = ["", "NULL", "null", "NA", "N/A", "n/a", "#N/A"]
Kind = Literal["csv", "ndjson", "json", "parquet"]
_CHUNK = 8 << 20


@dataclass(frozen=True)
class FileFormat:
    kind: Kind
    gzip: bool
    delimiter: str = ","


@dataclass(frozen=True)
class MalformedRow:
    """A row that could not be parsed into columns."""

    row: int
    reason: str
    raw: str


def detect_format(key: str) -> FileFormat:
    """Format from the key's suffix: .csv .tsv .ndjson .jsonl .json .parquet, each optionally .gz."""
    name = key.rsplit("/", 1)[-1].lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    kinds: dict[str, FileFormat] = {
        "csv": FileFormat("csv", gz),
        "tsv": FileFormat("csv", gz, "\t"),
        "ndjson": FileFormat("ndjson", gz),
        "jsonl": FileFormat("ndjson", gz),
        "json": FileFormat("json", gz),
        "parquet": FileFormat("parquet", gz),
        "pq": FileFormat("parquet", gz),
    }
    if ext not in kinds:
        raise UnsupportedFormat(
            f"{key}: unsupported file type {ext or '(none)'!r}; expected .csv, .tsv, .ndjson, .jsonl, "
            ".json or .parquet, optionally gzipped (.gz)"
        )
    fmt = kinds[ext]
    if fmt.kind == "parquet" and gz:
        raise UnsupportedFormat(f"{key}: gzipped Parquet is not supported (Parquet compresses its own pages)")
    return fmt


def read_batches(
    f: IO[bytes],
    fmt: FileFormat,
    columns: list[str] | None,
    batch_rows: int,
    malformed: list[MalformedRow],
    exact: Collection[str] = (),
) -> Iterator[pa.RecordBatch]:
    """Stream ``f`` as record batches of at most about ``batch_rows`` rows.

    Args:
        f: the raw object stream (seekable for Parquet).
        fmt: the file's format.
        columns: the columns wanted (a contract's); None reads every column (for inference).
        batch_rows: rows per batch.
        malformed: receives rows that cannot be parsed.
        exact: columns whose JSON numbers are kept as written (decimals), not read as doubles.
    """
    try:
        if fmt.kind == "parquet":
            yield from _parquet(f, columns, batch_rows)
            return
        if not fmt.gzip:
            f = _check_magic(f, fmt)
        stream: Any = gzip.GzipFile(fileobj=f, mode="rb") if fmt.gzip else f
        if fmt.kind == "csv":
            yield from _csv(stream, fmt.delimiter, batch_rows, malformed)
        else:
            buffered = io.BufferedReader(stream, buffer_size=1 << 16)
            first = buffered.peek(4096).lstrip()[:1]
            if fmt.kind == "json" and first == b"[":
                yield from _json_array(buffered, columns, batch_rows, malformed, exact)
            else:
                yield from _ndjson(buffered, columns, batch_rows, malformed, exact)
    except (pa.ArrowInvalid, OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise UnreadableFile(f"cannot read the file as {fmt.kind}{' (gzip)' if fmt.gzip else ''}: {e}") from e


MAGIC: dict[bytes, str] = {
    b"\x1f\x8b": "gzip-compressed (name it .gz)",
    b"PAR1": "a Parquet file",
    b"PK\x03\x04": "a zip archive",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
}


def _check_magic(f: IO[bytes], fmt: FileFormat) -> IO[bytes]:
    """Refuse a text file whose first bytes say it is something else (a name that lies)."""
    buffered = f if isinstance(f, io.BufferedReader) else io.BufferedReader(cast(Any, f), buffer_size=1 << 16)
    head = buffered.peek(8)[:8]
    for magic, what in MAGIC.items():
        if head.startswith(magic):
            raise UnreadableFile(f"the file is named .{fmt.kind} but its content is {what}")
    return buffered


def _with_rows(batch: pa.RecordBatch, rows: np.ndarray) -> pa.RecordBatch:
    return batch.append_column(ROW, pa.array(rows, pa.int64()))


def _parquet(f: IO[bytes], columns: list[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f)
    names = pf.schema_arrow.names
    wanted = names if columns is None else [c for c in names if c in set(columns)]
    start = 1
    for batch in pf.iter_batches(batch_size=batch_rows, columns=wanted):
        yield _with_rows(batch, np.arange(start, start + batch.num_rows))
        start += batch.num_rows


def _csv_header(head: bytes, delimiter: str) -> list[str]:
    text = head.decode("utf-8-sig", errors="replace")
    line = text.splitlines()[0] if text else ""
    if not line.strip():
        raise UnreadableFile("the CSV file has no header line")
    header = next(csv.reader([line], delimiter=delimiter))
    header = [h.strip() for h in header]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise UnreadableFile(f"the CSV header repeats column(s) {', '.join(dupes)}")
    return header


def _sniff_delimiter(head: bytes, default: str) -> str:
    first = head.split(b"\n", 1)[0]
    if default != ",":
        return default
    counts = {d: first.count(d.encode()) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _csv(
    stream: Any, delimiter: str, batch_rows: int, malformed: list[MalformedRow]
) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pacsv

    buffered = io.BufferedReader(stream, buffer_size=1 << 20)
    head = buffered.peek(1 << 16)
    delimiter = _sniff_delimiter(head, delimiter)
    header = _csv_header(head, delimiter)
    skipped: list[int] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        line = int(row.number) if row.number is not None else -1
        skipped.append(line)
        malformed.append(
            MalformedRow(
                line, f"expected {row.expected_columns} fields, found {row.actual_columns}", row.text
            )
        )
        return "skip"

    reader = pacsv.open_csv(
        buffered,
        read_options=pacsv.ReadOptions(block_size=4 << 20, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=True,
            null_values=NULL_SPELLINGS,
        ),
    )
    done = 0  # data rows yielded so far
    accounted = 0  # skipped lines already folded into the line numbering
    for batch in _rebatch(reader, batch_rows):
        rows = np.arange(done, done + batch.num_rows) + 2 + accounted
        while accounted < len(skipped) and batch.num_rows and skipped[accounted] <= rows[-1]:
            rows[rows >= skipped[accounted]] += 1
            accounted += 1
        done += batch.num_rows
        yield _with_rows(batch, rows)


def _rebatch(batches: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Join small batches until they hold ``batch_rows`` rows (bounded: one batch plus one block)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        if count >= batch_rows:
            yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _quote_path(column: str) -> str:
    return "$." + '"' + column.replace('"', '\\"') + '"'


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ndjson(
    stream: IO[bytes],
    columns: list[str] | None,
    batch_rows: int,
    malformed: list[MalformedRow],
    exact: Collection[str] = (),
) -> Iterator[pa.RecordBatch]:
    import duckdb

    con = duckdb.connect()
    line_no = 0
    rest = b""
    pending_rows: list[int] = []
    pending_lines: list[str] = []

    def flush() -> Iterator[pa.RecordBatch]:
        nonlocal columns
        if not pending_lines:
            return
        batch, columns = _json_objects(con, pending_rows, pending_lines, columns, malformed, exact)
        pending_rows.clear()
        pending_lines.clear()
        if batch is not None:
            yield batch

    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        data = rest + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1 :]
        for line in data[:cut].decode("utf-8").split("\n"):
            line_no += 1
            if line.strip():
                pending_rows.append(line_no)
                pending_lines.append(line)
        if len(pending_lines) >= batch_rows:
            yield from flush()
    if rest.strip():
        line_no += 1
        pending_rows.append(line_no)
        pending_lines.append(rest.decode("utf-8"))
    yield from flush()
    con.close()


def _json_array(
    stream: IO[bytes],
    columns: list[str] | None,
    batch_rows: int,
    malformed: list[MalformedRow],
    exact: Collection[str] = (),
) -> Iterator[pa.RecordBatch]:
    """A JSON array: spooled to a temporary file, its elements streamed by DuckDB as JSON text
    (``read_json_objects`` keeps each element's text as written) and read as NDJSON lines are,
    the element's position (from 1) standing for the line number."""
    import duckdb

    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        shutil.copyfileobj(stream, tmp, _CHUNK)
        tmp.flush()
        con = duckdb.connect()
        try:
            reader = con.sql(
                f"SELECT json::VARCHAR AS j FROM read_json_objects('{tmp.name}', format='array')"
            ).to_arrow_reader(batch_rows)
            start = 1
            for elements in reader:
                lines = elements.column(0).to_pylist()
                rows = list(range(start, start + len(lines)))
                start += len(lines)
                batch, columns = _json_objects(con, rows, lines, columns, malformed, exact)
                if batch is not None:
                    yield batch
        except duckdb.Error as e:
            raise UnreadableFile(f"cannot read the JSON array: {e}") from e
        finally:
            con.close()


def _json_objects(
    con: duckdb.DuckDBPyConnection,
    rows: list[int],
    lines: list[str],
    columns: list[str] | None,
    malformed: list[MalformedRow],
    exact: Collection[str],
) -> tuple[pa.RecordBatch | None, list[str]]:
    """One batch of JSON texts (one object each) as a batch of text columns, ``RAW`` and ``ROW``;
    texts that are not JSON objects go to ``malformed``. Without ``columns``, every key seen.

    DuckDB's JSON reader reads numbers as doubles (17 significant digits at most): in the
    ``exact`` columns (those holding decimals), a number with a fraction or an exponent is taken
    as written in the text instead, and inside a nested value it becomes a JSON string of those
    digits."""
    data = pa.table({ROW: pa.array(rows, pa.int64()), RAW: pa.array(lines, pa.string())})
    con.register("lines", data)
    try:
        checked = con.execute(
            f"SELECT {ROW}, {RAW}, CASE WHEN NOT json_valid({RAW}) THEN 'malformed JSON' "
            f"WHEN json_type({RAW}) <> 'OBJECT' THEN 'not a JSON object' END AS problem FROM lines"
        ).to_arrow_table()
        problems = checked.filter(checked["problem"].is_valid())
        for row, raw, problem in zip(
            problems[ROW].to_pylist(), problems[RAW].to_pylist(), problems["problem"].to_pylist(), strict=True
        ):
            malformed.append(MalformedRow(row, problem, raw[:2000]))
        if columns is None:
            keys = con.execute(
                f"SELECT DISTINCT unnest(json_keys({RAW})) AS k FROM lines WHERE json_valid({RAW}) "
                f"AND json_type({RAW}) = 'OBJECT'"
            ).fetchall()
            columns = sorted(k for (k,) in keys)
        picks = [f"json_extract_string({RAW}, '{_quote_path(c)}') AS {_ident(c)}" for c in columns]
        flagged = [c for c in columns if c in exact]
        picks += [
            f"coalesce(json_type({RAW}, '{_quote_path(c)}') IN ('DOUBLE', 'ARRAY', 'OBJECT'), false) "
            f"AS __lake_exact_{i}"
            for i, c in enumerate(flagged)
        ]
        result = con.execute(
            f"SELECT {', '.join(picks)}{', ' if picks else ''}{RAW}, {ROW} FROM lines "
            f"WHERE json_valid({RAW}) AND json_type({RAW}) = 'OBJECT'"
        ).to_arrow_table()
    finally:
        con.unregister("lines")
    for i, column in enumerate(flagged):
        flag = f"__lake_exact_{i}"
        hits = np.flatnonzero(result[flag].to_numpy(zero_copy_only=False))
        if len(hits):
            values = result[column].to_pylist()
            for at, raw in zip(hits, result[RAW].take(pa.array(hits)).to_pylist(), strict=True):
                value = json.loads(raw, parse_float=str).get(column)
                # A nested value's numbers with a fraction become JSON strings: casts read them exactly.
                values[at] = json.dumps(value) if isinstance(value, list | dict) else str(value)
            at_column = result.schema.get_field_index(column)
            result = result.set_column(at_column, column, pa.array(values, pa.string()))
        result = result.drop_columns([flag])
    if not result.num_rows:
        return None, columns
    return result.combine_chunks().to_batches()[0], columns
