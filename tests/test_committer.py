"""Staged writers, the committer and the ledger: exactly-once by version and by content, after
snapshot expiry, across DLQ replays of old versions and committer crashes; on the SQLite catalog
and on pyiceberg's Glue catalog (moto's Glue API on the local endpoint)."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.errors import SourceVersionGone
from lakehouse.ingest.upload import ingest_object
from lakehouse.storage import s3_client
from lakehouse.tables.committer import commit_pending, pending_requests
from lakehouse.tables.ledger import Entry, Ledger, SourceId
from tests.conftest import ROOT, SENSOR_CONTRACT

pytestmark = pytest.mark.integration


def glue_settings(settings: Settings) -> Settings:
    """The same stack with pyiceberg's Glue catalog (moto serves Glue on the S3 endpoint)."""
    assert settings.s3_endpoint
    return settings.model_copy(
        update={
            "catalog_type": "glue",
            "catalog_properties": {"glue.endpoint": settings.s3_endpoint, "glue.region": settings.region},
        }
    )


@pytest.fixture(params=["sql", "glue"])
def lake(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Settings on the SQLite catalog, then on the Glue catalog."""
    return settings if request.param == "sql" else glue_settings(settings)


def csv(tag: str, rows: int) -> bytes:
    lines = ["ts,sensor_id,temp_c,status"] + [
        f"2025-0{1 + i % 3}-0{1 + i % 9}T00:00:00Z,{tag}-{i},1.5,ok" for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def sensor_ids(settings: Settings, name: str) -> Counter[str]:
    table = get_catalog(settings).load_table(f"{settings.namespace}.{name}")
    return Counter(table.scan(selected_fields=("sensor_id",)).to_arrow().column("sensor_id").to_pylist())


class RowTally:
    """The sensor ids of a table that only ever gains data files (no coalescing, compaction or
    deletes): each look reads only the files added since the last one, and checks that none of
    the files seen before is gone (so the tally is what a full read would count)."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings, self.name = settings, name
        self.files: set[str] = set()
        self.ids: Counter[str] = Counter()

    def __call__(self) -> Counter[str]:
        from pyiceberg.io.pyarrow import ArrowScan

        table = get_catalog(self.settings).load_table(f"{self.settings.namespace}.{self.name}")
        scan = table.scan(selected_fields=("sensor_id",))
        tasks = list(scan.plan_files())
        current = {t.file.file_path for t in tasks}
        assert self.files <= current, f"data files gone: {sorted(self.files - current)}"
        new = [t for t in tasks if t.file.file_path not in self.files]
        if new:
            rows = ArrowScan(table.metadata, table.io, scan.projection(), scan.row_filter).to_table(new)
            self.ids.update(rows.column("sensor_id").to_pylist())
        self.files = current
        return Counter(self.ids)


def put(settings: Settings, key: str, body: bytes) -> dict[str, Any]:
    out: dict[str, Any] = s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=body)
    return out


def ingest(settings: Settings, key: str, put_result: dict[str, Any], mode: str = "inline") -> Any:
    return ingest_object(
        settings,
        settings.landing_bucket,
        key,
        put_result.get("VersionId"),
        etag=put_result["ETag"],
        mode=mode,
    )


# --- the ledger -----------------------------------------------------------------------------


def test_concurrent_claims_have_one_winner_and_an_old_entry_frees_its_slot(settings: Settings) -> None:
    ledger = Ledger(settings, f"t_{uuid.uuid4().hex[:8]}")
    source = SourceId("d/a.csv", "v1", "sha256:ab")
    won: list[Entry] = []
    threads = [
        threading.Thread(target=lambda b=b: won.append(ledger.claim(source, f"b{b}"))) for b in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({e.batch for e in won}) == 1  # every claimant sees the same winner
    # The same bytes under a new version: a duplicate of the version that holds them.
    dup = ledger.claim(SourceId("d/a.csv", "v2", "sha256:ab"), "b9")
    assert dup.state == "duplicate" and dup.of == "v1"
    # Past the window an entry is forgotten and its slot can be claimed again.
    old = Entry(
        "committed", "b0", "d/old.csv", "v1", at=(dt.datetime.now(dt.UTC) - dt.timedelta(days=31)).isoformat()
    )
    ledger.settle(SourceId("d/old.csv", "v1"), old)
    assert ledger.lookup("d/old.csv", "v1") is None
    assert ledger.claim(SourceId("d/old.csv", "v1"), "b10").batch == "b10"


# --- exactly once ------------------------------------------------------------------------------


def test_exactly_once_after_every_snapshot_expired(lake: Settings, dataset: Callable[[str], str]) -> None:
    from lakehouse.tables.gc import expire_snapshots

    name = dataset(SENSOR_CONTRACT)
    first = put(lake, f"{name}/a.csv", csv("a", 6))
    assert ingest(lake, f"{name}/a.csv", first).rows_accepted == 6
    second = put(lake, f"{name}/b.csv", csv("b", 3))
    ingest(lake, f"{name}/b.csv", second)
    table = get_catalog(lake).load_table(f"lake.{name}")
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    expire_snapshots(lake, table, now=far, retention=dt.timedelta(0), min_snapshots=1)
    table.refresh()
    assert len(table.metadata.snapshots) == 1  # a.csv's snapshot is gone
    again = ingest(lake, f"{name}/a.csv", first)
    assert again.duplicate and again.rows_accepted == 0
    assert sensor_ids(lake, name).total() == 9


def test_identical_bytes_uploaded_again_are_a_duplicate(
    lake: Settings, dataset: Callable[[str], str]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    body = csv("same", 4)
    v1 = put(lake, f"{name}/export.csv", body)
    first = ingest(lake, f"{name}/export.csv", v1)
    v2 = put(lake, f"{name}/export.csv", body)  # the same export uploaded twice: a new version
    again = ingest(lake, f"{name}/export.csv", v2)
    assert not first.duplicate and again.duplicate
    assert again.duplicate_of == first.version and again.snapshot_id == first.snapshot_id
    other = ingest(lake, f"{name}/other.csv", put(lake, f"{name}/other.csv", body))  # another key: new
    assert not other.duplicate
    assert sensor_ids(lake, name).total() == 8


def test_both_versions_staged_with_the_same_bytes_commit_once(
    lake: Settings, dataset: Callable[[str], str]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    body = csv("twice", 5)
    staged = [
        ingest(lake, f"{name}/x.csv", put(lake, f"{name}/x.csv", body), mode="staged") for _ in range(2)
    ]
    assert [r.status for r in staged] == ["staged", "staged"]
    [batch] = commit_pending(lake, name)
    assert (batch.sources, batch.duplicates) == (1, 1)
    assert sensor_ids(lake, name) == Counter({f"twice-{i}": 1 for i in range(5)})


def test_a_committer_that_loses_a_source_keeps_the_files_the_winner_commits(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    """Two committers read the same staged request; the one that loses the ledger claim must
    not delete the data files the winner commits (three redeliveries at once, each committing
    inline, lost their rows this way)."""
    from dataclasses import asdict

    from lakehouse.tables.committer import CommitRequest, _Batch, _read_json

    name = dataset(SENSOR_CONTRACT)
    key = f"{name}/once.csv"
    ingest(settings, key, put(settings, key, csv("once", 5)), mode="staged")
    catalog = get_catalog(settings)
    [request] = pending_requests(settings, name)
    data = _read_json(settings, request)
    assert data is not None
    req = CommitRequest.from_dict(data)
    late = _Batch(  # a committer that read the request before the other one deleted it
        settings,
        catalog,
        name,
        {"batch": "late", "dataset": name, "sources": [{**asdict(req), "id": req.id, "uri": req.uri}]},
    )
    [won] = commit_pending(settings, name)  # the other committer, faster
    assert won.sources == 1
    late.open()
    lost = late.complete(Ledger(settings, name))
    assert (lost.sources, lost.duplicates) == (0, 1)
    assert sensor_ids(settings, name) == Counter({f"once-{i}": 1 for i in range(5)})  # every file still there


def test_coalescing_keeps_every_row_of_files_written_under_two_schemas(
    settings: Settings, dataset: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's small files of one partition become one file: files in the Parquet schema of the
    first file the scan read are read without the scan, files of an older table schema through it."""
    from pyiceberg.types import StringType

    from lakehouse.tables import committer

    scanned: list[str] = []

    def read_files(table: Any, files: list[Any], **kwargs: Any) -> Any:
        scanned.extend(f.file_path for f in files)
        return scan(table, files, **kwargs)

    scan = committer.read_files
    monkeypatch.setattr(committer, "read_files", read_files)

    name = dataset(SENSOR_CONTRACT)
    ingest(settings, f"{name}/first.csv", put(settings, f"{name}/first.csv", csv("first", 1)))
    tags = [f"old{i}" for i in range(3)]
    for tag in tags:
        ingest(settings, f"{name}/{tag}.csv", put(settings, f"{name}/{tag}.csv", csv(tag, 6)), mode="staged")
    table = get_catalog(settings).load_table(f"lake.{name}")
    with table.update_schema() as update:
        update.add_column("note", StringType())
    for tag in [f"new{i}" for i in range(4)]:
        tags.append(tag)
        ingest(settings, f"{name}/{tag}.csv", put(settings, f"{name}/{tag}.csv", csv(tag, 6)), mode="staged")
    [batch] = commit_pending(settings, name)
    assert (batch.sources, batch.duplicates) == (7, 0)
    assert batch.files_before == 7 * 3 and batch.files_after == 3  # one file per month partition
    expected = Counter({f"{tag}-{i}": 1 for tag in tags for i in range(6)})
    expected["first-0"] = 1
    assert sensor_ids(settings, name) == expected
    table.refresh()
    notes = table.scan(selected_fields=("note",)).to_arrow().column("note")
    assert notes.null_count == len(notes) == expected.total()
    # Per partition: the three older files and the first newer one through the scan, not the rest.
    assert len(scanned) == len(set(scanned)) == 3 * 4


def test_a_dlq_replay_of_an_old_version_reads_that_version_or_fails_as_gone(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    from lake import dlq
    from lake.local.serve import deliver, invoke_ingest

    name = f"late_{uuid.uuid4().hex[:8]}"  # no contract yet: v1 fails and is parked
    key = f"{name}/r.csv"
    v1 = put(settings, key, csv("v1", 2))
    with pytest.raises(Exception, match="no contract"):
        deliver(settings, settings.landing_bucket, key, version_id=v1["VersionId"])
    (settings.contracts_dir / f"{name}.yaml").write_text(SENSOR_CONTRACT.replace("{name}", name))
    put(settings, key, csv("v2", 3))
    deliver(settings, settings.landing_bucket, key)  # v2, the current version
    parked = [
        e for e in dlq.list_dead_letters(settings) if e.sources == [f"s3://{settings.landing_bucket}/{key}"]
    ]
    assert len(parked) == 1
    [result] = dlq.replay(settings, invoke_ingest, parked[0].message_id)
    assert result["replayed"], result
    assert sorted(sensor_ids(settings, name)) == ["v1-0", "v1-1", "v2-0", "v2-1", "v2-2"]  # v1's own rows

    gone_key = f"{name}/gone.csv"
    old = put(settings, gone_key, csv("old", 2))
    put(settings, gone_key, csv("new", 2))
    s3_client(settings).delete_object(
        Bucket=settings.landing_bucket, Key=gone_key, VersionId=old["VersionId"]
    )
    with pytest.raises(SourceVersionGone):
        ingest(settings, gone_key, old)
    assert not any(s.startswith("old-") for s in sensor_ids(settings, name))


# --- crashes --------------------------------------------------------------------------------------

COMMITTER = (
    "import sys, pickle; from lakehouse.tables.committer import commit_pending; "
    "s = pickle.loads(bytes.fromhex(sys.argv[1])); print('ready', flush=True); sys.stdin.readline(); "
    "commit_pending(s, sys.argv[2])"
)
KILL_TRIALS = 20


def _committer_process(lake: Settings, name: str) -> subprocess.Popen[str]:
    import pickle

    return subprocess.Popen(
        [sys.executable, "-c", COMMITTER, pickle.dumps(lake).hex(), name],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_a_committer_killed_anywhere_leaves_every_upload_committed_once_after_restart(
    settings: Settings, dataset: Callable[[str], str]
) -> None:
    name = dataset(SENSOR_CONTRACT)
    lake = settings.model_copy(update={"commit_max_files": 1})  # a batch per upload: more kill points
    ingest(lake, f"{name}/first.csv", put(lake, f"{name}/first.csv", csv("first", 1)))  # the tables
    rng = random.Random(14)
    expected: Counter[str] = Counter({"first-0": 1})
    killed_mid = 0
    proc = _committer_process(lake, name)
    table_ids = RowTally(lake, name)
    for trial in range(KILL_TRIALS):
        for j in range(3):  # staged while the committer starts
            key = f"{name}/t{trial}-{j}.csv"
            ingest(lake, key, put(lake, key, csv(f"t{trial}-{j}", 2)), mode="staged")
            expected.update({f"t{trial}-{j}-{i}": 1 for i in range(2)})
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        try:  # killed after a random delay, unless it finished first
            proc.wait(timeout=rng.uniform(0.0, 1.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            killed_mid += 1
            proc.wait()
        proc = _committer_process(lake, name)  # the next trial's, starting while this one recovers
        commit_pending(lake, name)  # the next run completes whatever the killed one left
        assert not pending_requests(lake, name)
        assert table_ids() == expected, f"trial {trial}"
    proc.kill()
    assert sensor_ids(lake, name) == expected  # and a full read agrees
    proc.wait()
    assert killed_mid >= KILL_TRIALS // 2  # most kills landed while the committer ran


# --- many writers ---------------------------------------------------------------------------------

WRITERS, UPLOADS, ROWS = 8, 100, 2


def _writer(lake: Settings, name: str, writer: int, uploads: int) -> list[dict[str, Any]]:
    reports = []
    for i in range(uploads):
        key = f"{name}/w{writer}-{i}.csv"
        reports.append(
            ingest(lake, key, put(lake, key, csv(f"w{writer}-{i}", ROWS)), mode="staged").to_dict()
        )
    return reports


@pytest.fixture()
def committer_thread(request: pytest.FixtureRequest) -> Iterator[Callable[[Settings], Any]]:
    from lakehouse.tables.committer import Committer

    started: list[Committer] = []

    def start(lake: Settings) -> Committer:
        committer = Committer(lake.model_copy(update={"commit_interval_seconds": 0.5}))
        committer.start()
        started.append(committer)
        return committer

    yield start
    for committer in started:
        committer.stop_event.set()
        committer.join(30)


@pytest.mark.slow
def test_eight_writer_processes_a_hundred_small_files_each_every_row_once(
    lake: Settings, dataset: Callable[[str], str], committer_thread: Callable[[Settings], Any]
) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    name = dataset(SENSOR_CONTRACT)
    # The full drill on the SQLite catalog; a twentieth of it on Glue (the same code, moto's slower Glue API).
    uploads = UPLOADS if lake.catalog_type == "sql" else UPLOADS // 20
    ingest(lake, f"{name}/first.csv", put(lake, f"{name}/first.csv", csv("first", 1)))  # creates the tables
    committer = committer_thread(lake)
    with ProcessPoolExecutor(WRITERS, mp_context=mp.get_context("spawn")) as pool:
        args = ([lake] * WRITERS, [name] * WRITERS, range(WRITERS), [uploads] * WRITERS)
        reports = [r for rs in pool.map(_writer, *args) for r in rs]
    assert len(reports) == WRITERS * uploads and not any(r["duplicate"] for r in reports)
    deadline = time.monotonic() + 120
    while pending_requests(lake, name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pending_requests(lake, name), committer.errors
    expected = Counter(
        {f"w{w}-{i}-{r}": 1 for w in range(WRITERS) for i in range(uploads) for r in range(ROWS)}
    )
    expected["first-0"] = 1
    assert sensor_ids(lake, name) == expected
    table = get_catalog(lake).load_table(f"lake.{name}")
    assert len(table.metadata.snapshots) <= lake.commit_keep_snapshots + lake.commit_keep_snapshots // 4 + 1
    assert not committer.errors
