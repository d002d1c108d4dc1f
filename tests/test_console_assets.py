"""The console's vendored files match their manifest (no npm needed), and the page uses no
inline script or style, so it works under the strict Content-Security-Policy it is served with."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "functions" / "query" / "console"
VENDOR = CONSOLE / "vendor"
SCRIPT = ROOT / "console" / "vendor.py"


def check(dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--dest", str(dest)], capture_output=True, text=True
    )


def test_vendored_files_match_the_manifest() -> None:
    done = check(VENDOR)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((VENDOR / "MANIFEST.json").read_text())["packages"]
    assert manifest["@picocss/pico"]["version"].startswith("2.1.")
    assert manifest["@alpinejs/csp"]["version"].startswith("3.")
    assert manifest["uplot"]["version"].startswith("1.6.")
    lock = json.loads((ROOT / "console" / "package-lock.json").read_text())["packages"]
    for package, entry in manifest.items():  # the manifest is what the lock file pins
        assert lock[f"node_modules/{package}"]["version"] == entry["version"], package


def test_a_changed_missing_or_extra_file_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR, copy)
    (copy / "uPlot.iife.min.js").write_text((copy / "uPlot.iife.min.js").read_text() + ";")
    (copy / "LICENSE.pico.md").unlink()
    (copy / "extra.js").write_text("")
    done = check(copy)
    assert done.returncode == 1
    assert "uPlot.iife.min.js (uplot 1.6.32): sha256 differs" in done.stderr
    assert "LICENSE.pico.md (@picocss/pico): missing" in done.stderr
    assert "not in the manifest: extra.js" in done.stderr


def test_the_page_has_no_inline_script_style_or_outside_url() -> None:
    page = (CONSOLE / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline <script>"
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"\son[a-z]+=", page), "inline event handler"
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "a file from another origin"
    code = (CONSOLE / "app.js").read_text()
    assert "innerHTML" not in code and "eval(" not in code and "new Function" not in code
    assert "x-html" not in page


def test_package_data_ships_every_console_file() -> None:
    """The console reaches the function images as package data of `functions`."""
    import tomllib
    from pathlib import PurePosixPath

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = [PurePosixPath(p) for p in patterns["functions"]]
    for path in CONSOLE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            name = PurePosixPath(path.relative_to(ROOT / "functions").as_posix())
            assert any(len(p.parts) == len(name.parts) and name.match(str(p)) for p in shipped), name
