"""Shared fixtures: every test gets its own modelbook home, and no ClearML settings leak in.

The ``registry`` fixture runs a test once per backend: the embedded store always, and over
HTTP against a live ``modelbook server`` on 127.0.0.1 when the server package is available.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelbook
from modelbook.task import Task

HTTP_AVAILABLE = importlib.util.find_spec("modelbook.server.testing") is not None
BACKENDS = ["embedded", "http"] if HTTP_AVAILABLE else ["embedded"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in list(os.environ):
        if var.startswith(("CLEARML_", "MODELBOOK_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "no-clearml.conf"))
    monkeypatch.setenv("MODELBOOK_HOME", str(tmp_path / "home"))
    modelbook.configure()
    Task._current = None
    yield
    if Task._current is not None and not Task._current._closed:
        Task._current._closed = True
    Task._current = None
    modelbook.configure()


class Registry(str):
    """The backend kind ("embedded" or "http"); ``.server`` is the live server over HTTP."""

    server: Any = None


@pytest.fixture(params=BACKENDS)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    """Configure modelbook for one backend; yields its kind ("embedded" or "http")."""
    if request.param == "embedded":
        modelbook.configure(home=tmp_path / "home")
        yield Registry("embedded")
        return
    from modelbook.server.testing import running_server

    with running_server(tmp_path / "server") as server:
        modelbook.configure(
            home=tmp_path / "home",
            api_host=server.api_host,
            files_host=server.files_host,
            access_key=server.access_key,
            secret_key=server.secret_key,
        )
        kind = Registry("http")
        kind.server = server
        yield kind
        modelbook.OutputModel.wait_for_uploads(timeout=30)


@pytest.fixture
def weights(tmp_path: Path):
    """A factory of small weights files with distinct content."""
    counter = iter(range(10**6))

    def make(name: str = "model.pt", size: int = 4096, content: bytes | None = None) -> Path:
        path = tmp_path / "weights" / f"{next(counter)}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if content is not None else os.urandom(size))
        return path

    return make
