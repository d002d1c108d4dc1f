"""Iceberg tables: creation from contracts, streamed data-file writes and one atomic,
idempotent, retried commit per source object.

pyiceberg's ``append`` needs the whole table in memory; Lake writes the data files of each
batch as it goes (pyiceberg's ``_dataframe_to_data_files``, a private helper: pyiceberg is
pinned to 0.12.x and this module is the only place that uses it) and commits them together.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakehouse.config import Settings
from lakehouse.contracts import Contract
from lakehouse.errors import CommitConflict

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

QUARANTINE_SUFFIX = "__quarantine"
SOURCE_URI = "lake.source.uri"
SOURCE_VERSION = "lake.source.version"


@dataclass(frozen=True)
class SourceRef:
    """The identity of an uploaded object: the idempotency key of its commits."""

    bucket: str
    key: str
    version: str  # S3 version id, else the etag

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def quarantine_schema() -> Schema:
    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        IntegerType,
        ListType,
        LongType,
        NestedField,
        StringType,
        StructType,
        TimestamptzType,
    )

    error = StructType(
        NestedField(11, "column", StringType(), required=False),
        NestedField(12, "rule", StringType(), required=False),
        NestedField(13, "reason", StringType(), required=False),
    )
    return Schema(
        NestedField(1, "quarantined_at", TimestamptzType(), required=True),
        NestedField(2, "source_uri", StringType(), required=True),
        NestedField(3, "source_version", StringType(), required=True),
        NestedField(4, "row_number", LongType(), required=True),
        NestedField(
            5, "column", StringType(), required=False, doc="first failing column (null: unparseable row)"
        ),
        NestedField(6, "rule", StringType(), required=True),
        NestedField(7, "reason", StringType(), required=True, doc="every failure, '; '-separated"),
        NestedField(8, "errors", ListType(10, error, element_required=False), required=True),
        NestedField(9, "record", StringType(), required=False, doc="the raw record as JSON text"),
        NestedField(14, "contract_version", IntegerType(), required=True),
    )


def _create(catalog: Catalog, ident: str, schema: Schema, spec: Any, props: dict[str, str]) -> Table:
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError

    try:
        return catalog.load_table(ident)
    except NoSuchTableError:
        pass
    try:
        return catalog.create_table(ident, schema=schema, partition_spec=spec, properties=props)
    except TableAlreadyExistsError:  # a concurrent ingest created it first
        return catalog.load_table(ident)


def ensure_tables(catalog: Catalog, settings: Settings, contract: Contract) -> tuple[Table, Table]:
    """The dataset's table and its quarantine table, created on first use."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import MonthTransform

    schema = contract.iceberg_schema()
    main = _create(
        catalog,
        f"{settings.namespace}.{contract.name}",
        schema,
        contract.partition_spec(schema),
        contract.table_properties(),
    )
    qschema = quarantine_schema()
    qspec = PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=MonthTransform(), name="quarantined_at_month")
    )
    quarantine = _create(
        catalog,
        f"{settings.namespace}.{contract.name}{QUARANTINE_SUFFIX}",
        qschema,
        qspec,
        {
            "format-version": "2",
            "write.parquet.compression-codec": "zstd",
            "lake.quarantine-of": contract.name,
        },
    )
    return main, quarantine


def committed_snapshot(table: Table, source: SourceRef) -> int | None:
    """The snapshot that already committed ``source``, if any (the idempotency ledger)."""
    for snap in reversed(table.metadata.snapshots):
        summary = snap.summary
        if summary is None:
            continue
        if summary.get(SOURCE_URI) == source.uri and summary.get(SOURCE_VERSION) == source.version:
            return snap.snapshot_id
    return None


@dataclass
class StagedWrite:
    """Data files written for one table, not yet visible until :meth:`commit`."""

    table: Table
    files: list[DataFile] = field(default_factory=list)
    rows: int = 0
    _uuid: uuid.UUID = field(default_factory=uuid.uuid4)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def write(self, data: pa.Table) -> None:
        """Write ``data`` as Parquet data files (one or more per month partition)."""
        from pyiceberg.io.pyarrow import _dataframe_to_data_files

        if data.num_rows == 0:
            return
        self.files.extend(
            _dataframe_to_data_files(
                table_metadata=self.table.metadata,
                df=data,
                io=self.table.io,
                write_uuid=self._uuid,
                counter=self._counter,
            )
        )
        self.rows += data.num_rows

    def commit(
        self,
        source: SourceRef,
        properties: dict[str, str],
        settings: Settings,
        sleep: Callable[[float], None] = time.sleep,
    ) -> tuple[int, bool]:
        """Commit every staged file in one snapshot; returns (snapshot id, already committed).

        A source that a snapshot already carries is not committed again. Conflicts with
        concurrent writers are retried with jittered exponential backoff; when the retries
        run out a transient :class:`CommitConflict` is raised.
        """
        from pyiceberg.exceptions import CommitFailedException

        summary = {SOURCE_URI: source.uri, SOURCE_VERSION: source.version, **properties}
        for attempt in range(settings.commit_retries + 1):
            self.table.refresh()
            done = committed_snapshot(self.table, source)
            if done is not None:
                return done, True
            try:
                with self.table.transaction() as tx:
                    with tx.update_snapshot(snapshot_properties=summary).fast_append() as append:
                        for data_file in self.files:
                            append.append_data_file(data_file)
            except CommitFailedException as e:
                if attempt == settings.commit_retries:
                    raise CommitConflict(
                        f"{self.table.name()}: commit of {source.uri} lost to concurrent writers "
                        f"{attempt + 1} times"
                    ) from e
                sleep(min(5.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.5))
                continue
            snapshot = self.table.current_snapshot()
            assert snapshot is not None
            return snapshot.snapshot_id, False
        raise AssertionError("unreachable")
