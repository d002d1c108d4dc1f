"""Dataset contracts: YAML files in ``LAKE_CONTRACTS_DIR`` loaded into pydantic models.

A contract names the columns, their types and rules, the event-time column the table is
partitioned by (``month(event_time)``) and how many months are kept.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lakehouse.config import Settings
from lakehouse.errors import ContractInvalid, ContractNotFound

if TYPE_CHECKING:
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.types import PrimitiveType

ColumnType = Literal["string", "int", "long", "float", "double", "boolean", "date", "timestamp"]
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

# DuckDB's name for each contract type (used to cast and validate).
DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}
NUMERIC = {"int", "long", "float", "double"}
PiiMode = Literal["mask", "hash", "drop"]


class Column(BaseModel):
    """One column of a dataset contract."""

    model_config = ConfigDict(extra="forbid")

    type: ColumnType
    required: bool = False
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

    @model_validator(mode="after")
    def _rules_fit_type(self) -> Column:
        if (self.min is not None or self.max is not None) and self.type not in NUMERIC:
            raise ValueError(f"min/max apply to numeric columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.enum is not None and not self.enum:
            raise ValueError("enum must list at least one value")
        if (self.pattern is not None or self.max_length is not None) and self.type != "string":
            raise ValueError(f"pattern/max_length apply to string columns, not {self.type}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression: {e}") from e
        if (self.not_future or self.not_before is not None) and self.type not in ("timestamp", "date"):
            raise ValueError(f"not_future/not_before apply to timestamp and date columns, not {self.type}")
        if self.not_before is not None:
            try:
                dt.datetime.fromisoformat(self.not_before)
            except ValueError as e:
                raise ValueError(f"not_before {self.not_before!r} is not an ISO-8601 date or time") from e
        if self.pii in ("mask", "hash") and self.type != "string":
            raise ValueError(f"pii {self.pii} applies to string columns, not {self.type} (use drop)")
        return self


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


class Contract(BaseModel):
    """A dataset contract (``catalog/datasets/<name>.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    version: int = Field(1, ge=1)
    event_time: str
    retention_months: int = Field(12, ge=1)
    tenant_column: str | None = None
    columns: dict[str, Column]
    checks: list[Check] = Field(default_factory=list)
    on_error: Literal["quarantine", "reject_file"] = "quarantine"
    max_bad_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    evolution: Literal["ignore", "add_columns", "strict"] = "ignore"
    detect_pii: bool = False
    pii_default: PiiMode = "mask"
    primary_key: list[str] | None = None
    vectors: VectorConfig | None = None

    @model_validator(mode="after")
    def _event_time_is_a_time(self) -> Contract:
        import re

        for col in self.columns:
            if not re.match(COLUMN_PATTERN, col):
                raise ValueError(f"column name {col!r} must match {COLUMN_PATTERN}")
        if not self.columns:
            raise ValueError("a contract needs at least one column")
        spec = self.columns.get(self.event_time)
        if spec is None:
            raise ValueError(f"event_time {self.event_time!r} is not one of the columns")
        if spec.type not in ("timestamp", "date"):
            raise ValueError(f"event_time {self.event_time!r} must be a timestamp or date, not {spec.type}")
        if self.tenant_column is not None:
            tenant = self.columns.get(self.tenant_column)
            if tenant is None or tenant.type != "string" or not tenant.required:
                raise ValueError(f"tenant_column {self.tenant_column!r} must be a required string column")
        self._check_quality_rules()
        self._check_vectors()
        return self

    def _check_vectors(self) -> None:
        if self.vectors is None:
            return
        if ROW_ID in self.columns:
            raise ValueError(f"{ROW_ID} is the row id Lake adds to datasets with vectors; rename the column")
        text = self.vectors.text
        if text is not None:
            col = self.columns.get(text)
            if col is None or col.type != "string" or col.pii == "drop":
                raise ValueError(f"vectors.text {text!r} must be a stored string column")
        if self.vectors.embedding is not None and self.vectors.embedding in self.columns:
            raise ValueError(
                f"vectors.embedding {self.vectors.embedding!r} is a field of the upload kept in Lance, "
                "not a table column: remove it from columns"
            )

    def _check_quality_rules(self) -> None:
        """Primary key, PII and SQL checks fit the columns (see lakehouse.contracts.validate for the SQL)."""
        if self.primary_key is not None:
            if not self.primary_key or len(set(self.primary_key)) != len(self.primary_key):
                raise ValueError("primary_key must list distinct columns")
            for key in self.primary_key:
                if key not in self.columns:
                    raise ValueError(f"primary_key column {key!r} is not one of the columns")
        for name, col in self.columns.items():
            if col.pii == "drop" and (name == self.event_time or name in (self.primary_key or [])):
                raise ValueError(f"column {name!r}: the event-time and key columns cannot be dropped")
        names = [c.name for c in self.checks]
        if len(set(names)) != len(names):
            raise ValueError("check names must be distinct")
        if self.checks:
            from lakehouse.contracts.validate import compile_checks

            compile_checks(self)

    def is_required(self, column: str) -> bool:
        """Required columns, and the event-time column, must hold a value in every row."""
        return (
            self.columns[column].required or column == self.event_time or column in (self.primary_key or [])
        )

    def stored_columns(self) -> list[str]:
        """The contract columns the table holds (``pii: drop`` columns are validated, never stored)."""
        return [name for name, col in self.columns.items() if col.pii != "drop"]

    def iceberg_schema(self) -> Schema:
        """The Iceberg schema of the dataset's table (field ids 1..n in contract order)."""
        from pyiceberg.schema import Schema
        from pyiceberg.types import NestedField

        fields = [
            NestedField(
                i, name, _iceberg_type(col.type), required=self.is_required(name), doc=col.description or None
            )
            for i, (name, col) in enumerate(self.columns.items(), start=1)
            if col.pii != "drop"
        ]
        if self.vectors is not None:
            fields.append(
                NestedField(
                    len(self.columns) + 1,
                    ROW_ID,
                    _iceberg_type("string"),
                    required=False,
                    doc="Row id; the key of the row's vector in vectors/<dataset>.lance",
                )
            )
        return Schema(*fields)

    def partition_spec(self, schema: Schema) -> PartitionSpec:
        """``month(event_time)``."""
        from pyiceberg.partitioning import PartitionField, PartitionSpec
        from pyiceberg.transforms import MonthTransform

        source = schema.find_field(self.event_time)
        return PartitionSpec(
            PartitionField(
                source_id=source.field_id,
                field_id=1000,
                transform=MonthTransform(),
                name=f"{self.event_time}_month",
            )
        )

    def table_properties(self) -> dict[str, str]:
        return {
            "format-version": "2",
            "write.parquet.compression-codec": "zstd",
            "lake.contract.name": self.name,
            "lake.contract.version": str(self.version),
            "lake.retention-months": str(self.retention_months),
            "lake.event-time": self.event_time,
        }

    def to_yaml(self) -> str:
        data = self.model_dump(exclude_defaults=False)
        for key in ("checks", "on_error", "max_bad_fraction", "evolution", "detect_pii", "pii_default"):
            if key in data and key not in self.model_fields_set:
                del data[key]
        if data.get("primary_key") is None:
            data.pop("primary_key", None)
        if data.get("vectors") is None:
            data.pop("vectors", None)
        data["columns"] = {
            name: {k: v for k, v in col.model_dump().items() if v not in (None, "", False) or k == "type"}
            for name, col in self.columns.items()
        }
        return yaml.safe_dump(data, sort_keys=False)


def _iceberg_type(kind: str) -> PrimitiveType:
    from pyiceberg import types as t

    mapping: dict[str, PrimitiveType] = {
        "string": t.StringType(),
        "int": t.IntegerType(),
        "long": t.LongType(),
        "float": t.FloatType(),
        "double": t.DoubleType(),
        "boolean": t.BooleanType(),
        "date": t.DateType(),
        "timestamp": t.TimestamptzType(),
    }
    return mapping[kind]


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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(contract)'}: {err['msg']}" for err in e.errors()
        )
        raise ContractInvalid(f"{origin}: {problems}") from e


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
