"""The README documents every setting."""

from __future__ import annotations

from lakehouse.config import Settings
from tests.conftest import ROOT


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"LAKE_{name.upper()}" for name in Settings.model_fields if f"`LAKE_{name.upper()}`" not in readme
    ]
    assert missing == []
