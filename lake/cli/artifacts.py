"""``lake artifacts ...``: the artifact store from the command line, through the query API."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.artifacts.model import DATA_TYPES

if TYPE_CHECKING:
    from lakehouse.config import Settings

COLUMNS = ["id", "path", "data_type", "version", "size", "updated_at"]


def _read(source: str | None, binary: bool) -> str | bytes | None:
    """The content of a file (``-``: standard input); text if it is UTF-8, unless ``binary``."""
    if source is None:
        return None
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    if binary:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _metadata(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.metadata_json is None and not args.meta:
        return None
    meta: dict[str, Any] = {}
    if args.metadata_json is not None:
        loaded = json.loads(args.metadata_json)
        if not isinstance(loaded, dict):
            raise SystemExit("--metadata-json must be a JSON object")
        meta.update(loaded)
    for pair in args.meta or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--meta takes key=value, not {pair!r}")
        meta[key] = value
    return meta


def _show(body: dict[str, Any], args: argparse.Namespace) -> None:
    """An artifact: its content (or into ``--out``), or the whole body with ``--json``."""
    from lake.cli.output import out

    if args.json:
        out(json.dumps(body, indent=2, ensure_ascii=False))
        return
    content = body.get("content", "")
    data = base64.b64decode(content) if body.get("content_encoding") == "base64" else content.encode()
    if args.out:
        Path(args.out).write_bytes(data)
        out(f"{body['path']} (version {body['version']}, {body['size']} bytes) → {args.out}")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``: nested figures as table rows."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        flat.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def cmd_artifacts(args: argparse.Namespace, settings: Settings | None) -> int:
    from lake.cli.output import check, client_for, out, plural, render_table

    client = client_for(args)
    action = args.artifacts_command
    if action == "store":
        content = _read(args.file, args.binary)
        assert content is not None
        body = check(
            client.artifact_store(
                args.name, content, args.type, _metadata(args), args.subpath, args.content_type
            )
        )
        out(json.dumps(body, indent=2) if args.json else f"{body['id']}  {body['path']}  version 1")
    elif action == "get":
        _show(check(client.artifact(args.id, args.version, args.as_of)), args)
    elif action == "get-path":
        _show(check(client.artifact_by_path(args.path, args.as_of)), args)
    elif action == "list":
        body = check(client.artifacts(args.type, args.subpath, not args.no_recursive, args.as_of))
        if args.json:
            out(json.dumps(body, indent=2))
        else:
            out(render_table(COLUMNS, [[a[c] for c in COLUMNS] for a in body["artifacts"]]))
            out(f"({plural(body['count'], 'artifact')})")
    elif action == "search":
        body = check(client.artifact_search(args.query, args.type, args.subpath, args.k))
        if args.json:
            out(json.dumps(body, indent=2))
        else:
            cols = ["score", "text_rank", "similarity", "id", "path", "data_type"]
            rows = [
                [h["score"], h["text_rank"], h["similarity"] and round(h["similarity"], 3)]
                + [h["artifact"][c] for c in ("id", "path", "data_type")]
                for h in body["hits"]
            ]
            out(render_table(cols, rows))
            warning = f"; {body['warning']}" if body["warning"] else ""
            out(f"({plural(len(rows), 'hit')}, {body['mode']} search{warning})")
    elif action == "update":
        content = _read(args.file, args.binary)
        body = check(client.artifact_update(args.id, content, _metadata(args), args.content_type))
        summary = f"{body['id']}  {body['path']}  version {body['version']}"
        out(json.dumps(body, indent=2) if args.json else summary)
    elif action == "delete":
        body = check(client.artifact_delete(args.id))
        said = f"deleted {body['path']} ({body['id']}, version {body['version']})"
        out(json.dumps(body) if args.json else said)
    elif action == "history":
        body = check(client.artifact_history(args.id))
        if args.json:
            out(json.dumps(body, indent=2))
        else:
            cols = ["version", "op", "updated_at", "size", "sha256", "snapshot_id"]
            out(render_table(cols, [[v[c] for c in cols] for v in body["versions"]]))
    else:  # stats
        stats = check(client.artifact_stats())
        if args.json:
            out(json.dumps(stats, indent=2))
        else:
            out(render_table(["field", "value"], sorted(_flat(stats).items())))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``lake artifacts`` on the ``lake`` command's sub-parsers."""
    from lake.cli.output import JSON_HELP, remote_options
    s = sub.add_parser("artifacts", help="store, find and version schemas, macros, docs, configs, logs")
    asub = s.add_subparsers(dest="artifacts_command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = asub.add_parser(name, help=help)
        remote_options(p)
        p.set_defaults(func=cmd_artifacts)
        return p

    def metadata(p: argparse.ArgumentParser) -> None:
        p.add_argument("--meta", action="append", metavar="KEY=VALUE", help="a metadata field (repeatable)")
        p.add_argument("--metadata-json", help="metadata as a JSON object")
        p.add_argument("--content-type", help="MIME type of the content")
        p.add_argument("--binary", action="store_true", help="store the file as bytes even if it is text")
        p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = command("store", "store a file as a new artifact at SUBPATH/NAME")
    p.add_argument("name")
    p.add_argument("file", help="the content ('-': standard input)")
    p.add_argument("--type", choices=DATA_TYPES, default="other")
    p.add_argument("--subpath", default="", help="folder, '/'-separated")
    metadata(p)
    p = command("get", "print an artifact's content (or --json, or --out FILE)")
    p.add_argument("id")
    p.add_argument("--version", type=int, help="a version from its history")
    p.add_argument("--as-of", help="Iceberg snapshot id or ISO-8601 time")
    p.add_argument("--out", help="write the content to this file")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p = command("get-path", "print the content of the artifact at SUBPATH/NAME")
    p.add_argument("path")
    p.add_argument("--as-of", help="Iceberg snapshot id or ISO-8601 time")
    p.add_argument("--out", help="write the content to this file")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p = command("list", "list artifacts in a folder and below")
    p.add_argument("--type", choices=DATA_TYPES)
    p.add_argument("--subpath", default="")
    p.add_argument("--no-recursive", action="store_true", help="only the folder itself")
    p.add_argument("--as-of", help="Iceberg snapshot id or ISO-8601 time")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p = command("search", "find artifacts by words and by meaning")
    p.add_argument("query")
    p.add_argument("--type", choices=DATA_TYPES)
    p.add_argument("--subpath", default="")
    p.add_argument("-k", type=int, default=10, help="hits to return (default 10)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p = command("update", "a new version: new content (FILE) and/or metadata")
    p.add_argument("id")
    p.add_argument("file", nargs="?", help="the new content ('-': standard input)")
    metadata(p)
    p = command("delete", "delete an artifact (its history stays)")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p = command("history", "every version of an artifact")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p = command("stats", "counts by type, bytes, versions, last update")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
