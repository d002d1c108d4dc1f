"""Dataset contracts: YAML files in ``LAKE_CONTRACTS_DIR`` loaded into pydantic models.

A contract names the columns, their types and rules, the event-time column the table is
partitioned by (``month(event_time)``) and how many months are kept.
"""

from __future__ import annotations

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


class Column(BaseModel):
    """One column of a dataset contract."""

    model_config = ConfigDict(extra="forbid")

    type: ColumnType
    required: bool = False
    description: str = ""
    min: float | None = None
    max: float | None = None
    enum: list[str | int | float] | None = None

    @model_validator(mode="after")
    def _rules_fit_type(self) -> Column:
        if (self.min is not None or self.max is not None) and self.type not in NUMERIC:
            raise ValueError(f"min/max apply to numeric columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.enum is not None and not self.enum:
            raise ValueError("enum must list at least one value")
        return self


class Contract(BaseModel):
    """A dataset contract (``catalog/datasets/<name>.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    version: int = Field(1, ge=1)
    event_time: str
    retention_months: int = Field(12, ge=1)
    columns: dict[str, Column]

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
        return self

    def is_required(self, column: str) -> bool:
        """Required columns, and the event-time column, must hold a value in every row."""
        return self.columns[column].required or column == self.event_time

    def iceberg_schema(self) -> Schema:
        """The Iceberg schema of the dataset's table (field ids 1..n in contract order)."""
        from pyiceberg.schema import Schema
        from pyiceberg.types import NestedField

        fields = [
            NestedField(
                i, name, _iceberg_type(col.type), required=self.is_required(name), doc=col.description or None
            )
            for i, (name, col) in enumerate(self.columns.items(), start=1)
        ]
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
