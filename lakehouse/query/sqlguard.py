"""The gate in front of user SQL: one read-only SELECT over Lake tables, nothing else.

The statement is parsed by DuckDB itself (``extract_statements`` and ``json_serialize_sql``),
never matched as text. Refused: anything but exactly one SELECT/WITH statement; table
functions other than a few pure generators (so no ``read_csv``, ``read_parquet``,
``iceberg_scan``, ``glob``, ``pragma_*``, ``duckdb_*`` ...); scalar functions that reveal
settings or the environment; and tables that are not Lake tables or CTEs (so no
``FROM 'file.csv'`` replacement scans). The connection that runs the query is locked down as
well (:mod:`lakehouse.query.engine`): no local files, no extension loading, locked settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lakehouse.errors import ForbiddenSQL, QueryFailed

ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
VECTOR_SEARCH = "vector_search"  # vector_search('dataset', 'query text', k): answered by Lake, see query.py
DENIED_FUNCTIONS = frozenset({"current_setting", "getenv", "read_text", "read_blob", "which_secret"})


@dataclass
class TableRef:
    schema: str
    name: str


@dataclass
class _Walk:
    ctes: set[str] = field(default_factory=set)
    tables: list[TableRef] = field(default_factory=list)
    searches: list[tuple[str, str, int]] = field(default_factory=list)


def _vector_search(function: dict[str, Any]) -> tuple[str, str, int]:
    """The constant arguments of a ``vector_search(dataset, text, k)`` call."""
    args = function.get("children") or []
    values = [a.get("value", {}) for a in args if a.get("class") == "CONSTANT"]
    usage = "vector_search('dataset', 'query text', k) takes three constants"
    if len(args) != 3 or len(values) != 3 or any(v.get("is_null") for v in values):
        raise ForbiddenSQL(usage)
    dataset, text, k = (v.get("value") for v in values)
    if not isinstance(dataset, str) or not isinstance(text, str) or not isinstance(k, int) or k < 1:
        raise ForbiddenSQL(usage)
    return dataset, text, k


def _visit(node: Any, walk: _Walk) -> None:
    if isinstance(node, list):
        for item in node:
            _visit(item, walk)
        return
    if not isinstance(node, dict):
        return
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict):
        for entry in cte_map.get("map", []):
            walk.ctes.add(str(entry.get("key", "")).lower())
    kind = node.get("type")
    if kind == "BASE_TABLE":
        if node.get("catalog_name"):
            raise ForbiddenSQL(f"catalog-qualified names are not allowed: {node['catalog_name']}")
        walk.tables.append(TableRef(str(node.get("schema_name") or ""), str(node.get("table_name") or "")))
    elif kind == "TABLE_FUNCTION":
        function = node.get("function") or {}
        name = str(function.get("function_name", "")).lower()
        if name == VECTOR_SEARCH and not function.get("schema"):
            walk.searches.append(_vector_search(function))
        elif name not in ALLOWED_TABLE_FUNCTIONS:
            raise ForbiddenSQL(f"table function {name}() is not allowed: queries read Lake tables only")
    elif node.get("class") == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        if name in DENIED_FUNCTIONS:
            raise ForbiddenSQL(f"function {name}() is not allowed")
    for value in node.values():
        if isinstance(value, dict | list):
            _visit(value, walk)


def check_sql(sql: str, namespace: str) -> list[str]:
    """Check ``sql`` and return the Lake table names it reads (unqualified, in first-seen order)."""
    return inspect_sql(sql, namespace)[0]


def inspect_sql(sql: str, namespace: str) -> tuple[list[str], list[tuple[str, str, int]]]:
    """Check ``sql``; the Lake tables it reads and its ``vector_search(dataset, text, k)`` calls.

    Raises:
        ForbiddenSQL: the statement is not a single read-only query over Lake tables.
        QueryFailed: the statement does not parse.
    """
    import duckdb

    if not sql or not sql.strip():
        raise ForbiddenSQL("empty query")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryFailed(f"syntax error: {e}") from e
    if len(statements) != 1:
        raise ForbiddenSQL(f"exactly one statement is allowed, found {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise ForbiddenSQL(f"only SELECT queries are allowed, not {statements[0].type.name}")
    con = duckdb.connect()
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()
    if tree.get("error"):
        raise ForbiddenSQL(f"only plain SELECT queries are allowed ({tree.get('error_message')})")
    walk = _Walk()
    _visit(tree["statements"], walk)
    names: list[str] = []
    for ref in walk.tables:
        schema, name = ref.schema.lower(), ref.name
        if not schema and name.lower() in walk.ctes:
            continue
        if schema not in ("", namespace.lower()) or "." in name or "/" in name:
            shown = f"{ref.schema}.{name}" if ref.schema else name
            raise ForbiddenSQL(f"{shown!r} is not a Lake table: query {namespace}.<table>")
        if name not in names:
            names.append(name)
    return names, walk.searches
