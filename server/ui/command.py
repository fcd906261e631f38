"""``modelbook ui``: the web UI over the embedded store, on 127.0.0.1.

Usage::

    modelbook ui [--port N] [--home PATH] [--no-browser]

It prints a URL carrying a random access token (as Jupyter does); opening it sets the session
cookie. The token changes each run; only this machine can connect.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Any


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, got {text!r}")
    return int(text)


def add_ui_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``ui`` on an argparse sub-parser collection (``func(args)`` runs it)."""
    ui = subparsers.add_parser(
        "ui",
        help="browse the embedded store in a web browser",
        description="Serve the web UI over the embedded store on 127.0.0.1 and print its URL, "
        "which carries a random access token. Stop it with Ctrl-C.",
    )
    ui.add_argument("--port", type=_port, default=0, help="port to listen on (default: a free one)")
    ui.add_argument("--home", metavar="PATH",
                    help="the embedded store's folder (default: MODELBOOK_HOME or ~/.modelbook)")
    ui.add_argument("--no-browser", action="store_true", help="only print the URL")
    ui.set_defaults(func=run_ui)
    return ui


def run_ui(args: argparse.Namespace) -> int:
    """Serve until interrupted; the exit code."""
    try:
        import uvicorn
    except ImportError:
        print("modelbook ui needs the server extra: pip install 'modelbook[server]'",
              file=sys.stderr)  # fmt: skip
        return 2
    from modelbook import config
    from modelbook.server.ui.mount import embedded_ui

    home = Path(args.home).expanduser().absolute() if args.home else config.home()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", args.port))
        sock.listen(128)  # connections made as soon as the URL shows wait for the server
    except OSError as exc:
        sock.close()
        print(f"modelbook ui: cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); "
              "choose another --port, or leave it out for a free one", file=sys.stderr)  # fmt: skip
        return 2
    token = secrets.token_urlsafe(32)
    app, _store = embedded_ui(home, token)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/ui/?token={token}"
    server_host = config.setting("api_host")
    if server_host:
        print(f"modelbook ui: note: modelbook is configured for the server {server_host}; "
              f"this shows the embedded store (the server has these pages at {server_host}/)",
              file=sys.stderr)  # fmt: skip
    print(f"modelbook ui: the embedded store in {home}\n    {url}\nStop it with Ctrl-C.",
          flush=True)  # fmt: skip
    if not args.no_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    settings = uvicorn.Config(app, log_level="warning", server_header=False, lifespan="on")
    uvicorn.Server(settings).run(sockets=[sock])
    return 0
