"""The ``scale`` extra: its pins, how ``make`` installs it, and that nothing else imports it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _extra() -> dict[str, str]:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["scale"]
    return {re.split(r"[=<>\[]", p, maxsplit=1)[0]: p for p in pins}


def test_scale_extra_is_pinned_exactly_and_the_makefile_installs_the_same_pins() -> None:
    extra = _extra()
    assert set(extra) == {"daft", "ray", "daft-lance"}
    assert all("==" in pin for pin in extra.values())
    makefile = (ROOT / "Makefile").read_text()
    assert f"DAFT_PIN := '{extra['daft']}'" in makefile
    scale_pins = re.search(r"^SCALE_PINS := (.*)$", makefile, re.M)
    assert scale_pins is not None
    assert f"'{extra['ray']}'" in scale_pins.group(1) and f"'{extra['daft-lance']}'" in scale_pins.group(1)
    # daft goes in without its dependencies (it caps pyarrow below Lake's), then the rest.
    assert "--no-deps $(DAFT_PIN)" in makefile and "$(SCALE_PINS)" in makefile


def test_functions_and_the_cli_start_without_daft_or_ray() -> None:
    probe = (
        "import sys, functions.ingest.handler, functions.query.handler, lake.cli.main, "
        "lakehouse.scale.backfill, lakehouse.scale.sql, lakehouse.scale.reembed; "
        "lake.cli.main.build_parser(); "
        "print(sorted(m for m in ('daft', 'ray') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
