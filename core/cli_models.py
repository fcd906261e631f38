"""``modelbook models ...`` and ``modelbook gc``: list, inspect and change registered models.

Every command goes through the public API (``Model``, the backend's verbs, ``retention``),
so it works the same on the embedded store and against a server. ``get`` and ``compare``
live in :mod:`modelbook.cli_versions`.

Example:
    >>> import modelbook, tempfile
    >>> modelbook.configure(home=tempfile.mkdtemp())
    >>> from modelbook.cli import main
    >>> main(["models", "ls", "--json"])
    []
    0
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from modelbook import config, validate
from modelbook.cli_common import (
    OK,
    PARTLY_FAILED,
    add_json,
    emit,
    non_negative,
    print_table,
    project_names,
    record_dict,
    report_error,
    resolve_model,
    wants_json,
)
from modelbook.errors import ModelInUseError, ProjectNotFoundError
from modelbook.model import Model
from modelbook.records import ARCHIVED_TAG, ModelQuery, ModelRecord


def _models_ls(args: argparse.Namespace) -> int:
    backend = config.get_backend()
    names = project_names()
    projects = None
    if args.project:
        project = backend.find_project(args.project)
        if project is None:
            raise ProjectNotFoundError(args.project, names.values())
        projects = [project.id]
    query = ModelQuery(
        projects=projects,
        name=args.name,
        tags=validate.tags(args.tag) or None,
        system_tags=None if args.archived else [f"-{ARCHIVED_TAG}"],
        ready=True if args.published else None,
        limit=args.n,
    )
    records = backend.query_models(query)

    def table() -> None:
        rows = [("ID", "NAME", "PROJECT", "VER", "ITER", "PUB", "TAGS", "CREATED")]
        for r in records:
            rows.append((
                r.id, r.name, names.get(r.project or "", "-"), str(r.version),
                "-" if r.iteration is None else str(r.iteration), "yes" if r.ready else "no",
                ",".join(r.tags) or "-", f"{r.created:%Y-%m-%d %H:%M}" if r.created else "-",
            ))  # fmt: skip
        print_table(rows)

    emit(args, [record_dict(r, names) for r in records], table)
    return OK


def _models_show(args: argparse.Namespace) -> int:
    backend = config.get_backend()
    record = backend.get_model(resolve_model(args.id))
    data = record_dict(record, project_names())
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

    def text() -> None:
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                value = json.dumps(value) if value else "-"
            print(f"{key:12} {value if value not in (None, '') else '-'}")

    emit(args, data, text)
    return OK


def _changed(args: argparse.Namespace, record: ModelRecord, said: str) -> int:
    """Print a model after a change: its record as JSON, or ``said`` and its state."""

    def text() -> None:
        state = ", ".join(
            word for word, on in (("published", record.ready), ("archived", record.archived)) if on
        )
        tags = ", ".join(record.tags) or "(none)"
        print(f"{said} {record.id} ({record.name}): {state or 'draft'}; tags: {tags}")

    emit(args, record_dict(record, project_names()), text)
    return OK


def _model(ref: str) -> Model:
    """A handle on the model ``ref`` names; raises ModelNotFoundError if there is none."""
    model = Model(resolve_model(ref))
    model.reload()
    return model


def _publish(args: argparse.Namespace) -> int:
    model = _model(args.id)
    model.publish()
    return _changed(args, config.get_backend().get_model(model.id), "published")


def _archive(args: argparse.Namespace) -> int:
    model = _model(args.id)
    model.unarchive() if args.undo else model.archive()
    return _changed(args, config.get_backend().get_model(model.id),
                    "unarchived" if args.undo else "archived")  # fmt: skip


def _tag(args: argparse.Namespace) -> int:
    model = _model(args.id)
    wanted = validate.tags(args.tags)
    if args.tag_verb == "add":
        tags = model.tags + [t for t in dict.fromkeys(wanted) if t not in model.tags]
    else:
        tags = [t for t in model.tags if t not in wanted]
    if tags != model.tags:
        model.tags = tags
    return _changed(args, config.get_backend().get_model(model.id), "tags set on")


def _rm(args: argparse.Namespace) -> int:
    from modelbook import retention

    backend = config.get_backend()
    model_id = resolve_model(args.id)
    record = backend.get_model(model_id)
    try:
        deleted = retention.remove_model(backend, model_id, delete_weights=not args.keep_weights,
                                         force=args.force)  # fmt: skip
    except ModelInUseError as exc:
        return report_error(exc, wants_json(args), "--force removes it anyway")
    data = {"id": model_id, "name": record.name, "removed": deleted.removed,
            "failed": deleted.failed, "weights_kept": args.keep_weights}  # fmt: skip

    def text() -> None:
        print(f"removed model {model_id} ({record.name})")
        for uri in deleted.removed:
            print(f"deleted  {uri}")
        for uri, why in deleted.failed.items():
            print(f"failed: {why}  {uri} (`modelbook gc` tries again)")

    emit(args, data, text)
    return PARTLY_FAILED if deleted.failed else OK


def _prune(args: argparse.Namespace) -> int:
    from modelbook import retention

    model_id = resolve_model(args.id)
    report = retention.prune(config.get_backend(), model_id, args.keep_last, dry_run=args.dry_run)
    data = {"pruned": report.pruned, "deleted": report.doomed, "kept": report.kept,
            "failed": report.failed, "dry_run": args.dry_run}  # fmt: skip

    def text() -> None:
        verb = "would prune" if args.dry_run else "pruned"
        print(f"{verb} versions: {', '.join(map(str, report.pruned)) or 'none'}")
        for version, why in sorted(report.kept.items()):
            print(f"kept version {version}: {why}")
        for uri in report.doomed:
            state = "failed: " + report.failed[uri] if uri in report.failed else "deleted"
            print(f"{'would delete' if args.dry_run else state}  {uri}")

    emit(args, data, text)
    return PARTLY_FAILED if report.failed else OK


def _gc(args: argparse.Namespace) -> int:
    from modelbook import retention

    found, deleted = retention.collect(pending_grace=args.older_than, dry_run=args.dry_run)
    data = {"objects": found.doomed, "partials": found.partials, "failed": deleted.failed,
            "dry_run": args.dry_run}  # fmt: skip

    def text() -> None:
        verb = "would delete" if args.dry_run else "deleted"
        for uri in found.doomed:
            print(f"{'failed: ' + deleted.failed[uri] if uri in deleted.failed else verb}  {uri}")
        for partial in found.partials:
            print(f"{verb} partial upload  {partial}")
        print(f"{len(found.doomed)} unreferenced object(s), {len(found.partials)} partial "
              "upload(s)")  # fmt: skip

    emit(args, data, text)
    return PARTLY_FAILED if deleted.failed else OK


def add_model_commands(commands: Any) -> None:
    """Register ``models ...`` and ``gc`` on the top-level sub-parser collection."""
    from modelbook.cli_versions import add_version_commands

    models = commands.add_parser("models", help="list, inspect, download and change models",
                                 description="List, inspect, download and change models.")
    add_json(models)
    verbs = models.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    def verb(name: str, func: Any, help: str, with_id: bool = True) -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        if with_id:
            parser.add_argument("id", metavar="ID", help="model id")
        add_json(parser)
        parser.set_defaults(func=func)
        return parser

    ls = verb("ls", _models_ls, "list models, newest first", with_id=False)
    ls.add_argument("--project", help="exact project name")
    ls.add_argument("--name", help="exact model name")
    ls.add_argument("--tag", action="append", metavar="TAG",
                    help="tag filter term; repeat for any-of; --tag=-x excludes x")  # fmt: skip
    ls.add_argument("--published", action="store_true", help="only published models")
    ls.add_argument("--archived", action="store_true", help="include archived models")
    ls.add_argument("-n", type=non_negative, default=50, help="at most N models (default 50)")
    verb("show", _models_show, "show one model with its versions")
    add_version_commands(verbs, verb)
    verb("publish", _publish, "publish a model: its weights, design and labels become read-only")
    verb("archive", _archive, "archive a model (hidden from ls)").set_defaults(undo=False)
    verb("unarchive", _archive, "bring an archived model back").set_defaults(undo=True)
    tag = verbs.add_parser("tag", help="add or remove tags", description="Add or remove tags.")
    add_json(tag)
    tag_verbs = tag.add_subparsers(dest="tag_verb", required=True, metavar="COMMAND")
    for name, help in (("add", "add tags to a model"), ("rm", "remove tags from a model")):
        sub = tag_verbs.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        sub.add_argument("id", metavar="ID", help="model id")
        sub.add_argument("tags", nargs="+", metavar="TAG")
        add_json(sub)
        sub.set_defaults(func=_tag)
    rm = verb("rm", _rm, "remove a model and the stored weights only it references")
    rm.add_argument("--force", action="store_true",
                    help="also a published model, one a task uses, one a published task made")
    rm.add_argument("--keep-weights", action="store_true",
                    help="keep its stored weights (modelbook never deletes them afterwards)")
    prune = verb("prune", _prune,
                 "delete the weights of old versions (never the current or best ones)")
    prune.add_argument("--keep-last", type=non_negative, required=True, metavar="N",
                       help="keep the newest N versions (the current and best always stay)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")

    gc = commands.add_parser(
        "gc", help="delete stored objects the registry wrote that nothing references",
        description="Delete stored objects the registry wrote that nothing references, and "
        "the partial files of uploads a crash left.",
    )  # fmt: skip
    gc.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    gc.add_argument("--older-than", type=float, default=86400.0, metavar="SECONDS",
                    help="unfinished uploads count as garbage after this long (default 86400)")
    add_json(gc)
    gc.set_defaults(func=_gc)
