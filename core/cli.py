"""The ``modelbook`` command line: the parser, the exit codes, and :func:`main`.

The commands live by subject: :mod:`modelbook.cli_models` (``models ...``, ``gc``),
:mod:`modelbook.cli_versions` (``models get``, ``models compare``),
:mod:`modelbook.cli_uploads` (``uploads``, ``sync``); ``server`` and ``ui`` come from
:mod:`modelbook.server.cli`. Their shared parts (exit codes, ``--json``) are in
:mod:`modelbook.cli_common`; docs/cli.md documents every command and its JSON keys.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

from modelbook.cli_common import EXIT_CODES, USAGE, report_error, wants_json
from modelbook.errors import ModelbookError

DESCRIPTION = """\
modelbook: a model registry with ClearML's Model API, from the command line.

It talks to the registry modelbook is configured for: the embedded store in
MODELBOOK_HOME (default ~/.modelbook), or a server named by MODELBOOK_API_HOST
(or CLEARML_API_HOST, or clearml.conf) with its access key and secret."""

EPILOG = f"""\
{EXIT_CODES}

Every command takes --json: the result as JSON on stdout (the keys are listed in
docs/cli.md); an error is then also printed as {{"error": {{"code", "type", "message"}}}}.
"modelbook COMMAND --help" describes a command."""

SERVER_EXTRA = "pip install 'modelbook[server]'"


def _needs_server_extra(name: str, why: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        print(f"modelbook: error: `modelbook {name}` needs the server extra ({why}): "
              f"{SERVER_EXTRA}", file=sys.stderr)  # fmt: skip
        return USAGE

    return run


def _add_server_commands(commands: Any) -> None:
    """``server`` and ``ui`` from the server package; without its extra, commands of those
    names that say how to install it (instead of argparse's "invalid choice")."""
    why = ""
    try:
        from modelbook.server.cli import add_server_commands
    except ImportError as exc:
        why = f"{exc}"
    else:
        add_server_commands(commands)
    if not why and importlib.util.find_spec("starlette") is None:
        why = "starlette is not installed"
    for name in ("server", "ui"):
        if name not in commands.choices and why:
            stub = commands.add_parser(name, help=f"needs {SERVER_EXTRA}", add_help=False,
                                       prefix_chars="\0")  # fmt: skip
            stub.add_argument("rest", nargs=argparse.REMAINDER)
            stub.set_defaults(func=_needs_server_extra(name, why))


def build_parser() -> argparse.ArgumentParser:
    """The ``modelbook`` parser; each command sets ``func(args) -> exit code``."""
    from modelbook.cli_models import add_model_commands
    from modelbook.cli_uploads import add_upload_commands

    parser = argparse.ArgumentParser(
        prog="modelbook", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", default=False,
                        help="print results (and errors) as JSON (also after the command)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_model_commands(commands)
    add_upload_commands(commands)
    _add_server_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse exits 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ModelbookError as exc:
        return report_error(exc, wants_json(args))
    except OSError as exc:  # a file or socket the command itself touched
        return report_error(exc, wants_json(args))
    except KeyboardInterrupt:
        print("modelbook: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
