"""Running ``modelbook ui`` in a subprocess for the tests (always stopped), and finding the
system's Chromium for the browser tests."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelbook.server.testing import stop_process_group

TIMEOUT = 30
#: Where Debian's ``chromium`` package puts the browser (``MODELBOOK_CHROMIUM`` wins).
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Read at import: the suite's autouse fixture clears every MODELBOOK_* variable for each test.
_CHROMIUM_ENV = os.environ.get("MODELBOOK_CHROMIUM")


def chromium_path() -> str | None:
    """The Chromium binary the browser tests drive, or None."""
    if _CHROMIUM_ENV:
        return _CHROMIUM_ENV if Path(_CHROMIUM_ENV).is_file() else None
    for candidate in (*CHROMIUM_CANDIDATES, shutil.which("chromium"),
                      shutil.which("chromium-browser")):  # fmt: skip
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def url_of(proc: subprocess.Popen[str]) -> str:
    """The URL the command prints (waited for at most TIMEOUT seconds)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []],
                     daemon=True).start()  # fmt: skip
    deadline, seen = time.monotonic() + TIMEOUT, ""
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen += line
        found = re.search(r"(http://127\.0\.0\.1:\d+/ui/\?token=[\w-]+)", line)
        if found:
            return found[1]
    raise AssertionError(f"modelbook ui printed no URL: {seen!r}")


@contextmanager
def modelbook_ui(home: Path) -> Iterator[str]:
    """``modelbook ui --no-browser --home <home>`` until the block ends; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelbook.cli", "ui", "--no-browser", "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        yield url_of(proc)
    finally:
        stop_process_group(proc)
