"""A tiny streaming HTTP file server for the transfer benchmark's baseline.

``PUT /<name>`` streams the body to ``<root>/<name>`` in 1 MiB chunks; ``GET /<name>`` sends
the file with ``sendfile``; ``GET /`` answers 200 (readiness). Nothing is held in memory.

Usage: ``python bench/_stream_server.py PORT ROOT`` (binds 127.0.0.1).
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    root = Path()
    protocol_version = "HTTP/1.1"

    def _path(self) -> Path | None:
        name = self.path.lstrip("/")
        if not name or "/" in name or name.startswith("."):
            return None
        return self.root / name

    def do_PUT(self) -> None:
        path = self._path()
        left = int(self.headers.get("Content-Length", "0"))
        if path is None:
            self.send_error(400)
            return
        with open(path, "wb") as fh:
            while left > 0:
                chunk = self.rfile.read(min(CHUNK, left))
                if not chunk:
                    break
                fh.write(chunk)
                left -= len(chunk)
        self.send_response(201 if left == 0 else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self._path()
        if path is None or not path.is_file():
            self.send_error(404)
            return
        with open(path, "rb") as fh:
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.flush()
            self.connection.sendfile(fh)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def main(argv: list[str]) -> int:
    port, root = int(argv[0]), Path(argv[1])
    root.mkdir(parents=True, exist_ok=True)
    Handler.root = root
    with ThreadingHTTPServer(("127.0.0.1", port), Handler) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
