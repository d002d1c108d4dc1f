"""Shared fixtures: one local stack per test session (a real S3 endpoint over HTTP on 127.0.0.1
and an SQLite catalog), started by Lake's own code, in a temporary LAKE_HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lake.client import LakeClient
from lake.local import stack as localstack
from lake.local.serve import deliver
from lakehouse.config import Settings, get_settings, load_settings
from lakehouse.storage import s3_client

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session", autouse=True)
def lake_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Isolated environment: fake AWS credentials, no user config, a temporary LAKE_HOME."""
    home = tmp_path_factory.mktemp("lake-home")
    contracts = home / "contracts"
    shutil.copytree(ROOT / "catalog" / "datasets", contracts)
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("LAKE_", "AWS_", "PYICEBERG_")):
            del os.environ[name]
    os.environ.update(
        {
            "LAKE_HOME": str(home),
            "LAKE_CONTRACTS_DIR": str(contracts),
            "LAKE_LOG_LEVEL": "WARNING",
            # Distilled models are build artifacts: one copy per checkout, not per test session.
            "LAKE_MODELS_DIR": str(ROOT / ".lake" / "models"),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
            "PYICEBERG_HOME": str(home / "no-pyiceberg-home"),
        }
    )
    get_settings.cache_clear()
    yield home
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def stack(lake_env: Path) -> Iterator[dict[str, Any]]:
    """The local stack, started once for the session with `lake up`'s code and stopped after."""
    state = localstack.up(load_settings(), owner_pid=os.getpid())
    get_settings.cache_clear()
    yield state
    localstack.down(load_settings())


@pytest.fixture()
def settings(stack: dict[str, Any]) -> Settings:
    get_settings.cache_clear()
    return load_settings()


@pytest.fixture()
def client(stack: dict[str, Any]) -> LakeClient:
    """The query API, called the way AWS calls the function."""
    return LakeClient()


@pytest.fixture(scope="session")
def make_key(stack: dict[str, Any]) -> Callable[..., str]:
    """Create an API key: ``make_key(scope, tenant)`` returns the token."""
    from lakehouse.access.auth import create_key

    def make(scope: str = "read", tenant: str | None = None) -> str:
        return create_key(load_settings(), scope, tenant, "test")[0]  # type: ignore[arg-type]

    return make


@contextmanager
def serving(home: Path, env: dict[str, str]) -> Iterator[str]:
    """`lake serve` in its own process (keys required, its default) on a free port; its URL."""
    out, err = home / "serve.out", home / "serve.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            # --owner-pid: the server stops by itself if this session is interrupted.
            [sys.executable, "-m", "lake.cli.main", "serve", "--port", "0", "--no-watch",
             "--owner-pid", str(os.getpid())],
            stdout=stdout,
            stderr=stderr,
            cwd=ROOT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while not out.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        yield json.loads(out.read_text().splitlines()[0])["serving"]
    finally:
        proc.terminate()
        try:
            proc.wait(60)  # a loaded machine may take a while to stop its workers
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def serve_url(stack: dict[str, Any], lake_env: Path) -> Iterator[str]:
    """The session stack's `lake serve`."""
    # Revocation is seen within a second (the default staleness bound is 10 s).
    with serving(lake_env, {**os.environ, "LAKE_AUTH_CACHE_SECONDS": "1"}) as url:
        yield url


@pytest.fixture(scope="session")
def http_client(serve_url: str, make_key: Callable[..., str]) -> LakeClient:
    """The query API over real HTTP, with an admin key."""
    return LakeClient(serve_url, key=make_key("admin"))


@pytest.fixture()
def dataset(settings: Settings) -> Callable[[str], str]:
    """Register a contract under a unique dataset name; returns the name."""

    def make(contract_yaml: str) -> str:
        name = f"t_{uuid.uuid4().hex[:10]}"
        (settings.contracts_dir / f"{name}.yaml").write_text(contract_yaml.replace("{name}", name))
        return name

    return make


@pytest.fixture()
def upload(settings: Settings) -> Callable[..., dict[str, Any]]:
    """Upload bytes or a file to the landing bucket and deliver its ObjectCreated event to the
    ingest function; returns the function's first report."""

    def put(dataset: str, filename: str, content: bytes | Path) -> dict[str, Any]:
        key = f"{dataset}/{filename}"
        data = content.read_bytes() if isinstance(content, Path) else content
        s3_client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=data)
        report: dict[str, Any] = deliver(settings, settings.landing_bucket, key)["reports"][0]
        return report

    return put


SENSOR_CONTRACT = """
name: {name}
event_time: ts
retention_months: 12
columns:
  ts:        {type: timestamp, required: true}
  sensor_id: {type: string, required: true}
  temp_c:    {type: double, min: -90, max: 60}
  status:    {type: string, enum: [ok, degraded, failed]}
"""


def native_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements the query engine runs on a native connection (DuckDB reading the cached
    copies itself), recorded while they run as usual."""
    from lakehouse.query import engine

    natives: list[str] = []
    real = engine._run_native

    def spy(settings: Settings, con: Any, sql: str, *args: Any) -> Any:
        natives.append(sql)
        return real(settings, con, sql, *args)

    monkeypatch.setattr(engine, "_run_native", spy)
    return natives
