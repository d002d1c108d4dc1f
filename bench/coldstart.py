"""Cold-start bench: each Lambda handler's cold import and first call against a bare import of the
libraries that call cannot do without, in the same run; and the installed size of each function's
container image packages.

Usage::

    python bench/coldstart.py [--repeat N] [--handlers ingest,query,...] [--json] [--no-explain]

``--repeat`` defaults to ``$LAKE_BENCH_COLDSTART_REPEAT`` or 7. The bench starts its own local
stack in a temporary ``LAKE_HOME`` and, per handler, runs ``N`` times each, alternating which goes
first, in fresh interpreters (``python -c``: nothing imported beforehand):

* **handler**: import ``functions.<name>.handler``, make one real first call against the stack,
  then a like second (warm) call in the same process, with the function's environment pinned to
  the local stack (as ``lake invoke`` does; X-Ray tracing off as under ``sam local``):

  - ingest: an S3 ``ObjectCreated`` event for a new 200-row ``sensor_readings`` CSV (a new key per
    call, so every call commits);
  - takeout: an SQS member-range message for a new small Takeout archive (Chrome history);
  - query: ``POST /sql`` (the sample function URL event) grouping ``lake.sensor_readings``,
    result cache off;
  - maintenance: the daily schedule's input from ``template.yaml`` (retention, expire, orphans,
    audit, vectors, rollups) with ``"dry_run": true``; with no Lance data stored, the ``vectors``
    job only lists the store and loads no lancedb.

* **baseline**: a bare import of the libraries that call cannot avoid (printed per handler):
  Powertools, pydantic, boto3, pyarrow, pyiceberg's SQL catalog and Arrow IO, and DuckDB where
  the call uses it.

Clocks start inside the fresh interpreter (interpreter start-up, the same for both, is not
counted). *cold* is import + first call; *warm* is the second call, the work the call does
anyway; **ratio = median(cold − warm) / median(baseline)**, the cold-start cost the handler adds
to the libraries it needs (goal ≤ 1.25×). ``cold/base`` (work included) is printed beside it.
For a handler over the goal the bench runs it and its baseline once more under
``python -X importtime`` and names the imports that cost most beyond the baseline
(``--no-explain`` skips that). It also reports whether ``lancedb``/``lance``/``torch`` or the
text embedders were loaded by the handler import and after its calls: none of these calls
touches vectors, so none may load them. Exits non-zero when a call fails or when importing a
handler loads one of them.

Sizes: each function image installs Lake with ``pip install .`` (maintenance) or
``pip install .[embed]`` (ingest, takeout, query; ``EXTRAS=embed`` in ``functions/Dockerfile``). The size of
that dependency closure is summed from the installed distributions' ``RECORD`` files
(``importlib.metadata``), plus Lake's own source and contracts, and compared with Lambda's
250 MiB limit for zip packages (unzipped, layers included) and 10 GiB for images. The base image
(Python runtime) is not counted; figures are for this interpreter's platform.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `bench` and `lakehouse` importable
    sys.path.insert(0, str(REPO))

from bench.ingest import CONTRACTS_DIR, bench_settings, generate_csv, stop_stack  # noqa: E402
from lake.local import stack as localstack  # noqa: E402
from lakehouse.config import Settings, load_settings  # noqa: E402

EVENTS = REPO / "infra" / "events"
GOAL = 1.25
DEFAULT_REPEAT = 7
MIB = 1 << 20
ZIP_LIMIT_MIB = 250.0  # Lambda: deployment package unzipped, layers included
IMAGE_LIMIT_MIB = 10 * 1024.0  # Lambda: container image, uncompressed, base layers included
# Modules only vector work needs; a handler import (and a call without vectors) loads none.
VECTOR_MODULES = ("lancedb", "lance", "faiss", "torch", "sentence_transformers", "model2vec", "transformers")
INGEST_ROWS = 200

# Libraries every handler imports whatever it does: Powertools (logging), pydantic settings, boto3.
CORE = ("aws_lambda_powertools.logging", "pydantic", "pydantic_settings", "boto3")
# Reading an Iceberg table: the SQL catalog (here; Glue on AWS) and pyiceberg's Arrow IO.
ICEBERG = ("pyarrow", "pyiceberg.catalog.sql", "pyiceberg.io.pyarrow", "pyiceberg.table")


@dataclass(frozen=True)
class Case:
    """One handler: what its first call is, and which libraries that call cannot avoid."""

    name: str
    call: str
    baseline: tuple[str, ...]
    embed: bool  # the function's image installs the `embed` extra
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return f"functions.{self.name}.handler"


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            "ingest",
            f"S3 ObjectCreated event: a new {INGEST_ROWS}-row sensor_readings CSV, one commit",
            (*CORE, "aws_lambda_powertools.metrics", *ICEBERG, "pyarrow.csv", "duckdb"),
            embed=True,
        ),
        Case(
            "takeout",
            "SQS member-range message: a new Takeout zip (Chrome history), one commit",
            (*CORE, "aws_lambda_powertools.utilities.batch", *ICEBERG, "duckdb"),
            embed=True,
        ),
        Case(
            "query",
            "POST /sql (function URL): GROUP BY over lake.sensor_readings, result cache off",
            (*CORE, "aws_lambda_powertools.event_handler", *ICEBERG, "duckdb"),
            embed=True,
            extra_env={"LAKE_QUERY_CACHE": "false"},
        ),
        Case(
            "maintenance",
            "the daily schedule's input (retention, expire, orphans, audit, vectors, rollups), dry_run: true",
            (*CORE, *ICEBERG),
            embed=False,
        ),
    )
}

# Runs in a fresh interpreter: argv[1] is a JSON spec; prints one JSON line.
CHILD = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
vector = tuple(spec["vector_modules"])

class Context:
    function_name = spec["function_name"]
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + spec["function_name"]
    memory_limit_in_mb = 3008
    aws_request_id = spec["request_id"]
    log_group_name = "/aws/lambda/" + spec["function_name"]
    log_stream_name = "coldstart"
    def get_remaining_time_in_millis(self):
        return 900_000

started = time.perf_counter()
if spec["baseline"] is not None:
    import importlib
    for name in spec["baseline"]:
        importlib.import_module(name)
    out = {"seconds": time.perf_counter() - started}
else:
    import importlib
    module = importlib.import_module(spec["module"])
    handler = module.lambda_handler
    imported = time.perf_counter() - started
    after_import = sorted(m for m in vector if m in sys.modules)
    calls, responses = [], []
    for event in json.loads(spec["events"]):
        begun = time.perf_counter()
        responses.append(handler(event, Context()))
        calls.append(time.perf_counter() - begun)
    out = {
        "import_seconds": imported,
        "call_seconds": calls,
        "after_import": after_import,
        "after_call": sorted(m for m in vector if m in sys.modules),
        "responses": responses,
    }
print("COLDSTART " + json.dumps(out, default=str))
"""


# --------------------------------------------------------------------------- events


def _upload(settings: Settings, key: str, body: bytes) -> tuple[str, str]:
    """Upload ``body``; returns its (version id, ETag) as an S3 event names them."""
    from lakehouse.storage import s3_client

    put = s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=body)
    etag = put["ETag"].strip('"')
    return str(put.get("VersionId") or etag), etag


def ingest_event(settings: Settings, work: Path, run: int) -> dict[str, Any]:
    """An S3 event for a new small sensor_readings CSV (uploaded now, a new key per run)."""
    csv = work / f"coldstart-{run}.csv"
    generate_csv(csv, INGEST_ROWS, seed=run)
    key = f"sensor_readings/coldstart-{run}.csv"
    version, etag = _upload(settings, key, csv.read_bytes())
    event: dict[str, Any] = json.loads((EVENTS / "s3-put.json").read_text())
    s3 = event["Records"][0]["s3"]
    s3["bucket"]["name"] = settings.landing_bucket
    s3["bucket"]["arn"] = f"arn:aws:s3:::{settings.landing_bucket}"
    s3["object"].update({"key": key, "size": csv.stat().st_size, "eTag": etag, "versionId": version})
    return event


def takeout_archive(run: int) -> tuple[bytes, int]:
    """A small Takeout zip: one Chrome history member of 50 visits; returns (bytes, members)."""
    import io

    base = 1_735_689_600 + run * 86_400  # 2025-01-01 plus a day per run
    visits = [
        {
            "favicon_url": "https://example.com/favicon.ico",
            "page_transition": "LINK",
            "title": f"Page {run}-{i}",
            "url": f"https://example.com/{run}/{i}",
            "client_id": f"{run:08x}==",
            "time_usec": (base + i * 60) * 1_000_000,
        }
        for i in range(50)
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Takeout/Chrome/BrowserHistory.json", json.dumps({"Browser History": visits}))
    return buffer.getvalue(), 1


def takeout_event(settings: Settings, work: Path, run: int) -> dict[str, Any]:
    """An SQS event carrying the member range of a new small Takeout archive."""
    data, members = takeout_archive(run)
    key = f"takeout/coldstart-{run}.zip"
    version, _ = _upload(settings, key, data)
    body = {"bucket": settings.landing_bucket, "key": key, "version": version, "start": 0, "end": members}
    event: dict[str, Any] = json.loads((EVENTS / "sqs-takeout-range.json").read_text())
    record = event["Records"][0]
    record.update({"messageId": str(uuid.uuid4()), "body": json.dumps(body)})
    return event


def query_event(settings: Settings, work: Path, run: int) -> dict[str, Any]:
    """The sample function URL event: ``POST /sql`` grouping lake.sensor_readings."""
    event: dict[str, Any] = json.loads((EVENTS / "function-url-sql.json").read_text())
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    return event


def maintenance_event(settings: Settings, work: Path, run: int) -> dict[str, Any]:
    """The daily schedule's input from ``template.yaml`` (its jobs as listed there) with
    ``dry_run``."""
    from lake.local.invoke import load_template

    template = load_template(REPO / "template.yaml")
    daily = template["Resources"]["MaintenanceFunction"]["Properties"]["Events"]["Daily"]["Properties"]
    event: dict[str, Any] = json.loads((EVENTS / "schedule.json").read_text())
    event.update(json.loads(daily["Input"]))
    event["dry_run"] = True
    return event


EVENT_MAKERS = {
    "ingest": ingest_event,
    "takeout": takeout_event,
    "query": query_event,
    "maintenance": maintenance_event,
}


def check_response(name: str, response: Any) -> str | None:
    """Why a first call's response is not a success (None when it is one)."""
    if not isinstance(response, dict):
        return f"returned {type(response).__name__}"
    if name == "ingest":
        reports = response.get("reports") or []
        if not reports or reports[0].get("rows_accepted") != INGEST_ROWS:
            return f"expected {INGEST_ROWS} rows accepted: {json.dumps(response)[:300]}"
    elif name == "takeout":
        if response.get("batchItemFailures"):
            return f"batch item failures: {response['batchItemFailures']}"
    elif name == "query":
        if response.get("statusCode") != 200:
            return f"HTTP {response.get('statusCode')}: {str(response.get('body'))[:300]}"
    return None


# --------------------------------------------------------------------------- children


def child_environment(settings: Settings, work: Path, case: Case) -> dict[str, str]:
    """The function's environment, pinned to the local stack; the caller's ``LAKE_*`` left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}
    env.update(
        {
            "LAKE_HOME": str(settings.home),
            "LAKE_CONTRACTS_DIR": str(settings.contracts_dir),
            "LAKE_S3_ENDPOINT": settings.s3_endpoint or "",
            "LAKE_ACCESS_KEY_ID": settings.access_key_id or "",
            "LAKE_SECRET_ACCESS_KEY": settings.secret_access_key or "",
            "LAKE_REGION": settings.region,
            "LAKE_LANDING_BUCKET": settings.landing_bucket,
            "LAKE_WAREHOUSE_BUCKET": settings.warehouse_bucket,
            "LAKE_CATALOG_TYPE": "sql",
            "LAKE_CATALOG_URI": settings.catalog_uri or "",
            "LAKE_CATALOG_PROPERTIES": "{}",
            "LAKE_NAMESPACE": settings.namespace,
            "LAKE_DUCKDB_HOME": str(work / "duckdb"),
            "LAKE_LOG_LEVEL": "WARNING",
            "POWERTOOLS_SERVICE_NAME": "lake",
            "POWERTOOLS_METRICS_NAMESPACE": "Lake",
            # As under `sam local` and `lake invoke`: X-Ray tracing off, no daemon to send to.
            "AWS_SAM_LOCAL": "true",
            "AWS_LAMBDA_FUNCTION_NAME": f"lake-{case.name}",
            **case.extra_env,
        }
    )
    return env


def run_child(spec: dict[str, Any], env: dict[str, str], importtime: bool = False) -> dict[str, Any]:
    """Run :data:`CHILD` in a fresh interpreter; returns its JSON line (and importtime's lines)."""
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", CHILD, json.dumps(spec)]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("COLDSTART ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        raise SystemExit(f"cold-start child failed (exit {proc.returncode}): {spec.get('module')}\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("COLDSTART "))
    if importtime:
        result["importtime"] = proc.stderr
    return result


def _spec(case: Case, baseline: bool, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "module": case.module,
        "baseline": list(case.baseline) if baseline else None,
        "events": json.dumps(events),
        "function_name": f"lake-{case.name}",
        "request_id": str(uuid.uuid4()),
        "vector_modules": list(VECTOR_MODULES),
    }


def _events(settings: Settings, work: Path, case: Case, run: int) -> list[dict[str, Any]]:
    """The first call's event and a like one (a new object where the call needs one) for the warm call."""
    make = EVENT_MAKERS[case.name]
    return [make(settings, work, run), make(settings, work, run + 500)]


def measure(settings: Settings, work: Path, case: Case, repeat: int, run0: int) -> dict[str, Any]:
    """``repeat`` handler runs and ``repeat`` baseline runs, alternating which goes first."""
    env = child_environment(settings, work, case)
    handler_runs: list[dict[str, Any]] = []
    baseline_runs: list[float] = []
    for i in range(repeat):
        events = _events(settings, work, case, run0 + i)
        order = (False, True) if i % 2 == 0 else (True, False)
        for is_baseline in order:
            result = run_child(_spec(case, is_baseline, [] if is_baseline else events), env)
            if is_baseline:
                baseline_runs.append(result["seconds"])
                continue
            for response in result["responses"]:
                problem = check_response(case.name, response)
                if problem:
                    raise SystemExit(f"{case.name}: a call did not succeed: {problem}")
            handler_runs.append(result)
    cold = [r["import_seconds"] + r["call_seconds"][0] for r in handler_runs]
    warm = [r["call_seconds"][1] for r in handler_runs]
    penalty = [c - w for c, w in zip(cold, warm, strict=True)]
    baseline = statistics.median(baseline_runs)
    ratio = statistics.median(penalty) / baseline if baseline > 0 else float("inf")
    return {
        "handler": case.module,
        "first_call": case.call,
        "baseline_modules": list(case.baseline),
        "repeat": repeat,
        "import_and_first_call_median_s": round(statistics.median(cold), 4),
        "import_median_s": round(statistics.median(r["import_seconds"] for r in handler_runs), 4),
        "first_call_median_s": round(statistics.median(r["call_seconds"][0] for r in handler_runs), 4),
        "warm_call_median_s": round(statistics.median(warm), 4),
        "cold_penalty_median_s": round(statistics.median(penalty), 4),
        "baseline_median_s": round(baseline, 4),
        "import_and_first_call_all_s": [round(s, 4) for s in cold],
        "baseline_all_s": [round(s, 4) for s in baseline_runs],
        "ratio": round(ratio, 3),
        "ratio_with_warm_call": round(statistics.median(cold) / baseline, 3) if baseline > 0 else None,
        "goal_met": ratio <= GOAL,
        "vector_modules_after_import": sorted({m for r in handler_runs for m in r["after_import"]}),
        "vector_modules_after_call": sorted({m for r in handler_runs for m in r["after_call"]}),
    }


_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( +)(\S+)")
OWN_PACKAGES = ("lakehouse", "functions")


@dataclass
class Imported:
    """One line of ``python -X importtime``: a module, its own and its cumulative time (µs)."""

    name: str
    self_us: int
    cumulative_us: int
    children: list[Imported] = field(default_factory=list)


def import_tree(stderr: str) -> list[Imported]:
    """``python -X importtime`` output as a tree (it prints a module after what it imported)."""
    pending: dict[int, list[Imported]] = {}
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match is None:
            continue
        depth = (len(match.group(3)) - 1) // 2
        node = Imported(match.group(4), int(match.group(1)), int(match.group(2)))
        node.children = pending.pop(depth + 1, [])
        pending.setdefault(depth, []).append(node)
    return pending.get(0, [])


def extra_imports(handler: list[Imported], baseline: list[Imported]) -> dict[str, float]:
    """Seconds of import per package that the handler run pays beyond the baseline run.

    A package the baseline never loads counts with everything it pulls in (cumulative time, e.g.
    ``s3fs`` with aiobotocore and aiohttp); Lake's own modules and modules of baseline packages
    that the baseline did not load count with their own time.
    """
    loaded: set[str] = set()
    stack = list(baseline)
    while stack:
        node = stack.pop()
        loaded.add(node.name)
        stack.extend(node.children)
    tops = {name.split(".")[0] for name in loaded}
    extra: dict[str, float] = {}

    def walk(nodes: list[Imported]) -> None:
        for node in nodes:
            top = node.name.split(".")[0]
            if top not in tops and top not in OWN_PACKAGES:
                extra[top] = extra.get(top, 0.0) + node.cumulative_us / 1e6
                continue
            if node.name not in loaded:
                extra[top] = extra.get(top, 0.0) + node.self_us / 1e6
            walk(node.children)

    walk(handler)
    return extra


def dominant_imports(settings: Settings, work: Path, case: Case, top: int = 6) -> list[dict[str, Any]]:
    """The imports that cost the handler most beyond the baseline (one importtime run each)."""
    env = child_environment(settings, work, case)
    events = _events(settings, work, case, 10_000)
    handler = run_child(_spec(case, False, events), env, importtime=True)["importtime"]
    baseline = run_child(_spec(case, True, []), env, importtime=True)["importtime"]
    extra = extra_imports(import_tree(handler), import_tree(baseline))
    ranked = sorted(extra.items(), key=lambda item: item[1], reverse=True)[:top]
    return [{"package": name, "extra_s": round(s, 4)} for name, s in ranked]


# --------------------------------------------------------------------------- sizes


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(root: str, extras: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """Installed distributions ``pip install <root>[extras]`` brings in (root included), and the
    requirements that apply here but are not installed."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    missing: set[str] = set()
    queue: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    done: set[tuple[str, tuple[str, ...]]] = set()
    while queue:
        name, wanted = queue.pop()
        if (_canonical(name), wanted) in done:
            continue
        done.add((_canonical(name), wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.add(_canonical(name))
            continue
        seen.add(_canonical(dist.metadata["Name"]))
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": e} for e in (*wanted, "")]
            if requirement.marker is not None and not any(
                requirement.marker.evaluate(env) for env in environments
            ):
                continue
            queue.append((requirement.name, tuple(sorted(requirement.extras))))
    return seen, missing


def distribution_bytes(name: str) -> int:
    """Bytes on disk of one installed distribution's files (its RECORD)."""
    total = 0
    for file in metadata.distribution(name).files or []:
        path = Path(str(file.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total


def source_bytes() -> int:
    """Lake's own files the images copy: ``lakehouse/``, ``functions/`` and ``catalog/``."""
    total = 0
    for folder in ("lakehouse", "functions", "catalog"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                total += path.stat().st_size
    return total


def package_sizes(names: list[str]) -> dict[str, Any]:
    """Installed size of each function image's packages (core or core + embed)."""
    own = source_bytes()
    per_extra: dict[bool, dict[str, Any]] = {}
    for embed in (False, True):
        dists, missing = dependency_closure("lake", ("embed",) if embed else ())
        sizes = {d: distribution_bytes(d) for d in dists if d != "lake"}
        total = sum(sizes.values()) + own
        largest = sorted(sizes.items(), key=lambda item: item[1], reverse=True)[:5]
        per_extra[embed] = {
            "install": "pip install .[embed]" if embed else "pip install .",
            "distributions": len(sizes),
            "missing": sorted(missing),
            "mib": round(total / MIB, 1),
            "largest_mib": {d: round(b / MIB, 1) for d, b in largest},
            "over_zip_limit": total / MIB > ZIP_LIMIT_MIB,
            "under_image_limit": total / MIB < IMAGE_LIMIT_MIB,
        }
    lance = sum(distribution_bytes(d) for d in ("lancedb", "pylance") if _installed(d))
    return {
        "functions": {name: per_extra[CASES[name].embed] for name in names},
        "lancedb_and_pylance_mib": round(lance / MIB, 1),
        "zip_limit_mib": ZIP_LIMIT_MIB,
        "image_limit_mib": IMAGE_LIMIT_MIB,
    }


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


# --------------------------------------------------------------------------- run and report


def run_bench(repeat: int, names: list[str], explain: bool = True) -> dict[str, Any]:
    """Start a private stack, measure every handler, explain the ones over the goal, stop."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lake-coldstart-") as tmp:
        work = Path(tmp)
        stack_settings = load_settings(home=work / "home", contracts_dir=CONTRACTS_DIR)
        localstack.up(stack_settings)
        try:
            settings = bench_settings(stack_settings.home)
            # Ingest first: the query groups the table it fills.
            ordered = [n for n in ("ingest", "takeout", "query", "maintenance") if n in names]
            if "query" in names and "ingest" not in names:  # the query needs the table
                seed = CASES["ingest"]
                events = [ingest_event(settings, work, 99_999)]
                run_child(_spec(seed, False, events), child_environment(settings, work, seed))
            for index, name in enumerate(ordered):
                results[name] = measure(settings, work, CASES[name], repeat, run0=index * 1000)
                if explain and not results[name]["goal_met"]:
                    results[name]["dominant_imports"] = dominant_imports(settings, work, CASES[name])
        finally:
            stop_stack(stack_settings)
    bad = {
        n: r["vector_modules_after_import"] for n, r in results.items() if r["vector_modules_after_import"]
    }
    return {
        "repeat": repeat,
        "goal": GOAL,
        "handlers": results,
        "sizes": package_sizes(names),
        "vector_imports_clean": not bad,
    }


def render(report: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [
        f"Lake cold start: median of {report['repeat']} fresh interpreters per handler, against a bare "
        "import of the libraries its first call cannot avoid, in the same run.",
        "cold = import + first call; warm = a like second call in the same process; "
        "ratio = (cold - warm) / baseline import",
        "",
        f"{'handler':<13}{'import s':>9}{'1st call s':>11}{'cold s':>8}{'warm s':>8}"
        f"{'baseline s':>11}{'cold/base':>10}{'ratio':>7}  goal",
    ]
    for name, r in report["handlers"].items():
        verdict = "met" if r["goal_met"] else "not met"
        lines.append(
            f"{name:<13}{r['import_median_s']:>9.3f}{r['first_call_median_s']:>11.3f}"
            f"{r['import_and_first_call_median_s']:>8.3f}{r['warm_call_median_s']:>8.3f}"
            f"{r['baseline_median_s']:>11.3f}{r['ratio_with_warm_call']:>9.2f}×{r['ratio']:>6.2f}×"
            f"  goal ≤ {report['goal']}×: {verdict}"
        )
    lines.append("")
    for name, r in report["handlers"].items():
        after_import = ", ".join(r["vector_modules_after_import"]) or "none"
        after_call = ", ".join(r["vector_modules_after_call"]) or "none"
        lines += [
            f"{name}: first call = {r['first_call']}",
            f"  baseline imports: {', '.join(r['baseline_modules'])}",
            f"  vector libraries (lancedb, faiss, torch, embedders) loaded: by the import: {after_import}; "
            f"after the first call: {after_call}",
        ]
        if r.get("dominant_imports"):
            found = sum(item["extra_s"] for item in r["dominant_imports"])
            lines.append(
                f"  over the goal; python -X importtime finds {found * 1000:.0f} ms of imports beyond the "
                "baseline (the rest of the penalty is first-use set-up: clients, catalog, DuckDB):"
            )
        for item in r.get("dominant_imports", []):
            lines.append(f"    {item['package']} +{item['extra_s'] * 1000:.0f} ms")
    sizes = report["sizes"]
    lines += [
        "",
        f"Installed size of each function's packages (RECORD files; base image not counted; "
        f"zip limit {sizes['zip_limit_mib']:.0f} MiB, image limit {sizes['image_limit_mib'] / 1024:.0f} GiB; "
        f"lancedb + pylance alone: {sizes['lancedb_and_pylance_mib']:.0f} MiB)",
    ]
    for name, s in sizes["functions"].items():
        zip_verdict = "over the zip limit" if s["over_zip_limit"] else "fits a zip"
        image_verdict = "fits an image" if s["under_image_limit"] else "over the image limit"
        largest = ", ".join(f"{d} {mib:.0f}" for d, mib in s["largest_mib"].items())
        lines.append(
            f"  {name:<12} {s['install']:<22} {s['mib']:>8.1f} MiB  {zip_verdict}, {image_verdict}"
            f"  (largest MiB: {largest})"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    default_repeat = int(os.environ.get("LAKE_BENCH_COLDSTART_REPEAT", DEFAULT_REPEAT))
    parser.add_argument(
        "--repeat",
        type=int,
        default=default_repeat,
        help=f"fresh interpreters per side (default {default_repeat})",
    )
    parser.add_argument(
        "--handlers", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--no-explain", action="store_true", help="skip the importtime run of handlers over the goal"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    unknown = set(args.handlers.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown handlers: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run_bench(args.repeat, args.handlers.split(","), explain=not args.no_explain)
    print(json.dumps(report, indent=2) if args.json else render(report))
    if not report["vector_imports_clean"]:
        print("a handler import loads lancedb, torch or an embedder", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
