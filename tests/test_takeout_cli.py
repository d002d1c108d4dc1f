"""`lake put` of a Takeout archive (progress per product) and `lake rollup`, run as a user runs them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import takeout_synth as synth
from tests.test_cli import lake

pytestmark = pytest.mark.integration


def test_put_a_takeout_zip_shows_progress_per_product_then_rollup(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    export = synth.build(seed=99)
    archive = tmp_path / f"takeout-{uuid.uuid4().hex[:8]}.zip"
    archive.write_bytes(synth.to_zip(export.members))
    result = lake("put", str(archive))
    # Progress on stderr: one line per member, running records per product.
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    parsed_or_quarantined = len(export.members) + 1 - len(export.stored)
    assert parsed_or_quarantined <= len(progress) <= len(export.members) + 1
    # records read from parsed members, good and bad (the broken note is not one)
    activity = export.accepted["takeout_activity"] + export.quarantined_rows["takeout_activity"]
    last = progress[-1]
    assert f"activity {activity}" in last and "keep 7" in last and "location 100" in last
    assert any("quarantined (corrupt)" in line for line in progress)
    # The summary on stdout: rows per product table.
    out = result.stdout
    for table, rows in export.accepted.items():
        assert any(line.split()[:1] == [table] and f"{rows:,} rows" in line for line in out.splitlines()), (
            table
        )
    rollup = json.loads(
        lake("rollup", "takeout_keep", "--agg", "count", "--bucket", "1y", "--format", "json").stdout
    )
    assert rollup["columns"] == ["bucket", "value"] and sum(r[1] for r in rollup["rows"]) >= 7
