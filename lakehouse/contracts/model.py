"""Dataset contracts: YAML files in ``LAKE_CONTRACTS_DIR`` loaded into pydantic models.

A contract names the columns, their types (:mod:`lakehouse.contracts.types`) and rules, and
the table's shape: an optional event-time column (with how many months are kept), the
partitioning (default ``month(event_time)``; none without an event time), a sort order or
z-order clustering, and how an upload is written (``append``, ``upsert`` by primary key, or
``replace`` the whole table).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from lakehouse.config import Settings
from lakehouse.contracts.types import DataType, parse_type
from lakehouse.duck import ident
from lakehouse.errors import ContractInvalid, ContractNotFound

if TYPE_CHECKING:
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table.sorting import SortOrder
    from pyiceberg.transforms import Transform

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PiiMode = Literal["mask", "hash", "drop"]
WriteMode = Literal["append", "upsert", "replace"]
DEFAULT_RETENTION_MONTHS = 12


class Column(BaseModel):
    """One column of a dataset contract."""

    model_config = ConfigDict(extra="forbid")

    type: str
    required: bool = False
    required_fields: list[str] | None = None
    description: str = ""
    min: float | None = None
    max: float | None = None
    enum: list[str | int | float] | None = None
    pattern: str | None = None
    max_length: int | None = Field(default=None, ge=1)
    unique: bool = False
    not_future: bool = False
    not_before: str | None = None
    pii: PiiMode | None = None
    _parsed: DataType = PrivateAttr()

    @field_validator("type")
    @classmethod
    def _type_parses(cls, value: str) -> str:
        return str(parse_type(value))  # the canonical spelling

    @property
    def data_type(self) -> DataType:
        """The parsed type."""
        return self._parsed

    @model_validator(mode="after")
    def _rules_fit_type(self) -> Column:
        self._parsed = kind = parse_type(self.type)
        if (self.min is not None or self.max is not None) and not kind.numeric:
            raise ValueError(f"min/max apply to numeric columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.enum is not None and not self.enum:
            raise ValueError("enum must list at least one value")
        if self.enum is not None and (kind.nested or kind.kind == "binary"):
            raise ValueError(f"enum applies to scalar columns, not {self.type}")
        if (self.pattern is not None or self.max_length is not None) and kind.kind != "string":
            raise ValueError(f"pattern/max_length apply to string columns, not {self.type}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression: {e}") from e
        if (self.not_future or self.not_before is not None) and not kind.temporal:
            raise ValueError(f"not_future/not_before apply to timestamp and date columns, not {self.type}")
        if self.not_before is not None:
            try:
                dt.datetime.fromisoformat(self.not_before)
            except ValueError as e:
                raise ValueError(f"not_before {self.not_before!r} is not an ISO-8601 date or time") from e
        if self.pii in ("mask", "hash") and kind.kind != "string":
            raise ValueError(f"pii {self.pii} applies to string columns, not {self.type} (use drop)")
        for path in self.required_fields or []:
            if kind.kind != "struct":
                raise ValueError(f"required_fields apply to struct columns, not {self.type}")
            if struct_field(kind, path) is None:
                raise ValueError(f"required_fields: {path!r} is not a field of {self.type}")
        return self


def struct_field(kind: DataType, path: str) -> DataType | None:
    """The type of the field at the dotted ``path`` inside a struct type (None if absent)."""
    found: DataType | None = kind
    for part in path.split("."):
        found = found.child(part) if found is not None else None
    return found


class Check(BaseModel):
    """A cross-column rule: a SQL boolean expression over the row's typed values (NULL passes)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    sql: str = Field(min_length=1)
    description: str = ""


# Columns every reader adds to a batch: the row number in the file and the raw text of the row.
ROW = "__lake_row"
RAW = "__lake_raw"
ROW_ID = "_row_id"  # the row id column of datasets with vectors (Iceberg column and Lance key)


class VectorConfig(BaseModel):
    """The ``vectors:`` section: which rows get a vector in ``vectors/<dataset>.lance``, and how.

    ``text`` names a string column to embed (and to search by full text); ``embedding`` names a
    field of the upload that already holds the vector (a list of ``dim`` numbers), used with
    ``embedder: supplied``. Every accepted row gets a vector keyed by its ``_row_id``.
    """

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    embedding: str | None = None
    embedder: Literal["minilm", "static", "supplied"] = "minilm"
    metric: Literal["cosine", "l2", "dot"] = "cosine"
    dim: int | None = Field(default=None, ge=1, le=8192)
    index_min_rows: int | None = Field(
        default=None, ge=1, description="Rows past which an ANN index is built (default: Lake's)."
    )

    @model_validator(mode="after")
    def _source(self) -> VectorConfig:
        if self.embedder == "supplied":
            if self.embedding is None or self.dim is None:
                raise ValueError(
                    "embedder: supplied needs `embedding:` (the field holding vectors) and `dim:`"
                )
        else:
            if self.text is None:
                raise ValueError(f"embedder: {self.embedder} needs `text:` (the column to embed)")
            if self.embedding is not None:
                raise ValueError("`embedding:` (supplied vectors) needs embedder: supplied")
        return self


# --- table layout: partition transforms, sort order, clustering --------------------------------

TRANSFORMS = ("identity", "year", "month", "day", "hour", "bucket", "truncate")
_TRANSFORM = re.compile(r"^\s*([A-Za-z_]\w*)\s*\(\s*(?:(-?\d+)\s*,\s*)?([A-Za-z_]\w*)\s*\)\s*$")
_SORT = re.compile(r"^\s*([A-Za-z_]\w*)(?:\s+(asc|desc))?(?:\s+nulls\s+(first|last))?\s*$", re.IGNORECASE)
_ZORDER = re.compile(r"^\s*zorder\s*\(([^)]*)\)\s*$", re.IGNORECASE)
# The source types each transform accepts (Iceberg's rules).
_TRANSFORM_SOURCES: dict[str, tuple[str, ...]] = {
    "year": ("date", "timestamp"),
    "month": ("date", "timestamp"),
    "day": ("date", "timestamp"),
    "hour": ("timestamp",),
    "bucket": ("int", "long", "decimal", "date", "time", "timestamp", "string", "uuid", "binary"),
    "truncate": ("int", "long", "decimal", "string", "binary"),
}


@dataclass(frozen=True)
class PartitionItem:
    """One partition field of a contract: ``transform(column)`` or ``bucket(N, column)``."""

    transform: str
    column: str
    arg: int | None = None

    def __str__(self) -> str:
        arg = f"{self.arg}, " if self.arg is not None else ""
        return f"{self.transform}({arg}{self.column})"

    @property
    def name(self) -> str:
        """The partition field name (Iceberg's convention: ``ts_day``, ``id_bucket_16``)."""
        if self.transform == "identity":
            return self.column
        if self.arg is not None:
            return f"{self.column}_{'trunc' if self.transform == 'truncate' else 'bucket'}_{self.arg}"
        return f"{self.column}_{self.transform}"

    def iceberg(self) -> Transform[Any, Any]:
        from pyiceberg import transforms as t

        if self.transform == "bucket":
            assert self.arg is not None
            return t.BucketTransform(self.arg)
        if self.transform == "truncate":
            assert self.arg is not None
            return t.TruncateTransform(self.arg)
        simple: dict[str, Transform[Any, Any]] = {
            "identity": t.IdentityTransform(),
            "year": t.YearTransform(),
            "month": t.MonthTransform(),
            "day": t.DayTransform(),
            "hour": t.HourTransform(),
        }
        return simple[self.transform]


def parse_partition(text: str) -> PartitionItem:
    """``day(ts)``, ``bucket(16, device_id)``, ``truncate(4, sku)``...; ValueError when it does not."""
    m = _TRANSFORM.match(text)
    if not m:
        raise ValueError(f"{text!r} is not transform(column) or bucket(N, column)")
    transform, arg, column = m.group(1).lower(), m.group(2), m.group(3)
    if transform not in TRANSFORMS:
        raise ValueError(
            f"{text!r}: unknown transform {transform!r} (known: identity, year, month, day, hour, "
            "bucket(N, col), truncate(W, col))"
        )
    if transform in ("bucket", "truncate"):
        if arg is None:
            raise ValueError(f"{text!r}: {transform} needs a number: {transform}(N, {column})")
        if int(arg) < 1:
            what = "bucket count" if transform == "bucket" else "truncate width"
            raise ValueError(f"{text!r}: the {what} must be at least 1, not {arg}")
        return PartitionItem(transform, column, int(arg))
    if arg is not None:
        raise ValueError(f"{text!r}: {transform} takes only a column")
    return PartitionItem(transform, column)


@dataclass(frozen=True)
class SortItem:
    column: str
    descending: bool = False
    nulls_first: bool = False

    def __str__(self) -> str:
        direction = "desc" if self.descending else "asc"
        return f"{self.column} {direction} nulls {'first' if self.nulls_first else 'last'}"


def parse_sort(text: str) -> SortItem:
    m = _SORT.match(text)
    if not m:
        raise ValueError(f"{text!r} is not `column [asc|desc] [nulls first|last]`")
    return SortItem(
        m.group(1), (m.group(2) or "asc").lower() == "desc", (m.group(3) or "last").lower() == "first"
    )


def parse_zorder(text: str) -> list[str]:
    m = _ZORDER.match(text)
    if not m:
        raise ValueError(f"{text!r} is not zorder(column, column, ...)")
    columns = [c.strip() for c in m.group(1).split(",") if c.strip()]
    if not 2 <= len(columns) <= 4:
        raise ValueError(f"{text!r}: zorder interleaves 2 to 4 columns (one column is a sort_order)")
    if len(set(columns)) != len(columns):
        raise ValueError(f"{text!r}: a column appears twice")
    return columns


class Contract(BaseModel):
    """A dataset contract (``catalog/datasets/<name>.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    version: int = Field(1, ge=1)
    event_time: str | None = None
    retention_months: int | None = Field(None, ge=1)
    tenant_column: str | None = None
    columns: dict[str, Column]
    checks: list[Check] = Field(default_factory=list)
    on_error: Literal["quarantine", "reject_file"] = "quarantine"
    max_bad_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    evolution: Literal["ignore", "add_columns", "strict"] = "ignore"
    detect_pii: bool = False
    pii_default: PiiMode = "mask"
    primary_key: list[str] | None = None
    write_mode: WriteMode | None = None
    partitioning: list[str] | None = None
    sort_order: list[str] | None = None
    cluster_by: str | None = None
    vectors: VectorConfig | None = None

    @field_validator("partitioning")
    @classmethod
    def _partitioning_parses(cls, value: list[str] | None) -> list[str] | None:
        for i, item in enumerate(value or []):
            try:
                parse_partition(item)
            except ValueError as e:
                raise ValueError(f"[{i}] {e}") from None
        return value

    @field_validator("sort_order")
    @classmethod
    def _sort_parses(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("sort_order lists at least one column (leave it out for no order)")
        for i, item in enumerate(value or []):
            try:
                parse_sort(item)
            except ValueError as e:
                raise ValueError(f"[{i}] {e}") from None
        return value

    @field_validator("cluster_by")
    @classmethod
    def _cluster_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_zorder(value)
        return value

    @model_validator(mode="after")
    def _shape_fits_columns(self) -> Contract:
        for col in self.columns:
            if not re.match(COLUMN_PATTERN, col):
                raise ValueError(f"columns: column name {col!r} must match {COLUMN_PATTERN}")
        if not self.columns:
            raise ValueError("columns: a contract needs at least one column")
        if self.event_time is not None:
            spec = self.columns.get(self.event_time)
            if spec is None:
                raise ValueError(f"event_time {self.event_time!r} is not one of the columns")
            if not spec.data_type.temporal:
                raise ValueError(
                    f"event_time {self.event_time!r} must be a timestamp or date, not {spec.type}"
                )
        elif self.retention_months is not None:
            raise ValueError(
                "retention_months: the contract has no event_time, so no row has an age to expire by; "
                "remove retention_months or name an event_time column"
            )
        if self.tenant_column is not None:
            tenant = self.columns.get(self.tenant_column)
            if tenant is None or tenant.type != "string" or not tenant.required:
                raise ValueError(f"tenant_column: {self.tenant_column!r} must be a required string column")
        self._check_quality_rules()
        self._check_layout()
        self._check_vectors()
        return self

    # --- derived shape ---------------------------------------------------------------------------

    @property
    def months_kept(self) -> int | None:
        """Months of rows retention keeps (None: no event time, nothing expires)."""
        if self.event_time is None:
            return None
        return self.retention_months or DEFAULT_RETENTION_MONTHS

    @property
    def mode(self) -> WriteMode:
        """How an upload is written: ``write_mode``, else ``upsert`` with a primary key, else ``append``."""
        if self.write_mode is not None:
            return self.write_mode
        return "upsert" if self.primary_key else "append"

    def partition_items(self) -> list[PartitionItem]:
        """``partitioning``, else ``month(event_time)``, else none."""
        if self.partitioning is not None:
            return [parse_partition(p) for p in self.partitioning]
        return [PartitionItem("month", self.event_time)] if self.event_time else []

    def sort_items(self) -> list[SortItem]:
        return [parse_sort(s) for s in self.sort_order or []]

    def zorder_columns(self) -> list[str]:
        return parse_zorder(self.cluster_by) if self.cluster_by else []

    def _stored_scalar(self, name: str, what: str) -> DataType:
        col = self.columns.get(name)
        if col is None:
            raise ValueError(f"{what}: {name!r} is not one of the columns")
        if col.pii == "drop":
            raise ValueError(f"{what}: {name!r} is dropped (pii: drop), not stored")
        if col.data_type.nested:
            raise ValueError(f"{what}: {name!r} is {col.type}; only scalar columns can be used here")
        return col.data_type

    def _check_layout(self) -> None:
        if self.write_mode == "upsert" and not self.primary_key:
            raise ValueError("write_mode: upsert merges by primary_key; the contract names none")
        seen: set[str] = set()
        for i, item in enumerate(self.partition_items()):
            what = f"partitioning[{i}] {str(item)!r}"
            kind = self._stored_scalar(item.column, what)
            allowed = _TRANSFORM_SOURCES.get(item.transform)
            if allowed is not None and kind.kind not in allowed:
                raise ValueError(
                    f"{what}: {item.transform} applies to {', '.join(allowed)} columns, not {kind}"
                )
            if item.name in seen:
                raise ValueError(f"{what}: the same partition field appears twice")
            seen.add(item.name)
        if self.sort_order and self.cluster_by:
            raise ValueError("cluster_by: give either sort_order or cluster_by, not both")
        for i, sort in enumerate(self.sort_items()):
            kind = self._stored_scalar(sort.column, f"sort_order[{i}] {sort.column!r}")
            if kind.kind == "binary":
                raise ValueError(f"sort_order[{i}] {sort.column!r}: binary columns have no useful order")
        for name in self.zorder_columns():
            kind = self._stored_scalar(name, f"cluster_by {name!r}")
            if not (kind.numeric or kind.kind in ("date", "timestamp", "time")):
                raise ValueError(
                    f"cluster_by {name!r}: zorder interleaves numbers, dates and times, not {kind}"
                )

    def _check_vectors(self) -> None:
        if self.vectors is None:
            return
        if ROW_ID in self.columns:
            raise ValueError(
                f"vectors: {ROW_ID} is the row id Lake adds to datasets with vectors; rename the column"
            )
        text = self.vectors.text
        if text is not None:
            col = self.columns.get(text)
            if col is None or col.type != "string" or col.pii == "drop":
                raise ValueError(f"vectors.text: {text!r} must be a stored string column")
        if self.vectors.embedding is not None and self.vectors.embedding in self.columns:
            raise ValueError(
                f"vectors.embedding: {self.vectors.embedding!r} is a field of the upload kept in Lance, "
                "not a table column: remove it from columns"
            )

    def _check_quality_rules(self) -> None:
        """Primary key, PII and SQL checks fit the columns (the checks are bound in DuckDB)."""
        if self.primary_key is not None:
            if not self.primary_key or len(set(self.primary_key)) != len(self.primary_key):
                raise ValueError("primary_key: list distinct columns")
            for key in self.primary_key:
                if key not in self.columns:
                    raise ValueError(f"primary_key column {key!r} is not one of the columns")
                if self.columns[key].data_type.nested:
                    raise ValueError(f"primary_key: {key!r} is {self.columns[key].type}, not a scalar")
        for name, col in self.columns.items():
            if col.pii == "drop" and (name == self.event_time or name in (self.primary_key or [])):
                raise ValueError(f"columns.{name}: the event-time and key columns cannot be dropped")
        names = [c.name for c in self.checks]
        if len(set(names)) != len(names):
            raise ValueError("checks: check names must be distinct")
        if self.checks:
            compile_checks(self)

    def is_required(self, column: str) -> bool:
        """Required columns, and the event-time and key columns, must hold a value in every row."""
        return (
            self.columns[column].required or column == self.event_time or column in (self.primary_key or [])
        )

    def stored_columns(self) -> list[str]:
        """The contract columns the table holds (``pii: drop`` columns are validated, never stored)."""
        return [name for name, col in self.columns.items() if col.pii != "drop"]

    def iceberg_schema(self) -> Schema:
        """The Iceberg schema of the dataset's table (column ids 1..n in contract order, then the
        row id, then the ids of nested fields)."""
        from pyiceberg.schema import Schema
        from pyiceberg.types import NestedField, StringType

        nested_ids = itertools.count(len(self.columns) + 2)
        fields = [
            NestedField(
                i,
                name,
                col.data_type.iceberg(nested_ids),
                required=self.is_required(name),
                doc=col.description or None,
            )
            for i, (name, col) in enumerate(self.columns.items(), start=1)
            if col.pii != "drop"
        ]
        if self.vectors is not None:
            fields.append(
                NestedField(
                    len(self.columns) + 1,
                    ROW_ID,
                    StringType(),
                    required=False,
                    doc="Row id; the key of the row's vector in vectors/<dataset>.lance",
                )
            )
        return Schema(*fields)

    def partition_spec(self, schema: Schema) -> PartitionSpec:
        """The contract's partitioning over ``schema`` (partition field ids from 1000)."""
        from pyiceberg.partitioning import PartitionField, PartitionSpec

        return PartitionSpec(
            *(
                PartitionField(
                    source_id=schema.find_field(item.column).field_id,
                    field_id=1000 + i,
                    transform=item.iceberg(),
                    name=item.name,
                )
                for i, item in enumerate(self.partition_items())
            )
        )

    def iceberg_sort_order(self, schema: Schema) -> SortOrder:
        """The table's sort order (``sort_order``; unsorted otherwise: z-order is a compaction
        strategy, named in the ``lake.cluster-by`` property)."""
        from pyiceberg.table.sorting import (
            UNSORTED_SORT_ORDER,
            NullOrder,
            SortDirection,
            SortField,
            SortOrder,
        )
        from pyiceberg.transforms import IdentityTransform

        items = self.sort_items()
        if not items:
            return UNSORTED_SORT_ORDER
        return SortOrder(
            *(
                SortField(
                    source_id=schema.find_field(s.column).field_id,
                    transform=IdentityTransform(),
                    direction=SortDirection.DESC if s.descending else SortDirection.ASC,
                    null_order=NullOrder.NULLS_FIRST if s.nulls_first else NullOrder.NULLS_LAST,
                )
                for s in items
            )
        )

    def table_properties(self) -> dict[str, str]:
        """Properties Lake keeps on the table (set at creation, updated when the contract changes)."""
        props = {
            "format-version": "2",
            "write.parquet.compression-codec": "zstd",
            "lake.contract.name": self.name,
            "lake.contract.version": str(self.version),
            "lake.event-time": self.event_time or "",
            "lake.write-mode": self.mode,
            "lake.cluster-by": ",".join(self.zorder_columns()),
        }
        if self.months_kept is not None:
            props["lake.retention-months"] = str(self.months_kept)
        return props

    def to_yaml(self) -> str:
        data = self.model_dump(exclude_defaults=False)
        for key in ("checks", "on_error", "max_bad_fraction", "evolution", "detect_pii", "pii_default"):
            if key in data and key not in self.model_fields_set:
                del data[key]
        for key in (
            "event_time",
            "retention_months",
            "primary_key",
            "write_mode",
            "partitioning",
            "sort_order",
            "cluster_by",
            "vectors",
        ):
            if data.get(key) is None:
                data.pop(key, None)
        data["columns"] = {
            name: {k: v for k, v in col.model_dump().items() if v not in (None, "", False) or k == "type"}
            for name, col in self.columns.items()
        }
        return yaml.safe_dump(data, sort_keys=False)


def compile_checks(contract: Contract) -> None:
    """Bind every SQL check against an empty typed row: unknown columns or bad SQL fail here."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_external_access = false")
    try:
        cols = ", ".join(f"{ident(n)} {c.data_type.duckdb()}" for n, c in contract.columns.items())
        con.execute(f"CREATE TABLE row_ ({cols})")
        for check in contract.checks:
            statements = duckdb.extract_statements(f"SELECT CAST(({check.sql}) AS BOOLEAN) FROM row_")
            if len(statements) != 1:
                raise ValueError(f"checks: check {check.name}: one SQL expression expected")
            try:
                con.execute(f"SELECT CAST(({check.sql}) AS BOOLEAN) FROM row_")
            except duckdb.Error as e:
                raise ValueError(f"checks: check {check.name}: {e}") from e
    except duckdb.ParserException as e:
        raise ValueError(f"checks: a check is not valid SQL: {e}") from e
    finally:
        con.close()


def parse_contract(text: str, origin: str) -> Contract:
    """Parse contract YAML; errors name the file and the offending field."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ContractInvalid(f"{origin}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ContractInvalid(f"{origin}: a contract is a YAML mapping")
    try:
        return Contract.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(_problem(err) for err in e.errors())
        raise ContractInvalid(f"{origin}: {problems}") from e


def _problem(err: Any) -> str:
    """One pydantic error as ``field.path: message`` (model-level messages name their field)."""
    message = str(err["msg"]).removeprefix("Value error, ")
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {message}" if where else message


def contract_path(settings: Settings, dataset: str) -> Path:
    return settings.contracts_dir / f"{dataset}.yaml"


def load_contract(settings: Settings, dataset: str) -> Contract:
    """Read ``<contracts_dir>/<dataset>.yaml`` (read on every call: adding a file needs no restart)."""
    import re

    if not re.match(NAME_PATTERN, dataset):
        raise ContractNotFound(f"{dataset!r} is not a dataset name (lower-case letters, digits, underscores)")
    path = contract_path(settings, dataset)
    if not path.exists():
        raise ContractNotFound(
            f"no contract for dataset {dataset!r}: add {path} (draft one with `lake contract infer FILE "
            f"--dataset {dataset}`)"
        )
    contract = parse_contract(path.read_text(), str(path))
    if contract.name != dataset:
        raise ContractInvalid(f"{path}: name {contract.name!r} does not match the file name {dataset!r}")
    return contract


def list_contracts(settings: Settings) -> list[Contract]:
    """Every contract in the contracts folder, sorted by name."""
    if not settings.contracts_dir.is_dir():
        return []
    return [load_contract(settings, p.stem) for p in sorted(settings.contracts_dir.glob("*.yaml"))]


def loadable_contracts(settings: Settings) -> tuple[list[Contract], list[dict[str, Any]]]:
    """Every contract that loads, sorted by name, and one problem per file that does not
    (``dataset``, ``file``, ``error``, ``message``): one broken file never hides the others."""
    contracts: list[Contract] = []
    problems: list[dict[str, Any]] = []
    if not settings.contracts_dir.is_dir():
        return contracts, problems
    for path in sorted(settings.contracts_dir.glob("*.yaml")):
        try:
            contracts.append(load_contract(settings, path.stem))
        except (ContractInvalid, ContractNotFound) as e:
            problems.append({"dataset": path.stem, "file": str(path), **e.to_dict()})
    return contracts, problems
