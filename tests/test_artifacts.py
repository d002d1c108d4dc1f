"""The artifact store on the local stack: every operation, persistence across instances and
processes, history and time travel, search by words and by meaning, and the HTTP routes."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import multiprocessing
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lake.client import LakeClient
from lakehouse.artifacts import (
    ArtifactError,
    ArtifactStore,
    NotFoundError,
    ValidationError,
)
from lakehouse.artifacts.ledger import Ledger
from lakehouse.config import Settings, load_settings
from lakehouse.errors import LakeError

pytestmark = [pytest.mark.integration]

T = TypeVar("T")

SCHEMA = '{"type": "record", "name": "Order", "fields": [{"name": "customer_id", "type": "string"}]}'
RUNBOOK = (
    "When the nightly load is late, check the scheduler first, then restart the ingest worker. "
    "Page the data platform on-call if the backlog exceeds two hours."
)
PIPELINE = "retries: 5\nbackoff_seconds: 30\ntarget: warehouse\n"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture()
def table() -> str:
    """A table of its own per test: tests do not see each other's artifacts."""
    return f"artifacts_{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def store(settings: Settings, table: str) -> ArtifactStore:
    return ArtifactStore(settings, table)


def test_store_retrieve_list_update_delete(store: ArtifactStore, settings: Settings, table: str) -> None:
    a = run(store.store("orders.avsc", SCHEMA, "schema", {"owner": "sales", "v": 1}, "/sales//v1/"))
    assert (a.path, a.subpath, a.version, a.op) == ("sales/v1/orders.avsc", "sales/v1", 1, "store")
    assert a.size == len(SCHEMA)
    assert a.encoding == "utf-8" and a.content_type.startswith("text/plain") and len(a.sha256) == 64
    blob = bytes(range(256)) * 4
    b = run(store.store("dump.bin", blob, "logs", {"host": "db1"}, "ops"))
    c = run(store.store("pipeline.yaml", PIPELINE, "configuration", subpath="ops/jobs"))

    got = run(store.retrieve(a.id))
    assert got.content == SCHEMA and got.metadata == {"owner": "sales", "v": 1} and got.snapshot_id
    assert run(store.retrieve(b.id)).content == blob
    assert run(store.retrieve_by_path("ops/jobs/pipeline.yaml")).id == c.id
    assert run(store.retrieve_by_path("/sales/v1/orders.avsc")).content == SCHEMA

    assert [x.path for x in run(store.list())] == ["ops/dump.bin", "ops/jobs/pipeline.yaml", a.path]
    assert [x.path for x in run(store.list(subpath="ops", recursive=False))] == ["ops/dump.bin"]
    assert [x.path for x in run(store.list(subpath="ops"))] == ["ops/dump.bin", "ops/jobs/pipeline.yaml"]
    assert [x.id for x in run(store.list(data_type="schema"))] == [a.id]
    assert run(store.list(subpath="", recursive=False)) == []
    assert all(x.content is None for x in run(store.list()))

    u = run(store.update(a.id, content=SCHEMA.replace("Order", "Purchase")))
    assert (u.version, u.op, u.metadata, u.created_at) == (2, "update", a.metadata, a.created_at)
    u = run(store.update(a.id, metadata={"owner": "finance"}))
    assert u.version == 3 and run(store.retrieve(a.id)).content == SCHEMA.replace("Order", "Purchase")
    assert run(store.retrieve(a.id)).metadata == {"owner": "finance"}
    u = run(store.update(b.id, content="now text"))
    assert (u.encoding, u.content_type) == ("utf-8", "text/plain; charset=utf-8")

    gone = run(store.delete(c.id))
    assert (gone.op, gone.version) == ("delete", 2)
    with pytest.raises(NotFoundError):
        run(store.retrieve(c.id))
    with pytest.raises(NotFoundError):
        run(store.retrieve_by_path("ops/jobs/pipeline.yaml"))
    with pytest.raises(NotFoundError):
        run(store.delete(c.id))
    # the path is free again after the delete
    again = run(store.store("pipeline.yaml", "retries: 1\n", "configuration", subpath="ops/jobs"))
    assert again.id != c.id and again.version == 1

    stats = run(store.get_stats())
    assert stats["artifacts"] == 3 and stats["versions"] == 8 and stats["deleted"] == 1
    assert stats["by_type"]["schema"] == 1 and stats["by_type"]["configuration"] == 1
    assert stats["by_type"]["logs"] == 1 and stats["by_type"]["macro"] == 0
    assert stats["total_bytes"] == sum(x.size for x in run(store.list()))
    assert stats["last_update"] == again.updated_at.isoformat()
    # the warm instance read each commit's new rows on top of its cached state; a cold read agrees
    warm = store.blocking.ledger.state()
    cold = Ledger(settings, table).state()
    assert (warm.snapshot_id, warm.versions, warm.current) == (cold.snapshot_id, cold.versions, cold.current)

    def full_read(*args: Any) -> Any:
        raise AssertionError("a warm store reads only the new commits")

    store.blocking.ledger._read = full_read  # type: ignore[method-assign,assignment]
    assert run(store.update(a.id, metadata={})).version == 4
    assert run(store.retrieve(a.id)).metadata == {}


def test_history_versions_and_time_travel(store: ArtifactStore) -> None:
    a = run(store.store("doc.md", "first draft", "documentation"))
    run(store.update(a.id, content="second draft"))
    run(store.delete(a.id))
    history = run(store.history(a.id))
    assert [(v.version, v.op) for v in history] == [(1, "store"), (2, "update"), (3, "delete")]
    assert len({v.snapshot_id for v in history}) == 3
    # every version of the history can be read by number, and the store as of any snapshot
    assert run(store.retrieve(a.id, version=1)).content == "first draft"
    assert run(store.retrieve(a.id, version=2)).content == "second draft"
    assert run(store.retrieve(a.id, as_of=history[0].snapshot_id)).content == "first draft"
    assert run(store.retrieve_by_path("doc.md", as_of=history[1].snapshot_id)).content == "second draft"
    snapshot = store.blocking.ledger.table().snapshot_by_id(history[0].snapshot_id or 0)
    assert snapshot is not None
    then = dt.datetime.fromtimestamp(snapshot.timestamp_ms / 1000, dt.UTC)
    assert run(store.retrieve(a.id, as_of=then)).content == "first draft"
    assert run(store.retrieve(a.id, as_of=then.isoformat())).version == 1
    assert [x.id for x in run(store.list(as_of=history[1].snapshot_id))] == [a.id]
    assert run(store.list()) == []
    with pytest.raises(NotFoundError):
        run(store.retrieve(a.id, version=3))  # the deletion has no content
    with pytest.raises(NotFoundError):
        run(store.history(uuid.uuid4().hex))
    with pytest.raises(LakeError):
        run(store.retrieve(a.id, as_of=12345))  # no such snapshot
    with pytest.raises(NotFoundError):  # before the artifact was stored
        run(store.retrieve(a.id, as_of=history[0].snapshot_id and then - dt.timedelta(hours=1)))


def test_errors(store: ArtifactStore) -> None:
    assert issubclass(NotFoundError, ArtifactError) and issubclass(ValidationError, ArtifactError)
    assert issubclass(ArtifactError, LakeError)
    assert NotFoundError.http_status == 404 and NotFoundError.terminal
    assert ValidationError.http_status == 400 and ValidationError.terminal
    with pytest.raises(NotFoundError):
        run(store.retrieve(uuid.uuid4().hex))
    with pytest.raises(NotFoundError):
        run(store.update(uuid.uuid4().hex, content="x"))
    with pytest.raises(NotFoundError):
        run(store.retrieve_by_path("no/such/thing"))
    bad: list[Callable[[], Coroutine[Any, Any, Any]]] = [
        lambda: store.store("x", "y", "spreadsheet"),
        lambda: store.store("", "y"),
        lambda: store.store("a/b", "y"),
        lambda: store.store("x", "y", subpath="a/../b"),
        lambda: store.store("x\n", "y"),
        lambda: store.store("x", "y", metadata={"n": float("nan")}),
        lambda: store.store("x", "\ud800"),
        lambda: store.list(data_type="spreadsheet"),
        lambda: store.search("   "),
        lambda: store.update(uuid.uuid4().hex),
    ]
    for call in bad:
        with pytest.raises(ValidationError):
            run(call())
    run(store.store("x", "y", subpath="a"))
    with pytest.raises(ValidationError, match="already stored"):
        run(store.store("x", "other", subpath="/a/"))
    assert len(run(store.list())) == 1


def _child(table: str, first_id: str) -> tuple[str, str]:
    """In a spawned process: read what the parent stored, store something of its own."""
    store = ArtifactStore(load_settings(), table)
    seen = run(store.retrieve(first_id))
    mine = run(store.store("from-child.txt", "written by another process", "other"))
    return str(seen.content), mine.id


def test_persistence_across_instances_and_processes(settings: Settings, table: str) -> None:
    first = ArtifactStore(settings, table)
    a = run(first.store("macro.sql", "select 1", "macro", {"k": "v"}, "m"))
    second = ArtifactStore(load_settings(), table)
    assert run(second.retrieve(a.id)).content == "select 1"
    assert run(second.retrieve_by_path("m/macro.sql")).metadata == {"k": "v"}
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        content, child_id = pool.apply(_child, (table, a.id))
    assert content == "select 1"
    assert run(first.retrieve(child_id)).content == "written by another process"
    assert {x.path for x in run(first.list())} == {"m/macro.sql", "from-child.txt"}


def test_concurrent_stores_at_one_path_keep_it_unique(settings: Settings, table: str) -> None:
    stores = [ArtifactStore(settings, table) for _ in range(4)]

    async def race() -> list[Any]:
        return await asyncio.gather(
            *(s.store("same.txt", f"writer {i}") for i, s in enumerate(stores)), return_exceptions=True
        )

    results = run(race())
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1
    assert all(isinstance(r, ValidationError) for r in results if isinstance(r, BaseException))
    assert len(run(stores[0].list())) == 1


def test_search_by_words_meaning_and_filters(store: ArtifactStore) -> None:
    schema = run(store.store("orders.avsc", SCHEMA, "schema", {"owner": "sales"}, "sales"))
    runbook = run(store.store("late-load.md", RUNBOOK, "documentation", {"team": "platform"}, "ops/runbooks"))
    pipeline = run(store.store("pipeline.yaml", PIPELINE, "configuration", {"team": "platform"}, "ops"))
    photo = run(store.store("logo.png", b"\x89PNG\r\n\x1a\n", "other", {"caption": "company logo"}, "brand"))

    found = run(store.search("customer_id"))
    assert found.hits[0].artifact.id == schema.id and found.hits[0].text_rank == 1
    assert found.mode == "hybrid" and found.warning is None
    # by meaning, no word in common with the runbook
    meaning = run(store.search("overnight batch running behind: what now?"))
    assert meaning.hits[0].artifact.id == runbook.id
    assert meaning.hits[0].text_rank is None and (meaning.hits[0].similarity or 0) > 0.3
    # metadata is searched, also of bytes content
    assert run(store.search("logo")).hits[0].artifact.id == photo.id
    # filters
    platform = run(store.search("platform"))
    assert {h.artifact.id for h in platform.hits} >= {runbook.id, pipeline.id}
    typed = run(store.search("platform", data_type="configuration"))
    assert [h.artifact.id for h in typed.hits] == [pipeline.id]
    nested = run(store.search("platform", subpath="ops/runbooks"))
    assert [h.artifact.id for h in nested.hits] == [runbook.id]
    assert run(store.search("customer_id", subpath="ops")).hits == []
    # updates are searched, deleted artifacts never come back
    run(store.update(pipeline.id, content="retries: 9\nowner_on_call: zebra\n"))
    assert run(store.search("zebra")).hits[0].artifact.version == 2
    run(store.delete(runbook.id))
    after = run(store.search("scheduler restart ingest worker"))
    assert runbook.id not in {h.artifact.id for h in after.hits}


def test_search_repairs_a_stale_index(
    settings: Settings, store: ArtifactStore, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lakehouse.artifacts.index.OPTIMIZE_AFTER", 1)  # the index catches up each time
    a = run(store.store("notes.txt", "the quick brown fox", "other"))
    b = run(store.store("more.txt", "jumps over the lazy dog", "other"))
    index = store.blocking.index
    index.drop([a.id])  # as if indexing had failed after the commit
    # a deleted artifact whose row was left behind (another process deleted it)
    other = ArtifactStore(settings, table)
    other.blocking.index.drop = lambda artifact_ids: None  # type: ignore[method-assign]
    run(other.delete(b.id))
    assert [h.artifact.id for h in run(store.search("fox")).hits] == [a.id]
    assert run(store.search("lazy dog")).hits == []
    assert set(index.rows()) == {a.id}
    c = run(store.store("third.txt", "a fox again", "other"))
    assert {h.artifact.id for h in run(store.search("fox")).hits} == {a.id, c.id}


# --- HTTP ------------------------------------------------------------------------------------


def test_http_routes(client: LakeClient) -> None:
    folder = f"http/{uuid.uuid4().hex[:8]}"
    made = client.artifact_store("orders.avsc", SCHEMA, "schema", {"owner": "sales"}, folder)
    assert made.status == 201, made.body
    art = made.body
    assert art["path"] == f"{folder}/orders.avsc" and art["version"] == 1
    binary = client.artifact_store("blob.bin", b"\x00\x01\xff", "other", subpath=folder)
    assert binary.status == 201

    got = client.artifact(art["id"])
    assert got.status == 200 and got.body["content"] == SCHEMA and got.body["content_encoding"] == "utf-8"
    raw = client.artifact(binary.body["id"]).body
    assert raw["content_encoding"] == "base64" and base64.b64decode(raw["content"]) == b"\x00\x01\xff"
    assert client.artifact_by_path(f"{folder}/orders.avsc").body["id"] == art["id"]

    listed = client.artifacts(subpath=folder, recursive=False).body["artifacts"]
    assert [x["name"] for x in listed] == ["blob.bin", "orders.avsc"]
    assert [x["name"] for x in client.artifacts(data_type="schema", subpath=folder).body["artifacts"]] == [
        "orders.avsc"
    ]
    hits = client.artifact_search("customer_id", subpath=folder).body
    assert hits["hits"][0]["artifact"]["id"] == art["id"]

    updated = client.artifact_update(art["id"], metadata={"owner": "finance"})
    assert updated.status == 200 and updated.body["version"] == 2
    assert client.artifact(art["id"], version=1).body["metadata"] == {"owner": "sales"}
    assert [v["op"] for v in client.artifact_history(art["id"]).body["versions"]] == ["store", "update"]
    assert client.artifact_stats().body["artifacts"] >= 2

    assert client.artifact_delete(art["id"]).status == 200
    missing = client.artifact(art["id"])
    assert missing.status == 404 and missing.body["error"] == "NotFoundError"
    again = client.artifact_store("blob.bin", "dup", "other", subpath=folder)
    assert again.status == 400 and again.body["error"] == "ValidationError"
    assert client.artifact_store("x", "y", "spreadsheet").status == 400
    assert client.artifacts(data_type="spreadsheet").status == 400


def test_http_scopes(serve_url: str, make_key: Callable[..., str]) -> None:
    reader = LakeClient(serve_url, key=make_key("read"))
    writer = LakeClient(serve_url, key=make_key("write"))
    name = f"{uuid.uuid4().hex[:8]}.txt"
    assert reader.artifact_store(name, "hello", "other").status == 403
    assert LakeClient(serve_url).artifact_stats().status == 401
    made = writer.artifact_store(name, "hello", "other", subpath="scoped")
    assert made.status == 201
    assert reader.artifact(made.body["id"]).body["content"] == "hello"
    assert reader.artifacts(subpath="scoped").status == 200
    assert reader.artifact_update(made.body["id"], content="changed").status == 403
    assert reader.artifact_delete(made.body["id"]).status == 403
    assert writer.artifact_delete(made.body["id"]).status == 200


def test_cli(stack: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lake.cli.main import main

    folder = f"cli/{uuid.uuid4().hex[:8]}"
    source = tmp_path / "macro.sql"
    source.write_text("select {{ col }} from orders")
    assert main(["artifacts", "store", "macro.sql", str(source), "--type", "macro", "--subpath", folder,
                 "--meta", "owner=sales"]) == 0  # fmt: skip
    artifact_id = capsys.readouterr().out.split()[0]
    assert main(["artifacts", "get-path", f"{folder}/macro.sql"]) == 0
    assert capsys.readouterr().out == "select {{ col }} from orders"
    source.write_bytes(b"\xff\x00binary")
    assert main(["artifacts", "update", artifact_id, str(source), "--meta", "owner=finance"]) == 0
    assert "version 2" in capsys.readouterr().out
    out = tmp_path / "back.bin"
    assert main(["artifacts", "get", artifact_id, "--out", str(out)]) == 0
    assert out.read_bytes() == b"\xff\x00binary"
    assert main(["artifacts", "get", artifact_id, "--version", "1"]) == 0
    assert capsys.readouterr().out.endswith("select {{ col }} from orders")
    assert main(["artifacts", "list", "--subpath", folder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 1
    assert main(["artifacts", "history", artifact_id]) == 0
    assert "update" in capsys.readouterr().out
    assert main(["artifacts", "delete", artifact_id]) == 0
    with pytest.raises(SystemExit, match="404"):
        main(["artifacts", "get", artifact_id])


def test_search_without_embedder_is_words_only(store: ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.artifacts import index

    monkeypatch.setattr(index, "_embedder", None)
    monkeypatch.setattr(index, "_embedder_error", "semantic search is unavailable (no 'embed' extra)")
    a = run(store.store("late-load.md", RUNBOOK, "documentation"))
    words = run(store.search("restart the ingest worker"))
    assert words.mode == "text" and words.warning and "embed" in words.warning
    assert [h.artifact.id for h in words.hits] == [a.id] and words.hits[0].similarity is None
    assert run(store.search("overnight batch running behind")).hits == []
