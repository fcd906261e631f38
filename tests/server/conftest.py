"""Fixtures for the server tests: a live ``modelbook server`` and clients of it.

``live_server`` (from :mod:`modelbook.server.testing`) starts ``modelbook server`` on a free
port of 127.0.0.1 in a subprocess with a temporary SQLite store and files root, and always
stops it. The core suite can reuse it::

    from modelbook.server.testing import live_server
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the server needs: pip install 'modelbook[server]'")
pytest.importorskip("uvicorn", reason="the server needs: pip install 'modelbook[server]'")

import os

import requests

from modelbook.backends.http import HttpBackend
from modelbook.server.testing import LiveServer, live_server

TIMEOUT = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server shared by the tests of one module."""
    with live_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture(scope="module")
def token(server: LiveServer) -> str:
    credentials = (server.access_key, server.secret_key)
    response = requests.get(f"{server.api_host}/auth.login", auth=credentials, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()["data"]["token"]


Api = Callable[..., requests.Response]


@pytest.fixture(scope="module")
def api(server: LiveServer, token: str) -> Api:
    """``api("models.get_all", {...})`` → the raw response (token attached)."""

    def call(
        endpoint: str,
        body: Any = None,
        *,
        version: str | None = "2.23",
        method: str = "POST",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        path = f"/v{version}/{endpoint}" if version else f"/{endpoint}"
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        return requests.request(
            method, server.api_host + path, json=body, headers=sent, timeout=TIMEOUT, **kwargs
        )

    return call


@pytest.fixture(scope="module")
def backend(server: LiveServer) -> Iterator[HttpBackend]:
    """modelbook's HTTP backend logged in to the module's server."""
    backend = HttpBackend(
        api_host=server.api_host,
        files_host=server.files_host,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )
    yield backend
    backend.close()


#: The clearml SDK's configuration for the flows run against the module's server. Reports go
#: through a thread, not the default subprocess: with the subprocess every ``Task.close`` /
#: ``flush`` waits out the SDK's 10 s daemon live-check (the same traffic reaches the server).
CLEARML_CONF = """
api {
    http { retries { total: 2, connect: 2, read: 2 }, wait_on_maintenance_forever: false }
}
sdk {
    development {
        store_uncommitted_code_diff: false
        detect_with_pip_freeze: false
        log_os_environments: []
        report_use_subprocess: false
    }
}
"""


@pytest.fixture(scope="module")
def sdk_env(server, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("clearml-home")
    conf = home / "clearml.conf"
    conf.write_text(CLEARML_CONF)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLEARML_", "TRAINS_", "MODELBOOK_"))
    }
    env.update(
        HOME=str(home),
        CLEARML_CONFIG_FILE=str(conf),
        CLEARML_API_HOST=server.api_host,
        CLEARML_WEB_HOST=server.api_host,
        CLEARML_FILES_HOST=server.files_host,
        CLEARML_API_ACCESS_KEY=server.access_key,
        CLEARML_API_SECRET_KEY=server.secret_key,
        CLEARML_CACHE_DIR=str(home / "cache"),
        CLEARML_LOG_ENVIRONMENT="",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env
