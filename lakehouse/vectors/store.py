"""Vectors beside the tables: Lance datasets at ``s3://<warehouse>/vectors/<dataset>.lance``.

A dataset whose contract has a ``vectors:`` section gets a ``_row_id`` column; every accepted
row gets a vector in Lance under the same id. An ingest writes its vectors first (one Lance
commit, rows tagged with the ingest's attempt id), then commits the Iceberg snapshot whose
summary records the Lance version (``lake.lance.version``) and the attempt. So:

* a failed Lance write means no table commit (the event is retried);
* a failed or lost table commit leaves Lance rows that no table row has: searches only return
  rows the table holds at the snapshot read (results are joined to the table), the ingest
  deletes its own attempt's rows when it learns its commit lost, and the ``vectors``
  maintenance job deletes whatever else the table does not hold.

After the table commit, the Lance version is tagged ``iceberg-<snapshot id>``.

Only this module (and the modules that use it) import lancedb, which is slow to import and
must never be used from a forked child: processes that touch Lance are started with ``spawn``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.config import Settings
from lakehouse.contracts.model import RAW, ROW, ROW_ID, Contract, VectorConfig
from lakehouse.contracts.validate import ERROR_TYPE, ERRORS
from lakehouse.duck import ident
from lakehouse.errors import LakeError, VectorWriteFailed

if TYPE_CHECKING:
    import duckdb
    import lancedb
    import numpy as np
    from lancedb.table import Table as LanceTable
    from pyiceberg.table import Table

    from lakehouse.tables.write import SourceRef

LANCE_VERSION = "lake.lance.version"
LANCE_ATTEMPT = "lake.lance.attempt"
VECTOR = "vector"
TEXT = "text"
SOURCE = "source"
ATTEMPT = "attempt"
TAG_PREFIX = "iceberg-"
COMMIT_ROWS = 32_768  # vectors per Lance append (384 floats: about 50 MiB)


def vectors_uri(settings: Settings) -> str:
    """Where the Lance datasets live: ``s3://<warehouse>/vectors``."""
    return f"s3://{settings.warehouse_bucket}/vectors"


def storage_options(settings: Settings) -> dict[str, str]:
    """Lance object-store options for the configured endpoint and credentials."""
    options = {"aws_region": settings.region}
    if settings.s3_endpoint:
        options["aws_endpoint"] = settings.s3_endpoint
        if settings.s3_endpoint.startswith("http://"):
            options["allow_http"] = "true"
    if settings.access_key_id and settings.secret_access_key:
        options["aws_access_key_id"] = settings.access_key_id
        options["aws_secret_access_key"] = settings.secret_access_key
    return options


def connect(settings: Settings) -> lancedb.DBConnection:
    """A LanceDB connection to the warehouse's ``vectors/`` folder."""
    import lancedb

    return lancedb.connect(vectors_uri(settings), storage_options=storage_options(settings))


def local_copy(settings: Settings, dataset: str) -> LanceTable | None:
    """The dataset's Lance table read from a local copy of its files (None: no Lance data yet).

    Lance files are immutable once written (data, deletion files, indexes, one manifest per
    version), so copying the ones not yet here is always correct, and searches then read local
    disk instead of one object-store request per file read. The copy lives in
    ``$LAKE_HOME/vector-cache`` (on Lambda, under /tmp); files Lance's cleanup removed from the
    store stay here until the folder is cleared.
    """
    import lancedb

    from lakehouse.storage import cached, list_objects

    listed = False
    for key, size in list_objects(settings, settings.warehouse_bucket, f"vectors/{dataset}.lance/"):
        listed = True
        cached(settings, key, size)
    if not listed:
        return None
    return lancedb.connect(str(settings.home / "vector-cache" / "vectors")).open_table(dataset)


def dimension(config: VectorConfig) -> int:
    """The vectors' length: the contract's ``dim``, else the embedder's."""
    if config.dim is not None:
        return config.dim
    from lakehouse.vectors.embedders import embedder_dim

    return embedder_dim(config.embedder)


def lance_schema(config: VectorConfig) -> pa.Schema:
    """Columns of a dataset's Lance table."""
    fields = [
        pa.field(ROW_ID, pa.string(), nullable=False),
        pa.field(VECTOR, pa.list_(pa.float32(), dimension(config))),
        pa.field(SOURCE, pa.string()),
        pa.field(ATTEMPT, pa.string()),
    ]
    if config.text is not None:
        fields.insert(2, pa.field(TEXT, pa.string()))
    return pa.schema(fields)


def open_table(settings: Settings, contract: Contract, create: bool = False) -> LanceTable | None:
    """The dataset's Lance table (created empty when ``create``); None if it does not exist."""
    assert contract.vectors is not None
    db = connect(settings)
    try:
        return db.open_table(contract.name)
    except (ValueError, FileNotFoundError):
        if not create:
            return None
    return _create(settings, db, contract)


# How long a writer waits for another writer's creation of a Lance dataset, and after how long
# that creation is taken to have died with its writer.
CREATE_WAIT_SECONDS = 30.0


def _create(settings: Settings, db: lancedb.DBConnection, contract: Contract) -> LanceTable:
    """Create the dataset's Lance table, exactly once among concurrent writers.

    Lance's own create is not exclusive: a create racing another commits as an overwrite of the
    versions made meanwhile, and rows other writers appended there are gone (seen with pylance
    14 on S3 with conditional writes). So the creator is chosen first: the writer whose
    ``If-None-Match`` PUT of ``vectors/_create/<dataset>/<generation>`` succeeds creates the
    table; the others wait for it to appear. A claim older than :data:`CREATE_WAIT_SECONDS`
    whose table never appeared (its writer died) is followed by a claim of the next generation.
    """
    from lakehouse.storage import list_objects, put_if_absent, s3_client

    assert contract.vectors is not None
    bucket, prefix = settings.warehouse_bucket, f"vectors/_create/{contract.name}/"
    generations = [int(k.rsplit("/", 1)[1]) for k, _ in list_objects(settings, bucket, prefix)]
    generation = max(generations, default=-1)
    if generation >= 0:
        claimed = s3_client(settings).head_object(Bucket=bucket, Key=f"{prefix}{generation}")["LastModified"]
        age = (dt.datetime.now(dt.UTC) - claimed).total_seconds()
        if age < CREATE_WAIT_SECONDS:
            return _wait_for(db, contract.name, CREATE_WAIT_SECONDS - age)
    if not put_if_absent(settings, bucket, f"{prefix}{generation + 1}", b""):
        return _wait_for(db, contract.name, CREATE_WAIT_SECONDS)
    try:
        table = db.create_table(contract.name, schema=lance_schema(contract.vectors), exist_ok=True)
        # The full-text index exists from the start: rows added later are searched with its
        # tokenizer (stemming, stop words) before they are indexed.
        ensure_text_index(table, contract.vectors)
        return table
    except (OSError, RuntimeError, ValueError) as e:  # the store
        raise VectorWriteFailed(f"vectors/{contract.name}.lance cannot be created: {e}") from e


def _wait_for(db: lancedb.DBConnection, name: str, seconds: float) -> LanceTable:
    """The table another writer is creating, once it exists (at most ``seconds`` from now)."""
    import time

    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:
        try:
            return db.open_table(name)
        except (ValueError, FileNotFoundError) as e:
            if time.monotonic() >= deadline:
                raise VectorWriteFailed(
                    f"vectors/{name}.lance: another writer's creation did not finish in time"
                ) from e
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def embed_texts(config: VectorConfig, texts: list[str], settings: Settings | None = None) -> np.ndarray:
    """Vectors of ``texts`` with the contract's embedder (None embeds as the empty string)."""
    from lakehouse.vectors.embedders import get_embedder

    return get_embedder(config.embedder, settings).embed(texts)


def _fixed_size(values: Any, dim: int) -> pa.FixedSizeListArray:
    import numpy as np

    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, dim)


# --- ingest: staged vectors, committed before the table ---------------------------------------


@dataclass
class VectorStage:
    """The vectors of one ingest's accepted rows, spooled to a local file until :meth:`commit`."""

    settings: Settings
    contract: Contract
    source: SourceRef
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex)
    rows: int = 0
    version: int | None = None
    _schema: pa.Schema | None = None
    _spool: Any = None
    _writer: pa.ipc.RecordBatchFileWriter | None = None

    def __post_init__(self) -> None:
        assert self.contract.vectors is not None
        self.config: VectorConfig = self.contract.vectors
        self.dim = dimension(self.config)
        self.prefix = hashlib.sha256(f"{self.source.uri}@{self.source.version}".encode()).hexdigest()[:16]
        if self.config.embedder != "supplied":
            from lakehouse.vectors.embedders import check_available

            check_available(self.config.embedder)  # not installed: fail before any work; load on first rows

    @property
    def wanted_fields(self) -> list[str]:
        """Upload fields the vectors need beyond the contract's columns."""
        return [self.config.embedding] if self.config.embedding else []

    def screen(
        self, con: duckdb.DuckDBPyConnection, batch: pa.RecordBatch
    ) -> tuple[pa.RecordBatch | pa.Table, pa.Table | None]:
        """Split off rows whose supplied vector is missing or malformed (quarantined, with why)."""
        name = self.config.embedding
        if name is None:
            return batch, None
        if name not in batch.schema.names:
            batch = batch.append_column(name, pa.nulls(batch.num_rows, pa.string()))
        col = ident(name)
        raw = ident(RAW) if RAW in batch.schema.names else f"to_json({col})::VARCHAR"
        con.register("__lake_vec", batch)
        try:
            checked = con.execute(
                f"SELECT *, CASE WHEN {col} IS NULL THEN 'no vector' "
                f"WHEN TRY_CAST({col} AS DOUBLE[]) IS NULL THEN 'not a list of numbers' "
                f"WHEN len(TRY_CAST({col} AS DOUBLE[])) <> {self.dim} THEN "
                f"'has ' || len(TRY_CAST({col} AS DOUBLE[])) || ' numbers, the contract says dim {self.dim}' "
                f"WHEN NOT list_bool_and(list_transform(TRY_CAST({col} AS DOUBLE[]), x -> isfinite(x))) "
                f"THEN 'holds a NaN or infinite number' END AS __lake_vec_problem, "
                f"{raw} AS __lake_vec_raw FROM __lake_vec"
            ).to_arrow_table()
        finally:
            con.unregister("__lake_vec")
        problem = checked["__lake_vec_problem"]
        bad = pc.is_valid(problem)
        if not pc.any(bad).as_py():
            return batch, None
        rejected = checked.filter(bad)
        errors = pa.array(
            [
                [{"column": name, "rule": "vector", "reason": p}]
                for p in rejected["__lake_vec_problem"].to_pylist()
            ],
            ERROR_TYPE,
        )
        out = pa.table({ROW: rejected[ROW], ERRORS: errors, RAW: rejected["__lake_vec_raw"]})
        good = checked.filter(pc.invert(bad)).drop_columns(["__lake_vec_problem", "__lake_vec_raw"])
        return good, out

    def add(self, accepted: pa.Table, accepted_rows: pa.Array, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        """Give ``accepted`` its row ids and spool their vectors; returns ``accepted`` with ids."""
        n = accepted.num_rows
        if n == 0:
            return accepted
        ids = pc.binary_join_element_wise(
            pa.array([self.prefix] * n, pa.string()), pc.cast(accepted_rows, pa.string()), "-"
        )
        position = accepted.schema.get_field_index(ROW_ID)
        target = accepted.schema.field(ROW_ID)
        accepted = accepted.set_column(position, target, ids.cast(target.type))
        columns: dict[str, Any] = {ROW_ID: ids}
        if self.config.embedding is not None:
            import numpy as np

            where = pc.index_in(accepted_rows, value_set=batch[ROW])
            values = batch[self.config.embedding].take(where)
            if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
                import json

                matrix = np.array([json.loads(v) for v in values.to_pylist()], dtype=np.float32)
            else:
                matrix = np.array(values.to_pylist(), dtype=np.float32)
            columns[VECTOR] = _fixed_size(matrix, self.dim)
        if self.config.text is not None:
            texts = accepted[self.config.text]
            columns[TEXT] = texts
            if self.config.embedding is None:
                plain = ["" if t is None else t for t in texts.to_pylist()]
                columns[VECTOR] = _fixed_size(embed_texts(self.config, plain, self.settings), self.dim)
        columns[SOURCE] = pa.array([self.source.uri] * n, pa.string())
        columns[ATTEMPT] = pa.array([self.attempt] * n, pa.string())
        self._write(pa.table(columns).select(lance_schema(self.config).names).cast(lance_schema(self.config)))
        return accepted

    def _write(self, data: pa.Table) -> None:
        if self._writer is None:
            self._schema = data.schema
            self._spool = tempfile.TemporaryFile(dir=self.settings.duckdb_home)
            self._writer = pa.ipc.new_file(self._spool, data.schema)
        self._writer.write_table(data)
        self.rows += data.num_rows

    def _chunks(self) -> Iterator[pa.Table]:
        """The spooled vectors in tables of at most :data:`COMMIT_ROWS` rows."""
        assert self._writer is not None and self._schema is not None
        self._writer.close()
        self._spool.seek(0)
        spooled = pa.ipc.open_file(self._spool)
        chunk: list[pa.RecordBatch] = []
        rows = 0
        for i in range(spooled.num_record_batches):
            batch = spooled.get_batch(i)
            chunk.append(batch)
            rows += batch.num_rows
            if rows >= COMMIT_ROWS:
                yield pa.Table.from_batches(chunk, self._schema)
                chunk, rows = [], 0
        if chunk:
            yield pa.Table.from_batches(chunk, self._schema)

    def commit(self) -> dict[str, str]:
        """Append the spooled vectors in one Lance commit; the table-commit summary properties.

        Raises:
            VectorWriteFailed: Lance could not be written (transient: the event is retried and
                the table is not committed).
        """
        if self.rows == 0:
            self.close()
            return {}
        try:
            table = open_table(self.settings, self.contract, create=True)
            assert table is not None
            # lancedb holds what one add() gets in memory: big ingests append in bounded chunks
            # (one Lance version each; the table commit records the last).
            for chunk in self._chunks():
                self.version = int(table.add(chunk).version)
        except LakeError:
            self.withdraw()
            raise
        except Exception as e:  # lancedb raises OSError, RuntimeError and ValueError from the store
            self.withdraw()  # chunks already appended: nothing of this attempt stays behind
            raise VectorWriteFailed(
                f"vectors/{self.contract.name}.lance: append of {self.source.uri} failed: {e}"
            ) from e
        finally:
            self.close()
        return {LANCE_VERSION: str(self.version), LANCE_ATTEMPT: self.attempt}

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def withdraw(self) -> None:
        """Delete this attempt's Lance rows (its table commit lost or failed); best effort."""
        if self.version is None:
            return
        try:
            table = open_table(self.settings, self.contract)
            if table is not None:
                table.delete(f"{ATTEMPT} = '{self.attempt}'")
        except Exception:  # noqa: BLE001 - the vectors maintenance job deletes them later
            pass

    def settle(self, commit_table: Callable[[], tuple[int, bool]]) -> tuple[int, bool]:
        """Run the table commit that records this stage's Lance version (after :meth:`commit`).

        ``commit_table`` returns (snapshot id, already committed). A commit that fails, or that
        another delivery already made (with its own vectors), withdraws this attempt's rows; a
        new snapshot tags the Lance version.
        """
        try:
            snapshot, duplicate = commit_table()
        except BaseException:
            self.withdraw()
            raise
        if duplicate:
            self.withdraw()
        else:
            self.tag(snapshot)
        return snapshot, duplicate

    def tag(self, snapshot_id: int | None) -> None:
        """Tag the Lance version with the Iceberg snapshot that recorded it; best effort."""
        if self.version is None or snapshot_id is None:
            return
        try:
            table = open_table(self.settings, self.contract)
            if table is not None:
                table.tags.create(f"{TAG_PREFIX}{snapshot_id}", self.version)
        except Exception:  # noqa: BLE001 - the snapshot summary holds the version anyway
            pass


def lance_version_at(table: Table, snapshot_id: int | None) -> int | None:
    """The newest Lance version recorded in ``snapshot_id`` or its ancestors (None: none yet).

    Concurrent ingests commit to Lance and to the table in different orders, so the version
    that holds every vector of a snapshot's rows is the highest one recorded up to it.
    """
    best: int | None = None
    sid = snapshot_id
    while sid is not None:
        snap = table.snapshot_by_id(sid)
        if snap is None:
            break
        recorded = snap.summary.get(LANCE_VERSION) if snap.summary is not None else None
        if recorded is not None:
            best = max(best or 0, int(recorded))
        sid = snap.parent_snapshot_id
    return best


# --- upkeep: the `vectors` maintenance job ---------------------------------------------------


def table_row_ids(table: Table) -> pa.Array:
    """Every ``_row_id`` the table holds now."""
    if table.current_snapshot() is None:
        return pa.array([], pa.string())
    ids = table.scan(selected_fields=(ROW_ID,)).to_arrow()[ROW_ID]
    return ids.combine_chunks().drop_null() if ids.num_chunks else pa.array([], pa.string())


def upkeep(
    settings: Settings, contract: Contract, now: dt.datetime, keep: dt.timedelta, dry_run: bool
) -> dict[str, Any]:
    """Delete vectors the table no longer holds, compact, drop old versions, (re)build indexes."""
    from lakehouse.catalog import get_catalog
    from lakehouse.vectors import ann

    assert contract.vectors is not None
    result: dict[str, Any] = {"dataset": contract.name, "dry_run": dry_run}
    lance = open_table(settings, contract)
    if lance is None:
        return {**result, "rows": 0}
    table = get_catalog(settings).load_table(f"{settings.namespace}.{contract.name}")
    held = table_row_ids(table)
    lance_ids = lance.to_arrow().select([ROW_ID, ATTEMPT]) if lance.count_rows() else None
    strays: list[str] = []
    duplicates = 0
    if lance_ids is not None:
        stray_mask = pc.invert(pc.is_in(lance_ids[ROW_ID], value_set=held))
        strays = sorted(set(lance_ids.filter(stray_mask)[ROW_ID].to_pylist()))
        counts = pc.value_counts(lance_ids[ROW_ID])
        duplicates = sum(c for c in counts.field("counts").to_pylist() if c > 1)
    result.update(rows=lance.count_rows(), stray_rows=len(strays), duplicate_ids=duplicates)
    if dry_run:
        return result
    for start in range(0, len(strays), 1000):
        chunk = ", ".join("'" + s.replace("'", "''") + "'" for s in strays[start : start + 1000])
        lance.delete(f"{ROW_ID} IN ({chunk})")
    if duplicates and lance_ids is not None:
        _drop_duplicates(lance, lance_ids)
    for idx in lance.list_indices():  # vector indexes of Lance's own: searches use lakehouse.vectors.ann's
        if VECTOR in idx.columns and idx.index_type != "FTS":
            lance.drop_index(idx.name)
    stats = lance.optimize(cleanup_older_than=keep)
    result["optimize"] = str(stats) if stats is not None else None
    rows = lance.count_rows()
    threshold = contract.vectors.index_min_rows or ann.INDEX_MIN_ROWS
    if rows >= threshold and ann.needs_index(settings, contract.name, lance):
        result["index"] = ann.build_index(settings, contract.name, lance, contract.vectors.metric)
    ensure_text_index(lance, contract.vectors)
    result["rows"] = rows
    result["version"] = lance.version
    return result


def _drop_duplicates(lance: LanceTable, ids: pa.Table) -> None:
    """Keep one attempt's rows per row id (the vectors of one id are the same)."""
    keep: dict[str, str] = {}
    drop: set[tuple[str, str]] = set()
    for row_id, attempt in zip(ids[ROW_ID].to_pylist(), ids[ATTEMPT].to_pylist(), strict=True):
        chosen = keep.setdefault(row_id, attempt)
        if attempt != chosen:
            drop.add((row_id, attempt))
    for attempt in sorted({a for _, a in drop}):
        rows = ", ".join(f"'{r}'" for r, a in drop if a == attempt)
        lance.delete(f"{ATTEMPT} = '{attempt}' AND {ROW_ID} IN ({rows})")


def ensure_text_index(lance: LanceTable, config: VectorConfig) -> None:
    """A full-text index on the text column (rows added later are still searched, unindexed)."""
    if config.text is None:
        return
    if any(TEXT in idx.columns and idx.index_type == "FTS" for idx in lance.list_indices()):
        return
    from lancedb.index import FTS

    lance.create_index(TEXT, config=FTS(), replace=True)


def _stored(settings: Settings, dataset: str) -> bool:
    """Whether the dataset has Lance files (through Arrow's S3 client: a HEAD and a one-key LIST)."""
    import pyarrow.fs as pafs

    from lakehouse.errors import StoreUnavailable
    from lakehouse.storage import arrow_filesystem

    path = f"{settings.warehouse_bucket}/vectors/{dataset}.lance"
    try:
        return bool(arrow_filesystem(settings).get_file_info(path).type != pafs.FileType.NotFound)
    except OSError as e:
        raise StoreUnavailable(f"cannot list s3://{path}: {e}") from e


def vectors_job(settings: Settings, options: Any) -> list[dict[str, Any]]:
    """Maintenance job ``vectors``: :func:`upkeep` for every dataset with vectors."""
    from lakehouse.contracts.model import loadable_contracts

    now = options.now or dt.datetime.now(dt.UTC)
    keep = options.snapshot_retention or dt.timedelta(days=settings.snapshot_retention_days)
    contracts, broken = loadable_contracts(settings)
    results: list[dict[str, Any]] = [p for p in broken if options.tables is None]  # reported, skipped
    for contract in contracts:
        if contract.vectors is None:
            continue
        if options.tables is not None and f"{settings.namespace}.{contract.name}" not in options.tables:
            continue
        if not _stored(settings, contract.name):  # nothing to keep up, and no lancedb import for it
            continue
        try:
            results.append(upkeep(settings, contract, now, keep, options.dry_run))
        except LakeError as e:
            results.append({"dataset": contract.name, **e.to_dict()})
        except Exception as e:  # noqa: BLE001 - one dataset's failure must not stop the others
            results.append({"dataset": contract.name, "error": "VectorUpkeepFailed", "message": str(e)})
    return results
