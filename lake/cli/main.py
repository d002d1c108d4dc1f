"""The ``lake`` command."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from lake.cli.output import check, client_for, out, render_table
from lakehouse.config import Settings, load_settings
from lakehouse.errors import LakeError


def _need_stack(settings: Settings) -> None:
    """Commands that touch the store need the local stack unless an endpoint or AWS is configured."""
    from lake.local import stack as localstack

    if settings.s3_endpoint is None and settings.catalog_type == "sql" and settings.catalog_uri is None:
        localstack.require(settings)


# --- stack -----------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from lake.local import stack as localstack
    from lakehouse.catalog import get_catalog

    state = localstack.up(settings, port=args.port)
    get_catalog(load_settings(home=settings.home))  # creates the SQLite catalog and the namespace
    verb = "reusing" if state["reused"] else "started"
    out(f"{verb} the local stack ({state['kind']}) at {state['endpoint']}")
    out(f"  buckets: {state['landing_bucket']} (landing), {state['warehouse_bucket']} (warehouse)")
    out(f"  catalog: {state['catalog_uri']}")
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from lake.local import stack as localstack

    out("stopped the local stack" if localstack.down(settings) else "no local stack was running")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from lake.local import stack as localstack

    state = localstack.status(settings)
    if args.json:
        out(json.dumps(state, indent=2))
    elif state["running"]:
        out(
            f"running ({state['kind']}, pid {state['pid']}) at {state['endpoint']}; "
            f"buckets {state['landing_bucket']}, {state['warehouse_bucket']}; catalog {state['catalog_uri']}"
        )
    else:
        out(f"not running (LAKE_HOME={state['home']})")
    return 0 if state["running"] else 1


# --- data ------------------------------------------------------------------------------------


def _print_report(report: dict[str, Any]) -> None:
    if report["duplicate"]:
        out(f"{report['source']}: already ingested in snapshot {report['snapshot_id']}; nothing added")
        return
    out(
        f"{report['source']} → {report['table']}: {report['rows_accepted']} accepted, "
        f"{report['rows_quarantined']} quarantined of {report['rows_read']} rows "
        f"in {report['seconds']}s ({report['rows_per_second']:,.0f} rows/s), snapshot {report['snapshot_id']}"
    )


def cmd_put(args: argparse.Namespace, settings: Settings) -> int:
    from lake.local.serve import deliver
    from lakehouse.storage import s3_client

    _need_stack(settings)
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"error: no such file {path}")
    if _is_archive(path) and args.dataset in (None, "takeout"):
        return _put_takeout(args, settings, path)
    dataset = args.dataset or path.name.split(".", 1)[0]
    key = f"{dataset}/{path.name}"
    response = _put_with_progress(args, settings, path, key, s3_client, deliver)
    for report in response["reports"]:
        if args.json:
            out(json.dumps(report))
        else:
            _print_report(report)
    return 0


PROGRESS_MIN_BYTES = 64 << 20  # `lake put` shows a progress bar from this size on


def _is_archive(path: Path) -> bool:
    from lakehouse.takeout.archive import archive_kind

    return archive_kind(path.name) is not None


def _put_takeout(args: argparse.Namespace, settings: Settings, path: Path) -> int:
    """A Takeout archive: upload to ``takeout/<file>``, ingest it here with progress per product."""
    from lake.cli.takeout import ProductProgress, summary
    from lakehouse.storage import s3_client
    from lakehouse.takeout import ingest_archive

    key = f"takeout/{path.name}"
    s3_client(settings).upload_file(str(path), settings.landing_bucket, key)
    show = args.progress if args.progress is not None else not args.json
    progress = ProductProgress() if show else None
    report = ingest_archive(settings, settings.landing_bucket, key, progress=progress)
    if args.json:
        out(json.dumps(report.to_dict()))
    else:
        for line in summary(report):
            out(line)
    return 0


def cmd_rollup(args: argparse.Namespace, settings: Settings) -> int:
    body = check(
        client_for(args).timeseries(
            args.table, args.agg, args.bucket, args.column, args.start, args.end, args.group_by
        )
    )
    if args.format == "json":
        out(json.dumps(body))
    else:
        out(render_table(body["columns"], body["rows"]))
        more = " (truncated)" if body["truncated"] else ""
        out(f"({body['row_count']} buckets{more}, {body['elapsed_ms']} ms)")
    return 0


def _put_with_progress(
    args: argparse.Namespace, settings: Settings, path: Path, key: str, s3: Any, deliver: Any
) -> dict[str, Any]:
    """Upload and ingest; a progress bar (bytes, rows, rows/s) on stderr for large files."""
    from lake.cli.progress import StderrBar
    from lakehouse.ingest.progress import reporting

    size = path.stat().st_size
    show = args.progress if args.progress is not None else size >= PROGRESS_MIN_BYTES
    if not show:
        s3(settings).upload_file(str(path), settings.landing_bucket, key)
        result: dict[str, Any] = deliver(settings, settings.landing_bucket, key)
        return result
    upload = StderrBar(size, "upload ")
    sent = [0]

    def uploaded(n: int) -> None:
        sent[0] += n
        upload.update(sent[0], 0)

    s3(settings).upload_file(str(path), settings.landing_bucket, key, Callback=uploaded)
    upload.close()
    bar = StderrBar(size, "ingest ")
    with reporting(bar):
        result = deliver(settings, settings.landing_bucket, key)
    bar.close()
    return result


def cmd_quarantine_list(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.ingest.quarantine import list_quarantine

    _need_stack(settings)
    body = list_quarantine(settings, args.dataset, args.source, args.limit)
    if args.json:
        out(json.dumps(body))
        return 0
    cols = ["quarantined_at", "source_uri", "row_number", "column", "rule", "reason"]
    out(render_table(cols, [[r[c] for c in cols] for r in body["rows"]], max_width=60))
    rules = ", ".join(f"{rule} {n}" for rule, n in body["by_rule"].items())
    out(f"({len(body['rows'])} of {body['total']} quarantined rows{'; ' + rules if rules else ''})")
    return 0


def cmd_quarantine_replay(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.ingest.quarantine import replay

    _need_stack(settings)
    report = replay(settings, args.dataset, args.source).to_dict()
    if args.json:
        out(json.dumps(report))
    else:
        out(
            f"{args.dataset}: {report['replayed']} of {report['examined']} quarantined rows moved to the "
            f"table (contract v{report['contract_version']}); {report['still_failing']} still fail, "
            f"{report['unparseable']} cannot be parsed"
        )
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    as_of: int | str | None = args.as_of
    if isinstance(as_of, str) and as_of.isdigit():
        as_of = int(as_of)
    if args.engine == "daft":
        from lake.cli.scale import sql_body

        if as_of is not None or args.explain or args.url:
            raise SystemExit("error: --as-of, --explain and --url are for the query function (duckdb)")
        body = sql_body(args, settings)
        if body.get("out"):
            out(f"wrote {body['row_count']} rows to {body['out']} ({body['elapsed_ms']} ms)")
            return 0
    else:
        body = check(client_for(args).sql(args.query, as_of, args.explain))
    if args.format == "json":
        out(json.dumps(body))
    elif args.format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(body["columns"])
        writer.writerows(body["rows"])
        sys.stdout.write(buf.getvalue())
    else:
        if body.get("plan"):
            out(body["plan"])
        out(render_table(body["columns"], body["rows"]))
        more = " (truncated)" if body["truncated"] else ""
        out(f"({body['row_count']} rows{more}, {body['elapsed_ms']} ms)")
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    as_of: int | str | None = args.as_of
    if isinstance(as_of, str) and as_of.isdigit():
        as_of = int(as_of)
    vector = json.loads(Path(args.vector_file).read_text()) if args.vector_file else None
    text = None if vector is not None else args.text
    if text is None and vector is None:
        raise SystemExit("give the text to search for, or --vector-file")
    body = check(client_for(args).search(args.dataset, text, vector, args.k, args.mode, args.filter, as_of))
    if args.format == "json":
        out(json.dumps(body))
    else:
        out(render_table(body["columns"], body["rows"]))
        out(
            f"({body['row_count']} rows, {body['mode']} search at snapshot {body['snapshot_id']}, "
            f"Lance version {body['lance_version']}, {body['elapsed_ms']} ms)"
        )
    return 0


def cmd_tables(args: argparse.Namespace, settings: Settings) -> int:
    tables = check(client_for(args).tables())["tables"]
    if args.json:
        out(json.dumps(tables, indent=2))
        return 0
    cols = ["name", "rows", "files", "bytes", "snapshots", "current_snapshot_id"]
    out(render_table(cols, [[t[c] for c in cols] for t in tables]))
    return 0


def cmd_describe(args: argparse.Namespace, settings: Settings) -> int:
    d = check(client_for(args).describe(args.name))
    if args.json:
        out(json.dumps(d, indent=2))
        return 0
    out(f"{d['name']}  ({d['rows']} rows in {d['file_count']} files, snapshot {d['current_snapshot_id']})")
    out(f"location: {d['location']}")
    out("\nschema:")
    out(
        render_table(
            ["id", "name", "type", "required"],
            [[f["id"], f["name"], f["type"], f["required"]] for f in d["schema"]],
        )
    )
    out("\npartitioned by: " + ", ".join(f"{p['transform']}({p['source']})" for p in d["partition_spec"]))
    out("\nsnapshots:")
    out(
        render_table(
            ["snapshot_id", "timestamp", "operation", "source"],
            [
                [s["snapshot_id"], s["timestamp"], s["operation"], s["summary"].get("lake.source.uri", "")]
                for s in d["snapshots"]
            ],
        )
    )
    out("\nfiles:")
    out(
        render_table(
            ["partition", "rows", "bytes", "path"],
            [[p["partition"], p["rows"], p["bytes"], p["path"]] for p in d["files"]],
            max_width=90,
        )
    )
    return 0


def cmd_maintain(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from lakehouse.maintenance import MaintenanceOptions, registered_jobs, run_maintenance

    _need_stack(settings)
    chosen = tuple(j for j in registered_jobs() if getattr(args, j, False))
    options = MaintenanceOptions(
        jobs=chosen or registered_jobs(),
        dry_run=args.dry_run,
        tables=tuple(args.table) if args.table else None,
        orphan_age=None if args.orphan_age_days is None else dt.timedelta(days=args.orphan_age_days),
    )
    report = run_maintenance(settings, options)
    if args.json:
        out(json.dumps(report, indent=2, default=str))
        return 0
    views = {
        "retention": ["table", "cutoff", "files_dropped", "rows_dropped", "files_rewritten"],
        "compact": ["table", "partitions_compacted", "files_before", "files_after", "bytes_rewritten"],
        "expire": ["table", "snapshots_expired", "snapshots_kept", "files_deleted", "bytes_freed"],
        "orphans": ["table", "files_found", "files_deleted", "bytes_freed", "older_than"],
        "vectors": ["dataset", "rows", "stray_rows", "duplicate_ids", "version", "index", "error"],
    }
    for job, results in report["jobs"].items():
        out(f"\n{job}{' (dry run)' if args.dry_run else ''}:")
        cols = views.get(job) or sorted({c for r in results for c in r})
        out(render_table(cols, [[r.get(c) for c in cols] for r in results]))
    verb = "would free" if args.dry_run else "freed"
    out(f"\n{verb} {report['bytes_freed']:,} bytes")
    return 0


def cmd_snapshots(args: argparse.Namespace, settings: Settings) -> int:
    body = check(client_for(args).snapshots(args.name))
    if args.json:
        out(json.dumps(body, indent=2))
        return 0
    cols = ["snapshot_id", "parent_id", "timestamp", "operation", "current", "added_rows", "total_rows"]
    out(render_table(cols, [[s[c] for c in cols] for s in body["snapshots"]]))
    return 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.query.history import rollback

    _need_stack(settings)
    result = rollback(settings, args.name, args.to)
    if args.json:
        out(json.dumps(result))
    else:
        out(
            f"{result['table']}: current snapshot {result['from_snapshot_id']} → {result['to_snapshot_id']} "
            f"({result['rows']} rows)"
        )
    return 0


def cmd_changes(args: argparse.Namespace, settings: Settings) -> int:
    body = check(client_for(args).changes(args.name, args.from_, args.to))
    if args.json:
        out(json.dumps(body))
        return 0
    out(render_table(body["columns"], body["rows"]))
    more = " (truncated)" if body["truncated"] else ""
    out(f"({body['row_count']} rows{more} from {len(body['snapshots'])} appends)")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from lake.local.serve import Watcher, make_server
    from lakehouse.config import get_settings

    _need_stack(settings)
    os.environ["LAKE_AUTH"] = args.auth  # the handlers read the one settings object
    get_settings.cache_clear()
    server = make_server(args.port)
    watcher = Watcher(settings, interval=args.poll)
    if not args.no_watch:
        watcher.start()
    from lake.local.schedule import MaintenanceScheduler

    scheduler = MaintenanceScheduler(settings)  # the schedules of template.yaml
    if not args.no_maintain:
        scheduler.start()
    host, port = cast(tuple[str, int], server.server_address[:2])
    out(
        json.dumps(
            {
                "serving": f"http://{host}:{port}",
                "watching": None if args.no_watch else settings.landing_bucket,
            }
        )
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.stop_event.set()
        watcher.stop_event.set()
        server.server_close()
    return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from lake import dlq
    from lake.local.serve import invoke_ingest

    _need_stack(settings)
    if args.dlq_command == "list":
        entries = [e.to_dict() for e in dlq.list_dead_letters(settings)]
        if args.json:
            out(json.dumps(entries, indent=2))
        else:
            cols = ["message_id", "failed_at", "error_type", "error", "sources"]
            out(render_table(cols, [[e[c] for c in cols] for e in entries], max_width=60))
        return 0
    results = dlq.replay(settings, invoke_ingest, args.id)
    for r in results:
        if args.json:
            out(json.dumps(r))
        elif r["replayed"]:
            out(f"replayed {r['message_id']} ({', '.join(r['sources'])}): ok, removed from the queue")
        else:
            out(f"replayed {r['message_id']} ({', '.join(r['sources'])}): failed again: {r['error']}")
    if not results:
        out("the dead-letter queue is empty")
    return 0 if all(r["replayed"] for r in results) else 1


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.access import audit, auth

    _need_stack(settings)
    if args.keys_command == "create":
        token, record = auth.create_key(settings, args.scope, args.tenant, args.name or "")
        audit.record(
            "local", "key.create", target=record["id"], tenant=args.tenant, detail=f"scope={args.scope}"
        )
        out(token)
        print(f"key {record['id']} ({args.scope}{', tenant ' + args.tenant if args.tenant else ''}); "
              "the key is shown once: store it now", file=sys.stderr)
    elif args.keys_command == "list":
        cols = ["id", "name", "scope", "tenant", "created_at", "revoked_at"]
        out(render_table(cols, [[k[c] for c in cols] for k in auth.list_keys(settings)]))
    else:
        record = auth.revoke_key(settings, args.key_id)
        audit.record("local", "key.revoke", target=record["id"])
        out(f"revoked {record['id']}")
    audit.flush(settings)
    return 0


def cmd_invoke(args: argparse.Namespace, settings: Settings) -> int:
    from lake.local.invoke import invoke

    event = json.loads(Path(args.event).read_text())
    response = invoke(Path(args.template), args.logical_id, event, settings.home)
    out(json.dumps(response, indent=2, default=str))
    return 0


def cmd_contract_infer(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.ingest.infer import infer_contract

    contract, sampled = infer_contract(Path(args.file), args.dataset)
    out(
        f"# Draft contract for {args.dataset}, inferred from {Path(args.file).name} ({sampled} rows sampled)."
    )
    out(
        f"# Review types, rules and required flags, then save as {settings.contracts_dir}/{args.dataset}.yaml"
    )
    sys.stdout.write(contract.to_yaml())
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from lake.cli.demo import run_demo

    return run_demo(settings, Path(args.samples))


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lake", description="Lake: a serverless lakehouse on Iceberg and Lance.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("up", help="start the local stack (S3 endpoint + SQLite catalog)")
    s.add_argument("--port", type=int, default=0, help="S3 endpoint port (default: a free one)")
    s.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the local stack").set_defaults(func=cmd_down)
    s = sub.add_parser("status", help="is the local stack running, and where")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("put", help="upload a file to the landing bucket and ingest it")
    s.add_argument("file")
    s.add_argument("--dataset", help="dataset name (default: the file name before its first dot)")
    s.add_argument("--json", action="store_true", help="print the ingest report as JSON")
    s.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: files of 64 MiB or more)",
    )
    s.set_defaults(func=cmd_put)

    s = sub.add_parser("quarantine", help="list or replay a dataset's quarantined rows")
    qsub = s.add_subparsers(dest="quarantine_command", required=True)
    q = qsub.add_parser("list", help="quarantined rows, newest first, with counts by rule")
    q.add_argument("dataset")
    q.add_argument("--source", help="only rows of this upload (landing key or s3:// URI)")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_quarantine_list)
    q = qsub.add_parser("replay", help="re-validate quarantined rows and move the ones that now pass")
    q.add_argument("dataset")
    q.add_argument("--source", help="only rows of this upload (landing key or s3:// URI)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_quarantine_replay)

    s = sub.add_parser("rollup", help="aggregate a column per time bucket (GET /timeseries)")
    s.add_argument("table")
    s.add_argument("--agg", required=True, choices=["avg", "min", "max", "sum", "count"])
    s.add_argument("--bucket", required=True, help="1m, 1h, 1d, 1w, 1mo or 1y")
    s.add_argument("--column", help="column to aggregate (count: optional)")
    s.add_argument("--from", dest="start", help="ISO-8601 start (inclusive)")
    s.add_argument("--to", dest="end", help="ISO-8601 end (exclusive)")
    s.add_argument("--group-by", help="also group by this column")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.add_argument("--url", help="query API base URL (default: call the function in process)")
    s.set_defaults(func=cmd_rollup)

    s = sub.add_parser("sql", help="run a read-only SQL query through the query function")
    s.add_argument("query")
    s.add_argument("--as-of", help="snapshot id or ISO-8601 time")
    s.add_argument("--format", choices=["table", "json", "csv"], default="table")
    s.add_argument("--explain", action="store_true", help="print DuckDB's analysed plan too")
    s.add_argument("--url", help="query API base URL (default: call the function in process)")
    from lake.cli.scale import add_sql_args

    add_sql_args(s)
    s.set_defaults(func=cmd_sql)

    s = sub.add_parser("search", help="search a dataset by meaning, words or both (POST /search)")
    s.add_argument("dataset")
    s.add_argument("text", nargs="?", help="what to search for")
    s.add_argument("--vector-file", help="a JSON file holding the query vector (a list of numbers)")
    s.add_argument("-k", type=int, default=10, help="rows to return (default 10)")
    s.add_argument("--mode", choices=["vector", "text", "hybrid"], help="default: hybrid for text, if it can")
    s.add_argument("--filter", help="SQL predicate on the table's columns, e.g. \"lang = 'en'\"")
    s.add_argument("--as-of", help="snapshot id or ISO-8601 time")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.add_argument("--url", help="query API base URL (default: call the function in process)")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("tables", help="list tables")
    s.add_argument("--json", action="store_true")
    s.add_argument("--url")
    s.set_defaults(func=cmd_tables)
    s = sub.add_parser("describe", help="schema, partitions, snapshots and files of a table")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.add_argument("--url")
    s.set_defaults(func=cmd_describe)

    s = sub.add_parser("maintain", help="run table maintenance now (no job flag: every job)")
    s.add_argument("--compact", action="store_true", help="bin-pack small files per partition")
    s.add_argument("--expire", action="store_true", help="expire old snapshots and delete their files")
    s.add_argument("--orphans", action="store_true", help="delete unreferenced files older than the age")
    s.add_argument("--retention", action="store_true", help="drop months older than the contract keeps")
    s.add_argument("--audit", action="store_true", help="fold the audit spool into the audit table")
    s.add_argument(
        "--vectors", action="store_true", help="Lance upkeep: strays, compaction, old versions, indexes"
    )
    s.add_argument("--dry-run", action="store_true", help="report what would happen; change nothing")
    s.add_argument("--table", action="append", help="only this table (repeatable; default: all)")
    s.add_argument("--orphan-age-days", type=float, help="override LAKE_ORPHAN_AGE_DAYS")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_maintain)

    s = sub.add_parser("snapshots", help="a table's snapshots (history)")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.add_argument("--url")
    s.set_defaults(func=cmd_snapshots)
    s = sub.add_parser("rollback", help="make an earlier snapshot current again")
    s.add_argument("name")
    s.add_argument("--to", required=True, help="snapshot id or ISO-8601 time")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_rollback)
    s = sub.add_parser("changes", help="rows appended between two snapshots (change feed)")
    s.add_argument("name")
    s.add_argument("--from", dest="from_", required=True, help="snapshot id (exclusive)")
    s.add_argument("--to", help="snapshot id (inclusive; default: current)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--url")
    s.set_defaults(func=cmd_changes)

    s = sub.add_parser("serve", help="serve the function URL API and ingest new landing objects")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--poll", type=float, default=2.0, help="seconds between landing bucket scans")
    s.add_argument("--no-watch", action="store_true", help="serve the API only")
    s.add_argument(
        "--no-maintain", action="store_true", help="do not run the maintenance schedules (compaction, GC)"
    )
    s.add_argument("--auth", choices=["keys", "none"], default="keys",
                   help="require API keys (default) or serve without authentication")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("dlq", help="failed ingest events: list them, re-drive them after a fix")
    dsub = s.add_subparsers(dest="dlq_command", required=True)
    d = dsub.add_parser("list", help="list parked events (they stay parked)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dlq)
    d = dsub.add_parser("replay", help="re-drive parked events; each is removed once it succeeds")
    d.add_argument("--id", help="only this message id")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dlq)

    s = sub.add_parser("keys", help="API keys for `lake serve` (stored hashed in the warehouse)")
    ksub = s.add_subparsers(dest="keys_command", required=True)
    k = ksub.add_parser("create", help="create a key and print it (once)")
    k.add_argument("--scope", choices=["read", "write", "admin"], default="read")
    k.add_argument("--tenant", help="bind the key to one tenant")
    k.add_argument("--name", help="a label")
    k.set_defaults(func=cmd_keys)
    ksub.add_parser("list", help="list keys (no secrets)").set_defaults(func=cmd_keys)
    k = ksub.add_parser("revoke", help="revoke a key")
    k.add_argument("key_id")
    k.set_defaults(func=cmd_keys)

    s = sub.add_parser("invoke", help="run a function of template.yaml in process with an event")
    s.add_argument("logical_id")
    s.add_argument("--event", required=True, help="event JSON file (see infra/events/)")
    s.add_argument("--template", default="template.yaml")
    s.set_defaults(func=cmd_invoke)

    s = sub.add_parser("contract", help="dataset contracts")
    csub = s.add_subparsers(dest="contract_command", required=True)
    c = csub.add_parser("infer", help="print a draft contract inferred from a sample file")
    c.add_argument("file")
    c.add_argument("--dataset", required=True)
    c.set_defaults(func=cmd_contract_infer)

    s = sub.add_parser("demo", help="start the stack, ingest the samples, query them and tell the story")
    s.add_argument("--samples", default="infra/samples")
    s.set_defaults(func=cmd_demo)

    from lake.cli.artifacts import add_parser as add_artifacts_parser

    add_artifacts_parser(sub)
    from lake.cli.scale import add_parser as add_scale_parser

    add_scale_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import os

    args = build_parser().parse_args(argv)
    # EMF metrics print to stdout, which the CLI keeps for results; set it to "false" to see them.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    settings = load_settings()
    try:
        code: int = args.func(args, settings)
    except LakeError as e:
        kind = "terminal" if e.terminal else "transient"
        print(f"error ({kind}, {type(e).__name__}): {e}", file=sys.stderr)
        return 2 if e.terminal else 3
    return code


if __name__ == "__main__":
    sys.exit(main())
