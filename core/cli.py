"""The ``modelbook`` command line: ``models ls|show|prune``, ``gc``, ``uploads``, ``sync``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from modelbook import config
from modelbook.errors import ModelbookError
from modelbook.records import ARCHIVED_TAG, ModelQuery, ModelRecord


def _record_dict(record: ModelRecord, project_names: dict[str, str]) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "project": project_names.get(record.project or "", record.project),
        "task": record.task,
        "framework": record.framework,
        "tags": record.tags,
        "system_tags": record.system_tags,
        "published": record.ready,
        "archived": record.archived,
        "iteration": record.iteration,
        "version": record.version,
        "url": record.uri,
        "sha256": record.sha256,
        "size": record.size,
        "labels": record.labels,
        "comment": record.comment,
        "design": record.design,
        "metadata": {k: v["value"] for k, v in record.metadata.items()},
        "created": record.created.isoformat() if record.created else None,
        "last_update": record.last_update.isoformat() if record.last_update else None,
    }


def _models_ls(args: argparse.Namespace) -> int:
    backend = config.get_backend()
    names = {p.id: p.name for p in backend.list_projects()}
    projects = None
    if args.project:
        project = backend.find_project(args.project)
        if project is None:
            from modelbook.errors import ProjectNotFoundError

            raise ProjectNotFoundError(args.project, names.values())
        projects = [project.id]
    query = ModelQuery(
        projects=projects,
        tags=args.tag or None,
        system_tags=None if args.archived else [f"-{ARCHIVED_TAG}"],
        ready=True if args.published else None,
        limit=args.n,
    )
    records = backend.query_models(query)
    if args.json:
        print(json.dumps([_record_dict(r, names) for r in records], indent=2))
        return 0
    rows = [("ID", "NAME", "PROJECT", "VER", "ITER", "PUB", "TAGS", "CREATED")]
    for r in records:
        rows.append(
            (
                r.id,
                r.name,
                names.get(r.project or "", "-"),
                str(r.version),
                "-" if r.iteration is None else str(r.iteration),
                "yes" if r.ready else "no",
                ",".join(r.tags) or "-",
                f"{r.created:%Y-%m-%d %H:%M}" if r.created else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _models_show(args: argparse.Namespace) -> int:
    backend = config.get_backend()
    record = backend.get_model(args.id)
    names = {p.id: p.name for p in backend.list_projects()}
    data = _record_dict(record, names)
    data["versions"] = [
        {
            "version": v.version,
            "iteration": v.iteration,
            "url": v.uri,
            "sha256": v.sha256,
            "size": v.size,
            "created": v.created.isoformat(),
            "pruned": v.pruned,
        }
        for v in backend.list_model_versions(record.id)
    ]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value) if value else "-"
        print(f"{key:12} {value if value not in (None, '') else '-'}")
    return 0


def _models_prune(args: argparse.Namespace) -> int:
    from modelbook import retention

    report = retention.prune(config.get_backend(), args.id, args.keep_last, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"pruned": report.pruned, "deleted": report.doomed,
                          "kept": report.kept, "failed": report.failed,
                          "dry_run": args.dry_run}, indent=2))  # fmt: skip
        return 1 if report.failed else 0
    verb = "would prune" if args.dry_run else "pruned"
    print(f"{verb} versions: {', '.join(map(str, report.pruned)) or 'none'}")
    for version, why in sorted(report.kept.items()):
        print(f"kept version {version}: {why}")
    for uri in report.doomed:
        state = "failed: " + report.failed[uri] if uri in report.failed else "deleted"
        print(f"{'would delete' if args.dry_run else state}  {uri}")
    return 1 if report.failed else 0


def _gc(args: argparse.Namespace) -> int:
    from modelbook import retention

    found, deleted = retention.collect(pending_grace=args.older_than, dry_run=args.dry_run)
    if args.json:
        result = {"objects": found.doomed, "partials": found.partials,
                  "failed": deleted.failed, "dry_run": args.dry_run}  # fmt: skip
        print(json.dumps(result, indent=2))
        return 1 if deleted.failed else 0
    verb = "would delete" if args.dry_run else "deleted"
    for uri in found.doomed:
        print(f"{'failed: ' + deleted.failed[uri] if uri in deleted.failed else verb}  {uri}")
    for partial in found.partials:
        print(f"{verb} partial upload  {partial}")
    print(f"{len(found.doomed)} unreferenced object(s), {len(found.partials)} partial upload(s)")
    return 1 if deleted.failed else 0


def _uploads(args: argparse.Namespace) -> int:
    from modelbook.sync import waiting

    pending, failed = waiting()
    if args.json:
        print(json.dumps({"offline": config.offline(), "waiting": pending, "failed": failed},
                         indent=2))  # fmt: skip
        return 0
    for view in pending:
        error = f"  last error: {view['last_error']}" if view["last_error"] else ""
        print(f"{view['id']}  {view['what']}  [{view['registry']}, {view['attempts']} "
              f"attempt(s)]{error}")  # fmt: skip
    for view in failed:
        print(f"FAILED {view['id']}  {view['what']}: {view['last_error']}")
    mode = " (offline mode is on: `modelbook sync` sends them)" if config.offline() else ""
    print(f"{len(pending)} job(s) waiting, {len(failed)} failed, in {config.home() / 'spool'}"
          f"{mode}")  # fmt: skip
    return 0


def _sync(args: argparse.Namespace) -> int:
    from modelbook import sync

    def bar(done: int, total: int) -> None:
        if args.json or not total:
            return
        filled = round(30 * done / total)
        end = "\n" if done == total else ""
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} job(s)", end=end,
              file=sys.stderr, flush=True)  # fmt: skip

    if args.source:
        from pathlib import Path

        sync.import_session(Path(args.source), args.timeout, bar)
    report = sync.sync(args.timeout, bar)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for local, registry_id in report.ids.items():
            print(f"{local} -> {registry_id}")
        for registry, count in report.elsewhere.items():
            print(f"{count} job(s) wait for another registry ({registry}); configure it, "
                  "or `modelbook sync --from` the home, to send them")  # fmt: skip
        print(report.summary())
    return 1 if report.left or report.failed else 0


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelbook", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models", help="list and inspect registered models")
    verbs = models.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("ls", help="list models, newest first")
    ls.add_argument("--project", help="exact project name")
    ls.add_argument(
        "--tag", action="append", help="tag filter term; repeat for any-of; --tag=-x excludes x"
    )
    ls.add_argument("--published", action="store_true", help="only published models")
    ls.add_argument("--archived", action="store_true", help="include archived models")
    ls.add_argument("-n", type=_non_negative, default=50, help="at most N models (default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_models_ls)
    show = verbs.add_parser("show", help="show one model with its versions")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_models_show)
    prune = verbs.add_parser(
        "prune", help="delete the weights of old versions (never the current or best ones)"
    )
    prune.add_argument("id")
    prune.add_argument("--keep-last", type=_non_negative, required=True, metavar="N",
                       help="keep the newest N versions (the current and best always stay)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(func=_models_prune)
    gc = commands.add_parser(
        "gc", help="delete stored objects the registry wrote that nothing references"
    )
    gc.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    gc.add_argument("--older-than", type=float, default=86400.0, metavar="SECONDS",
                    help="unfinished uploads count as garbage after this long (default 86400)")
    gc.add_argument("--json", action="store_true", help="print JSON")
    gc.set_defaults(func=_gc)
    waiting = commands.add_parser("uploads", help="list what waits in the spool for the registry")
    waiting.add_argument("--json", action="store_true", help="print JSON")
    waiting.set_defaults(func=_uploads)
    sync = commands.add_parser(
        "sync", help="send what waits in the spool (offline runs, registry outages) now"
    )
    sync.add_argument("--from", dest="source", metavar="PATH",
                      help="first import an offline session: a modelbook home, its spool, or a zip")
    sync.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                      help="stop after this long (what is left stays in the spool)")
    sync.add_argument("--json", action="store_true", help="print JSON")
    sync.set_defaults(func=_sync)
    try:
        from modelbook.server.cli import add_server_commands
    except ImportError:
        pass
    else:
        add_server_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ModelbookError as exc:
        print(f"modelbook: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
