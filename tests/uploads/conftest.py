"""Real parts for the offline tests: a ``modelbook server`` on 127.0.0.1 behind a proxy the
test cuts, trainings and ``modelbook sync`` in their own processes, and a look at what the
server holds through a client that does not share their home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytest.importorskip("starlette")
from modelbook.backends.http import HttpBackend
from modelbook.records import ModelQuery, ModelRecord, TaskRecord
from modelbook.server.testing import LiveServer, running_server

from .proxy import FlakyProxy

HERE = Path(__file__).parent
RUN_TIMEOUT = 240


@dataclass
class Site:
    """A server, a proxy in front of it, and how to run modelbook processes against it."""

    server: LiveServer
    proxy: FlakyProxy
    root: Path

    def env(self, home: str, api_host: str | None = None, **extra: str) -> dict[str, str]:
        """The environment of a modelbook process with its own home, through the proxy."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MODELBOOK_", "CLEARML_"))}  # fmt: skip
        url = api_host or f"http://127.0.0.1:{self.proxy.port}"
        env.update(
            MODELBOOK_HOME=str(self.root / home), MODELBOOK_API_HOST=url,
            MODELBOOK_FILES_HOST=f"{url}/files" if api_host is None else self.server.files_host,
            MODELBOOK_API_ACCESS_KEY=self.server.access_key,
            MODELBOOK_API_SECRET_KEY=self.server.secret_key, MODELBOOK_UPLOAD_TIMEOUT="120",
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
        )  # fmt: skip
        env.update(extra)
        return env

    def fit(self, env: dict[str, str], epoch_seconds: float = 0.0) -> dict:
        """Run the Lightning fit of ``lightning_run.py``; its JSON report."""
        done = subprocess.run(
            [sys.executable, str(HERE / "lightning_run.py"), str(self.root / "fit"),
             str(epoch_seconds)], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def cli(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelbook.cli", *args], env=env, capture_output=True,
            text=True, timeout=RUN_TIMEOUT,
        )  # fmt: skip

    # -- what the server holds, seen directly ----------------------------------------------
    def backend(self) -> HttpBackend:
        s = self.server
        return HttpBackend(api_host=s.api_host, access_key=s.access_key, secret_key=s.secret_key)

    def tasks(self, project: str) -> list[TaskRecord]:
        backend = self.backend()
        found = backend.find_project(project)
        return [] if found is None else backend.find_tasks(project=found.id, name="fit")

    def models(self, project: str) -> list[ModelRecord]:
        backend = self.backend()
        found = backend.find_project(project)
        return [] if found is None else backend.query_models(ModelQuery(projects=[found.id]))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with running_server(tmp_path / "server") as server:
        proxy = FlakyProxy(urlsplit(server.api_host).port)  # type: ignore[arg-type]
        try:
            yield Site(server, proxy, tmp_path)
        finally:
            proxy.close()
