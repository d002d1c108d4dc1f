"""The gate in front of user SQL: one read-only SELECT over Lake's views, computed by allowed
functions, and nothing else.

Two checks, both on what DuckDB itself makes of the statement, never on its text:

1. :func:`parse` (before anything is loaded): DuckDB's parser must see exactly one SELECT, within
   the length and nesting limits (checked on the text before any parser recurses), calling only
   functions of an allow-list (:data:`ALLOWED_FUNCTIONS`, :data:`ALLOWED_TABLE_FUNCTIONS`) plus
   Lake's ``vector_search(dataset, text, k)``. It returns the Lake table names the statement may
   read, for the engine to bind (a name that turns out to be a CTE costs a needless bind, never a
   wrong answer).
2. :func:`check_plan` (after the request's views are bound): the statement is bound and planned
   by DuckDB on the request's connection (``EXPLAIN (FORMAT JSON)``), so every name is resolved
   in its own scope exactly as it will run. Every scan in the plan must be a scan of the
   request's Arrow views or of an allowed generator: no file, no system table or view
   (``duckdb_settings``, ``pg_settings``, ``information_schema``), no replacement scan.

The connection itself (:func:`lakehouse.query.scan.session`) can open nothing anyway: the gate is
the first line, not the only one.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.errors import ForbiddenSQL, QueryFailed, QueryLimitExceeded

if TYPE_CHECKING:
    import duckdb

MAX_K = 1000  # most rows one vector_search() or POST /search returns
VECTOR_SEARCH = "vector_search"  # vector_search('dataset', 'query text', k): answered by Lake
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
ALLOWED_FUNCTIONS = frozenset(
    """
    abs acos acosh add age array_aggr array_aggregate array_append array_apply array_cat array_concat
    array_contains array_cosine_distance array_cosine_similarity array_cross_product array_distance
    array_distinct array_dot_product array_extract array_filter array_grade_up array_has array_has_all
    array_has_any array_indexof array_inner_product array_intersect array_length array_pop_back
    array_pop_front array_position array_prepend array_push_back array_push_front array_reduce
    array_resize array_reverse array_reverse_sort array_select array_slice array_sort array_to_json
    array_to_string array_transform array_unique array_value array_where array_zip ascii asin asinh
    atan atan2 atanh bar base64 bin bit_count bit_length bit_position bitstring cardinality cbrt ceil
    ceiling century char_length character_length chr coalesce combine concat concat_ws contains cos
    cosh cot current_date current_localtime current_localtimestamp date_add date_diff date_part
    date_sub date_trunc datediff datepart datesub datetrunc day dayname dayofmonth dayofweek
    dayofyear days_in_month decade decode degrees divide editdist3 element_at encode ends_with epoch
    epoch_ms epoch_ns epoch_us equi_width_bins era even exp factorial fdiv filter flatten floor fmod
    format format_bytes from_base64 from_binary from_hex from_json from_json_strict gamma gcd
    gen_random_uuid generate_series get_bit get_current_time get_current_timestamp greatest
    greatest_common_divisor hamming hash hex hour ifnull ilike_escape instr isfinite isinf isnan isodow
    isoyear jaccard jaro_similarity jaro_winkler_similarity json_array json_array_length
    json_contains json_exists json_extract json_extract_path json_extract_path_text
    json_extract_string json_keys json_merge_patch json_object json_pretty json_quote json_structure
    json_transform json_transform_strict json_type json_valid json_value julian last_day lcase lcm
    least least_common_multiple left left_grapheme len length length_grapheme levenshtein lgamma
    like_escape list_aggr list_aggregate list_any_value list_append list_apply list_avg list_cat
    list_concat list_contains list_cosine_distance list_cosine_similarity list_count list_distance
    list_distinct list_dot_product list_element list_extract list_filter list_first list_grade_up
    list_has list_has_all list_has_any list_indexof list_inner_product list_intersect list_last
    list_max list_median list_min list_mode list_negative_dot_product list_negative_inner_product
    list_pack list_position list_prepend list_product list_reduce list_resize list_reverse
    list_reverse_sort list_select list_slice list_sort list_stddev_pop list_stddev_samp
    list_string_agg list_sum list_transform list_unique list_value list_var_pop list_var_samp
    list_where list_zip ln log log10 log2 lower lpad ltrim make_date make_time make_timestamp
    make_timestamp_ms make_timestamp_ns make_timestamptz map map_concat map_contains
    map_contains_entry map_contains_value map_entries map_extract map_extract_value
    map_from_entries map_keys map_values md5 md5_number microsecond millennium millisecond minute
    mismatches mod month monthname multiply nanosecond nextafter nfc_normalize normalized_interval
    not_ilike_escape not_like_escape now nullif octet_length ord pi position pow power prefix printf
    quarter radians random reduce regexp_escape regexp_extract regexp_extract_all regexp_full_match
    regexp_matches regexp_replace regexp_split_to_array repeat replace reverse right right_grapheme
    round round_even roundbankers row sha1 sha256 sign signbit sin sinh split split_part sqrt
    starts_with str_split str_split_regex strftime string_split string_split_regex string_to_array
    strip_accents strlen strpos strptime struct_concat struct_contains struct_extract
    struct_extract_at struct_has struct_indexof struct_insert struct_keys struct_pack
    struct_position struct_update struct_values substr substring substring_grapheme subtract suffix
    tan tanh time_bucket timezone timezone_hour timezone_minute to_base to_base64 to_binary
    to_centuries to_days to_decades to_hex to_hours to_json to_microseconds to_millennia
    to_milliseconds to_minutes to_months to_quarters to_seconds to_timestamp to_weeks to_years today
    translate trim trunc try_strptime typeof ucase unbin unhex unicode union_extract union_tag
    union_value unnest upper url_decode url_encode uuid uuidv4 uuidv7 week weekday weekofyear xor year
    yearweek
    any_value approx_count_distinct approx_quantile approx_top_k arbitrary arg_max arg_max_null
    arg_max_nulls_last arg_min arg_min_null arg_min_nulls_last argmax argmin array_agg avg bit_and
    bit_or bit_xor bitstring_agg bool_and bool_or corr count count_if count_star countif covar_pop
    covar_samp cume_dist dense_rank entropy favg fill first first_value fsum geomean
    geometric_mean group_concat histogram histogram_exact json_group_array json_group_object
    json_group_structure kahan_sum kurtosis kurtosis_pop lag last last_value lead list listagg mad max
    max_by mean median min min_by mode nth_value ntile percent_rank product quantile quantile_cont
    quantile_disc rank rank_dense regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope
    regr_sxx regr_sxy regr_syy reservoir_quantile row_number sem skewness stddev stddev_pop
    stddev_samp string_agg sum sum_no_overflow sumkahan var_pop var_samp variance wavg weighted_avg
    """.split()
)
# Plan operators that compute over rows already read; scans are checked by their function.
ALLOWED_OPERATORS = frozenset(
    """
    PROJECTION FILTER HASH_GROUP_BY PERFECT_HASH_GROUP_BY UNGROUPED_AGGREGATE SIMPLE_AGGREGATE
    STREAMING_WINDOW WINDOW HASH_JOIN NESTED_LOOP_JOIN PIECEWISE_MERGE_JOIN BLOCKWISE_NL_JOIN
    CROSS_PRODUCT IE_JOIN ASOF_JOIN POSITIONAL_JOIN LEFT_DELIM_JOIN RIGHT_DELIM_JOIN DELIM_JOIN
    ORDER_BY TOP_N LIMIT STREAMING_LIMIT LIMIT_PERCENT STREAMING_SAMPLE RESERVOIR_SAMPLE
    UNION UNION_ALL CTE CTE_SCAN REC_CTE REC_CTE_SCAN RECURSIVE_CTE RECURSIVE_CTE_SCAN
    RECURSIVE_RECURRING_CTE_SCAN RECURSIVE_KEY_CTE
    DELIM_SCAN DUMMY_SCAN EMPTY_RESULT COLUMN_DATA_SCAN CHUNK_SCAN EXPRESSION_SCAN UNNEST PIVOT
    POSITIONAL_SCAN
    HASH_DISTINCT DISTINCT EXCEPT INTERSECT PARTITIONED_AGGREGATE MATERIALIZED_CTE INOUT_FUNCTION
    EXPLAIN EXPLAIN_ANALYZE RESULT_COLLECTOR
    """.split()
)
ALLOWED_SCANS = frozenset({"ARROW_SCAN", "ARROW_SCAN_DUMB", "RANGE", "GENERATE_SERIES", "UNNEST"})
_OPERATOR_CHARS = frozenset("+-*/%^|&~!<>=@#?:.")
_PATH_CHARS = frozenset("/\\:.*?")


_parser: duckdb.DuckDBPyConnection | None = None  # one per process: it only parses
_parser_lock = threading.Lock()


@dataclass
class Statement:
    """A statement that passed :func:`parse`: the Lake names it may read, its vector searches."""

    sql: str
    names: list[tuple[str, str]] = field(default_factory=list)  # (schema or "", name)
    searches: list[tuple[str, str, int]] = field(default_factory=list)


def check_shape(sql: str, max_chars: int, max_nesting: int) -> None:
    """Length and bracket nesting of the text (outside quotes and comments), before parsing.

    Raises:
        QueryLimitExceeded: longer than ``max_chars`` or nested deeper than ``max_nesting``.
    """
    if len(sql) > max_chars:
        raise QueryLimitExceeded(f"the statement has {len(sql)} characters; the limit is {max_chars}")
    depth = deepest = 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = sql.find(ch, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == ch:  # doubled quote
                end = sql.find(ch, end + 2)
            i = n if end == -1 else end + 1
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
            continue
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
        i += 1
    if deepest > max_nesting:
        raise QueryLimitExceeded(
            f"the statement nests brackets {deepest} deep; the limit is {max_nesting} (query_max_nesting)"
        )


def _vector_search(function: dict[str, Any]) -> tuple[str, str, int]:
    """The constant arguments of a ``vector_search(dataset, text, k)`` call."""
    args = function.get("children") or []
    values = [a.get("value", {}) for a in args if a.get("class") == "CONSTANT"]
    usage = f"vector_search('dataset', 'query text', k) takes three constants, k from 1 to {MAX_K}"
    if len(args) != 3 or len(values) != 3 or any(v.get("is_null") for v in values):
        raise ForbiddenSQL(usage)
    dataset, text, k = (v.get("value") for v in values)
    if not isinstance(dataset, str) or not isinstance(text, str) or not isinstance(k, int):
        raise ForbiddenSQL(usage)
    if not 1 <= k <= MAX_K:
        raise QueryLimitExceeded(usage)
    return dataset, text, k


def _visit(node: Any, found: Statement) -> None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "BASE_TABLE":
            if item.get("catalog_name"):
                raise ForbiddenSQL("catalog-qualified names are not allowed: query <namespace>.<table>")
            schema, name = str(item.get("schema_name") or ""), str(item.get("table_name") or "")
            if _PATH_CHARS & set(name) or name.startswith("~"):
                raise ForbiddenSQL(f"{name!r} is not a Lake table: queries read Lake tables only")
            found.names.append((schema, name))
        elif kind == "TABLE_FUNCTION":
            function = item.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if function.get("schema") or function.get("catalog"):
                raise ForbiddenSQL(f"table function {name}() is not allowed")
            if name == VECTOR_SEARCH:
                found.searches.append(_vector_search(function))
            elif name not in ALLOWED_TABLE_FUNCTIONS:
                raise ForbiddenSQL(f"table function {name}() is not allowed: queries read Lake tables only")
            stack.extend(function.get("children") or [])
            stack.extend(v for k, v in item.items() if k != "function" and isinstance(v, dict | list))
            continue
        if item.get("class") in ("FUNCTION", "WINDOW") and "function_name" in item:
            name = str(item.get("function_name", "")).lower()
            schema = str(item.get("schema") or "")
            if item.get("catalog") or schema not in ("", "main"):
                raise ForbiddenSQL(f"function {schema}.{name}() is not allowed")
            if name not in ALLOWED_FUNCTIONS and not set(name) <= _OPERATOR_CHARS:
                raise ForbiddenSQL(f"function {name}() is not allowed")
        stack.extend(v for v in item.values() if isinstance(v, dict | list))


def parse(sql: str, max_chars: int, max_nesting: int) -> Statement:
    """Check ``sql`` as text and parse tree; the names it may read and its vector searches.

    Raises:
        ForbiddenSQL: not a single SELECT, or a function outside the allow-list.
        QueryLimitExceeded: too long or nested too deep.
        QueryFailed: the statement does not parse.
    """
    import duckdb

    if not sql or not sql.strip():
        raise ForbiddenSQL("empty query")
    check_shape(sql, max_chars, max_nesting)
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryFailed(f"syntax error: {e}") from e
    if len(statements) != 1:
        raise ForbiddenSQL(f"exactly one statement is allowed, found {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise ForbiddenSQL(f"only SELECT queries are allowed, not {statements[0].type.name}")
    with _parser_lock:
        global _parser
        if _parser is None:
            _parser = duckdb.connect(config={"enable_external_access": False, "lock_configuration": True})
        text = _parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]  # type: ignore[index]
    try:
        tree = json.loads(text)
    except RecursionError as e:
        raise QueryLimitExceeded(f"the statement nests too deep; the limit is {max_nesting}") from e
    if tree.get("error"):
        raise ForbiddenSQL(f"only plain SELECT queries are allowed ({tree.get('error_message')})")
    found = Statement(sql)
    _visit(tree["statements"], found)
    return found


def lake_names(statement: Statement, namespace: str) -> list[str]:
    """Unqualified names of the statement's references that can be Lake tables, first seen first.

    ``<namespace>.<t>`` and bare ``t``; another schema (``information_schema``, ``pg_catalog``)
    is refused. A bare name may still be a CTE or a system view: the plan check decides.
    """
    names: list[str] = []
    for schema, name in statement.names:
        if schema.lower() not in ("", namespace.lower()):
            raise ForbiddenSQL(f"{schema}.{name} is not a Lake table: query {namespace}.<table>")
        if name not in names:
            names.append(name)
    return names


def check_plan(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Bind and plan ``sql`` on the request's connection; refuse any scan but the request's views.

    Raises:
        ForbiddenSQL: the plan reads something else (a file, a system table, a replacement scan).
        QueryFailed: the statement does not bind (unknown column, type error).
    """
    import duckdb

    try:
        rows = con.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()
    except duckdb.PermissionException as e:
        raise ForbiddenSQL("queries read Lake tables only") from e
    except duckdb.Error as e:
        raise QueryFailed(str(e).strip()) from e
    allowed_steps(rows)


def allowed_steps(rows: list[Any], scans: frozenset[str] = frozenset()) -> int:
    """Walk a plan (the rows of ``EXPLAIN (FORMAT JSON)``) and refuse any step but the allowed
    operators and scans; ``scans`` names further scans allowed (and counted). Returns how many
    of those the plan holds.

    Raises:
        ForbiddenSQL: a step that is not allowed.
    """
    counted = 0
    for row in rows:
        stack: list[Any] = [json.loads(row[-1])]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
                continue
            if not isinstance(item, dict):
                continue
            operator = str(item.get("name", "")).strip().upper()
            function = str((item.get("extra_info") or {}).get("Function", "")).strip().upper()
            if (function or operator) in scans:
                counted += 1
            elif function:
                if function not in ALLOWED_SCANS:
                    raise ForbiddenSQL(f"{function.lower()} is not allowed: queries read Lake tables only")
            elif operator and operator not in ALLOWED_OPERATORS and operator not in ALLOWED_SCANS:
                raise ForbiddenSQL(f"plan step {operator} is not allowed: queries read Lake tables only")
            stack.extend(item.get("children") or [])
    return counted
