"""The embedded local stack: an S3-compatible HTTP endpoint on 127.0.0.1 and an SQLite catalog.

``lake up`` starts the endpoint in a background process (a MinIO server when ``minio`` is on
PATH, otherwise moto's S3 server), creates the landing and warehouse buckets, and writes
``$LAKE_HOME/stack.json``. Every other command reads that file through :mod:`lakehouse.config`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lakehouse.config import STACK_FILE, Settings
from lakehouse.errors import StackNotRunning, TransientError

ACCESS_KEY = "lake-local"
SECRET_KEY = "lake-local-secret"
CATALOG_FILE = "catalog.db"
DLQ_NAME = "lake-ingest-dlq"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:  # reap it first when it is our own child (`lake up` and `lake down` in one process)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _endpoint_ok(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # the server answered (e.g. 403 for an anonymous list)
    except OSError:
        return False


def read_state(home: Path) -> dict[str, Any] | None:
    """The running stack's state, or None when no stack runs under ``home``."""
    path = home / STACK_FILE
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    if not _alive(int(state["pid"])):
        return None
    return state


def status(settings: Settings) -> dict[str, Any]:
    """What ``lake status --json`` prints."""
    state = read_state(settings.home)
    if state is None:
        return {"running": False, "home": str(settings.home.resolve())}
    return {**state, "running": _endpoint_ok(state["endpoint"])}


def up(
    settings: Settings, port: int = 0, timeout: float = 60.0, owner_pid: int | None = None
) -> dict[str, Any]:
    """Start the stack, or return the running one unchanged.

    With ``owner_pid`` (test sessions) the stack stops by itself when that process is gone, so
    an interrupted run leaves no server behind.
    """
    home = settings.home.resolve()
    existing = read_state(home)
    if existing is not None:
        return {**existing, "reused": True}
    home.mkdir(parents=True, exist_ok=True)
    (home / STACK_FILE).unlink(missing_ok=True)
    port = port or _free_port()
    kind = "minio" if shutil.which("minio") else "moto"
    if kind == "moto":
        # moto keeps objects in memory: a catalog from an earlier run points at files that are gone.
        (home / CATALOG_FILE).unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "lake.local.stack",
        "--home",
        str(home),
        "--port",
        str(port),
        "--kind",
        kind,
        "--landing",
        settings.landing_bucket,
        "--warehouse",
        settings.warehouse_bucket,
        "--region",
        settings.region,
    ] + (["--owner-pid", str(owner_pid)] if owner_pid else [])
    log = open(home / "stack.log", "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(home)
        if state is not None:
            return {**state, "reused": False}
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    tail = (home / "stack.log").read_text(errors="replace")[-2000:]
    raise TransientError(f"the local stack did not start within {timeout:.0f}s; log tail:\n{tail}")


def down(settings: Settings, timeout: float = 10.0) -> bool:
    """Stop the stack; True if one was running."""
    home = settings.home.resolve()
    state = read_state(home)
    (home / STACK_FILE).unlink(missing_ok=True)
    if state is None:
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    if state.get("kind") == "moto":
        (home / CATALOG_FILE).unlink(missing_ok=True)
    return True


def contents(settings: Settings) -> dict[str, int]:
    """What the running stack holds: tables in its catalog, uploads in the landing bucket and
    objects in the warehouse (what ``lake down`` discards when the store is in memory)."""
    import sqlite3

    import boto3

    state = require(settings)
    s3 = boto3.client(
        "s3",
        endpoint_url=state["endpoint"],
        region_name=state["region"],
        aws_access_key_id=state["access_key_id"],
        aws_secret_access_key=state["secret_access_key"],
    )

    def count(bucket: str) -> int:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sum(page.get("KeyCount", 0) for page in pages)

    tables = 0
    catalog = Path(state["home"]) / CATALOG_FILE
    if catalog.exists():
        with sqlite3.connect(catalog) as db:
            try:
                tables = int(db.execute("SELECT count(*) FROM iceberg_tables").fetchone()[0])
            except sqlite3.Error:
                tables = 0  # no table was ever created
    return {
        "tables": tables,
        "uploads": count(state["landing_bucket"]),
        "objects": count(state["warehouse_bucket"]),
    }


def require(settings: Settings) -> dict[str, Any]:
    """The running stack's state, or a clear error telling the user to start it."""
    state = read_state(settings.home.resolve())
    if state is None:
        raise StackNotRunning(f"no local stack runs under {settings.home}; start it with `lake up`")
    return state


def _create_buckets(endpoint: str, region: str, buckets: list[str]) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in buckets:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _create_dlq(endpoint: str, region: str) -> str | None:
    """The ingest dead-letter queue, as in AWS (moto serves SQS on the same endpoint)."""
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    try:
        url: str = sqs.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
    except Exception:  # noqa: BLE001 - MinIO serves S3 only: no local DLQ then
        return None
    return url


def _serve(args: argparse.Namespace) -> None:
    home = Path(args.home)
    endpoint = f"http://127.0.0.1:{args.port}"
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    child: subprocess.Popen[bytes] | None = None
    if args.kind == "minio":
        env = {**os.environ, "MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY}
        child = subprocess.Popen(
            ["minio", "server", str(home / "minio"), "--address", f"127.0.0.1:{args.port}", "--quiet"],
            env=env,
        )
    else:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as e:
            raise SystemExit("the local stack needs moto's server: pip install 'lake[local]'") from e

        os.environ.setdefault("MOTO_S3_DEFAULT_MAX_KEYS", "1000")
        ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False).start()
    deadline = time.monotonic() + 30
    while not _endpoint_ok(endpoint):
        if time.monotonic() > deadline:
            raise SystemExit(f"{args.kind} did not answer on {endpoint}")
        time.sleep(0.1)
    _create_buckets(endpoint, args.region, [args.landing, args.warehouse])
    dlq_url = _create_dlq(endpoint, args.region) if args.kind == "moto" else None
    state = {
        "kind": args.kind,
        "pid": os.getpid(),
        "endpoint": endpoint,
        "region": args.region,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "landing_bucket": args.landing,
        "warehouse_bucket": args.warehouse,
        "catalog_uri": f"sqlite:///{home / CATALOG_FILE}",
        "dlq_url": dlq_url,
        "home": str(home),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = home / (STACK_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(home / STACK_FILE)
    while not stop["now"] and (args.owner_pid is None or _alive(args.owner_pid)):
        time.sleep(0.2)
    if child is not None:
        child.terminate()
        child.wait(10)
    # moto keeps everything in memory: nothing to flush, and a graceful stop waits on idle
    # keep-alive connections, so the process simply ends.
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description="Lake's local S3 endpoint (run by `lake up`).")
    parser.add_argument("--home", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=["moto", "minio"], default="moto")
    parser.add_argument("--landing", required=True)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--owner-pid", type=int, help="stop when this process is gone")
    _serve(parser.parse_args())


if __name__ == "__main__":
    main()
