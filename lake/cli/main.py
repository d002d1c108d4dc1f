"""The ``lake`` command."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lake.cli.output import JSON_HELP, check, client_for, out, plural, rate, remote_options, render_table

if TYPE_CHECKING:  # the settings machinery loads only for commands that need it
    from lakehouse.config import Settings


def _need_stack(settings: Settings) -> None:
    """Commands that touch the store need the local stack unless the environment names a store
    (``LAKE_S3_ENDPOINT``) or a catalog (``LAKE_CATALOG_URI``, ``LAKE_CATALOG_TYPE``) itself:
    never a silent detour to AWS."""
    from lake.local import stack as localstack
    from lakehouse.config import Settings

    explicit = Settings()  # type: ignore[call-arg]  # the environment alone, not the stack file
    if explicit.s3_endpoint is None and explicit.catalog_type == "sql" and explicit.catalog_uri is None:
        localstack.require(settings)


# --- stack -----------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from lake.local import stack as localstack
    from lakehouse.catalog import get_catalog
    from lakehouse.config import load_settings

    state = localstack.up(settings, port=args.port, owner_pid=args.owner_pid)
    get_catalog(load_settings(home=settings.home))  # creates the SQLite catalog and the namespace
    if args.json:
        out(json.dumps(state, indent=2))
        return 0
    verb = "reusing" if state["reused"] else "started"
    out(f"{verb} the local stack ({state['kind']}) at {state['endpoint']}")
    out(f"  buckets: {state['landing_bucket']} (landing), {state['warehouse_bucket']} (warehouse)")
    out(f"  catalog: {state['catalog_uri']}")
    if state["kind"] == "moto" and not state["reused"]:
        out("  the store keeps objects in memory: it starts empty, and `lake down` discards it")
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from lake.local import stack as localstack

    state = localstack.read_state(settings.home.resolve())
    lost = localstack.contents(settings) if state is not None and state["kind"] == "moto" else None
    stopped = localstack.down(settings)
    if args.json:
        out(json.dumps({"stopped": stopped, "discarded": lost}))
    elif not stopped:
        out("no local stack was running")
    elif lost is None:
        out("stopped the local stack (its data stays on disk)")
    else:
        out(
            f"stopped the local stack and discarded its in-memory store: {plural(lost['tables'], 'table')}, "
            f"{plural(lost['uploads'], 'upload')}, {plural(lost['objects'], 'warehouse object')} and every "
            "API key are gone; the next `lake up` starts empty"
        )
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
        f"{report['source']} → {report['table']}: {report['rows_accepted']:,} accepted, "
        f"{report['rows_quarantined']:,} quarantined of {plural(report['rows_read'], 'row')} "
        f"in {report['seconds']}s{rate(report['rows_per_second'])}, snapshot {report['snapshot_id']}"
    )


def cmd_put(args: argparse.Namespace, settings: Settings) -> int:
    from lake.local.serve import deliver
    from lakehouse.storage import s3_client

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
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


def cmd_rollup(args: argparse.Namespace, settings: Settings | None) -> int:
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
        out(f"({plural(body['row_count'], 'bucket')}{more}, {body['elapsed_ms']} ms)")
    return 0


def _put_with_progress(
    args: argparse.Namespace, settings: Settings, path: Path, key: str, s3: Any, deliver: Any
) -> dict[str, Any]:
    """Upload and ingest; a progress bar (bytes, rows, rows/s) on stderr for large files."""
    from lake.cli.progress import StderrBar
    from lakehouse.ingest.progress import reporting

    size = path.stat().st_size
    show = args.progress if args.progress is not None else size >= PROGRESS_MIN_BYTES
    client = s3(settings)
    upload = StderrBar(size, "upload ") if show else None
    sent = [0]

    def uploaded(n: int) -> None:
        sent[0] += n
        if upload is not None:
            upload.update(sent[0], 0)

    client.upload_file(str(path), settings.landing_bucket, key, Callback=uploaded)
    if upload is not None:
        upload.close()
    version = client.head_object(Bucket=settings.landing_bucket, Key=key).get("VersionId")
    bar = StderrBar(size, "ingest (bytes read) ") if show else None
    try:
        if bar is None:
            result: dict[str, Any] = deliver(settings, settings.landing_bucket, key)
        else:
            with reporting(bar):
                result = deliver(settings, settings.landing_bucket, key)
            bar.close()
    except KeyboardInterrupt:
        # The ingest commits at its end, so nothing is committed yet: take the upload back too, so
        # that no watcher (`lake serve`) or redelivery ingests what the user stopped.
        extra = {"VersionId": version} if version else {}
        client.delete_object(Bucket=settings.landing_bucket, Key=key, **extra)
        where = f"s3://{settings.landing_bucket}/{key}"
        raise KeyboardInterrupt(f"nothing committed; the upload {where} was removed") from None
    return result


def cmd_quarantine_list(args: argparse.Namespace, settings: Settings | None) -> int:
    body = check(client_for(args).quarantine(args.dataset, args.source, args.limit))
    if args.json:
        out(json.dumps(body))
        return 0
    cols = ["quarantined_at", "source_uri", "row_number", "column", "rule", "reason"]
    out(render_table(cols, [[r[c] for c in cols] for r in body["rows"]], max_width=60, wide=["reason"]))
    rules = ", ".join(f"{rule} {n:,}" for rule, n in body["by_rule"].items())
    shown = f"{len(body['rows']):,} of {plural(body['total'], 'quarantined row')}"
    out(f"({shown}{'; ' + rules if rules else ''})")
    return 0


def cmd_quarantine_replay(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.ingest.quarantine import replay

    report = replay(settings, args.dataset, args.source).to_dict()
    if args.json:
        out(json.dumps(report))
    else:
        out(
            f"{args.dataset}: {report['replayed']:,} of {plural(report['examined'], 'quarantined row')} "
            f"moved to the table (contract v{report['contract_version']}); {report['still_failing']:,} "
            f"still {'fails' if report['still_failing'] == 1 else 'fail'}, {report['unparseable']:,} "
            "cannot be parsed"
        )
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings | None) -> int:
    as_of: int | str | None = args.as_of
    if isinstance(as_of, str) and as_of.isdigit():
        as_of = int(as_of)
    if args.engine == "daft":
        from lake.cli.scale import sql_body

        if as_of is not None or args.explain:
            raise SystemExit("error: --as-of and --explain are for the query function (duckdb)")
        from lakehouse.config import load_settings

        body = sql_body(args, settings or load_settings())
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
        out(f"({plural(body['row_count'], 'row')}{more}, {body['elapsed_ms']} ms)")
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings | None) -> int:
    as_of: int | str | None = args.as_of
    if isinstance(as_of, str) and as_of.isdigit():
        as_of = int(as_of)
    vector = _json_file(args.vector_file) if args.vector_file else None
    text = None if vector is not None else args.text
    if text is None and vector is None:
        raise UsageError("give the text to search for, or --vector-file")
    body = check(client_for(args).search(args.dataset, text, vector, args.k, args.mode, args.filter, as_of))
    if args.format == "json":
        out(json.dumps(body))
    else:
        out(render_table(body["columns"], body["rows"]))
        out(
            f"({plural(body['row_count'], 'row')}, {body['mode']} search at snapshot {body['snapshot_id']}, "
            f"Lance version {body['lance_version']}, {body['elapsed_ms']} ms)"
        )
    return 0


def cmd_tables(args: argparse.Namespace, settings: Settings | None) -> int:
    tables = check(client_for(args).tables())["tables"]
    if args.json:
        out(json.dumps(tables, indent=2))
        return 0
    cols = ["name", "rows", "files", "bytes", "snapshots", "current_snapshot_id"]
    out(render_table(cols, [[t[c] for c in cols] for t in tables]))
    return 0


def cmd_describe(args: argparse.Namespace, settings: Settings | None) -> int:
    d = check(client_for(args).describe(args.name))
    if args.json:
        out(json.dumps(d, indent=2))
        return 0
    out(
        f"{d['name']}  ({plural(d['rows'], 'row')} in {plural(d['file_count'], 'file')}, "
        f"snapshot {d['current_snapshot_id']})"
    )
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
            [[partition_text(p["partition"], d["partition_spec"]), p["rows"], p["bytes"], p["path"]]
             for p in d["files"]],
            max_width=90,
        )
    )
    return 0


def partition_text(partition: dict[str, Any], spec: list[dict[str, Any]]) -> str:
    """``ts_month=2026-11`` rather than ``{"ts_month": 682}``: transform values as dates."""
    import datetime as dt

    transforms = {p["name"]: p["transform"] for p in spec}
    parts = []
    for name, value in partition.items():
        transform = transforms.get(name, "")
        if isinstance(value, int) and transform == "month":
            value = f"{1970 + value // 12:04d}-{value % 12 + 1:02d}"
        elif isinstance(value, int) and transform == "year":
            value = f"{1970 + value:04d}"
        elif isinstance(value, int) and transform == "day":
            value = (dt.date(1970, 1, 1) + dt.timedelta(days=value)).isoformat()
        elif isinstance(value, int) and transform == "hour":
            value = (dt.datetime(1970, 1, 1) + dt.timedelta(hours=value)).strftime("%Y-%m-%dT%H")
        parts.append(f"{name}={value}")
    return ", ".join(parts)


def cmd_maintain(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from lakehouse.maintenance import MaintenanceOptions, registered_jobs, run_maintenance

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
        return 1 if report["failures"] else 0
    views = {
        "retention": ["table", "cutoff", "files_dropped", "rows_dropped", "files_rewritten"],
        "compact": ["table", "partitions_compacted", "files_before", "files_after", "bytes_rewritten"],
        "expire": ["table", "snapshots_expired", "snapshots_kept", "files_deleted", "bytes_freed"],
        "orphans": ["table", "files_found", "files_deleted", "bytes_freed", "older_than"],
        "vectors": ["dataset", "rows", "stray_rows", "duplicate_ids", "version", "index", "error"],
    }
    for job, results in report["jobs"].items():
        done = [r for r in results if "error" not in r]
        out(f"\n{job}{' (dry run)' if args.dry_run else ''}:")
        cols = views.get(job) or sorted({c for r in done for c in r})
        out(render_table(cols, [[r.get(c) for c in cols] for r in done]))
    verb = "would free" if args.dry_run else "freed"
    out(f"\n{verb} {plural(report['bytes_freed'], 'byte')}")
    failed = [(job, r) for job, results in report["jobs"].items() for r in results if "error" in r]
    for job, r in failed:
        where = r.get("file") or r.get("table") or r.get("dataset")
        print(f"skipped by {job}: {where}: {r['error']}: {r.get('message', '')}", file=sys.stderr)
    if failed:
        print(f"{plural(len(failed), 'problem')}; every other table got its upkeep", file=sys.stderr)
    return 1 if failed else 0


def cmd_snapshots(args: argparse.Namespace, settings: Settings | None) -> int:
    body = check(client_for(args).snapshots(args.name))
    if args.json:
        out(json.dumps(body, indent=2))
        return 0
    cols = ["snapshot_id", "parent_id", "timestamp", "operation", "current", "added_rows", "total_rows"]
    out(render_table(cols, [[s[c] for c in cols] for s in body["snapshots"]]))
    return 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.query.history import rollback

    result = rollback(settings, args.name, args.to)
    if args.json:
        out(json.dumps(result))
    else:
        out(
            f"{result['table']}: current snapshot {result['from_snapshot_id']} → {result['to_snapshot_id']} "
            f"({result['rows']} rows)"
        )
    return 0


def cmd_changes(args: argparse.Namespace, settings: Settings | None) -> int:
    body = check(client_for(args).changes(args.name, args.from_, args.to))
    if args.json:
        out(json.dumps(body))
        return 0
    out(render_table(body["columns"], body["rows"]))
    more = " (truncated)" if body["truncated"] else ""
    out(f"({plural(body['row_count'], 'row')}{more} from {plural(len(body['snapshots']), 'append')})")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:

    from lake.cli import running
    from lake.local.serve import Watcher, make_server
    from lakehouse.config import get_settings

    os.environ["LAKE_AUTH"] = args.auth  # the handlers read the one settings object
    get_settings.cache_clear()
    server = make_server(args.port)
    if args.owner_pid:
        _stop_with_owner(server, args.owner_pid)
    watcher = Watcher(settings, interval=args.poll)
    if not args.no_watch:
        watcher.start()
    from lake.local.schedule import MaintenanceScheduler

    scheduler = MaintenanceScheduler(settings)  # the schedules of template.yaml
    if not args.no_maintain:
        scheduler.start()
    host, port = cast(tuple[str, int], server.server_address[:2])
    cli_key = _register_server(settings, f"http://{host}:{port}", args.auth)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
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
        running.unregister(settings.home)
        if cli_key is not None:
            _revoke_quietly(settings, cli_key)
    return 0


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    """Print (and open in a browser) the web console of the running `lake serve`, or of --url."""
    import urllib.request
    import webbrowser

    from lake.cli import running
    from lakehouse.errors import StackNotRunning

    url = args.url
    if url is None:
        record = running.find(settings.home)
        if record is None:
            raise StackNotRunning("no `lake serve` is running here: start it (or pass --url URL)")
        url = str(record["url"])
    try:
        urllib.request.urlopen(url.rstrip("/") + "/health/live", timeout=5).close()  # noqa: S310
    except OSError as e:
        raise StackNotRunning(f"{url} does not answer: {e}") from e
    page = url.rstrip("/") + "/console"
    out(json.dumps({"console": page}))
    if not args.no_open:
        webbrowser.open(page)
    return 0


def _revoke_quietly(settings: Settings, key_id: str) -> None:
    """Revoke the command line's key, if the stack still runs (else its keys are gone anyway)."""
    from lake.local import stack as localstack
    from lakehouse.access.auth import revoke_key
    from lakehouse.errors import LakeError

    if localstack.read_state(settings.home.resolve()) is None:
        return
    try:
        revoke_key(settings, key_id)
    except (LakeError, OSError) as e:
        print(f"could not revoke the command line's key {key_id}: {e}", file=sys.stderr)


def _register_server(settings: Settings, url: str, auth: str) -> str | None:
    """Tell the read commands where this server is; with keys required, make them an admin key
    (revoked when the server stops). Returns that key's id."""
    from lake.cli import running

    if auth != "keys":
        running.register(settings.home, url, None)
        _warm_up(url, None)
        return None
    from lakehouse.access.auth import create_key

    token, record = create_key(settings, "admin", None, f"lake command line (lake serve, pid {os.getpid()})")
    running.register(settings.home, url, token)
    _warm_up(url, token)
    return str(record["id"])


def _warm_up(url: str, token: str | None) -> None:
    """Answer one query in the background, so the first `lake sql` finds the engine loaded."""
    from lake.client import LakeClient

    def ask() -> None:
        try:
            LakeClient(url, key=token).sql("SELECT 1")
        except OSError as e:
            print(f"warm-up query failed: {e}", file=sys.stderr)

    threading.Thread(target=ask, name="lake-warm-up", daemon=True).start()


def _stop_with_owner(server: Any, owner_pid: int) -> None:
    """Shut the server down once ``owner_pid`` is gone (a test session that was interrupted)."""
    import time

    from lake.cli.running import alive

    def watch() -> None:
        while alive(owner_pid):
            time.sleep(0.5)
        server.shutdown()

    threading.Thread(target=watch, name="lake-owner-watch", daemon=True).start()


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from lake import dlq
    from lake.local.serve import invoke_ingest

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

    if args.keys_command == "create":
        token, record = auth.create_key(settings, args.scope, args.tenant, args.name or "")
        audit.record(
            "local", "key.create", target=record["id"], tenant=args.tenant, detail=f"scope={args.scope}"
        )
        out(json.dumps({"key": token, **record}) if args.json else token)
        print(f"key {record['id']} ({args.scope}{', tenant ' + args.tenant if args.tenant else ''}); "
              "the key is shown once: store it now", file=sys.stderr)
    elif args.keys_command == "list":
        cols = ["id", "name", "scope", "tenant", "created_at", "revoked_at"]
        keys = auth.list_keys(settings)
        out(json.dumps(keys) if args.json else render_table(cols, [[k[c] for c in cols] for k in keys]))
    else:
        record = auth.revoke_key(settings, args.key_id)
        audit.record("local", "key.revoke", target=record["id"])
        out(f"revoked {record['id']}")
    audit.flush(settings)
    return 0


def cmd_invoke(args: argparse.Namespace, settings: Settings) -> int:
    from lake.local.invoke import invoke, local_event

    event, notes = local_event(settings, _json_file(args.event))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    response = invoke(Path(args.template), args.logical_id, event, settings.home)
    out(json.dumps(response, indent=None if args.json else 2, default=str))
    return 0


def _json_file(name: str) -> Any:
    """The JSON value in a file, or a one-line error naming the file."""
    path = Path(name)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not JSON: {e}") from e


def cmd_contract_infer(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.ingest.infer import infer_contract

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    notes: list[str] = []
    contract, sampled = infer_contract(path, args.dataset, notes=notes)
    if args.json:
        out(json.dumps(contract.model_dump(mode="json", exclude_defaults=True)))
        return 0
    out(f"# Draft contract for {args.dataset}, from {path.name} ({plural(sampled, 'row')} sampled).")
    for note in notes:
        out(f"# note: {note}")
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
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO and show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("up", help="start the local stack (S3 endpoint + SQLite catalog)")
    s.add_argument("--port", type=int, default=0, help="S3 endpoint port (default: a free one)")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.add_argument("--owner-pid", type=int, help=argparse.SUPPRESS)  # stop when that process is gone
    s.set_defaults(func=cmd_up, needs_stack=False)
    s = sub.add_parser("down", help="stop the local stack (its in-memory store is discarded)")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_down, needs_stack=False)
    s = sub.add_parser("status", help="is the local stack running, and where")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_status, needs_stack=False)

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
    q.add_argument("--limit", type=int, default=50, help="most rows shown (default 50)")
    q.add_argument("--json", action="store_true", help=JSON_HELP)
    remote_options(q)
    q.set_defaults(func=cmd_quarantine_list)
    q = qsub.add_parser("replay", help="re-validate quarantined rows and move the ones that now pass")
    q.add_argument("dataset")
    q.add_argument("--source", help="only rows of this upload (landing key or s3:// URI)")
    q.add_argument("--json", action="store_true", help=JSON_HELP)
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
    s.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    remote_options(s)
    s.set_defaults(func=cmd_rollup)

    s = sub.add_parser("sql", help="run a read-only SQL query through the query function")
    s.add_argument("query")
    s.add_argument("--as-of", help="snapshot id or ISO-8601 time")
    s.add_argument("--format", choices=["table", "json", "csv"], default="table")
    s.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    s.add_argument("--explain", action="store_true", help="print DuckDB's analysed plan too")
    remote_options(s)
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
    s.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    remote_options(s)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("tables", help="list tables")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    remote_options(s)
    s.set_defaults(func=cmd_tables)
    s = sub.add_parser("describe", help="schema, partitions, snapshots and files of a table")
    s.add_argument("name")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    remote_options(s)
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
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_maintain)

    s = sub.add_parser("snapshots", help="a table's snapshots (history)")
    s.add_argument("name")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    remote_options(s)
    s.set_defaults(func=cmd_snapshots)
    s = sub.add_parser("rollback", help="make an earlier snapshot current again")
    s.add_argument("name")
    s.add_argument("--to", required=True, help="snapshot id or ISO-8601 time")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=cmd_rollback)
    s = sub.add_parser("changes", help="rows appended between two snapshots (change feed)")
    s.add_argument("name")
    s.add_argument("--from", dest="from_", required=True, help="snapshot id (exclusive)")
    s.add_argument("--to", help="snapshot id (inclusive; default: current)")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    remote_options(s)
    s.set_defaults(func=cmd_changes)

    s = sub.add_parser("serve", help="serve the function URL API and ingest new landing objects")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--poll", type=float, default=2.0, help="seconds between landing bucket scans")
    s.add_argument("--no-watch", action="store_true", help="serve the API only")
    s.add_argument(
        "--no-maintain", action="store_true", help="do not run the maintenance schedules (compaction, GC)"
    )
    s.add_argument("--auth", choices=["keys", "oidc", "none"], default="keys",
                   help="require API keys (default), OIDC ID tokens or keys (LAKE_OIDC_*), or nothing")
    s.add_argument("--owner-pid", type=int, help=argparse.SUPPRESS)  # stop when that process is gone
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("console", help="open the web console of the running `lake serve` (or --url)")
    s.add_argument("--url", help="the API's URL (default: the running `lake serve`)")
    s.add_argument("--no-open", action="store_true", help="print the console's URL only")
    s.set_defaults(func=cmd_console)

    s = sub.add_parser("dlq", help="failed ingest events: list them, re-drive them after a fix")
    dsub = s.add_subparsers(dest="dlq_command", required=True)
    d = dsub.add_parser("list", help="list parked events (they stay parked)")
    d.add_argument("--json", action="store_true", help=JSON_HELP)
    d.set_defaults(func=cmd_dlq)
    d = dsub.add_parser("replay", help="re-drive parked events; each is removed once it succeeds")
    d.add_argument("--id", help="only this message id")
    d.add_argument("--json", action="store_true", help=JSON_HELP)
    d.set_defaults(func=cmd_dlq)

    s = sub.add_parser("keys", help="API keys for `lake serve` (stored hashed in the warehouse)")
    ksub = s.add_subparsers(dest="keys_command", required=True)
    k = ksub.add_parser("create", help="create a key and print it (once)")
    k.add_argument("--scope", choices=["read", "write", "admin"], default="read")
    k.add_argument("--tenant", help="bind the key to one tenant")
    k.add_argument("--name", help="a label")
    k.add_argument("--json", action="store_true", help=JSON_HELP)
    k.set_defaults(func=cmd_keys)
    k = ksub.add_parser("list", help="list keys (no secrets)")
    k.add_argument("--json", action="store_true", help=JSON_HELP)
    k.set_defaults(func=cmd_keys)
    k = ksub.add_parser("revoke", help="revoke a key")
    k.add_argument("key_id")
    k.set_defaults(func=cmd_keys)

    s = sub.add_parser("invoke", help="run a function of template.yaml in process with an event")
    s.add_argument("logical_id")
    s.add_argument("--event", required=True, help="event JSON file (see infra/events/)")
    s.add_argument("--template", default="template.yaml", help="the SAM template (default template.yaml)")
    s.add_argument("--json", action="store_true", help="print the response as one line of JSON")
    s.set_defaults(func=cmd_invoke)

    s = sub.add_parser("contract", help="dataset contracts")
    csub = s.add_subparsers(dest="contract_command", required=True)
    c = csub.add_parser("infer", help="print a draft contract inferred from a sample file")
    c.add_argument("file")
    c.add_argument("--dataset", required=True, help="the dataset name the draft is for")
    c.add_argument("--json", action="store_true", help="print the draft as JSON instead of YAML")
    c.set_defaults(func=cmd_contract_infer, needs_stack=False)

    s = sub.add_parser("demo", help="start the stack, ingest the samples, query them and tell the story")
    s.add_argument("--samples", default="infra/samples", help="folder of the sample files")
    s.set_defaults(func=cmd_demo, needs_stack=False)

    from lake.cli.artifacts import add_parser as add_artifacts_parser

    add_artifacts_parser(sub)
    from lake.cli.scale import add_parser as add_scale_parser

    add_scale_parser(sub)
    _everywhere(p)
    return p


def _everywhere(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` on every (sub)command, so it may follow the command's name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _everywhere(child)
    if not any("--verbose" in a.option_strings for a in parser._actions):
        parser.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
            help="log at INFO and show tracebacks (default: warnings only)",
        )


class UsageError(Exception):
    """Something the user gave that the command cannot use (a missing file, a bad value)."""


# What stopping half-way leaves behind, per command (default: nothing was changed).
INTERRUPTED = {
    "maintain": "each job commits atomically: the ones that finished stay, nothing is half-written",
    "demo": "each step commits atomically: the ones that finished stay, nothing is half-written",
}


def _run(args: argparse.Namespace) -> int:
    import urllib.error

    if getattr(args, "server_ok", False) and not args.url and not args.no_server:
        from lake.cli import running

        found = running.find(running.lake_home())
        if found is not None:  # a warm `lake serve` answers at once
            args.url, args.key = found["url"], found.get("token")
            try:
                return int(args.func(args, None))
            except urllib.error.URLError:
                args.url = args.key = None  # it stopped meanwhile: answer in this process
    from lakehouse.config import load_settings

    settings = load_settings()
    if getattr(args, "needs_stack", True) and not getattr(args, "url", None):
        _need_stack(settings)
    return int(args.func(args, settings))


def main(argv: Sequence[str] | None = None) -> int:
    import logging
    import urllib.error

    from lakehouse.errors import LakeError

    args = build_parser().parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    # Warnings only, unless --verbose: the functions' JSON logs are for CloudWatch, not a terminal.
    os.environ.setdefault("LAKE_LOG_LEVEL", "INFO" if verbose else "WARNING")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )
    # EMF metrics print to stdout, which the CLI keeps for results; set it to "false" to see them.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    try:
        return _run(args)
    except KeyboardInterrupt as e:
        note = e.args[0] if e.args else INTERRUPTED.get(args.command, "nothing committed")
        print(f"interrupted: {note}", file=sys.stderr)
        return 130
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except LakeError as e:
        kind = "terminal" if e.terminal else "transient"
        print(f"error ({kind}, {type(e).__name__}): {e}", file=sys.stderr)
        return 2 if e.terminal else 3
    except urllib.error.URLError as e:
        where = getattr(args, "url", None) or "the query API"
        print(f"error: cannot reach {where}: {e.reason}", file=sys.stderr)
        return 3
    except OSError as e:
        if verbose:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except Exception as e:
        if verbose:
            raise
        print(
            f"error (unexpected, {type(e).__name__}): {e}\n(a bug in Lake: `--verbose` shows where)",
            file=sys.stderr,
        )
        return 4


if __name__ == "__main__":
    sys.exit(main())
