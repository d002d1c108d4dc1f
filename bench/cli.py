"""How long the `lake` command takes, cold and with a `lake serve` running.

Starts its own local stack in a temporary LAKE_HOME, ingests a small ticket dataset with text
vectors, and times whole processes, as a user sees them:

* ``lake --help``;
* ``lake sql "SELECT 1"`` in a cold process (``--no-server``: the query engine loads in it);
* ``lake search`` in a cold process (the embedding model loads in it);
* the same two while ``lake serve`` runs (the command asks the warm server), the search twice.

It prints the median seconds of each, the ratio cold / with a server (the baseline is the cold
run of the same command, measured in the same run) and the goals: ``lake sql`` <= 1 s and a
second ``lake search`` <= 2 s with a server, ``lake --help`` <= 0.5 s.

    python bench/cli.py [--runs 3] [--embedder minilm|static] [--rows 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"help": 0.5, "sql (server)": 1.0, "second search (server)": 2.0}

CONTRACT = """\
name: tickets
event_time: opened_at
columns:
  opened_at: {type: timestamp, required: true}
  body:      {type: string, required: true}
  product:   {type: string}
vectors:
  text: body
  embedder: EMBEDDER
"""
WORDS = "printer screen battery refund invoice wifi charger login delivery keyboard".split()


def lake(env: dict[str, str], *argv: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run `lake ...` as a new process; its wall-clock seconds and result."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lake.cli.main", *argv], env=env, cwd=ROOT, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lake {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done


def median(env: dict[str, str], runs: int, *argv: str) -> float:
    return statistics.median(lake(env, *argv)[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--embedder", choices=["minilm", "static"], default="minilm")
    parser.add_argument("--rows", type=int, default=200, help="tickets ingested")
    args = parser.parse_args()

    from lake.local import stack
    from lakehouse.config import Settings

    work = Path(tempfile.mkdtemp(prefix="lake-bench-cli-"))
    contracts = work / "contracts"
    contracts.mkdir()
    (contracts / "tickets.yaml").write_text(CONTRACT.replace("EMBEDDER", args.embedder))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}
    env.update(
        LAKE_HOME=str(work / "home"),
        LAKE_CONTRACTS_DIR=str(contracts),
        LAKE_MODELS_DIR=os.environ.get("LAKE_MODELS_DIR", str(ROOT / ".lake" / "models")),
        PYTHONPATH=str(ROOT),
    )
    settings = Settings(home=work / "home")
    stack.up(settings, owner_pid=os.getpid())
    server: subprocess.Popen[str] | None = None
    try:
        tickets = work / "tickets.ndjson"
        tickets.write_text(
            "".join(
                json.dumps(
                    {
                        "opened_at": f"2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}T10:00:00Z",
                        "body": f"my {WORDS[i % 10]} stopped working after the {WORDS[(i * 7) % 10]}",
                        "product": f"P-{i % 5}",
                    }
                )
                + "\n"
                for i in range(args.rows)
            )
        )
        lake(env, "put", str(tickets))
        search = ("search", "tickets", "the battery will not charge", "-k", "3")
        figures = {
            "help": median(env, args.runs, "--help"),
            "sql (cold)": median(env, args.runs, "sql", "SELECT 1", "--no-server"),
            "search (cold)": median(env, 1, *search, "--no-server"),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "lake.cli.main", "serve", "--port", "0", "--no-watch", "--no-maintain",
             "--owner-pid", str(os.getpid())],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert server.stdout is not None
        server.stdout.readline()  # {"serving": ...}: registered for the command line
        lake(env, "sql", "SELECT 1")  # the server answers its first query once its engine is loaded
        figures["sql (server)"] = median(env, args.runs, "sql", "SELECT 1")
        figures["first search (server)"] = lake(env, *search)[0]
        figures["second search (server)"] = median(env, args.runs, *search)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        stack.down(settings)

    load = os.getloadavg()[0]
    print(f"lake command, {args.rows} rows, embedder {args.embedder}, median of {args.runs} "
          f"(load average {load:.1f})")
    for name, seconds in figures.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"  goal <= {goal} s: {'met' if seconds <= goal else 'MISSED'}"
        print(f"  {name:<24} {seconds:7.2f} s{verdict}")
    sql_ratio = figures["sql (cold)"] / figures["sql (server)"]
    search_ratio = figures["search (cold)"] / figures["second search (server)"]
    print(f"  ratio sql cold / server       {sql_ratio:6.1f}x")
    print(f"  ratio search cold / server    {search_ratio:6.1f}x")
    print(json.dumps({"load": load, **{k: round(v, 3) for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
