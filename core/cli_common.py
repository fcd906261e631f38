"""What every ``modelbook`` command shares: exit codes, ``--json``, tables, model ids.

Each command is a function of the parsed arguments that prints its result (a table or
``--json``) and returns an exit code; an error it raises becomes one line on stderr and the
exit code of its kind (:func:`exit_code`).

Example:
    >>> from modelbook.errors import ModelNotFoundError
    >>> exit_code(ModelNotFoundError("4a1e")) == NOT_FOUND
    True
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from modelbook import config
from modelbook.errors import (
    ConfigurationError,
    InvalidArgumentError,
    ModelInUseError,
    ModelPublishedError,
    NotFoundError,
)
from modelbook.records import ModelRecord

#: The work was done.
OK = 0
#: Some of the work was done, some failed (the output says which).
PARTLY_FAILED = 1
#: A usage error or bad input: an unknown option, a bad value, an unwritable path, settings.
USAGE = 2
#: No such model, version, project or upload job.
NOT_FOUND = 3
#: Refused: the model is published or in use, the job is not a failed one.
REFUSED = 4
#: The registry or the storage failed: no answer, an error answer, a corrupted file.
FAILED = 5

EXIT_CODES = """exit codes:
  0  done
  1  partly failed: some of the work was done, the output says what was not
  2  usage or bad input: unknown option, bad value, unwritable path, bad settings
  3  not found: no such model, version, project or upload job
  4  refused: the model is published or in use, the upload job is not a failed one
  5  the registry or the storage failed: no answer, an error answer, a corrupted file"""


def exit_code(exc: BaseException) -> int:
    """The exit code for an error a command raised (see :data:`EXIT_CODES`)."""
    if isinstance(exc, NotFoundError):
        return NOT_FOUND
    if isinstance(exc, (ModelPublishedError, ModelInUseError)):
        return REFUSED
    if isinstance(exc, (InvalidArgumentError, ConfigurationError)):
        return USAGE
    return FAILED


def report_error(exc: BaseException, as_json: bool, hint: str = "") -> int:
    """Say what went wrong, in one line on stderr (and as JSON on stdout with ``--json``);
    returns the exit code."""
    code = exit_code(exc)
    message = f"{exc}{'; ' + hint if hint else ''}"
    if as_json:
        error = {"code": code, "type": type(exc).__name__, "message": message}
        print(json.dumps({"error": error}, indent=2))
    print(f"modelbook: error: {message}", file=sys.stderr)
    return code


def add_json(parser: argparse.ArgumentParser) -> None:
    """``--json`` on ``parser``; it may come anywhere on the line (``modelbook --json ...``)."""
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the result as JSON (keys: docs/cli.md)")  # fmt: skip


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def emit(args: argparse.Namespace, data: Any, text: Callable[[], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else run ``text`` (which prints a view)."""
    if wants_json(args):
        print(json.dumps(data, indent=2))
    else:
        text()


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; the first row is the header."""
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def human_size(size: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``"-"``."""
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    value, units = size / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def resolve_model(ref: str) -> str:
    """The registry id of the model ``ref`` names: itself, or what its local id became.

    Raises:
        NotRegisteredError: ``ref`` is a local id whose model waits in the spool.
    """
    from modelbook import deferred, uploads

    if not deferred.is_local(ref):
        return ref
    return uploads.queue_for(config.get_backend(), config.home()).resolve(ref)


def record_dict(record: ModelRecord, project_names: dict[str, str]) -> dict[str, Any]:
    """A model as ``--json`` prints it (``models ls`` / ``show`` / ``publish`` ...)."""
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


def project_names() -> dict[str, str]:
    """``{project id: name}`` of the configured registry."""
    return {p.id: p.name for p in config.get_backend().list_projects()}


def non_negative(text: str) -> int:
    """An argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


__all__ = [
    "EXIT_CODES", "FAILED", "NOT_FOUND", "OK", "PARTLY_FAILED", "REFUSED", "USAGE", "add_json",
    "emit", "exit_code", "human_size", "non_negative",
    "print_table", "project_names", "record_dict", "report_error", "resolve_model",
    "wants_json",
]  # fmt: skip
