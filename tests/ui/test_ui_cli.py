"""``modelbook ui`` as people run it: a subprocess on 127.0.0.1 printing a URL with a token
(about 4 s: three interpreter starts)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from ui_process import modelbook_ui

pytestmark = pytest.mark.embedded_only

TIMEOUT = 30


def test_modelbook_ui_prints_a_token_url_that_logs_in(tmp_path: Path) -> None:
    with modelbook_ui(tmp_path) as url:
        base = url.split("/ui/")[0]
        assert requests.get(f"{base}/ui/", timeout=TIMEOUT, allow_redirects=False).status_code \
            == 303  # fmt: skip
        wrong = requests.get(f"{base}/ui/?token=nope", timeout=TIMEOUT, allow_redirects=False)
        assert wrong.status_code == 401
        session = requests.Session()
        page = session.get(url, timeout=TIMEOUT)
        assert page.status_code == 200 and "<h1>Models</h1>" in page.text
        assert page.url == f"{base}/ui/"  # the token left the address bar
        assert (tmp_path / "store.db").is_file()  # the embedded store of --home


def test_a_taken_port_and_a_bad_port_are_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "modelbook.cli", "ui", "--no-browser", "--port", str(port),
             "--home", str(tmp_path)],
            capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "modelbook.cli", "ui", "--port", "70000"],
                         capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert bad.returncode == 2 and "a port is a number from 0 to 65535" in bad.stderr
