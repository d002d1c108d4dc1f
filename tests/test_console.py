"""The web console in a real browser (Debian's Chromium driven by Playwright) against `lake serve`
on the local stack: every view renders the lake's data, under the console's strict CSP, with no
console error and no request leaving 127.0.0.1.

Screenshots of a failing test go to ``.lake/console-failures/``; with ``LAKE_CONSOLE_SCREENSHOTS``
set to a folder (``docs/console`` for the README), each view is also saved there.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lake.local.serve import deliver
from lakehouse.catalog import get_catalog, load_table
from lakehouse.config import Settings, load_settings
from lakehouse.maintenance import MaintenanceOptions, run_maintenance
from lakehouse.storage import s3_client

# One worker runs the whole module (make test: --dist loadgroup): one browser, one dataset.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("console")]

ROOT = Path(__file__).resolve().parent.parent
FAILURES = ROOT / ".lake" / "console-failures"
# Read at import: the session's lake_env fixture clears LAKE_* variables before the tests run.
SCREENSHOTS = os.environ.get("LAKE_CONSOLE_SCREENSHOTS")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

SENSORS = """
name: {name}
description: Readings for the console test
event_time: ts
columns:
  ts:        {type: timestamp, required: true, description: When the reading was taken}
  sensor_id: {type: string, required: true, description: Which sensor}
  temp_c:    {type: double, min: -90, max: 60}
  status:    {type: string, enum: [ok, degraded, failed]}
"""


def chromium_path() -> str | None:
    for candidate in (
        "/usr/lib/chromium/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _csv(rows: list[tuple[str, str, float, str]]) -> bytes:
    return ("ts,sensor_id,temp_c,status\n" + "".join(f"{t},{s},{c},{st}\n" for t, s, c, st in rows)).encode()


def _put(settings: Settings, dataset: str, filename: str, data: bytes) -> dict[str, Any]:
    key = f"{dataset}/{filename}"
    s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=data)
    report: dict[str, Any] = deliver(settings, settings.landing_bucket, key)["reports"][0]
    return report


@pytest.fixture(scope="module")
def lake_data(stack: dict[str, Any]) -> dict[str, Any]:
    """Two small datasets: sensor readings in two uploads (the second with bad rows) and the
    support tickets sample (text embedded with MiniLM), plus one recorded maintenance run."""
    settings = load_settings()
    suffix = uuid.uuid4().hex[:6]
    sensors, tickets = f"console_sensors_{suffix}", f"console_tickets_{suffix}"
    (settings.contracts_dir / f"{sensors}.yaml").write_text(SENSORS.replace("{name}", sensors))
    contract = (ROOT / "catalog" / "datasets" / "support_tickets.yaml").read_text()
    (settings.contracts_dir / f"{tickets}.yaml").write_text(
        contract.replace("name: support_tickets", f"name: {tickets}")
    )
    first = [
        (f"2026-01-{d:02d}T{h:02d}:00:00Z", f"s-{h % 3}", 10.0 + h, "ok") for d in (1, 2) for h in range(12)
    ]
    second = [(f"2026-02-03T{h:02d}:00:00Z", f"s-{h % 3}", 12.5, "degraded") for h in range(16)]
    second += [("2026-02-04T01:00:00Z", "s-9", 999.0, "ok"), ("2026-02-04T02:00:00Z", "s-9", 1.0, "exploded")]
    _put(settings, sensors, "a.csv", _csv(first))
    report = _put(settings, sensors, "b.csv", _csv(second))
    assert report["rows_quarantined"] == 2, report
    _put(
        settings,
        tickets,
        "tickets.ndjson",
        (ROOT / "infra" / "samples" / "support_tickets.ndjson").read_bytes(),
    )
    run_maintenance(settings, MaintenanceOptions(jobs=("compact",), tables=(f"lake.{sensors}",)))
    table = load_table(get_catalog(settings), settings, sensors)
    return {
        "sensors": sensors,
        "tickets": tickets,
        "snapshots": [str(s.snapshot_id) for s in table.metadata.snapshots],
        "rows": [len(first), len(first) + len(second) - 2],  # good rows after each upload
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: pip install -e '.[dev]'"
    )
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "Debian's Chromium is not installed: apt-get install -y --no-install-recommends chromium "
            "(make test installs it)"
        )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Session:
    """One browser tab on the console, with what it saw: console errors and outside requests."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.key = ""
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _route(self, route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def expect_errors(self, status: int) -> None:
        """Drop the browser's 'Failed to load resource' lines of requests meant to fail."""
        self.errors[:] = [e for e in self.errors if f"status of {status}" not in e]

    def view(self, hash_: str, ready: str) -> None:
        self.page.goto(f"{self.base}/console{hash_}")
        self.page.wait_for_selector(ready, timeout=60_000)

    def save(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def console(
    browser: Any, serve_url: str, lake_data: dict[str, Any], make_key: Callable[..., str]
) -> Iterator[Session]:
    """One tab for the module, signed in with a write key (kept in the tab's sessionStorage)."""
    session = Session(browser, serve_url)
    session.key = make_key("write")
    session.view("", "#token")
    session.page.fill("#token", session.key)
    session.page.click("#sign-in")
    session.page.wait_for_selector(f"#tables-table td:has-text('{lake_data['sensors']}')", timeout=60_000)
    yield session
    session.context.close()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed and "console" in request.fixturenames:
        FAILURES.mkdir(parents=True, exist_ok=True)
        path = FAILURES / f"{request.node.name}.png"
        request.getfixturevalue("console").page.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the failure: {path}")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def test_console_files_are_served_with_csp_etag_and_cache_control(serve_url: str) -> None:
    status, headers, body = _get(f"{serve_url}/console")
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["cache-control"] == "no-cache" and headers["etag"].startswith('"')
    assert b'src="/console/vendor/alpine-csp.min.js"' in body and b"<script>" not in body
    assert _get(f"{serve_url}/console", {"If-None-Match": headers["etag"]})[0] == 304
    status, headers, body = _get(f"{serve_url}/console/vendor/uPlot.iife.min.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert "max-age=3600" in headers["cache-control"] and "content-security-policy" in headers
    assert _get(f"{serve_url}/console/vendor/nothing.js")[0] == 404
    assert _get(f"{serve_url}/console/..%2Fhandler.py")[0] == 404
    assert _get(f"{serve_url}/tables")[0] == 401  # the page is open; the data is not


def test_sign_in_refuses_a_bad_key_then_shows_the_tables(console: Session, lake_data: dict[str, Any]) -> None:
    page = console.page
    console.view("#/tables", "#tables-table tbody tr")
    page.click("#sign-out")
    assert page.evaluate("sessionStorage.getItem('lake.token')") is None
    page.wait_for_selector("#token")
    page.fill("#token", "lake_nope_nope")
    page.click("#sign-in")
    page.wait_for_selector("#error:has-text('401')")
    console.expect_errors(401)
    page.fill("#token", console.key)
    page.click("#sign-in")
    row = page.locator("#tables-table tr", has_text=lake_data["sensors"]).first
    row.wait_for()
    assert f"\t{lake_data['rows'][1]}\t" in row.inner_text()  # rows of the sensor table
    page.fill("#table-filter", lake_data["tickets"])
    page.wait_for_function(
        "n => document.querySelectorAll('#tables-table tbody tr').length === n", arg=2, timeout=10_000
    )
    assert page.evaluate("sessionStorage.getItem('lake.token')").startswith("lake_")
    page.fill("#table-filter", "")
    console.save("tables")


def test_table_view_as_of_changes_the_numbers_and_keeps_snapshot_ids_exact(
    console: Session, lake_data: dict[str, Any]
) -> None:
    page, name = console.page, f"lake.{lake_data['sensors']}"
    console.view(f"#/table/{name}", "#schema-table td:has-text('When the reading was taken')")
    page.wait_for_selector(f"#table-rows:has-text('{lake_data['rows'][1]}')")
    assert page.locator("#timeline-chart canvas").count() == 1
    assert page.locator("#partitions-table tbody tr").count() >= 1
    assert page.locator("#preview-table tbody tr").count() == 20
    values = page.eval_on_selector_all("#as-of option", "os => os.map(o => o.value)")
    assert sorted(values) == sorted(lake_data["snapshots"])  # exact 64-bit ids, as strings
    assert page.input_value("#as-of") == lake_data["snapshots"][-1]
    console.save("table")
    page.select_option("#as-of", lake_data["snapshots"][0])
    page.wait_for_selector(f"#table-rows:has-text('{lake_data['rows'][0]}')")
    assert page.inner_text("#table-snapshot") == lake_data["snapshots"][0]


def test_quarantine_view_counts_by_rule_and_replays(console: Session, lake_data: dict[str, Any]) -> None:
    page = console.page
    console.view(f"#/quarantine/{lake_data['sensors']}", "#q-total:has-text('2')")
    page.wait_for_selector("#quarantine-table tbody tr")
    assert page.locator("#quarantine-table tbody tr").count() == 2
    assert "999" in page.inner_text("#quarantine-table")
    page.wait_for_selector("#quarantine-chart canvas")
    console.save("quarantine")
    page.click("#replay")
    page.wait_for_selector("#replay-result:has-text('2 still failing')")


def test_sql_runs_charts_shows_cache_and_errors(console: Session, lake_data: dict[str, Any]) -> None:
    page, table = console.page, f"lake.{lake_data['sensors']}"
    console.view("#/sql", "#sql-text")
    sql = f"SELECT date_trunc('day', ts) AS day, count(*) AS n FROM {table} GROUP BY 1 ORDER BY 1"
    page.fill("#sql-text", sql)
    page.click("#sql-run")
    page.wait_for_selector("#sql-results tbody tr")
    assert page.locator("#sql-results tbody tr").count() == 3
    page.select_option("#chart-y", "n")
    page.wait_for_selector("#sql-chart canvas")
    page.select_option("#chart-kind", "bar")
    console.save("sql")
    page.click("#sql-run")
    page.wait_for_selector("#sql-status:has-text('cached')")
    page.fill("#sql-as-of", lake_data["snapshots"][0])
    page.check("#sql-explain")
    page.click("#sql-run")
    page.wait_for_selector("#sql-plan")
    page.wait_for_function("() => document.querySelectorAll('#sql-results tbody tr').length === 2")
    page.fill("#sql-text", f"DELETE FROM {table}")
    page.click("#sql-run")
    page.wait_for_selector("#error:has-text('400')")
    console.expect_errors(400)


def test_search_compares_modes_with_scores_and_index_coverage(
    console: Session, lake_data: dict[str, Any]
) -> None:
    page = console.page
    console.view("#/search", "#vector-status:has-text('Lance version')")
    page.select_option("#s-dataset", lake_data["tickets"])
    page.wait_for_selector("#vector-status:has-text('25 rows')")
    page.wait_for_selector("#index-table tbody tr")
    page.fill("#s-text", "my phone screen cracked")
    page.click("#s-run")
    for mode in ("vector", "text", "hybrid"):  # the first query loads the embedding model
        page.wait_for_selector(f"#results-{mode} li", timeout=180_000)
    hits = page.locator("#results-hybrid li")
    assert hits.count() == 5
    assert "screen cracked" in hits.first.inner_text()
    scores = [float(s) for s in page.locator("#results-vector .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    console.save("search")


def test_activity_shows_ingests_quality_and_maintenance(console: Session, lake_data: dict[str, Any]) -> None:
    page = console.page
    console.view("#/activity", "#activity-table tbody tr")
    page.select_option("#a-bucket", "hour")
    row = page.locator("#activity-table tr", has_text=lake_data["sensors"]).first
    row.wait_for()
    page.wait_for_selector("#rows-chart canvas")
    page.wait_for_selector("#quality-chart canvas")
    assert page.locator("#runs-table tbody tr").count() >= 1
    console.save("activity")


def test_json_keeps_64_bit_integers_exact(console: Session) -> None:
    """Both ways the page parses JSON: with the browser's source access, and the fallback."""
    text = (
        '{"id": 9007199254740993, "n": 42, "x": 1.5, "s": "12345678901234567890", '
        '"big": -12345678901234567890}'
    )
    want = {
        "id": "9007199254740993",
        "n": 42,
        "x": 1.5,
        "s": "12345678901234567890",
        "big": "-12345678901234567890",
    }
    assert console.page.evaluate("t => LakeConsole.parseJSON(t)", text) == want
    assert console.page.evaluate("t => JSON.parse(LakeConsole.quoteBigInts(t))", text) == want


def test_no_console_errors_and_nothing_left_127_0_0_1(console: Session) -> None:
    assert console.errors == []
    assert console.outside == []


def test_console_api_refuses_tenant_keys_and_bad_input(
    serve_url: str, make_key: Callable[..., str], lake_data: dict[str, Any]
) -> None:
    from lake.client import LakeClient

    tenant = LakeClient(serve_url, key=make_key("write", tenant="acme"))
    for path in ("/activity", f"/vectors/{lake_data['tickets']}", f"/tables/{lake_data['sensors']}"):
        assert tenant.request("GET", path).status == 403, path
    assert tenant.request("POST", f"/quarantine/{lake_data['sensors']}/replay").status == 403
    reader = LakeClient(serve_url, key=make_key("read"))
    assert reader.request("GET", "/activity", query={"bucket": "week"}).body["error"] == "BadRequest"
    answer = reader.request("GET", f"/tables/{lake_data['sensors']}", query={"as_of": "123"})
    assert answer.status == 400 and answer.body["error"] == "SnapshotNotFound"
    assert reader.request("GET", "/vectors/no_such_dataset").status == 404


def test_lake_console_prints_the_console_url(serve_url: str, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    def lake_console(home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LAKE_HOME": str(home)}
        command = [sys.executable, "-m", "lake.cli.main", "console", "--no-open", *extra]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)

    done = lake_console(tmp_path, "--url", serve_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"console": f"{serve_url}/console"}
    done = lake_console(tmp_path)  # nothing runs in this LAKE_HOME
    assert done.returncode == 2 and "StackNotRunning" in done.stderr
