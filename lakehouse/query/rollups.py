"""Materialised rollup tables: a rollup of a Lake table kept as an Iceberg table of its own.

A rollup is declared in ``<catalog>/rollups/<name>.yaml`` (the folder next to the dataset
contracts), the same fields ``GET /timeseries`` takes::

    name: keep_daily
    table: takeout_keep
    column: null        # count(*) needs none
    agg: count          # avg | min | max | sum | count
    bucket: 1d          # 1m | 1h | 1d | 1w | 1mo | 1y
    group_by: color     # optional

and is materialised into ``<namespace>.<table>__rollup_<name>`` (``bucket`` timestamptz, the
group column as text, ``value``: a count as long, anything else as double), partitioned by
month of the bucket. The ``rollups`` maintenance job refreshes every declared rollup:

* **incrementally**: only the months of the source table that changed since the last refresh
  (the data files that the snapshots since then added or deleted, by their month partition;
  compaction's replace snapshots change no rows and are skipped) are recomputed, widened to
  whole buckets (a week may straddle two months), and replace the rollup rows of those buckets
  in one overwrite;
* **fully** on the first refresh, when the source snapshot the last refresh read has expired,
  when the source table is not partitioned by month of its event time, or when asked.

Each refresh's snapshot summary records the source snapshot it read
(``lake.rollup.source-snapshot``), the mode and the months it recomputed. ``GET /timeseries``
keeps computing from the raw table; a materialised rollup is read with SQL like any table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lakehouse.catalog import get_catalog, load_table
from lakehouse.config import Settings
from lakehouse.duck import ident, literal
from lakehouse.errors import BadRequest, ContractInvalid, LakeError, StoreUnavailable
from lakehouse.query.timeseries import AGGREGATES, BUCKETS, NUMERIC_TYPES, TableInfo, rollup_sql, table_info

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from lakehouse.maintenance import MaintenanceOptions

SUFFIX = "__rollup_"
SOURCE_SNAPSHOT = "lake.rollup.source-snapshot"
JOB = "rollups"


class RollupDef(BaseModel):
    """One declared rollup (``<catalog>/rollups/<name>.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    table: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    column: str | None = None
    agg: str = "count"
    bucket: str = "1d"
    group_by: str | None = None

    @field_validator("agg")
    @classmethod
    def _agg(cls, value: str) -> str:
        if value not in AGGREGATES:
            raise ValueError(f"agg {value!r} is not one of {', '.join(AGGREGATES)}")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if value not in BUCKETS:
            raise ValueError(f"bucket {value!r} is not one of {', '.join(BUCKETS)}")
        return value

    @property
    def target(self) -> str:
        return f"{self.table}{SUFFIX}{self.name}"


def rollups_dir(settings: Settings) -> Path:
    """``<catalog>/rollups``: the folder next to the dataset contracts."""
    return settings.contracts_dir.parent / "rollups"


def load_rollups(settings: Settings) -> list[RollupDef]:
    """Every declared rollup, sorted by file name.

    Raises:
        ContractInvalid: a file that is not a rollup declaration (terminal).
    """
    folder = rollups_dir(settings)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            defn = RollupDef.model_validate(yaml.safe_load(path.read_text()))
        except (ValidationError, yaml.YAMLError) as e:
            raise ContractInvalid(f"{path}: not a rollup declaration: {e}") from e
        if defn.name != path.stem:
            raise ContractInvalid(f"{path}: name {defn.name!r} does not match the file name")
        found.append(defn)
    return found


@dataclass
class RefreshResult:
    """What one refresh of one materialised rollup did."""

    table: str
    rollup_table: str
    mode: str  # "full", "incremental" or "unchanged"
    months: list[str] = field(default_factory=list)
    rows: int = 0
    source_snapshot: int | None = None
    snapshot_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _month_name(ordinal: int) -> str:
    return f"{1970 + ordinal // 12:04d}-{ordinal % 12 + 1:02d}"


def _month_start(ordinal: int) -> dt.datetime:
    return dt.datetime(1970 + ordinal // 12, ordinal % 12 + 1, 1, tzinfo=dt.UTC)


def changed_months(table: Table, since: int, event_time: str) -> set[int] | None:
    """Month ordinals (months since 1970-01) whose rows changed after snapshot ``since``; None when
    that cannot be told (``since`` expired or not an ancestor, files not partitioned by month)."""
    from pyiceberg.manifest import ManifestEntryStatus
    from pyiceberg.table.snapshots import Operation, ancestors_of
    from pyiceberg.transforms import MonthTransform

    newer: dict[int, Any] = {}
    for snap in ancestors_of(table.current_snapshot(), table.metadata):
        if snap.snapshot_id == since:
            break
        newer[snap.snapshot_id] = snap
    else:
        return None  # ``since`` is not in the current history
    source_id = table.schema().find_field(event_time).field_id
    positions: dict[int, int | None] = {}
    for spec_id, spec in table.specs().items():
        positions[spec_id] = next(
            (
                i
                for i, f in enumerate(spec.fields)
                if f.source_id == source_id and isinstance(f.transform, MonthTransform)
            ),
            None,
        )
    months: set[int] = set()
    for snap in newer.values():
        if snap.summary is not None and snap.summary.operation == Operation.REPLACE:
            continue  # compaction: the same rows in other files
        for manifest in snap.manifests(table.io):
            if manifest.added_snapshot_id != snap.snapshot_id:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                if entry.status == ManifestEntryStatus.EXISTING or entry.snapshot_id != snap.snapshot_id:
                    continue
                pos = positions.get(entry.data_file.spec_id)
                if pos is None:
                    return None
                value = entry.data_file.partition[pos]
                if value is None:
                    return None
                months.add(int(value))
    return months


def _connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    from lakehouse.query.engine import connect

    return connect(settings)


def _compute(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    info: TableInfo,
    defn: RollupDef,
    start: str | None,
    end: str | None,
) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    sql = rollup_sql(info, settings, defn.column, defn.agg, defn.bucket, start, end, defn.group_by)
    out = con.execute(sql).to_arrow_table()
    columns = [out["bucket"].cast(pa.timestamp("us", tz="UTC"))]
    names = ["bucket"]
    if defn.group_by:
        columns.append(pc.cast(out[defn.group_by], pa.string()))
        names.append(defn.group_by)
    columns.append(out["value"].cast(pa.int64() if defn.agg == "count" else pa.float64()))
    names.append("value")
    return pa.Table.from_arrays(columns, names=names)


def _target(catalog: Catalog, settings: Settings, defn: RollupDef) -> Table:
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import MonthTransform
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestamptzType

    name = f"{settings.namespace}.{defn.target}"
    try:
        return catalog.load_table(name)
    except NoSuchTableError:
        pass
    fields = [NestedField(1, "bucket", TimestamptzType(), required=False)]
    if defn.group_by:
        fields.append(NestedField(2, defn.group_by, StringType(), required=False))
    value_type = LongType() if defn.agg == "count" else DoubleType()
    fields.append(NestedField(3, "value", value_type, required=False))
    spec = PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=MonthTransform(), name="bucket_month")
    )
    try:
        return catalog.create_table(
            name,
            schema=Schema(*fields),
            partition_spec=spec,
            properties={"lake.rollup.of": defn.table, "lake.event-time": "bucket"},
        )
    except TableAlreadyExistsError:
        return catalog.load_table(name)


def _last_source(target: Table) -> int | None:
    snap = target.current_snapshot()
    if snap is None or snap.summary is None:
        return None
    value = snap.summary.get(SOURCE_SNAPSHOT)
    return int(value) if value else None


def _bucket_range(
    con: duckdb.DuckDBPyConnection, bucket: str, lo: dt.datetime, hi: dt.datetime
) -> tuple[str, str]:
    """``[lo, hi)`` widened to whole buckets."""
    unit = BUCKETS[bucket]
    row = con.execute(
        f"SELECT date_trunc({literal(unit)}, TIMESTAMPTZ {literal(lo.isoformat())}), "
        f"date_trunc({literal(unit)}, TIMESTAMPTZ {literal(hi.isoformat())} - INTERVAL 1 MICROSECOND) "
        f"+ INTERVAL 1 {unit}"
    ).fetchone()
    assert row is not None
    start, end = row
    return start.astimezone(dt.UTC).isoformat(), end.astimezone(dt.UTC).isoformat()


def refresh_rollup(
    settings: Settings,
    defn: RollupDef,
    full: bool = False,
    dry_run: bool = False,
    catalog: Catalog | None = None,
) -> RefreshResult:
    """Bring ``<table>__rollup_<name>`` up to the source table's current snapshot.

    Raises:
        BadRequest: the declaration names a column, aggregate or bucket the table cannot take.
        TableNotFound: no source table.
    """
    import pyarrow as pa
    from pyiceberg.expressions import AlwaysTrue, BooleanExpression

    catalog = catalog or get_catalog(settings)
    info = table_info(settings, defn.table, catalog)
    kind = info.columns.get(defn.column or "", "")
    if defn.agg != "count" and not kind.startswith(NUMERIC_TYPES):
        raise BadRequest(f"rollup {defn.name}: {defn.agg} needs a numeric column of {defn.table}")
    source = load_table(catalog, settings, defn.table)
    snap = source.current_snapshot()
    current = snap.snapshot_id if snap else None
    target = _target(catalog, settings, defn)
    last = _last_source(target)
    result = RefreshResult(defn.table, f"{settings.namespace}.{defn.target}", "full", source_snapshot=current)
    months: set[int] | None = None
    if not full and last is not None and current is not None and info.event_time:
        if last == current:
            result.mode = "unchanged"
            return result
        months = changed_months(source, last, info.event_time)
        if months is not None and not months:
            result.mode = "unchanged"  # only compaction since: the same rows
            return result
    if dry_run:
        result.mode = "full" if months is None else "incremental"
        result.months = sorted(_month_name(m) for m in months or ())
        return result
    con = _connect(settings)
    try:
        view = f"{ident(settings.namespace)}"
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {view}")
        if current is None:
            con.register("__empty", source.schema().as_arrow().empty_table())
            con.execute(f"CREATE VIEW {view}.{ident(defn.table)} AS SELECT * FROM __empty")
        else:
            con.execute(
                f"CREATE VIEW {view}.{ident(defn.table)} AS SELECT * FROM iceberg_scan("
                f"{literal(source.metadata_location)}, snapshot_from_id = {current})"
            )
        props = {SOURCE_SNAPSHOT: str(current or ""), "lake.rollup.of": defn.table}
        if months is None:
            data = _compute(settings, con, info, defn, None, None)
            where: BooleanExpression | str = AlwaysTrue()
            props["lake.rollup.mode"] = "full"
        else:
            result.mode = "incremental"
            result.months = sorted(_month_name(m) for m in months)
            ranges = [
                _bucket_range(con, defn.bucket, _month_start(m), _month_start(m + 1)) for m in sorted(months)
            ]
            parts = [_compute(settings, con, info, defn, lo, hi) for lo, hi in ranges]
            # A week straddling two changed months is computed twice: keep one of each bucket.
            data = _dedupe(con, pa.concat_tables(parts), defn)
            where = ranges_filter(ranges)
            props["lake.rollup.mode"] = "incremental"
            props["lake.rollup.months"] = ",".join(result.months)
    finally:
        con.close()
    try:
        if target.current_snapshot() is None:  # the first refresh: nothing to replace
            target.append(data, snapshot_properties=props)
        else:
            target.overwrite(data, overwrite_filter=where, snapshot_properties=props)
    except OSError as e:
        raise StoreUnavailable(f"{result.rollup_table}: refresh failed: {e}") from e
    after = target.current_snapshot()
    result.rows = data.num_rows
    result.snapshot_id = after.snapshot_id if after else None
    return result


def ranges_filter(ranges: list[tuple[str, str]]) -> str:
    """``bucket`` in any of the ``[lo, hi)`` ranges, as a pyiceberg row filter."""
    return " OR ".join(f"(bucket >= '{lo}' AND bucket < '{hi}')" for lo, hi in ranges)


def _dedupe(con: duckdb.DuckDBPyConnection, data: pa.Table, defn: RollupDef) -> pa.Table:
    keys = ["bucket"] + ([defn.group_by] if defn.group_by else [])
    con.register("__rollup_parts", data)
    try:
        out = con.execute(
            f"SELECT DISTINCT ON ({', '.join(ident(k) for k in keys)}) * FROM __rollup_parts"
        ).to_arrow_table()
    finally:
        con.unregister("__rollup_parts")
    return out.cast(data.schema)


def rollups_job(settings: Settings, options: MaintenanceOptions) -> list[dict[str, Any]]:
    """The ``rollups`` maintenance job: refresh every declared rollup (of ``options.tables`` only,
    when given), incrementally where it can; one failure is reported and the others still run."""
    results: list[dict[str, Any]] = []
    try:
        defs = load_rollups(settings)
    except LakeError as e:
        return [{"table": str(rollups_dir(settings)), **e.to_dict()}]
    catalog = get_catalog(settings)
    for defn in defs:
        if options.tables is not None and f"{settings.namespace}.{defn.table}" not in options.tables:
            continue
        try:
            results.append(refresh_rollup(settings, defn, dry_run=options.dry_run, catalog=catalog).to_dict())
        except LakeError as e:
            results.append({"table": f"{settings.namespace}.{defn.target}", **e.to_dict()})
    return results
