"""``modelbook server``: run the registry, and manage its API credentials.

Usage::

    modelbook server [--host 127.0.0.1] [--port 8008] [--db URL] [--files-root PATH]
                     [--workers N] [--token-ttl SECONDS] [--max-request-size BYTES]
                     [--max-upload-size BYTES] [--request-timeout SECONDS]
    modelbook server create-credentials [--user NAME] [--db URL]
    modelbook server list-credentials [--db URL]
    modelbook server revoke-credentials ACCESS_KEY [--db URL]

``modelbook.cli`` wires these in with :func:`add_server_commands`; ``python -m
modelbook.server`` runs them on their own.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from modelbook.errors import ModelbookError
from modelbook.server.settings import (
    GIB,
    MIB,
    SETTINGS_ENV,
    ServerSettings,
    default_home,
    normalize_db_url,
)


def _store_args(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--db", default=default, metavar="URL",
        help="store URL: sqlite:///path.db (default: <home>/registry.db) or "
        "postgresql://user:password@host:5432/dbname",
    )  # fmt: skip
    parser.add_argument(
        "--home", default=default, metavar="PATH",
        help="data folder (default: MODELBOOK_SERVER_HOME or ~/.modelbook/server)",
    )  # fmt: skip


def add_server_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``server`` and its sub-commands on an argparse sub-parser collection.

    The parsed namespace has ``func``; ``func(args)`` runs the command and returns the
    exit code.
    """
    server = subparsers.add_parser(
        "server",
        help="run the self-hosted registry (ClearML API and files server)",
        description="Run the modelbook registry server: the ClearML REST API and a files "
        "server under /files, on SQLite or PostgreSQL.",
    )
    server.add_argument("--host", default="127.0.0.1", help="address to listen on")
    server.add_argument("--port", type=int, default=8008, help="port to listen on")
    server.add_argument("--files-root", metavar="PATH", help="files folder (default <home>/files)")
    server.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    server.add_argument("--token-ttl", type=int, default=24 * 3600, help="token lifetime, s")
    server.add_argument(
        "--max-request-size", type=int, default=64 * MIB, help="largest API request, bytes"
    )
    server.add_argument(
        "--max-upload-size", type=int, default=256 * GIB, help="largest file upload, bytes"
    )
    server.add_argument(
        "--request-timeout", type=float, default=30.0, metavar="SECONDS",
        help="time budget of each database statement of a request; one past it is stopped "
        "and answered 400 (default 30)",
    )  # fmt: skip
    server.add_argument("--log-level", default="info", help="uvicorn log level")
    server.add_argument(
        "--clearml-strict", action="store_true",
        help="answer as a real ClearML server: modelbook's extensions off (to test clients)",
    )  # fmt: skip
    server.add_argument(
        "--no-initial-credentials", action="store_true",
        help="do not create and print credentials when the store has none",
    )  # fmt: skip
    _store_args(server, suppress=False)
    server.set_defaults(func=run_server_command, server_command="serve")

    commands = server.add_subparsers(dest="server_command", metavar="COMMAND")
    create = commands.add_parser("create-credentials", help="create an access key and secret")
    create.add_argument("--user", default="modelbook", help="who uses the key")
    list_ = commands.add_parser("list-credentials", help="list the active access keys")
    revoke = commands.add_parser("revoke-credentials", help="disable an access key")
    revoke.add_argument("access_key")
    for sub in (create, list_, revoke):
        _store_args(sub, suppress=True)
        sub.set_defaults(func=run_server_command)
    from modelbook.server.ui.command import add_ui_command

    add_ui_command(subparsers)  # `modelbook ui`: the web UI over the embedded store
    return server


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home).expanduser().absolute() if args.home else default_home()


def _paths(args: argparse.Namespace) -> tuple[str, Path]:
    home = _home(args)
    db = normalize_db_url(args.db) if args.db else f"sqlite:///{home / 'registry.db'}"
    if db.startswith("sqlite:///"):
        Path(db[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    files_root = getattr(args, "files_root", None)
    return db, Path(files_root).expanduser().absolute() if files_root else home / "files"


def _open_store(db: str) -> Any:
    from modelbook.store.sql import SqlStore

    return SqlStore(db)


def run_server_command(args: argparse.Namespace) -> int:
    """Run the parsed ``server`` command; returns the exit code."""
    from modelbook.server import credentials

    command = getattr(args, "server_command", None) or "serve"
    db, files_root = _paths(args)
    if command == "serve":
        return serve(args, db, files_root)
    store = _open_store(db)
    try:
        if command == "create-credentials":
            cred = credentials.create_credentials(store, user=args.user)
            print(f"access_key: {cred.access_key}\nsecret_key: {cred.secret_key}")
            print("The secret is shown only now; the server keeps only its hash.", file=sys.stderr)
        elif command == "list-credentials":
            for item in credentials.list_credentials(store):
                print(f"{item['access_key']}  user={item['user']}  created={item['created']}")
        elif command == "revoke-credentials":
            if not credentials.revoke_credentials(store, args.access_key):
                print(f"no active access key {args.access_key}", file=sys.stderr)
                return 1
            print(f"revoked {args.access_key}; its tokens stop working within a minute")
    finally:
        store.close()
    return 0


def _prepare_store(db: str, create_initial: bool, url: str, secret_file: Path) -> None:
    """Migrate the store, make the signing key, and create first credentials if asked:
    the secret goes to ``secret_file`` (readable by its owner only), never to the log."""
    from modelbook.server import credentials
    from modelbook.server.tokens import signing_key

    store = _open_store(db)
    try:
        signing_key(store)
        if create_initial and not credentials.has_credentials(store):
            cred = credentials.create_credentials(store)
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            if secret_file.exists():  # never overwrite a file we may not have written
                secret_file = secret_file.with_name(f"{secret_file.name}-{cred.access_key}")
            handle = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(handle, "w") as out:
                out.write(
                    f"access_key: {cred.access_key}\nsecret_key: {cred.secret_key}\n"
                    f"# export CLEARML_API_HOST={url} CLEARML_FILES_HOST={url}/files\n"
                    f"# export CLEARML_API_ACCESS_KEY={cred.access_key} "
                    f"CLEARML_API_SECRET_KEY={cred.secret_key}\n"
                )
            print(
                f"modelbook server: created the first API credentials, access key "
                f"{cred.access_key}; its secret is in {secret_file} (readable by you only; the "
                "server keeps only its hash: delete the file once you have copied it)",
                flush=True,
            )
    finally:
        store.close()


def _sweep_partial_uploads(files_root: Path) -> None:
    """Remove the partial uploads a crash left: at start no upload is running."""
    from modelbook.server.files import TMP_DIR

    leftovers = [p for p in (files_root / TMP_DIR).glob("*") if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        print(f"modelbook server: removed {len(leftovers)} partial upload(s) a crash left",
              flush=True)  # fmt: skip


def serve(args: argparse.Namespace, db: str, files_root: Path) -> int:
    """Run the server in the foreground until interrupted."""
    try:
        import uvicorn
    except ImportError:
        print("the server needs its extra: pip install 'modelbook[server]'", file=sys.stderr)
        return 2
    url = f"http://{args.host}:{args.port}"
    settings = ServerSettings(
        db_url=db,
        files_root=files_root,
        token_ttl=args.token_ttl,
        max_request_size=args.max_request_size,
        max_upload_size=args.max_upload_size,
        public_url=url,
        clearml_strict=args.clearml_strict,
        request_timeout=args.request_timeout,
    )
    files_root.mkdir(parents=True, exist_ok=True)
    _sweep_partial_uploads(files_root)
    _prepare_store(db, not args.no_initial_credentials, url, _home(args) / "initial-credentials")
    os.environ[SETTINGS_ENV] = settings.to_json()
    uvicorn.run(
        "modelbook.server.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=max(1, args.workers),
        log_level=args.log_level,
        timeout_keep_alive=30,
        server_header=False,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m modelbook.server``."""
    parser = argparse.ArgumentParser(prog="modelbook")
    add_server_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ModelbookError as exc:  # bad settings: the message, not a traceback
        print(f"modelbook: error: {exc}", file=sys.stderr)
        return 2
