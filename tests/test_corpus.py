"""The malformed-file corpus (tests/corpus/): every file ends in its expected clear error or
quarantine, with no crash, no partial commit and the good rows kept."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lake.local.events import LambdaContext, s3_put_event
from lakehouse import errors
from lakehouse.catalog import get_catalog
from lakehouse.config import Settings
from lakehouse.storage import s3_client

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parent / "corpus"
CONTRACT = (CORPUS / "contract.yaml").read_text()
FILES = sorted(p.name for p in CORPUS.iterdir() if (CORPUS / f"{p.name}.expected.json").exists())


def test_the_corpus_has_at_least_forty_files() -> None:
    assert len(FILES) >= 40


def _ingest(settings: Settings, key: str, body: bytes) -> dict[str, Any]:
    from functions.ingest.handler import lambda_handler

    put = s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=body)
    event = s3_put_event(settings.landing_bucket, key, len(body), put["ETag"], put.get("VersionId"))
    report: dict[str, Any] = lambda_handler(event, LambdaContext("lake-ingest"))["reports"][0]
    return report


def _check(settings: Settings, name: str, filename: str, body: bytes, expected: dict[str, Any]) -> None:
    catalog = get_catalog(settings)
    if expected["outcome"] == "error":
        kind = getattr(errors, expected["error"])
        with pytest.raises(kind) as info:
            _ingest(settings, f"{name}/{filename}", body)
        assert info.value.terminal
        assert re.search(expected["match"], str(info.value)), str(info.value)
        for table in (name, f"{name}__quarantine"):
            assert catalog.load_table(f"lake.{table}").metadata.snapshots == [], "nothing may be committed"
        return
    report = _ingest(settings, f"{name}/{filename}", body)
    got = (report["rows_accepted"], report["rows_quarantined"], report["rule_failures"])
    assert got == (expected["accepted"], expected["quarantined"], expected["rules"]), report
    table = catalog.load_table(f"lake.{name}")
    assert table.scan().to_arrow().num_rows == expected["accepted"]
    assert len(table.metadata.snapshots) == 1


@pytest.mark.parametrize("filename", FILES)
def test_corpus_file(settings: Settings, dataset: Callable[[str], str], filename: str) -> None:
    expected = json.loads((CORPUS / f"{filename}.expected.json").read_text())
    _check(settings, dataset(CONTRACT), filename, (CORPUS / filename).read_bytes(), expected)


def test_a_one_megabyte_single_line(settings: Settings, dataset: Callable[[str], str], client: Any) -> None:
    name = dataset(CONTRACT)
    body = ("ts,id,amount,label\n2025-01-01T00:00:00Z,1,1," + "z" * (1 << 20) + "\n").encode()
    _check(
        settings,
        name,
        "long_line.csv",
        body,
        {"outcome": "ingested", "accepted": 0, "quarantined": 1, "rules": {"max_length": 1}},
    )
    row = client.sql(f"SELECT reason, length(record) FROM lake.{name}__quarantine").body["rows"][0]
    assert row[0].startswith("label: 'zzz") and len(row[0]) < 200  # the reason shows 80 characters
    assert row[1] > 1 << 20  # the raw record is kept whole
