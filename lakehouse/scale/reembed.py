"""``lake vectors reembed``: embed a dataset's rows again, on Daft, as a new Lance version.

The rows of the table's current snapshot (``_row_id`` and the contract's text column) are read
with ``daft.read_iceberg``; the contract's embedder runs on Daft's workers (a class UDF: the model
loads once per worker); the vectors stream into a new version of ``vectors/<dataset>.lance``
(an overwrite, then appends). As an ingest does, the Lance version is then recorded in a table
snapshot (``lake.lance.version``, no data change) and tagged ``iceberg-<snapshot id>``: until that
commit, searches keep reading the version the previous snapshot recorded, so they never see a
half-written one.

The embedder is the contract's: searches embed their query text with it. To change models,
change ``embedder:`` in the contract (a new contract version), then re-embed.
Rows committed by ingests while a re-embed runs get no new vectors; run it when uploads are
quiet, or again after.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa

from lakehouse.catalog import get_catalog, load_table
from lakehouse.config import Settings
from lakehouse.contracts.model import ROW_ID, load_contract
from lakehouse.errors import CommitConflict, VectorsNotConfigured, VectorWriteFailed

REEMBED = "lake.lance.reembed"


def _embedder_udf(name: str, settings: Settings, dim: int) -> Any:
    import daft
    from daft import DataType

    @daft.cls(max_concurrency=settings.scale_workers)
    class Embed:
        def __init__(self, name: str, settings: Settings) -> None:
            from lakehouse.vectors.embedders import get_embedder

            self.embedder = get_embedder(name, settings)

        @daft.method.batch(return_dtype=DataType.fixed_size_list(DataType.float32(), dim))
        def __call__(self, texts: daft.Series) -> Any:
            import numpy as np

            matrix = np.ascontiguousarray(self.embedder.embed(texts.to_pylist()), dtype=np.float32)
            flat = pa.array(matrix.reshape(-1))
            return daft.Series.from_arrow(pa.FixedSizeListArray.from_arrays(flat, dim))

    return Embed(name, settings)


def reembed(
    settings: Settings,
    dataset: str,
    embedder: str | None = None,
    runner: str = "native",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Re-embed ``dataset`` at its current snapshot; what was written.

    Raises:
        VectorsNotConfigured: the contract has no ``vectors:`` text to embed, or ``embedder``
            is not the contract's.
        VectorWriteFailed: Lance could not be written (the table still points at the old version).
        CommitConflict: the recording snapshot kept losing to concurrent commits.
    """
    from lakehouse.scale.runner import io_config, require_daft
    from lakehouse.scale.runner import runner as run_on
    from lakehouse.vectors.embedders import embedder_dim
    from lakehouse.vectors.store import (
        ATTEMPT,
        LANCE_ATTEMPT,
        LANCE_VERSION,
        SOURCE,
        TAG_PREFIX,
        TEXT,
        VECTOR,
        connect,
        ensure_text_index,
        lance_schema,
    )

    started = time.perf_counter()
    contract = load_contract(settings, dataset)
    config = contract.vectors
    if config is None or config.text is None:
        raise VectorsNotConfigured(
            f"dataset {dataset} has no `vectors: text:` column to embed (supplied vectors come with the data)"
        )
    name = embedder or config.embedder
    if name != config.embedder:
        raise VectorsNotConfigured(
            f"contract {dataset} embeds with {config.embedder!r} and searches embed their text with it: set "
            f"`embedder: {name}` in the contract (a new version), then run lake vectors reembed {dataset}"
        )
    daft = require_daft()
    table = load_table(get_catalog(settings), settings, dataset)
    snapshot = table.current_snapshot()
    attempt = uuid.uuid4().hex
    dim = embedder_dim(name)
    schema = lance_schema(config)
    written = 0
    version: int | None = None
    with run_on(settings, runner, ray_address) as where:  # type: ignore[arg-type]
        if snapshot is not None:
            df = daft.read_iceberg(table, snapshot_id=snapshot.snapshot_id, io_config=io_config(settings))
            df = df.where(df[ROW_ID].not_null()).select(df[ROW_ID], df[config.text].alias(TEXT))
            df = df.with_column(VECTOR, _embedder_udf(name, settings, dim)(df[TEXT]))
            source = f"reembed:{snapshot.snapshot_id}"
            try:
                lance = connect(settings).create_table(dataset, schema=schema, mode="overwrite")
                for batch in df.to_arrow_iter():
                    n = batch.num_rows
                    if n == 0:
                        continue
                    batch = batch.append_column(SOURCE, pa.array([source] * n, pa.string()))
                    batch = batch.append_column(ATTEMPT, pa.array([attempt] * n, pa.string()))
                    lance.add(pa.Table.from_batches([batch]).select(schema.names).cast(schema))
                    written += n
                ensure_text_index(lance, config)
                version = int(lance.version)
            except Exception as e:  # lancedb raises OSError, RuntimeError and ValueError from the store
                raise VectorWriteFailed(f"vectors/{dataset}.lance: re-embed failed: {e}") from e
    snapshot_id = None
    if version is not None:
        snapshot_id = _record(
            settings, table, {LANCE_VERSION: str(version), LANCE_ATTEMPT: attempt, REEMBED: name}
        )
        try:
            lance.tags.create(f"{TAG_PREFIX}{snapshot_id}", version)
        except Exception:  # noqa: BLE001 - the snapshot summary holds the version anyway
            pass
    return {
        "dataset": dataset,
        "embedder": name,
        "runner": where,
        "vectors_written": written,
        "lance_version": version,
        "snapshot_id": snapshot_id,
        "read_snapshot_id": snapshot.snapshot_id if snapshot else None,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _record(settings: Settings, table: Any, properties: dict[str, str]) -> int:
    """A snapshot with no data change whose summary records the new Lance version."""
    from pyiceberg.exceptions import CommitFailedException

    from lakehouse.tables.write import backoff

    for attempt in range(settings.commit_retries + 1):
        try:
            with table.transaction() as tx:
                with tx.update_snapshot(snapshot_properties=properties).fast_append():
                    pass
        except CommitFailedException as e:
            if attempt == settings.commit_retries:
                raise CommitConflict(f"{table.name()}: re-embed snapshot lost {attempt + 1} commits") from e
            time.sleep(backoff(attempt))
            table.refresh()
            continue
        current = table.current_snapshot()
        assert current is not None
        return int(current.snapshot_id)
    raise AssertionError("unreachable")
