"""Vectors beside the tables, on the real local stack: Lance rows keyed by the table's row ids,
tied to Iceberg snapshots, searched by vector, text or both, and joined to the table in SQL."""

from __future__ import annotations

import json
import multiprocessing as mp
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest

from lake.client import LakeClient
from lake.local.serve import deliver
from lakehouse.catalog import get_catalog
from lakehouse.config import Settings, load_settings
from lakehouse.errors import VectorWriteFailed
from lakehouse.maintenance import MaintenanceOptions, run_maintenance
from lakehouse.storage import s3_client
from lakehouse.vectors.store import LANCE_VERSION, TAG_PREFIX, open_table

pytestmark = pytest.mark.integration

DIM = 8
SUPPLIED = """
name: {name}
event_time: ts
columns:
  ts:    {type: timestamp, required: true}
  title: {type: string}
  lang:  {type: string}
vectors:
  embedding: emb
  embedder: supplied
  dim: 8
  metric: cosine
  index_min_rows: 300
"""

TEXT = """
name: {name}
event_time: ts
columns:
  ts:   {type: timestamp, required: true}
  body: {type: string, required: true}
  kind: {type: string}
vectors:
  text: body
  embedder: minilm
"""


def _vec(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(x), 6) for x in rng.normal(size=DIM)]


def _ndjson(rows: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


def _rows(start: int, n: int, lang: str = "en") -> list[dict[str, Any]]:
    return [
        {
            "ts": f"2026-0{1 + i % 3}-1{i % 9}T10:00:00Z",
            "title": f"doc {start + i}",
            "lang": lang,
            "emb": _vec(start + i),
        }
        for i in range(n)
    ]


def _table_ids(settings: Settings, name: str, snapshot_id: int | None = None) -> set[str]:
    table = get_catalog(settings).load_table(f"{settings.namespace}.{name}")
    scan = table.scan(selected_fields=("_row_id",), snapshot_id=snapshot_id)
    return set(scan.to_arrow()["_row_id"].to_pylist())


def _lance_ids(settings: Settings, name: str) -> list[str]:
    from lakehouse.contracts.model import load_contract

    lance = open_table(settings, load_contract(settings, name))
    assert lance is not None
    return list(lance.to_arrow()["_row_id"].to_pylist())


def test_supplied_vectors_share_the_tables_row_ids_and_bad_vectors_are_quarantined(
    settings: Settings,
    dataset: Callable[[str], str],
    upload: Callable[..., dict[str, Any]],
    client: LakeClient,
) -> None:
    name = dataset(SUPPLIED)
    rows = _rows(0, 6)
    rows[2]["emb"] = [1.0, 2.0]  # wrong length
    rows[4]["emb"] = "not a vector"
    del rows[5]["emb"]
    report = upload(name, "a.ndjson", _ndjson(rows))
    assert report["rows_accepted"] == 3 and report["rows_quarantined"] == 3
    assert report["vectors_written"] == 3
    table_ids = _table_ids(settings, name)
    lance_ids = _lance_ids(settings, name)
    assert len(table_ids) == 3 and sorted(lance_ids) == sorted(table_ids)

    quarantined = client.quarantine(name).body["rows"]
    reasons = {r["row_number"]: (r["column"], r["rule"], r["reason"]) for r in quarantined}
    assert reasons[3] == ("emb", "vector", "emb: has 2 numbers, the contract says dim 8")
    assert reasons[5] == ("emb", "vector", "emb: not a list of numbers")
    assert reasons[6] == ("emb", "vector", "emb: no vector")

    # The snapshot records the Lance version, and that version is tagged with the snapshot.
    table = get_catalog(settings).load_table(f"{settings.namespace}.{name}")
    snap = table.current_snapshot()
    assert snap is not None and snap.summary is not None
    version = int(snap.summary[LANCE_VERSION])
    from lakehouse.contracts.model import load_contract

    lance = open_table(settings, load_contract(settings, name))
    assert lance is not None
    assert lance.tags.list()[f"{TAG_PREFIX}{snap.snapshot_id}"]["version"] == version

    # Redelivering the object adds nothing, to the table or to Lance.
    again = deliver(settings, settings.landing_bucket, f"{name}/a.ndjson")["reports"][0]
    assert again["duplicate"] is True
    assert sorted(_lance_ids(settings, name)) == sorted(table_ids)


def test_search_as_of_an_older_snapshot_hides_newer_rows(
    settings: Settings,
    dataset: Callable[[str], str],
    upload: Callable[..., dict[str, Any]],
    client: LakeClient,
) -> None:
    name = dataset(SUPPLIED)
    first = upload(name, "first.ndjson", _ndjson(_rows(0, 5)))
    upload(name, "second.ndjson", _ndjson(_rows(100, 5)))
    query = _vec(102)  # exactly a row of the second file

    now = client.search(name, vector=query, k=3)
    assert now.ok, now.body
    titles = [r[now.body["columns"].index("title")] for r in now.body["rows"]]
    assert titles[0] == "doc 102"
    assert now.body["rows"][0][now.body["columns"].index("_score")] == pytest.approx(1.0, abs=1e-5)

    before = client.search(name, vector=query, k=10, as_of=first["snapshot_id"])
    assert before.ok, before.body
    titles = {r[before.body["columns"].index("title")] for r in before.body["rows"]}
    assert titles == {f"doc {i}" for i in range(5)}
    assert before.body["snapshot_id"] == first["snapshot_id"]
    assert before.body["lance_version"] < now.body["lance_version"]


def test_a_lance_write_failure_leaves_no_table_commit_and_the_retry_completes(
    settings: Settings, dataset: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lancedb.table import LanceTable

    name = dataset(SUPPLIED)
    key = f"{name}/f.ndjson"
    s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=_ndjson(_rows(0, 4)))

    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise OSError("connection reset by the object store")

    with monkeypatch.context() as m:
        m.setattr(LanceTable, "add", broken)
        with pytest.raises(VectorWriteFailed) as caught:
            deliver(settings, settings.landing_bucket, key)
    assert caught.value.terminal is False  # retried, not parked
    table = get_catalog(settings).load_table(f"{settings.namespace}.{name}")
    assert table.current_snapshot() is None

    report = deliver(settings, settings.landing_bucket, key)["reports"][0]
    assert report["rows_accepted"] == 4 and report["vectors_written"] == 4
    assert sorted(_lance_ids(settings, name)) == sorted(_table_ids(settings, name))


def test_filters_and_bad_requests(
    settings: Settings,
    dataset: Callable[[str], str],
    upload: Callable[..., dict[str, Any]],
    client: LakeClient,
) -> None:
    name = dataset(SUPPLIED)
    upload(name, "en.ndjson", _ndjson(_rows(0, 6, "en")))
    upload(name, "fr.ndjson", _ndjson(_rows(50, 6, "fr")))
    found = client.search(name, vector=_vec(51), k=4, filter="lang = 'en'")
    assert found.ok, found.body
    langs = {r[found.body["columns"].index("lang")] for r in found.body["rows"]}
    assert langs == {"en"} and found.body["row_count"] == 4

    only = client.search(name, vector=_vec(51), k=20, filter="lang = 'fr' AND title <> 'doc 51'")
    assert {r[found.body["columns"].index("title")] for r in only.body["rows"]} == {
        f"doc {i}" for i in range(50, 56) if i != 51
    }

    for bad, status in [
        ({"filter": "lang = 'en'; DROP TABLE x"}, 400),
        ({"filter": "title IN (SELECT sql FROM duckdb_tables())"}, 400),
        ({"filter": "no_such_column = 1"}, 400),
        ({"vector": [1.0, 2.0]}, 400),
        ({"mode": "text", "text": "doc"}, 400),  # supplied vectors and no text column
    ]:
        body = {"vector": _vec(1), **bad}
        if "text" in body:
            del body["vector"]
        response = client.request("POST", "/search", {"dataset": name, "k": 3, **body})
        assert response.status == status, (bad, response.body)
        assert response.body["message"]
    assert client.search("no_such_dataset", vector=_vec(1)).status == 404
    plain = dataset("name: {name}\nevent_time: ts\ncolumns:\n  ts: {type: timestamp, required: true}\n")
    response = client.search(plain, vector=_vec(1))
    assert response.status == 400 and "vectors" in response.body["message"]


def test_an_append_table_without_event_time_gets_its_vectors(
    dataset: Callable[[str], str], upload: Callable[..., dict[str, Any]], client: LakeClient
) -> None:
    """Unpartitioned, appended (no primary key) and with vectors: its own commit, not the committer's."""
    name = dataset(SUPPLIED.replace("event_time: ts\n", "").replace("required: true", "required: false"))
    first = upload(name, "a.ndjson", _ndjson(_rows(0, 5)))
    second = upload(name, "b.ndjson", _ndjson(_rows(5, 3)))
    assert (first["vectors_written"], second["vectors_written"]) == (5, 3)
    assert client.sql(f"SELECT count(*) FROM {name}").body["rows"] == [[8]]
    found = client.search(name, vector=_vec(6), k=1).body
    assert found["rows"][0][found["columns"].index("title")] == "doc 6"


def _ingest_in_child(home: str, key: str) -> int:
    settings = load_settings(home=home)
    report = deliver(settings, settings.landing_bucket, key)["reports"][0]
    return int(report["vectors_written"] or 0)


def test_writers_in_spawned_processes_each_row_gets_one_vector(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    """lancedb must not be used from forked children: Lake's processes are spawned."""
    name = dataset(SUPPLIED)
    keys = []
    for i in range(6):
        key = f"{name}/part-{i}.ndjson"
        s3_client(settings).put_object(
            Bucket=settings.landing_bucket, Key=key, Body=_ndjson(_rows(i * 10, 5))
        )
        keys.append(key)
    with ProcessPoolExecutor(3, mp_context=mp.get_context("spawn")) as pool:
        written = list(pool.map(_ingest_in_child, [str(settings.home)] * len(keys), keys))
    assert written == [5] * 6
    table_ids = _table_ids(settings, name)
    assert len(table_ids) == 30
    assert sorted(_lance_ids(settings, name)) == sorted(table_ids)


def _create_and_append(home: str, name: str, writer: int, start: float) -> int:
    """In a spawned process: open (creating if need be) the dataset's Lance table at ``start``
    (a shared wall-clock instant, so the creations race) and append five rows."""
    import time

    import pyarrow as pa

    from lakehouse.contracts.model import load_contract
    from lakehouse.vectors.store import lance_schema

    settings = load_settings(home=home)
    contract = load_contract(settings, name)
    assert contract.vectors is not None
    time.sleep(max(0.0, start - time.time()))
    table = open_table(settings, contract, create=True)
    assert table is not None
    schema = lance_schema(contract.vectors)
    rows = {f.name: [None] * 5 for f in schema}
    rows["_row_id"] = [f"w{writer}-{i}" for i in range(5)]
    rows["vector"] = [_vec(i) for i in range(5)]
    return int(table.add(pa.table(rows, schema=schema)).version)


def test_writers_creating_one_lance_table_at_once_lose_no_append(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    """Lance's own create, racing another, overwrites rows appended meanwhile: one writer creates."""
    import time

    names = [dataset(SUPPLIED) for _ in range(3)]
    with ProcessPoolExecutor(4, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(int, ["1"] * 4))  # the workers are up before the clock starts
        for name in names:
            start = time.time() + 1.0
            list(pool.map(_create_and_append, [str(settings.home)] * 4, [name] * 4, range(4), [start] * 4))
    for name in names:
        assert sorted(_lance_ids(settings, name)) == sorted(f"w{w}-{i}" for w in range(4) for i in range(5))


def test_a_creation_claimed_by_a_writer_that_died_is_taken_over(
    settings: Settings, dataset: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakehouse.contracts.model import load_contract
    from lakehouse.storage import list_objects
    from lakehouse.vectors import store

    name = dataset(SUPPLIED)
    contract = load_contract(settings, name)
    prefix = f"vectors/_create/{name}/"
    # A writer claimed the creation and died before creating.
    s3_client(settings).put_object(Bucket=settings.warehouse_bucket, Key=f"{prefix}0", Body=b"")
    # While its claim is live, another writer waits for that creation, then gives up with a
    # transient error (its event is retried) and creates nothing.
    monkeypatch.setattr(store, "CREATE_WAIT_SECONDS", 3.0)
    with pytest.raises(VectorWriteFailed, match="another writer's creation did not finish"):
        open_table(settings, contract, create=True)
    assert open_table(settings, contract) is None
    # Past the wait, the claim is followed by the next generation's, and the table is created.
    monkeypatch.setattr(store, "CREATE_WAIT_SECONDS", 0.0)
    table = open_table(settings, contract, create=True)
    assert table is not None and table.count_rows() == 0
    claims = [key for key, _ in list_objects(settings, settings.warehouse_bucket, prefix)]
    assert claims == [f"{prefix}0", f"{prefix}1"]


def test_vector_upkeep_removes_strays_and_builds_the_index(
    settings: Settings,
    dataset: Callable[[str], str],
    upload: Callable[..., dict[str, Any]],
    client: LakeClient,
) -> None:
    from lakehouse.contracts.model import load_contract
    from lakehouse.tables.write import SourceRef
    from lakehouse.vectors import ann
    from lakehouse.vectors.store import VectorStage

    name = dataset(SUPPLIED)
    only = MaintenanceOptions(jobs=("vectors",), dry_run=True, tables=(f"{settings.namespace}.{name}",))
    assert run_maintenance(settings, only)["jobs"]["vectors"] == []  # no Lance data yet: nothing to do
    upload(name, "big.ndjson", _ndjson(_rows(0, 320)))
    contract = load_contract(settings, name)
    # An ingest that wrote its vectors and died before its table commit.
    stage = VectorStage(settings, contract, SourceRef(settings.landing_bucket, f"{name}/lost.ndjson", "v1"))
    import pyarrow as pa

    accepted = pa.table(
        {"ts": pa.array([None], pa.timestamp("us", "UTC")), "_row_id": pa.array(["x"], pa.string())}
    )
    batch = pa.table({"__lake_row": pa.array([1], pa.int64()), "emb": pa.array([json.dumps(_vec(7))])})
    stage.add(accepted, pa.array([1], pa.int64()), batch)
    stage.commit()
    assert len(_lance_ids(settings, name)) == 321

    from lancedb.index import IvfFlat

    older = open_table(settings, contract)  # a Lance vector index from an earlier Lake: dropped
    assert older is not None
    older.create_index("vector", config=IvfFlat(num_partitions=2, distance_type="cosine"))
    dry = run_maintenance(settings, MaintenanceOptions(jobs=("vectors",), dry_run=True))
    mine = [r for r in dry["jobs"]["vectors"] if r["dataset"] == name]
    assert mine[0]["stray_rows"] == 1
    assert len(_lance_ids(settings, name)) == 321
    done = run_maintenance(
        settings, MaintenanceOptions(jobs=("vectors",), tables=(f"{settings.namespace}.{name}",))
    )
    mine = [r for r in done["jobs"]["vectors"] if r["dataset"] == name]
    assert mine[0]["stray_rows"] == 1 and "index" in mine[0], mine
    assert sorted(_lance_ids(settings, name)) == sorted(_table_ids(settings, name))
    lance = open_table(settings, contract)
    assert lance is not None and ann.stored_indexes(settings, name) == [mine[0]["index"]["version"]]
    assert not any("vector" in idx.columns for idx in lance.list_indices())
    assert mine[0]["index"]["rows"] == 320

    # Rows added after the index was built are found before any re-index.
    upload(name, "late.ndjson", _ndjson(_rows(5000, 3)))
    found = client.search(name, vector=_vec(5001), k=1)
    assert found.body["rows"][0][found.body["columns"].index("title")] == "doc 5001"


# --- text: MiniLM embeddings, BM25, hybrid -----------------------------------------------------

# Long notes that only a rare code tells apart: words find them, meaning mostly cannot.
CODES = ["ZQ7731", "ZQ7713", "ZQ3177", "ZQ1377", "ZQ7137", "ZQ3717"]
INVOICES = [
    body.format(c=code)
    for body, code in zip(
        [
            "Customer reports that the delivery arrived late and the box was slightly damaged, "
            "reference {c}, please check the courier logs and arrange a replacement if needed.",
            "Our warehouse team found a mismatch in stock levels for batch {c} during the weekly audit "
            "and asks finance to review the purchase orders.",
            "The service engineer visited the site, replaced the filter and noted serial {c} on the report "
            "before closing the maintenance visit.",
            "Account holder requests that statement {c} be sent again by post because the emailed copy could "
            "not be opened on their computer.",
            "Quality control flagged lot {c} after the moisture test failed twice, production should "
            "pause the line until the lab confirms the result.",
            "A visitor left a bag at reception with tag {c}; security stored it in the lost property "
            "room until the owner calls back.",
        ],
        CODES,
        strict=True,
    )
]
# Sentences whose paraphrases below share no word with them: meaning finds them.
MEANINGS = [
    "The cat slept on the mat all afternoon",
    "Heavy rain flooded the streets of the town",
    "She baked bread early in the morning",
    "The stock market fell sharply on Monday",
    "He repaired the bicycle tyre with a patch",
    "Children played football in the park",
]
KEYWORD_QUERIES = [(code, i) for i, code in enumerate(CODES)]
MEANING_QUERIES = [
    ("a kitten dozing on a rug", 0),
    ("downpour inundating roads", 1),
    ("loaves made at dawn", 2),
    ("shares dropped steeply", 3),
    ("fixing a punctured wheel", 4),
    ("kids kicking a ball outdoors", 5),
]


@pytest.fixture(scope="module")
def corpus(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    pytest.importorskip("sentence_transformers")
    settings = load_settings()
    name = f"t_{uuid.uuid4().hex[:10]}"
    (settings.contracts_dir / f"{name}.yaml").write_text(TEXT.replace("{name}", name))
    docs = INVOICES + MEANINGS
    lines = [
        {"ts": "2026-03-01T00:00:00Z", "body": d, "kind": "invoice" if d in INVOICES else "note"}
        for d in docs
    ]
    key = f"{name}/docs.ndjson"
    s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=_ndjson(lines))
    report = deliver(settings, settings.landing_bucket, key)["reports"][0]
    assert report["vectors_written"] == len(docs)
    return name, docs


def _hits_at_1(client: LakeClient, name: str, docs: list[str], mode: str) -> list[str]:
    hits = []
    for text, wanted in [(q, i) for q, i in KEYWORD_QUERIES] + [
        (q, len(INVOICES) + i) for q, i in MEANING_QUERIES
    ]:
        found = client.search(name, text=text, k=1, mode=mode)
        assert found.ok, found.body
        rows = found.body["rows"]
        if rows and rows[0][found.body["columns"].index("body")] == docs[wanted]:
            hits.append(text)
    return hits


def test_hybrid_beats_either_mode_on_a_labelled_set(
    client: LakeClient, corpus: tuple[str, list[str]]
) -> None:
    name, docs = corpus
    vector = _hits_at_1(client, name, docs, "vector")
    text = _hits_at_1(client, name, docs, "text")
    hybrid = _hits_at_1(client, name, docs, "hybrid")
    total = len(KEYWORD_QUERIES) + len(MEANING_QUERIES)
    assert len(hybrid) > len(vector) and len(hybrid) > len(text), (vector, text, hybrid, total)
    assert set(hybrid) >= set(text) & set(vector)


def test_vector_search_in_sql_joins_with_the_table(client: LakeClient, corpus: tuple[str, list[str]]) -> None:
    name, docs = corpus
    sql = (
        f"SELECT d.body, v.score FROM vector_search('{name}', 'a kitten dozing on a rug', 3) v "
        f"JOIN lake.{name} d ON d._row_id = v.id ORDER BY v.score DESC"
    )
    result = client.sql(sql)
    assert result.ok, result.body
    assert result.body["row_count"] == 3
    assert result.body["rows"][0][0] == docs[len(INVOICES)]
    scores = [r[1] for r in result.body["rows"]]
    assert scores == sorted(scores, reverse=True)
    for bad in (
        f"SELECT * FROM vector_search('{name}', 'x')",
        f"SELECT * FROM vector_search('{name}', (SELECT 'x'), 3)",
    ):
        assert client.sql(bad).status == 400


def test_search_over_http_with_text(
    http_client: LakeClient, corpus: tuple[str, list[str]], make_key: Callable[..., str], serve_url: str
) -> None:
    name, docs = corpus
    found = http_client.search(name, text="shares dropped steeply", k=2, filter="kind = 'note'")
    assert found.ok, found.body
    assert found.body["mode"] == "hybrid"
    assert found.body["rows"][0][found.body["columns"].index("body")] == docs[len(INVOICES) + 3]
    assert LakeClient(serve_url).search(name, text="x").status == 401
    assert LakeClient(serve_url, key=make_key("read")).search(name, text="bread").ok
