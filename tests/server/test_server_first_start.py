"""First start of ``modelbook server`` (issue 13): the initial secret goes to a file only its
owner can read, never to the log; partial uploads a crash left are removed."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import requests

from modelbook.server.files import TMP_DIR
from modelbook.server.testing import free_port, stop_process_group


def test_first_start_keeps_the_secret_out_of_the_log_and_sweeps_partials(tmp_path: Path) -> None:
    home = tmp_path / "server"
    partial = home / "files" / TMP_DIR / "0123abcd.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half an upload")
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelbook.server", "server", "--home", str(home),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        secret_file = home / "initial-credentials"
        deadline = time.monotonic() + 60
        while not secret_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        values = dict(
            line.split(": ", 1) for line in secret_file.read_text().splitlines()
            if not line.startswith("#")
        )  # fmt: skip
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        token = None
        while token is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                pair = (values["access_key"], values["secret_key"])
                answer = requests.get(f"http://127.0.0.1:{port}/auth.login", auth=pair, timeout=5)
                token = answer.json()["data"]["token"]
            except requests.ConnectionError:
                time.sleep(0.1)
        assert token, log.read_text()
        output = log.read_text()
        assert values["access_key"] in output and str(secret_file) in output
        assert values["secret_key"] not in output
        assert not partial.exists() and "removed 1 partial upload" in output
    finally:
        stop_process_group(proc)
