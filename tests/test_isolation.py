"""Queries that cannot leak: the hostile suite.

Every statement here does something feared on a plain DuckDB connection of the kind Lake used to
run user SQL on (Lake's extensions, an S3 secret, the tenant's table as a filtered
``iceberg_scan`` view, ``allowed_directories`` on the warehouse): it reads another tenant's rows
from the table's Parquet files, the API-key document, the audit spool, a raw upload in the
landing bucket, ``/etc/passwd`` or DuckDB's settings. That is checked first (so each refusal is
meaningful), then the same statement goes through ``POST /sql``, ``POST /search``'s filter,
``vector_search()``, ``/timeseries``, ``/geo`` and ``/tables/{name}/changes`` with a tenant key,
and must come back a 4xx or the tenant's own rows. Finally the gate is replaced by one that
passes everything, and the engine alone still keeps every secret.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import duckdb
import pytest

from lake.client import LakeClient
from lake.local.serve import deliver
from lakehouse.config import Settings, load_settings
from lakehouse.storage import s3_client
from tests.conftest import native_runs

pytestmark = pytest.mark.integration

CONTRACT = """
name: {name}
event_time: ts
tenant_column: org
columns:
  ts:     {type: timestamp, required: true}
  org:    {type: string, required: true}
  secret: {type: string}
  amount: {type: double}
  lat:    {type: double}
  lon:    {type: double}
vectors:
  embedding: emb
  embedder: supplied
  dim: 4
  metric: cosine
"""
GLOBEX_SECRET = "globex-only-7f3a"
LANDING_SECRET = "raw-upload-9c1e"
LOCAL_SECRET = "local-file-4b2d"


def _rows(org: str, secret: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "ts": f"2025-0{1 + i % 3}-0{1 + i}T00:00:00Z",
            "org": org,
            "secret": secret,
            "amount": float(i),
            "lat": 48.85,
            "lon": 2.35,
            "emb": [float(i + 1), 1.0, 0.5, 0.25],
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def world(stack: dict[str, Any], make_key: Callable[..., str]) -> Iterator[dict[str, Any]]:
    """A tenant table with vectors (acme's and globex's rows), a raw upload left in the landing
    bucket, an audit spool object, keys for acme and for an admin."""
    settings = load_settings()
    name = f"t_{uuid.uuid4().hex[:10]}"
    (settings.contracts_dir / f"{name}.yaml").write_text(CONTRACT.replace("{name}", name))
    s3 = s3_client(settings)
    body = _rows("acme", "acme-own", 3) + _rows("globex", GLOBEX_SECRET, 3)
    key = f"{name}/a.ndjson"
    s3.put_object(
        Bucket=settings.landing_bucket, Key=key, Body="\n".join(json.dumps(r) for r in body).encode()
    )
    report = deliver(settings, settings.landing_bucket, key)["reports"][0]
    raw = f"{name}/raw.csv"
    s3.put_object(Bucket=settings.landing_bucket, Key=raw, Body=f"x\n{LANDING_SECRET}\n".encode())
    admin = make_key("admin")
    local = settings.home / "local-secret.csv"
    local.write_text(f"x\n{LOCAL_SECRET}\n")
    from lakehouse.access import audit

    audit.record("someone", "POST /sql", tenant="globex", target=GLOBEX_SECRET)
    audit.flush(settings)
    yield {
        "name": name,
        "snapshot_id": report["snapshot_id"],
        "raw": f"s3://{settings.landing_bucket}/{raw}",
        "local": str(local),
        "acme": make_key("read", tenant="acme"),
        "admin": admin,
        "settings": settings,
    }


def _paths(world: dict[str, Any]) -> dict[str, str]:
    settings: Settings = world["settings"]
    wh, name = settings.warehouse_bucket, world["name"]
    landing_key = world["raw"].removeprefix(f"s3://{settings.landing_bucket}/")
    return {
        "data": f"s3://{wh}/{settings.namespace}/{name}/data/**/*.parquet",
        "keys": f"s3://{wh}/_lake/api-keys.json",
        "spool": f"s3://{wh}/_lake/audit-spool/*.parquet",
        "dotdot": f"s3://{wh}/../{settings.landing_bucket}/{landing_key}",
        "landing": world["raw"],
        "local": world["local"],
    }


# What a leak looks like in an answer, per target.
LEAKS = {
    "data": GLOBEX_SECRET,
    "keys": "sha256",
    "spool": GLOBEX_SECRET,
    "dotdot": LANDING_SECRET,
    "landing": LANDING_SECRET,
    "local": LOCAL_SECRET,
    "settings": "enable_external_access",
}


def hostile(world: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(shape, target, statement): every scoping trick against every target."""
    t = f"lake.{world['name']}"
    out: list[tuple[str, str, str]] = []
    for target, path in _paths(world).items():
        p = json.dumps(path)  # a quoted identifier: DuckDB reads it as a file (a replacement scan)
        out += [
            ("plain", target, f"SELECT * FROM {p}"),
            (
                "cte in a subquery",
                target,
                f"SELECT y.* FROM (WITH {p} AS (SELECT 1 AS a) SELECT * FROM {p}) x, {p} y",
            ),
            (
                "lateral",
                target,
                f"SELECT y.* FROM {t} a, LATERAL (WITH {p} AS (SELECT 1 AS z) SELECT z FROM {p}) l, {p} y",
            ),
            ("scalar subquery", target, f"SELECT (WITH {p} AS (SELECT 1) SELECT 1) AS c, y.* FROM {p} y"),
            (
                "union",
                target,
                f"SELECT * FROM (WITH {p} AS (SELECT 1) SELECT 1) UNION ALL BY NAME SELECT * FROM {p}",
            ),
            ("nested cte", target, f"WITH a AS (WITH {p} AS (SELECT 1) SELECT * FROM {p}) SELECT * FROM {p}"),
            (
                "recursive cte",
                target,
                f"SELECT y.* FROM (WITH RECURSIVE {p}(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM {p} "
                f"WHERE n < 2) SELECT * FROM {p}) r, {p} y",
            ),
        ]
    for system in ("pg_settings", "duckdb_settings"):
        out += [
            ("system name", "settings", f"SELECT * FROM {system}"),
            (
                "system name in cte scope",
                "settings",
                f"SELECT s.* FROM (WITH {system} AS (SELECT 1) SELECT 1) x, {system} s",
            ),
        ]
    return out


def plain_connection(world: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """The kind of connection Lake used to run user SQL on, as the acme key saw it."""
    from lakehouse.catalog import get_catalog
    from lakehouse.query.engine import connect

    settings: Settings = world["settings"]
    table = get_catalog(settings).load_table(f"lake.{world['name']}")
    con = connect(settings)
    con.execute("CREATE SCHEMA lake")
    con.execute(
        f"CREATE VIEW lake.{world['name']} AS SELECT * FROM iceberg_scan('{table.metadata_location}') "
        "WHERE org = 'acme'"
    )
    return con


def leaked(answer: Any, target: str) -> bool:
    return LEAKS[target] in json.dumps(answer, default=str)


@pytest.fixture(scope="module")
def feared(world: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The hostile statements that do the feared thing on a plain connection (most of them)."""
    con = plain_connection(world)
    works = []
    for shape, target, sql in hostile(world):
        try:
            rows = con.execute(sql).fetchall()
        except duckdb.Error:
            continue
        if leaked(rows, target):
            works.append((shape, target, sql))
    con.close()
    return works


def test_the_hostile_statements_leak_on_a_plain_connection(world: dict[str, Any], feared: list[Any]) -> None:
    shapes = {shape for shape, _, _ in feared}
    targets = {target for _, target, _ in feared}
    # Every scoping shape and every target leaks somewhere on a plain connection.
    assert shapes >= {
        "plain",
        "cte in a subquery",
        "lateral",
        "scalar subquery",
        "union",
        "nested cte",
        "recursive cte",
        "system name",
        "system name in cte scope",
    }
    assert targets >= {"data", "keys", "spool", "landing", "dotdot", "local", "settings"}, targets


def _assert_safe(response: Any, what: str) -> None:
    assert 400 <= response.status < 500, (what, response.status, response.body)
    for target in LEAKS:
        assert not leaked(response.body, target), (what, response.body)


def test_post_sql_refuses_every_hostile_statement(
    serve_url: str, world: dict[str, Any], feared: list[Any]
) -> None:
    acme = LakeClient(serve_url, key=world["acme"])
    admin = LakeClient(serve_url, key=world["admin"])
    for shape, target, sql in feared:
        _assert_safe(acme.sql(sql), f"{shape}/{target}")
        _assert_safe(admin.sql(sql), f"admin {shape}/{target}")
    # and the tenant still reads its own rows, every way it may
    own = acme.sql(f"SELECT DISTINCT org, secret FROM lake.{world['name']}")
    assert own.status == 200 and own.body["rows"] == [["acme", "acme-own"]]


def test_search_filter_refuses_every_hostile_predicate(
    serve_url: str, world: dict[str, Any], feared: list[Any]
) -> None:
    acme = LakeClient(serve_url, key=world["acme"])
    name = world["name"]
    for shape, target, sql in feared:
        for predicate in (
            f"org IN (SELECT 'acme' FROM ({sql}) q)",
            f"EXISTS ({sql})",
            f"(SELECT count(*) FROM ({sql}) q) > 0",
        ):
            response = acme.search(name, vector=[1.0, 1.0, 0.5, 0.25], k=5, filter=predicate)
            _assert_safe(response, f"filter {shape}/{target}")
    # a cast error cannot carry another tenant's value out either
    oracle = acme.search(name, vector=[1.0, 1.0, 0.5, 0.25], k=5, filter="CAST(secret AS INTEGER) > 0")
    assert oracle.status == 400 and GLOBEX_SECRET not in json.dumps(oracle.body)
    ok = acme.search(name, vector=[1.0, 1.0, 0.5, 0.25], k=10, filter="amount >= 0")
    assert ok.status == 200 and {r[ok.body["columns"].index("org")] for r in ok.body["rows"]} == {"acme"}


def test_vector_search_in_sql_refuses_hostile_company_and_bounds_k(
    serve_url: str, world: dict[str, Any], feared: list[Any]
) -> None:
    acme = LakeClient(serve_url, key=world["acme"])
    name = world["name"]
    for shape, target, sql in feared:
        wrapped = f"SELECT v.id, q.* FROM vector_search('{name}', 'x', 3) v, ({sql}) q"
        _assert_safe(acme.sql(wrapped), f"vector_search {shape}/{target}")
    too_many = acme.sql(f"SELECT * FROM vector_search('{name}', 'x', 5000)")
    assert too_many.status == 400 and "1000" in too_many.body["message"]


def test_generated_query_routes_refuse_hostile_names(serve_url: str, world: dict[str, Any]) -> None:
    acme = LakeClient(serve_url, key=world["acme"])
    admin = LakeClient(serve_url, key=world["admin"])
    name = world["name"]
    paths = _paths(world)
    names = [
        "../_lake/api-keys.json",
        "..%2f..%2fetc%2fpasswd",
        "%2e%2e/lake-landing",
        "lake//..//x",
        paths["data"],
        paths["dotdot"],
        "pg_settings",
        "duckdb_settings",
        f'{name}" UNION SELECT * FROM pg_settings --',
    ]
    names = [quote(n, safe="/%.*:") for n in names]
    for client in (acme, admin):
        for bad in names:
            for response in (
                client.timeseries(bad, "count", "1d"),
                client.geo(bad, near=(2.35, 48.85), radius_m=1000),
                client.changes(bad, 1),
            ):
                _assert_safe(response, f"name {bad}")
        for column in (f"amount) FROM {json.dumps(paths['keys'])} --", 'secret" FROM pg_settings --', "../x"):
            _assert_safe(client.timeseries(name, "sum", "1d", column=column), f"column {column}")
            _assert_safe(client.timeseries(name, "count", "1d", group_by=column), f"group_by {column}")
            _assert_safe(
                client.request(
                    "GET",
                    f"/geo/{name}",
                    query={"near": "2.35,48.85", "radius_m": "1000", "lat_column": column},
                ),
                f"lat {column}",
            )
        _assert_safe(client.changes(name, "1 OR 1=1"), "changes from")
    # A key that may not read a table learns nothing about it: not even its columns.
    reader = LakeClient(serve_url, key=world["acme"])
    for response in (
        reader.timeseries("audit", "sum", "1d", column="nope"),
        reader.request("GET", "/geo/audit", query={"near": "0,0", "radius_m": "1", "lat_column": "nope"}),
        reader.sql("SELECT * FROM lake.audit"),
        reader.changes(name, world["snapshot_id"]),
    ):
        assert response.status == 403 and response.body == {"error": "Forbidden"}
    rollup = acme.timeseries(name, "count", "1mo")
    assert rollup.status == 200 and sum(r[-1] for r in rollup.body["rows"]) == 3


def test_plans_shown_to_tenant_keys_carry_no_object_paths(serve_url: str, world: dict[str, Any]) -> None:
    acme = LakeClient(serve_url, key=world["acme"])
    body = acme.sql(f"SELECT count(*) FROM lake.{world['name']}", explain=True).body
    assert body["rows"] == [[3]] and body["plan"]
    assert "s3://" not in body["plan"] and ".parquet" not in body["plan"] and "metadata" not in body["plan"]


def _gate_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the gate with one that passes everything (names it binds: every table reference)."""
    from lakehouse.query import engine, sqlguard

    def parse(sql: str, max_chars: int, max_nesting: int) -> sqlguard.Statement:
        refs = []
        try:
            found = duckdb.get_table_names(sql, qualified=True)
        except duckdb.Error:
            found = set()
        for qualified in found:
            parts = [p.strip('"') for p in qualified.split(".")]
            refs.append((parts[-2] if len(parts) > 1 else "", parts[-1]))
        return sqlguard.Statement(sql, refs, [])

    monkeypatch.setattr(engine, "parse", parse)
    monkeypatch.setattr(engine, "lake_names", lambda statement, namespace: [n for _, n in statement.names])
    monkeypatch.setattr(engine, "check_plan", lambda con, sql: None)


def test_with_the_gate_disabled_the_engine_alone_keeps_every_secret(
    world: dict[str, Any], feared: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import os

    from lakehouse.access.auth import Principal
    from lakehouse.errors import LakeError
    from lakehouse.query.engine import run_sql

    _gate_open(monkeypatch)
    settings: Settings = world["settings"].model_copy(update={"query_cache": False})
    acme = Principal("acme-key", "read", "acme")
    admin = Principal("admin-key", "admin")
    extra = [
        ("settings", "SELECT * FROM duckdb_secrets(redact := false)"),
        ("settings", "SELECT * FROM duckdb_settings()"),
        ("passwd", "SELECT * FROM read_text('/etc/passwd')"),
        ("data", f"SELECT * FROM read_parquet('{_paths(world)['data']}')"),
        ("keys", f"SELECT * FROM read_json('{_paths(world)['keys']}')"),
        ("landing", f"SELECT * FROM read_csv('{world['raw']}')"),
        ("settings", "SELECT 1; SET enable_external_access = true"),
        ("settings", f"SELECT 1; COPY (SELECT 1) TO '{tmp_path}/x.csv'"),
        ("settings", f"SELECT 1; ATTACH '{tmp_path}/x.db' AS x"),
    ]
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-canary-5e8f")  # an environment value to look for
    secrets = [GLOBEX_SECRET, "sha256", LANDING_SECRET, LOCAL_SECRET, "root:", "env-canary-5e8f"]
    secrets.append(os.environ["LAKE_HOME"])
    for who in (acme, admin):
        for _, sql in [(t, s) for _, t, s in feared] + extra:
            try:
                text = json.dumps(run_sql(settings, sql, principal=who).to_dict(), default=str)
            except LakeError as e:
                assert e.http_status < 500, (sql, e)
                text = str(e)
            for secret in secrets:
                assert secret not in text, (who.id, sql, secret, text[:300])
    assert list(tmp_path.iterdir()) == []
    # The tenant still reads its own rows, and only those, with no gate at all.
    mine = run_sql(settings, f"SELECT DISTINCT org FROM lake.{world['name']}", principal=acme)
    assert mine.rows == [["acme"]]
    sneaky = run_sql(
        settings, f"SELECT DISTINCT org FROM {world['name']} WHERE org <> 'acme' OR true", principal=acme
    )
    assert sneaky.rows == [["acme"]]


def test_with_the_gate_disabled_a_native_read_opens_only_the_requests_own_copies(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key bound to no tenant reads cached files with DuckDB's own reader on a connection
    allowed exactly those copies: with the gate (and the native plan check) disabled, a copy of
    another object next to them, the folder, a ``..`` way out and any other file stay closed,
    and nothing names a local path. A tenant key never reads that way."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakehouse.access.auth import Principal
    from lakehouse.catalog import get_catalog
    from lakehouse.errors import ForbiddenSQL, LakeError
    from lakehouse.query import engine, scan, sqlguard
    from lakehouse.query.files import file_cache

    name = world["name"]
    _gate_open(monkeypatch)
    # Every statement names the table (DuckDB's own name lookup binds the file functions).
    monkeypatch.setattr(engine, "parse", lambda sql, *limits: sqlguard.Statement(sql, [("lake", name)], []))
    monkeypatch.setattr(engine, "check_native_plan", lambda con, sql: 0)
    natives = native_runs(monkeypatch)
    settings: Settings = world["settings"].model_copy(update={"query_cache": False})
    admin = Principal("admin-key", "admin")
    acme = Principal("acme-key", "read", "acme")
    t = f"lake.{world['name']}"
    engine.run_sql(settings, f"SELECT * FROM {t}", principal=admin)  # every file into the cache
    table = scan.current_table(get_catalog(settings), settings, world["name"])
    files = scan.plan(table, table.current_snapshot().snapshot_id).files
    cache = file_cache(settings)
    assert cache is not None
    copies = [cache.lookup(f"s3://{f.path}") for f in files]
    assert copies and all(c is not None for c in copies)
    own = str(copies[0])
    neighbour = cache.folder / ("0" * 64 + ".bin")  # a copy of some other object
    pq.write_table(pa.table({"secret": [GLOBEX_SECRET]}), neighbour)

    natives.clear()
    whole = engine.run_sql(settings, f"SELECT org, count(*) FROM {t} GROUP BY 1 ORDER BY 1", principal=admin)
    assert natives and whole.rows == [["acme", 3], ["globex", 3]]
    refused = [
        f"SELECT secret FROM read_parquet('{neighbour}')",
        f"SELECT secret FROM read_parquet('{own}/../{neighbour.name}')",
        f"SELECT secret FROM read_parquet('{cache.folder}/*.bin')",
        f"SELECT * FROM glob('{cache.folder}/*')",
        f"SELECT content FROM read_text('{world['local']}')",
        "SELECT content FROM read_text('/etc/passwd')",
    ]
    for hostile_sql in refused:
        natives.clear()
        with pytest.raises(ForbiddenSQL):
            engine.run_sql(
                settings, f"SELECT count(*)::VARCHAR FROM {t} UNION ALL {hostile_sql}", principal=admin
            )
        assert natives, hostile_sql  # refused by DuckDB on the native connection itself
    natives.clear()
    try:
        engine.run_sql(settings, f"SELECT filename FROM {t}", principal=admin)
    except LakeError as e:
        assert e.http_status < 500 and str(cache.folder) not in str(e) and "file-cache" not in str(e)
    else:
        raise AssertionError("a native view exposes no file name")
    assert natives
    # A tenant key reads through the Arrow scan with its row filter, even over cached files.
    natives.clear()
    mine = engine.run_sql(
        settings, f"SELECT DISTINCT org FROM {t} WHERE org <> 'acme' OR true", principal=acme
    )
    assert mine.rows == [["acme"]] and not natives
    with pytest.raises(LakeError):
        engine.run_sql(settings, f"SELECT * FROM read_parquet('{own}')", principal=acme)
    neighbour.unlink()
