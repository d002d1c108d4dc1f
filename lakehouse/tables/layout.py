"""Table layout: the partition spec, sort order and clustering a contract names, kept in step
with the table, and the row order data files are written in.

* :func:`evolve_layout` makes an existing table's partition spec, sort order and Lake
  properties match its contract in one metadata commit. A new partitioning is a partition spec
  evolution: files already written keep their spec (Iceberg plans both), nothing is rewritten.
* :func:`write_order` is the row order of a table's data files: its sort order (``sort_order``)
  or a z-order of its ``cluster_by`` columns (``lake.cluster-by``). Ingest writes each file in
  that order; compaction rewrites a partition in it so file column statistics prune.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakehouse.config import Settings
from lakehouse.contracts.model import Contract
from lakehouse.duck import ident
from lakehouse.errors import CommitConflict

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.table import Table

CLUSTER_PROPERTY = "lake.cluster-by"
_INDEX = "__lake_position"


@dataclass(frozen=True)
class WriteOrder:
    """How rows are ordered in a data file: sort keys, or a z-order of ``zorder`` columns."""

    keys: tuple[tuple[str, bool, bool], ...] = ()  # (column, descending, nulls first)
    zorder: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys or self.zorder)


def write_order(table: Table) -> WriteOrder:
    """The table's write order: its Iceberg sort order, else its ``lake.cluster-by`` z-order."""
    from pyiceberg.table.sorting import NullOrder, SortDirection

    schema = table.schema()
    keys = []
    for field in table.sort_order().fields:
        name = schema.find_column_name(field.source_id)
        if name is None or str(field.transform) != "identity":
            continue
        keys.append((name, field.direction == SortDirection.DESC, field.null_order == NullOrder.NULLS_FIRST))
    zorder = tuple(c for c in table.properties.get(CLUSTER_PROPERTY, "").split(",") if c)
    return WriteOrder(tuple(keys), () if keys else zorder)


def _number(name: str, kind: pa.DataType) -> str:
    """A column as a double for z-order (dates and times as seconds)."""
    col = ident(name)
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return f"epoch({col})"
    if pa.types.is_time(kind):
        return f"epoch(TIMESTAMP '1970-01-01' + {col})"
    return f"CAST({col} AS DOUBLE)"


def order_by(con: duckdb.DuckDBPyConnection, relation: str, order: WriteOrder, schema: pa.Schema) -> str:
    """The ``ORDER BY`` clause putting ``relation``'s rows in ``order``.

    Z-order scales each column to an integer of ``63 // n`` bits over the relation's min..max
    and interleaves the bits (the Morton code), so rows close in every column sit close in the
    file sequence and each file covers a small box of the space.
    """
    if order.keys:
        return ", ".join(
            f"{ident(c)} {'DESC' if desc else 'ASC'} NULLS {'FIRST' if first else 'LAST'}"
            for c, desc, first in order.keys
        )
    names = list(order.zorder)
    values = [_number(n, schema.field(n).type) for n in names]
    bounds = con.execute(
        f"SELECT {', '.join(f'min({v}), max({v})' for v in values)} FROM {relation}"
    ).fetchone()
    assert bounds is not None
    bits = 63 // len(names)
    top = (1 << bits) - 1
    scaled = []
    for i, value in enumerate(values):
        low, high = bounds[2 * i], bounds[2 * i + 1]
        if low is None or high is None or high == low:
            scaled.append("0::UBIGINT")
            continue
        scaled.append(
            f"coalesce(CAST(least(greatest(({value} - {low!r}) / {float(high - low)!r}, 0.0), 1.0) * {top} "
            "AS UBIGINT), 0::UBIGINT)"
        )
    terms = [
        f"(((({s}) >> {b}) & 1::UBIGINT) << {b * len(names) + j})"
        for b in range(bits)
        for j, s in enumerate(scaled)
    ]
    return "(" + " | ".join(terms) + ")"


def sort_rows(data: pa.Table, order: WriteOrder) -> pa.Table:
    """``data`` in ``order`` (DuckDB computes the permutation over the key columns only)."""
    import duckdb

    if not order or data.num_rows < 2:
        return data
    wanted = list(dict.fromkeys([k[0] for k in order.keys] + list(order.zorder)))
    keys = data.select(wanted).append_column(_INDEX, pa.array(range(data.num_rows), pa.int64()))
    con = duckdb.connect(config={"threads": 1})
    try:
        con.register("__lake_keys", keys)
        clause = order_by(con, "__lake_keys", order, keys.schema)
        positions = con.execute(f"SELECT {_INDEX} FROM __lake_keys ORDER BY {clause}").to_arrow_table()
    finally:
        con.close()
    return data.take(positions[_INDEX])


def evolve_layout(table: Table, contract: Contract, settings: Settings) -> Table:
    """Bring the table's partition spec, sort order and Lake properties in line with the contract
    (one metadata commit, retried on conflicts); the table as it is afterwards."""
    from pyiceberg.exceptions import CommitFailedException

    for attempt in range(settings.commit_retries + 1):
        schema = table.schema()
        want_spec = {(f.name, str(f.transform), f.source_id) for f in contract.partition_spec(schema).fields}
        have_spec = {(f.name, str(f.transform), f.source_id) for f in table.spec().fields}
        want_order = contract.iceberg_sort_order(schema)
        same_order = [(f.source_id, f.direction, f.null_order) for f in want_order.fields] == [
            (f.source_id, f.direction, f.null_order) for f in table.sort_order().fields
        ]
        props = {k: v for k, v in contract.table_properties().items() if k.startswith("lake.")}
        stale = {k: v for k, v in props.items() if table.properties.get(k) != v}
        if want_spec == have_spec and same_order and not stale:
            return table
        try:
            with table.transaction() as tx:
                if want_spec != have_spec:
                    with tx.update_spec() as spec:
                        for name, _, _ in have_spec - want_spec:
                            spec.remove_field(name)
                        for item in contract.partition_items():
                            key = (item.name, str(item.iceberg()), schema.find_field(item.column).field_id)
                            if key not in have_spec:
                                spec.add_field(item.column, item.iceberg(), item.name)
                if not same_order:
                    with tx.update_sort_order() as update:
                        for s in contract.sort_items():
                            add = update.desc if s.descending else update.asc
                            add(s.column, _identity(), _null_order(s.nulls_first))
                if stale:
                    tx.set_properties(stale)
            return table
        except CommitFailedException as e:
            if attempt == settings.commit_retries:
                raise CommitConflict(f"{table.name()}: layout update lost to concurrent writers") from e
            table.refresh()
    raise AssertionError("unreachable")


def _identity() -> Any:
    from pyiceberg.transforms import IdentityTransform

    return IdentityTransform()


def _null_order(first: bool) -> Any:
    from pyiceberg.table.sorting import NullOrder

    return NullOrder.NULLS_FIRST if first else NullOrder.NULLS_LAST
