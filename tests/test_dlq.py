"""Failed ingest events are parked in the dead-letter queue and re-driven after a fix."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from lake.local.serve import deliver
from lakehouse.config import Settings
from lakehouse.errors import ContractNotFound
from lakehouse.storage import s3_client
from tests.conftest import ROOT, SENSOR_CONTRACT
from tests.test_ingest import month_rows, to_csv

pytestmark = pytest.mark.integration


def lake(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lake.cli.main", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_a_failed_event_is_parked_listed_and_replayed_after_the_fix(settings: Settings) -> None:
    name = f"late_{uuid.uuid4().hex[:8]}"  # no contract yet
    key = f"{name}/readings.csv"
    s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=to_csv(month_rows(2)))
    with pytest.raises(ContractNotFound):
        deliver(settings, settings.landing_bucket, key)

    listed = json.loads(lake("dlq", "list", "--json").stdout)
    parked = [e for e in listed if e["sources"] == [f"s3://{settings.landing_bucket}/{key}"]]
    assert len(parked) == 1 and parked[0]["error_type"] == "ContractNotFound"
    assert "no contract for dataset" in parked[0]["error"]

    failed = lake("dlq", "replay", "--id", parked[0]["message_id"])
    assert failed.returncode == 1 and "failed again" in failed.stdout  # still no contract: stays parked
    assert any(
        e["message_id"] == parked[0]["message_id"] for e in json.loads(lake("dlq", "list", "--json").stdout)
    )

    (settings.contracts_dir / f"{name}.yaml").write_text(SENSOR_CONTRACT.replace("{name}", name))
    replayed = lake("dlq", "replay", "--id", parked[0]["message_id"], "--json")
    assert replayed.returncode == 0, replayed.stderr
    result = json.loads(replayed.stdout.splitlines()[0])
    assert result["replayed"] and result["response"]["reports"][0]["rows_accepted"] == 6
    assert all(
        e["message_id"] != parked[0]["message_id"] for e in json.loads(lake("dlq", "list", "--json").stdout)
    )
