"""Takeout bench: a generated Google Takeout archive of ``--size-mb`` (default 1024) ingested by
Lake from the local S3 endpoint, against a baseline measured in the same run.

Usage::

    python bench/takeout.py [--size-mb N] [--steps S] [--workers K] [--rss-limit-mib M] [--json]

The bench starts its own local stack in a temporary ``LAKE_HOME`` and, for each of ``--steps``
archive sizes (default 3: ``N``/16, ``N``/4 and ``N`` MiB), writes a zip in the shape of a real
export to a temporary folder (streamed: the generator never holds a member in memory) and
uploads it. Three quarters of its bytes are photos (random bytes, stored, as JPEGs
are: photos dominate real exports); the rest is deflated JSON of every product Lake parses:
``Records.json`` (the largest member), My Activity of several products, Chrome history, YouTube
history, Semantic Location History months and Keep notes. Then, each phase in a fresh
interpreter so that its peak RSS is its own:

* **Lake**: ``lakehouse.takeout.ingest_archive`` on the uploaded archive: central directory and
  members read with ranged GETs over HTTP, every member kept as a content-addressed blob,
  records validated against their contracts and committed to seven Iceberg tables.
* **baseline**: plain ``zipfile`` iteration over the same archive on local disk, ``json.load``
  of the same members and a count of their records; nothing is validated, written or uploaded.

The Lake phase runs with the ingest function's allocator environment (``template.yaml``:
``ARROW_DEFAULT_MEMORY_POOL=system``, ``MALLOC_ARENA_MAX=2``, ``MALLOC_MMAP_THRESHOLD_=131072``).

Both must count exactly the records the generator wrote (else the bench exits non-zero). The
report gives, per archive size, rows/s of both and their ratio, and peak RSS of both: Lake's is
bounded by batch size and workers and stays flat from the smallest archive to the largest; the
baseline's grows with the largest member. With ``--rss-limit-mib`` the bench exits 1 when
Lake's peak RSS at any size is over it.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Distilled embedding models are build artifacts (an image bakes them in): made once, not timed.
MODELS = REPO / ".lake" / "models"
if str(REPO) not in sys.path:  # run as a script: make `bench` and `lakehouse` importable
    sys.path.insert(0, str(REPO))

from bench.ingest import CONTRACTS_DIR, bench_settings, stop_stack  # noqa: E402
from bench.ingest_large import ALLOCATOR_ENV  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, load_settings  # noqa: E402

KEY = "takeout/bench-takeout.zip"
SEED = 20251124
START = 1_609_459_200  # 2021-01-01
SPAN = 3 * 365 * 86400
# Share of the JSON bytes per member family.
SHARES = {"records": 0.40, "activity": 0.25, "chrome": 0.12, "youtube": 0.10, "semantic": 0.12}
ACTIVITY_PRODUCTS = (
    "Search",
    "Maps",
    "Chrome",
    "Android",
    "Google Play Store",
    "Image Search",
    "News",
    "Shopping",
)


# --------------------------------------------------------------------------- process helpers


def peak_rss_mib() -> float:
    """Peak RSS of this process image (``VmHWM``; ``ru_maxrss`` where /proc is missing), MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def takeout_settings(home: Path, workers: int | None = None) -> Settings:
    """:func:`bench.ingest.bench_settings`, with the Takeout worker count when one is given."""
    settings = bench_settings(home)
    return settings.model_copy(update={"takeout_workers": workers}) if workers else settings


# --------------------------------------------------------------------------- the archive


def _iso(t: int, rng: random.Random) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{rng.randrange(1000):03d}Z"


def _token(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"


def _e7(rng: random.Random, bound: int) -> int:
    return rng.randrange(-bound, bound)


def _location(rng: random.Random, t: int) -> str:
    activity = ""
    if rng.random() < 0.2:
        activity = (
            f', "activity": [{{"timestamp": "{_iso(t, rng)}", '
            f'"activity": [{{"type": "STILL", "confidence": {rng.randrange(100)}}}]}}]'
        )
    return (
        f'{{"latitudeE7": {_e7(rng, 900_000_000)}, "longitudeE7": {_e7(rng, 1_800_000_000)}, '
        f'"accuracy": {rng.randrange(3, 3000)}, "source": "WIFI", "deviceTag": {rng.randrange(1, 2**31)}, '
        f'"timestamp": "{_iso(t, rng)}"{activity}}}'
    )


def _activity(rng: random.Random, t: int, product: str) -> str:
    return (
        f'{{"header": "{product}", "title": "Visited {_token(rng)}", '
        f'"titleUrl": "https://www.google.com/url?q={_token(rng)}", "time": "{_iso(t, rng)}", '
        f'"products": ["{product}"], "activityControls": ["Web & App Activity"]}}'
    )


def _chrome(rng: random.Random, t: int) -> str:
    return (
        '{"favicon_url": "https://example.com/favicon.ico", "page_transition": "LINK", '
        f'"title": "Page {_token(rng)}", "url": "https://example.com/{_token(rng)}", '
        f'"client_id": "{_token(rng)}==", "time_usec": {t * 1_000_000 + rng.randrange(10**6)}}}'
    )


def _youtube(rng: random.Random, t: int) -> str:
    return (
        f'{{"header": "YouTube", "title": "Watched {_token(rng)}", '
        f'"titleUrl": "https://www.youtube.com/watch?v={_token(rng)}", '
        f'"subtitles": [{{"name": "Channel {rng.randrange(500)}", '
        f'"url": "https://www.youtube.com/channel/{_token(rng)}"}}], "time": "{_iso(t, rng)}", '
        '"products": ["YouTube"], "activityControls": ["YouTube watch history"]}'
    )


def _semantic(rng: random.Random, t: int) -> str:
    duration = f'"duration": {{"startTimestampMs": "{t * 1000}", "endTimestampMs": "{(t + 1800) * 1000}"}}'
    if rng.random() < 0.6:
        return (
            f'{{"placeVisit": {{"location": {{"latitudeE7": {_e7(rng, 800_000_000)}, '
            f'"longitudeE7": {_e7(rng, 1_700_000_000)}, "placeId": "ChIJ{_token(rng)}", '
            f'"address": "{rng.randrange(999)} Some Street", "name": "Place {_token(rng)}", '
            f'"locationConfidence": 71.5}}, {duration}, "placeConfidence": "HIGH_CONFIDENCE"}}}}'
        )
    return (
        f'{{"activitySegment": {{"startLocation": {{"latitudeE7": {_e7(rng, 800_000_000)}, '
        f'"longitudeE7": {_e7(rng, 1_700_000_000)}}}, '
        f'"endLocation": {{"latitudeE7": {_e7(rng, 800_000_000)}, '
        f'"longitudeE7": {_e7(rng, 1_700_000_000)}}}, {duration}, "distance": {rng.randrange(50, 20000)}, '
        '"activityType": "WALKING", "confidence": "HIGH"}}'
    )


def _members(json_bytes: int, months: int) -> Iterator[tuple[str, str, str | None, Any]]:
    """(path, table, wrapper key or None, record maker) of every JSON array member."""
    yield (
        "Takeout/Location History/Records.json",
        "takeout_location",
        "locations",
        (_location, int(json_bytes * SHARES["records"])),
    )
    for product in ACTIVITY_PRODUCTS:
        size = int(json_bytes * SHARES["activity"] / len(ACTIVITY_PRODUCTS))
        yield (
            f"Takeout/My Activity/{product}/MyActivity.json",
            "takeout_activity",
            None,
            (lambda rng, t, p=product: _activity(rng, t, p), size),
        )
    yield (
        "Takeout/Chrome/BrowserHistory.json",
        "takeout_chrome",
        "Browser History",
        (_chrome, int(json_bytes * SHARES["chrome"])),
    )
    yield (
        "Takeout/YouTube and YouTube Music/history/watch-history.json",
        "takeout_youtube",
        None,
        (_youtube, int(json_bytes * SHARES["youtube"])),
    )
    for month in range(months):
        name = f"{2020 + month // 12}/{2020 + month // 12}_{month % 12 + 1:02d}.json"
        yield (
            f"Takeout/Location History/Semantic Location History/{name}",
            "takeout_places",
            "timelineObjects",
            (_semantic, int(json_bytes * SHARES["semantic"] / months)),
        )


def generate_archive(path: Path, size_mb: int, seed: int = SEED) -> dict[str, Any]:
    """Write the archive; returns its size and the records written per table."""
    rng = random.Random(seed)
    target = size_mb << 20
    # Photos (stored, incompressible) fill 3/4 of the archive, JSON (deflates ~5x) the rest.
    json_bytes, photo_bytes = int(target * 0.25 * 5.0), target * 3 // 4
    counts: Counter[str] = Counter()
    # Three years of history; a tiny archive (the test suite's run) spans a few months only.
    months = 36 if size_mb >= 18 else max(3, 2 * size_mb)
    span = months * SPAN // 36
    largest = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for member, table, key, (make, size) in _members(json_bytes, min(24, months)):
            written = 0
            # Takeout members run in time order: records step through the span as the member grows.
            expected = max(1, size // 220)
            with zf.open(member, "w", force_zip64=True) as out:
                out.write((f'{{"{key}": [' if key else "[").encode())
                chunk: list[str] = []
                n = 0
                while written < size:
                    t = START + min(n, expected) * span // expected
                    record = make(rng, t) if n == 0 else "," + make(rng, t)
                    chunk.append(record)
                    written += len(record)
                    n += 1
                    if len(chunk) >= 2000:
                        out.write("".join(chunk).encode())
                        chunk = []
                out.write(("".join(chunk) + ("]}" if key else "]")).encode())
                counts[table] += n
            largest = max(largest, written)
        for i in range(min(2000, max(1, json_bytes // 200_000))):
            note = {
                "color": "DEFAULT",
                "isTrashed": False,
                "isPinned": False,
                "isArchived": False,
                "textContent": _token(rng) * 8,
                "title": f"Note {i}",
                "userEditedTimestampUsec": (START + rng.randrange(span)) * 10**6,
                "createdTimestampUsec": START * 10**6,
                "labels": [{"name": "bench"}],
            }
            zf.writestr(f"Takeout/Keep/Note {i}.json", json.dumps(note))
            counts["takeout_keep"] += 1
        photo = 0
        while photo < photo_bytes:
            size = min(8 << 20, photo_bytes - photo)
            info = zipfile.ZipInfo(f"Takeout/Google Photos/Bench/IMG_{photo >> 20:06d}.jpg")
            with zf.open(info, "w", force_zip64=True) as out:
                left = size
                while left:
                    n = min(1 << 20, left)
                    out.write(rng.randbytes(n))
                    left -= n
            photo += size
    return {"archive_bytes": path.stat().st_size, "records": dict(counts), "largest_member_bytes": largest}


# --------------------------------------------------------------------------- phases


def phase_lake(settings: Settings, key: str) -> dict[str, Any]:
    from lakehouse.takeout import ingest_archive

    started = time.perf_counter()
    report = ingest_archive(settings, settings.landing_bucket, key)
    seconds = time.perf_counter() - started
    rows = {t: c["rows"] + c["rows_quarantined"] for t, c in report.products.items()}
    return {"seconds": seconds, "records": rows, "members": report.members, "blobs": report.blobs_written}


def phase_baseline(archive: Path) -> dict[str, Any]:
    from lakehouse.takeout.products import route

    started = time.perf_counter()
    counts: Counter[str] = Counter()
    members = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            members += 1
            routed = route(info.filename)
            if routed is None:
                continue
            with zf.open(info) as f:
                data = json.load(f)
            table = routed[0].table
            if table == "takeout_keep":
                counts[table] += 1
            elif isinstance(data, list):
                counts[table] += len(data)
            else:
                key = {"takeout_location": "locations", "takeout_chrome": "Browser History"}.get(
                    table, "timelineObjects"
                )
                counts[table] += len(data[key])
            del data
    return {"seconds": time.perf_counter() - started, "records": dict(counts), "members": members}


def run_phase(args: argparse.Namespace) -> None:
    if args.phase == "lake":
        result = phase_lake(takeout_settings(Path(args.home), args.workers), args.key)
    else:
        result = phase_baseline(Path(args.archive))
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    Path(args.out).write_text(json.dumps(result))


def spawn_phase(
    phase: str, home: Path, archive: Path, out: Path, workers: int | None, key: str = KEY
) -> dict[str, Any]:
    import os

    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phase",
        phase,
        "--home",
        str(home),
        "--archive",
        str(archive),
        "--out",
        str(out),
        "--key",
        key,
    ]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, **ALLOCATOR_ENV, "LAKE_MODELS_DIR": str(MODELS)} if phase == "lake" else None
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False, env=env)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"bench phase {phase!r} failed (exit code {proc.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def bench_sizes(size_mb: int, steps: int) -> list[int]:
    """``steps`` archive sizes ending at ``size_mb``, each a quarter of the next (at least 1 MiB)."""
    sizes = sorted({max(1, size_mb >> (2 * i)) for i in range(steps)})
    return sizes


def _measure(
    work: Path, size_mb: int, settings: Settings, home: Path, workers: int | None
) -> dict[str, Any]:
    """Generate one archive, upload it, run both phases on it."""
    from lakehouse.storage import s3_client

    archive = work / f"takeout-{size_mb}.zip"
    key = f"takeout/bench-takeout-{size_mb}.zip"
    started = time.perf_counter()
    generated = generate_archive(archive, size_mb)
    generate_seconds = time.perf_counter() - started
    s3_client(settings).upload_file(str(archive), settings.landing_bucket, key)
    lake = spawn_phase("lake", home, archive, work / f"lake-{size_mb}.json", workers, key)
    base = spawn_phase("baseline", home, archive, work / f"base-{size_mb}.json", workers, key)
    archive.unlink()
    expected = generated["records"]
    for name, phase in (("lake", lake), ("baseline", base)):
        if phase["records"] != expected:
            raise SystemExit(f"{name} counted {phase['records']}, the generator wrote {expected}")
    rows = sum(expected.values())
    for phase in (lake, base):
        phase["rows"] = rows
        phase["seconds"] = round(phase["seconds"], 3)
        phase["rows_per_second"] = round(rows / phase["seconds"], 1)
    return {
        "size_mb": size_mb,
        "archive_bytes": generated["archive_bytes"],
        "archive_mib": round(generated["archive_bytes"] / 2**20, 1),
        "largest_member_mib": round(generated["largest_member_bytes"] / 2**20, 1),
        "generate_seconds": round(generate_seconds, 1),
        "rows": rows,
        "records": expected,
        "lake": lake,
        "baseline": base,
        "ratio": round(lake["rows_per_second"] / base["rows_per_second"], 3),
        "rss_ratio": round(lake["peak_rss_mib"] / base["peak_rss_mib"], 3),
    }


def run_bench(size_mb: int, workers: int | None = None, steps: int = 3) -> dict[str, Any]:
    """Every size of :func:`bench_sizes`; the largest run's figures at the top level, all in ``runs``."""
    with tempfile.TemporaryDirectory(prefix="lake-bench-takeout-") as tmp:
        work = Path(tmp)
        stack_settings = load_settings(home=work / "home", contracts_dir=CONTRACTS_DIR)
        localstack.up(stack_settings)
        try:
            settings = takeout_settings(stack_settings.home)
            runs = [
                _measure(work, size, settings, stack_settings.home, workers)
                for size in bench_sizes(size_mb, steps)
            ]
        finally:
            stop_stack(stack_settings)
    peaks = [r["lake"]["peak_rss_mib"] for r in runs]
    return {
        **runs[-1],
        "runs": runs,
        "workers": settings.takeout_workers if workers is None else workers,
        "batch_rows": settings.batch_rows,
        "allocator_env": ALLOCATOR_ENV,
        "lake_peak_rss_spread_mib": round(max(peaks) - min(peaks), 1),
    }


def render(r: dict[str, Any]) -> str:
    lines = [
        f"Lake with {r['workers']} workers, LAKE_BATCH_ROWS={r['batch_rows']}, "
        + " ".join(f"{k}={v}" for k, v in r["allocator_env"].items()),
        f"{'archive MiB':>11} {'largest':>8} {'records':>11} {'':9} {'seconds':>9} {'rows/s':>10} "
        f"{'peak RSS MiB':>13}",
    ]
    for run in r["runs"]:
        for name in ("lake", "baseline"):
            p = run[name]
            head = (
                f"{run['archive_mib']:>11} {run['largest_member_mib']:>8} {run['rows']:>11,}"
                if name == "lake"
                else " " * 32
            )
            lines.append(
                f"{head} {name:9} {p['seconds']:>9} {p['rows_per_second']:>10,.0f} {p['peak_rss_mib']:>13}"
            )
    first, last = r["runs"][0], r["runs"][-1]
    lines.append(
        f"lake peak RSS: {first['lake']['peak_rss_mib']} MiB at {first['archive_mib']} MiB, "
        f"{last['lake']['peak_rss_mib']} MiB at {last['archive_mib']} MiB "
        f"(spread {r['lake_peak_rss_spread_mib']} MiB over {len(r['runs'])} sizes); baseline "
        f"{first['baseline']['peak_rss_mib']} → {last['baseline']['peak_rss_mib']} MiB"
    )
    lines.append(
        f"largest archive, lake/baseline: {r['ratio']}x the rows/s, {r['rss_ratio']}x the peak RSS "
        "(lake also validates, uploads every member as a blob and commits; the baseline only parses)"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ingest a generated Takeout archive; compare with zipfile+json."
    )
    parser.add_argument(
        "--size-mb", type=int, default=1024, help="largest archive size in MiB (default 1024)"
    )
    parser.add_argument(
        "--steps", type=int, default=3, help="archive sizes, 4x apart, up to --size-mb (default 3)"
    )
    parser.add_argument("--rss-limit-mib", type=float, help="exit 1 when Lake's peak RSS is over this")
    parser.add_argument("--workers", type=int, help="LAKE_TAKEOUT_WORKERS for the Lake phase")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--phase", choices=["lake", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--archive", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--key", default=KEY, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size_mb < 1:
        parser.error("--size-mb must be at least 1")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def prepare_models() -> None:
    """Distil the static embedder (Keep notes and activity titles) before anything is measured."""
    code = (
        "from lakehouse.config import Settings; from lakehouse.vectors.embedders import get_embedder; "
        f"get_embedder('static', Settings(models_dir={str(MODELS)!r}))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, stdin=subprocess.DEVNULL, cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase:
        run_phase(args)
        return 0
    prepare_models()
    result = run_bench(args.size_mb, args.workers, args.steps)
    print(json.dumps(result) if args.json else render(result))
    limit = args.rss_limit_mib
    if limit and any(r["lake"]["peak_rss_mib"] > limit for r in result["runs"]):
        print(f"Lake's peak RSS is over --rss-limit-mib {args.rss_limit_mib:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
