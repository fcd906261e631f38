"""Fixtures of the ownership tests (test_ownership*.py): ``place``, each destination the
weights go to, and ``task``, a task storing there (helpers in ownership_support.py)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from ownership_support import Place

import modelbook
from modelbook import OutputModel, Task

HTTP_AVAILABLE = importlib.util.find_spec("starlette") is not None
PLACES = ["blobs", "folder", "files", "files+folder"]


@pytest.fixture(params=PLACES)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    name = request.param
    output_uri = str(tmp_path / "dest") if name.endswith("folder") else None
    if not name.startswith("files"):
        modelbook.configure(home=tmp_path / "home")
        yield Place(name, output_uri)
        return
    if not HTTP_AVAILABLE:
        pytest.skip("the files server needs the server extra (starlette)")
    from modelbook.server.testing import running_server

    with running_server(tmp_path / "server") as server:
        modelbook.configure(
            home=tmp_path / "home",
            api_host=server.api_host,
            files_host=server.files_host,
            access_key=server.access_key,
            secret_key=server.secret_key,
        )
        yield Place(name, output_uri, server)
        OutputModel.wait_for_uploads(timeout=30)


@pytest.fixture
def task(place: Place) -> Task:
    return Task.init(project_name="own", task_name="run", output_uri=place.output_uri)
