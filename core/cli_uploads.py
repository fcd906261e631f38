"""``modelbook uploads`` (with ``retry`` and ``discard``) and ``modelbook sync``: what waits
in the spool for the registry, and sending it.

The work is done by :mod:`modelbook.sync`; this module parses and prints.

Example:
    >>> import modelbook, tempfile
    >>> modelbook.configure(home=tempfile.mkdtemp())
    >>> from modelbook.cli import main
    >>> main(["uploads", "retry", "--all", "--json"])
    {
      "retried": [],
      "skipped": {},
      "not_found": {}
    }
    0
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelbook import config
from modelbook.cli_common import (
    NOT_FOUND,
    OK,
    PARTLY_FAILED,
    REFUSED,
    add_json,
    emit,
    human_size,
    wants_json,
)
from modelbook.errors import InvalidArgumentError
from modelbook.sync import SpoolChange


def _list(args: argparse.Namespace) -> int:
    from modelbook.sync import waiting

    pending, failed = waiting()
    spool = config.home() / "spool"
    data = {"offline": config.offline(), "spool": str(spool), "waiting": pending,
            "failed": failed}  # fmt: skip

    def text() -> None:
        for view in pending:
            error = f"  last error: {view['last_error']}" if view["last_error"] else ""
            print(f"{view['state']:<11}  {view['id']}  {view['what']}  [{view['registry']}, "
                  f"{view['attempts']} attempt(s)]{error}")  # fmt: skip
        for view in failed:
            print(f"{'failed':<11}  {view['id']}  {view['what']}: {view['last_error']}")
        busy = sum(v["state"] == "in_progress" for v in pending)
        mode = " (offline mode is on: `modelbook sync` sends them)" if config.offline() else ""
        print(f"{len(pending)} job(s) waiting ({busy} in progress), {len(failed)} failed, in "
              f"{spool}{mode}")  # fmt: skip
        if failed:
            print("`modelbook uploads retry ID` queues a failed job again, `modelbook uploads "
                  "discard ID` deletes it")  # fmt: skip

    emit(args, data, text)
    return OK


def _ids(args: argparse.Namespace, every: str) -> list[str] | None:
    """The job ids given, or None for every failed job (``every`` is that flag's name)."""
    if bool(args.ids) == bool(getattr(args, every)):
        flag = "--" + every.replace("_", "-")
        raise InvalidArgumentError(
            f"give the ids of failed jobs (`modelbook uploads` lists them) or {flag}, not both "
            "or neither"
        )
    return args.ids or None


def _outcome(change: SpoolChange, skipped_ok: bool) -> int:
    if not change.unknown and (skipped_ok or not change.skipped):
        return OK
    if change.done or (skipped_ok and change.skipped):
        return PARTLY_FAILED
    return NOT_FOUND if change.unknown else REFUSED


def _report(args: argparse.Namespace, change: SpoolChange, verb: str, data: dict) -> int:
    """Print what retry / discard did; the exit code (retry: a job already waiting is no
    failure; discard: a job kept is a refusal)."""
    def text() -> None:
        for job_id in change.done:
            print(f"{verb}  {job_id}")
        for job_id, why in change.skipped.items():
            print(f"skipped  {job_id}: {why}")
        for ref, why in change.unknown.items():
            print(f"modelbook: error: {ref}: {why}", file=sys.stderr)

    emit(args, data, text)
    return _outcome(change, skipped_ok=verb == "queued")


def _retry(args: argparse.Namespace) -> int:
    from modelbook import sync

    change = sync.retry(_ids(args, "all"))
    code = _report(args, change, "queued", {"retried": change.done, "skipped": change.skipped,
                                            "not_found": change.unknown})  # fmt: skip
    if not wants_json(args):
        print(f"{len(change.done)} job(s) queued again; `modelbook sync` sends them now (or "
              "any modelbook process that reaches their registry)")  # fmt: skip
    return code


def _discard(args: argparse.Namespace) -> int:
    from modelbook import sync

    def referenced(uri: str) -> bool:
        return config.get_backend().is_referenced(uri)

    change = sync.discard(referenced, _ids(args, "all_failed"))
    data = {"discarded": change.done, "freed_bytes": change.freed, "skipped": change.skipped,
            "not_found": change.unknown}  # fmt: skip
    code = _report(args, change, "discarded", data)
    if not wants_json(args):
        print(f"{len(change.done)} failed job(s) discarded, {human_size(change.freed)} freed")
    return code


def _sync(args: argparse.Namespace) -> int:
    from modelbook import sync

    def bar(done: int, total: int) -> None:
        if wants_json(args) or not total:
            return
        filled = round(30 * done / total)
        end = "\n" if done == total else ""
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} job(s)", end=end,
              file=sys.stderr, flush=True)  # fmt: skip

    if args.source:
        from pathlib import Path

        sync.import_session(Path(args.source), args.timeout, bar)
    report = sync.sync(args.timeout, bar)

    def text() -> None:
        for local, registry_id in report.ids.items():
            print(f"{local} -> {registry_id}")
        for registry, count in report.elsewhere.items():
            print(f"{count} job(s) wait for another registry ({registry}); configure it, "
                  "or `modelbook sync --from` the home, to send them")  # fmt: skip
        print(report.summary())

    emit(args, report.to_json(), text)
    return PARTLY_FAILED if report.left or report.failed else OK


def add_upload_commands(commands: Any) -> None:
    """Register ``uploads [retry|discard]`` and ``sync`` on the top-level sub-parsers."""
    uploads = commands.add_parser(
        "uploads", help="list what waits in the spool for the registry, and failed jobs",
        description="List the upload jobs: pending, in progress, and failed for good (with "
        "the reason). retry queues failed jobs again; discard deletes them.",
    )  # fmt: skip
    add_json(uploads)
    uploads.set_defaults(func=_list)
    verbs = uploads.add_subparsers(dest="verb", metavar="COMMAND")
    retry = verbs.add_parser("retry", help="move failed jobs back into the queue",
                             description="Move failed jobs back into the queue; modelbook "
                             "sync (or any modelbook process) sends them.")  # fmt: skip
    retry.add_argument("ids", nargs="*", metavar="ID", help="job id (or its last 8 characters)")
    retry.add_argument("--all", action="store_true", help="every failed job")
    add_json(retry)
    retry.set_defaults(func=_retry)
    discard = verbs.add_parser(
        "discard", help="delete failed jobs and the spool bytes only they hold",
        description="Delete failed jobs and the spool bytes only they hold (never a file a "
        "registered version references, never a job that has not failed).",
    )  # fmt: skip
    discard.add_argument("ids", nargs="*", metavar="ID",
                         help="job id (or its last 8 characters)")  # fmt: skip
    discard.add_argument("--all-failed", action="store_true", help="every failed job")
    add_json(discard)
    discard.set_defaults(func=_discard)

    sync = commands.add_parser(
        "sync", help="send what waits in the spool (offline runs, registry outages) now",
        description="Send what waits in the spool for the configured registry now, offline "
        "mode or not.",
    )  # fmt: skip
    sync.add_argument("--from", dest="source", metavar="PATH",
                      help="first import an offline session: a modelbook home, its spool, or a zip")
    sync.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                      help="stop after this long (what is left stays in the spool)")
    add_json(sync)
    sync.set_defaults(func=_sync)
