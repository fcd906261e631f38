"""A live ``modelbook server`` for tests: a subprocess on 127.0.0.1, always stopped.

Example (pytest)::

    from modelbook.server.testing import live_server

    def test_something(tmp_path):
        with live_server(tmp_path) as server:
            api_host, files_host, access_key, secret_key = server
            ...
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class LiveServer(NamedTuple):
    """Where a running test server is and how to log in; unpacks as a 4-tuple first."""

    api_host: str
    files_host: str
    access_key: str
    secret_key: str
    db_url: str = ""
    files_root: Path = Path()
    log_path: Path = Path()
    pid: int = 0

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server's whole process group (every worker) at once, as a crash or
        the out-of-memory killer would: nothing is flushed or closed. The ``live_server``
        block still reaps it; start another on the same ``db_url`` and root to recover."""
        with suppress(ProcessLookupError):  # already gone
            os.killpg(self.pid, signal.SIGKILL)


def envelope_data(response: Any) -> dict[str, Any]:
    """The ``data`` of a successful API reply (a ``requests.Response``), asserting success."""
    body = response.json()
    meta = body.get("meta") or {}
    assert response.status_code == 200 and meta.get("result_code") == 200, meta
    return body["data"]


def envelope_meta(response: Any) -> dict[str, Any]:
    """The ``meta`` of an API reply."""
    return response.json()["meta"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(url: str, access_key: str, secret_key: str) -> bool:
    import requests

    try:
        response = requests.get(f"{url}/auth.login", auth=(access_key, secret_key), timeout=2)
    except requests.RequestException:
        return False
    return response.status_code == 200


Forward = Callable[[], tuple[int, dict[str, str], bytes]]


class HttpRelay:
    """An HTTP proxy on 127.0.0.1 for tests: forwards every request to ``target_port``.

    Subclasses override :meth:`handle` to answer instead of forwarding, or to change the
    answer (a flaky registry, a schema check). One connection per request.

    Example:
        >>> relay = HttpRelay(free_port())  # nothing listens there: requests would get errors
        >>> relay.url.startswith("http://127.0.0.1:")
        True
        >>> relay.close()
    """

    def __init__(self, target_port: int) -> None:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))

                def forward() -> tuple[int, dict[str, str], bytes]:
                    upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                    try:
                        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                        upstream.request(self.command, self.path, body=body, headers=headers)
                        reply = upstream.getresponse()
                        data = reply.read()
                    finally:
                        upstream.close()
                    kept = {k: v for k, v in reply.getheaders() if k.lower() not in _HOP}
                    return reply.status, kept, data

                status, headers, data = relay.handle(self.command, self.path, body, forward)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def handle(
        self, method: str, path: str, body: bytes, forward: Forward
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request; by default, what the target answers."""
        return forward()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group ``proc`` leads, then SIGKILL it if it lingers; wait for it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)
    except ProcessLookupError:
        proc.wait(timeout=STOP_TIMEOUT)


@contextmanager
def live_server(
    root: Path | None = None,
    db_url: str | None = None,
    *,
    workers: int = 1,
    extra_args: Sequence[str] = (),
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Iterator[LiveServer]:
    """Run ``modelbook server`` in a subprocess until the block ends.

    Args:
        root: a folder for the database, files and log (a temporary one if None, removed
            afterwards).
        db_url: the store (default SQLite in ``root``); credentials are created in it.
        workers: uvicorn worker processes.
        extra_args: more ``modelbook server`` options (e.g. ``--token-ttl``).
        startup_timeout: seconds to wait for the server to accept a log-in.

    Yields:
        A :class:`LiveServer`; ``api_host, files_host, access_key, secret_key = server``.

    Raises:
        RuntimeError: the server did not start (its log is in the message).
    """
    from modelbook.server.credentials import create_credentials
    from modelbook.store.sql import SqlStore

    own_root = root is None
    root = Path(tempfile.mkdtemp(prefix="modelbook-server-")) if root is None else Path(root)
    root.mkdir(parents=True, exist_ok=True)
    db_url = db_url or f"sqlite:///{root / 'registry.db'}"
    from modelbook.server.settings import normalize_db_url

    store = SqlStore(normalize_db_url(db_url))
    try:
        cred = create_credentials(store, user="test")
    finally:
        store.close()
    files_root = root / "files"
    log_path = root / "server.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log_path, "ab") as log:
            for _attempt in range(3):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                command = [
                    sys.executable, "-m", "modelbook.server", "server",
                    "--host", "127.0.0.1", "--port", str(port), "--db", db_url,
                    "--files-root", str(files_root), "--workers", str(workers),
                    "--no-initial-credentials", "--log-level", "warning", *extra_args,
                ]  # fmt: skip
                proc = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
                deadline = time.monotonic() + startup_timeout
                while proc.poll() is None and time.monotonic() < deadline:
                    if _ready(url, cred.access_key, cred.secret_key):
                        break
                    time.sleep(0.1)
                else:
                    stop_process_group(proc)
                    continue  # exited (port taken?) or too slow: try another port
                break
            else:
                raise RuntimeError(
                    "modelbook server did not start; its log:\n"
                    + log_path.read_text(errors="replace")[-5000:]
                )
        yield LiveServer(
            api_host=url,
            files_host=f"{url}/files",
            access_key=cred.access_key,
            secret_key=cred.secret_key,
            db_url=db_url,
            files_root=files_root,
            log_path=log_path,
            pid=proc.pid,
        )
    finally:
        if proc is not None:
            stop_process_group(proc)
        if own_root:
            shutil.rmtree(root, ignore_errors=True)


#: The name the core test suite uses.
running_server = live_server


def postgres_bin_dir() -> Path | None:
    """The folder of PostgreSQL's server binaries (``initdb``, ``pg_ctl``), if installed.

    ``MODELBOOK_PG_BIN`` wins; then ``/usr/lib/postgresql/<newest>/bin``; then ``PATH``.
    """
    candidates = []
    if os.environ.get("MODELBOOK_PG_BIN"):
        candidates.append(Path(os.environ["MODELBOOK_PG_BIN"]))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _as_postgres_user() -> list[str]:
    """The command prefix that runs PostgreSQL's tools as a non-root user when we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", "postgres", "--"]


@contextmanager
def temporary_postgres(timeout: float = 60.0) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, removed afterwards.

    ``initdb`` refuses to run as root, so under root the cluster is created and run as the
    ``postgres`` user (``runuser``). The cluster listens on a free port of 127.0.0.1 and a
    unix socket in its own folder, with a random password (scram-sha-256), fsync off.

    Yields:
        A SQLAlchemy URL, ``postgresql+psycopg://modelbook:<pw>@127.0.0.1:<port>/modelbook``.

    Raises:
        RuntimeError: no PostgreSQL binaries, or the cluster did not start (log included).
    """
    import secrets

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    prefix = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="modelbook-pg-"))
    data, log, pwfile = root / "data", root / "postgres.log", root / "pw"
    password = secrets.token_hex(16)
    pwfile.write_text(password)
    if prefix:
        for path in (root, pwfile):
            shutil.chown(path, "postgres", "postgres")
    port = free_port()

    def run(*command: str) -> None:
        proc = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=timeout, cwd=root
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {proc.stdout}{proc.stderr}")

    started = False
    try:
        run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", "modelbook", "-A", "scram-sha-256",
            "--pwfile", str(pwfile), "-E", "UTF8", "--locale", "C", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        try:
            run(
                str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log),
                "-w", "-t", str(int(timeout)), "start",
            )  # fmt: skip
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from None
        started = True
        env = {**os.environ, "PGPASSWORD": password}
        proc = subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "modelbook",
             "modelbook"],
            capture_output=True, text=True, timeout=timeout, env=env,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"createdb failed: {proc.stderr}")
        yield f"postgresql+psycopg://modelbook:{password}@127.0.0.1:{port}/modelbook"
    finally:
        if started:
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                 "-t", "30", "stop"],
                capture_output=True, timeout=60, cwd=root,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
