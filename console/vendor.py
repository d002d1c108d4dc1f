"""Vendor the web console's third-party files, reproducibly.

    cd console && npm ci --ignore-scripts      # the exact versions of package-lock.json
    python console/vendor.py                    # copy the named files + licences, write the manifest
    python console/vendor.py --check            # verify the committed files (no npm needed)

The copies land in ``functions/query/console/vendor/`` (package data of the query function) with
``MANIFEST.json``: for every file its package, version, source path in the package, size and
SHA-256. ``make test`` runs ``--check`` through tests/test_console_assets.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"
DEST = HERE.parent / "functions" / "query" / "console" / "vendor"
MANIFEST = "MANIFEST.json"

# package -> {file name in vendor/: path inside the package (or console/licenses/ for a licence
# the npm package does not ship)}
FILES: dict[str, dict[str, str]] = {
    "@picocss/pico": {
        "pico.min.css": "css/pico.min.css",
        "LICENSE.pico.md": "LICENSE.md",
    },
    "@alpinejs/csp": {
        "alpine-csp.min.js": "dist/cdn.min.js",
        # Neither @alpinejs/csp nor alpinejs ships its licence file: the repository's LICENSE.md.
        "LICENSE.alpinejs.md": "@licenses/alpinejs-LICENSE.md",
    },
    # Bundled inside alpine-csp.min.js (its reactivity core): its licence travels with it.
    "@vue/reactivity": {
        "LICENSE.vue-reactivity": "LICENSE",
    },
    "uplot": {
        "uPlot.iife.min.js": "dist/uPlot.iife.min.js",
        "uPlot.min.css": "dist/uPlot.min.css",
        "LICENSE.uplot": "LICENSE",
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor(dest: Path) -> dict[str, object]:
    """Copy the files from node_modules into ``dest`` and write the manifest; returns it."""
    if not MODULES.is_dir():
        raise SystemExit("console/node_modules is missing: run `npm ci --ignore-scripts` in console/ first")
    dest.mkdir(parents=True, exist_ok=True)
    packages: dict[str, object] = {}
    for package, files in FILES.items():
        meta = json.loads((MODULES / package / "package.json").read_text())
        entries = {}
        for name, source in files.items():
            origin = (
                HERE / "licenses" / source[10:]
                if source.startswith("@licenses/")
                else MODULES / package / source
            )
            shutil.copyfile(origin, dest / name)
            entries[name] = {
                "source": source,
                "bytes": (dest / name).stat().st_size,
                "sha256": sha256(dest / name),
            }
        packages[package] = {"version": meta["version"], "license": meta.get("license"), "files": entries}
    manifest = {"packages": packages}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def check(dest: Path) -> list[str]:
    """Problems of the vendored files in ``dest`` against their manifest (empty: all good)."""
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        return [f"{dest / MANIFEST}: {e}"]
    problems = []
    listed = {MANIFEST}
    for package, entry in manifest["packages"].items():
        if set(entry["files"]) != set(FILES.get(package, {})):
            named = sorted(FILES.get(package, {}))
            problems.append(f"{package}: manifest lists {sorted(entry['files'])}, vendor.py names {named}")
        for name, want in entry["files"].items():
            listed.add(name)
            path = dest / name
            if not path.is_file():
                problems.append(f"{name} ({package}): missing")
            elif sha256(path) != want["sha256"]:
                problems.append(f"{name} ({package} {entry['version']}): sha256 differs from the manifest")
    if missing := set(FILES) - set(manifest["packages"]):
        problems.append(f"not in the manifest: {', '.join(sorted(missing))}")
    if extra := {p.name for p in dest.iterdir()} - listed:
        problems.append(f"not in the manifest: {', '.join(sorted(extra))}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="verify the vendored files against the manifest")
    parser.add_argument("--dest", type=Path, default=DEST, help="vendor folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.dest)
        for problem in problems:
            print(problem, file=sys.stderr)
        print("vendored files match the manifest" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    manifest = vendor(args.dest)
    print(json.dumps({k: v["version"] for k, v in manifest["packages"].items()}))  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
