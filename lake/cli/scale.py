"""``lake backfill``, ``lake vectors reembed`` and ``lake sql --engine daft``: jobs on Daft.

Daft and Ray (the ``lake[scale]`` extra) are imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from lakehouse.config import Settings


class ObjectsBar:
    """``backfill [#####     ] 3/8 objects  1,200,000 rows  310,000 rows/s`` on stderr."""

    def __init__(self, label: str, out: TextIO | None = None) -> None:
        self.label = label
        self.out = out or sys.stderr
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int, rows: int) -> None:
        fraction = done / total if total else 1.0
        filled = int(fraction * 30)
        rate = rows / max(1e-9, time.monotonic() - self.started)
        self.out.write(
            f"\r{self.label} [{'#' * filled}{' ' * (30 - filled)}] {done}/{total} objects  "
            f"{rows:,} rows  {rate:,.0f} rows/s"
        )
        self.out.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.out.write("\n")
            self.out.flush()


def need_store(settings: Settings) -> None:
    """These jobs need a store: the local stack unless an endpoint, AWS or a catalog is configured."""
    from lake.local import stack as localstack

    if settings.s3_endpoint is None and settings.catalog_type == "sql" and settings.catalog_uri is None:
        localstack.require(settings)


def _runner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runner",
        choices=["native", "ray"],
        default="native",
        help="native: Daft in this process (default); ray: a Ray cluster (--ray-address) or a local one",
    )
    p.add_argument("--ray-address", help="an existing Ray cluster, e.g. ray://head:10001 or head:6379")


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.scale.backfill import backfill

    need_store(settings)
    bar = None if args.dry_run else ObjectsBar(f"backfill {args.dataset}")
    try:
        report = backfill(
            settings,
            args.dataset,
            args.source,
            runner=args.runner,
            ray_address=args.ray_address,
            dry_run=args.dry_run,
            on_progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    body = report.to_dict()
    if args.json:
        print(json.dumps(body), flush=True)
        return 1 if report.objects_failed else 0
    if report.dry_run:
        print(
            f"{report.source}: {report.objects_listed} objects, {report.objects_skipped} already loaded, "
            f"{report.objects_listed - report.objects_skipped} to load (dry run: nothing written)"
        )
        return 0
    print(
        f"{report.source} → {settings.namespace}.{report.dataset} on {report.runner}: "
        f"{report.objects_loaded} objects loaded, {report.objects_skipped} already loaded, "
        f"{report.objects_duplicate} duplicates, {report.objects_failed} failed; "
        f"{report.rows_accepted:,} accepted, {report.rows_quarantined:,} quarantined of "
        f"{report.rows_read:,} rows "
        f"in {report.seconds}s ({report.rows_per_second:,.0f} rows/s); manifest {report.manifest}"
    )
    for failure in report.failures:
        print(f"  failed: {failure['key']}: {failure['error']}: {failure['reason']}", file=sys.stderr)
    return 1 if report.objects_failed else 0


def cmd_reembed(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.scale.reembed import reembed

    need_store(settings)
    report = reembed(settings, args.dataset, args.embedder, runner=args.runner, ray_address=args.ray_address)
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        print(
            f"{settings.namespace}.{args.dataset}: {report['vectors_written']:,} rows embedded with "
            f"{report['embedder']} on {report['runner']} → Lance version {report['lance_version']} "
            f"at snapshot {report['snapshot_id']} in {report['seconds']}s"
        )
    return 0


def sql_body(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """``lake sql --engine daft``: the body ``POST /sql`` would answer, computed on Daft."""
    from lakehouse.scale.sql import run_sql

    return run_sql(settings, args.query, runner=args.runner, ray_address=args.ray_address, out=args.out)


def add_sql_args(p: argparse.ArgumentParser) -> None:
    """The ``--engine`` options of ``lake sql``."""
    p.add_argument(
        "--engine",
        choices=["duckdb", "daft"],
        default="duckdb",
        help="duckdb: the query function (default); daft: Daft in process or on Ray, for bigger questions",
    )
    p.add_argument("--out", help="--engine daft: write the whole result to s3://bucket/key.parquet")
    _runner_args(p)


def add_parser(sub: Any) -> None:
    """Register ``lake backfill`` and ``lake vectors`` on the ``lake`` command's sub-parsers."""
    s = sub.add_parser("backfill", help="load every object under an s3:// prefix into a dataset, on Daft")
    s.add_argument("dataset")
    s.add_argument("source", help="s3://bucket/prefix")
    _runner_args(s)
    s.add_argument("--dry-run", action="store_true", help="list and count, write nothing")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_backfill)

    s = sub.add_parser("vectors", help="vector jobs on Daft")
    vsub = s.add_subparsers(dest="vectors_command", required=True)
    v = vsub.add_parser(
        "reembed", help="embed a dataset's rows again: a new Lance version at the current snapshot"
    )
    v.add_argument("dataset")
    v.add_argument("--embedder", choices=["static", "minilm"], help="default: the contract's")
    _runner_args(v)
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=cmd_reembed)
