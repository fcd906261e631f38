"""Shared fixtures: every test gets its own modelbook home, and no ClearML settings leak in.

The ``registry`` fixture runs a test once per backend: the embedded store always, and over
HTTP against a live ``modelbook server`` on 127.0.0.1 when the server package is available.

``pytest --clearml-mode`` runs the tests that pick no backend against the strict-ClearML
harness (``tests/clearml_strict``) instead of the embedded store: each gets a strict server
through the ``MODELBOOK_*`` variables (so its subprocesses use it too). It leaves out the
tests marked ``embedded_only`` and those taking ``registry``, whose "clearml" case every run
has. CI runs the core suite, the callbacks' suites and the examples once each way
(scripts/test.sh), so all of them also pass against what behaves as a real ClearML server.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

import modelbook
from modelbook.task import Task

HTTP_AVAILABLE = importlib.util.find_spec("starlette") is not None


def _postgres_available() -> bool:
    if not HTTP_AVAILABLE or importlib.util.find_spec("psycopg") is None:
        return False
    from modelbook.server.testing import postgres_bin_dir

    return postgres_bin_dir() is not None


BACKENDS = ["embedded"]
BACKENDS += ["http"] if HTTP_AVAILABLE else []
BACKENDS += ["http-postgres"] if _postgres_available() else []
BACKENDS += ["clearml"] if HTTP_AVAILABLE else []  # the strict-ClearML harness


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the whole session (see temporary_postgres)."""
    from modelbook.server.testing import temporary_postgres

    with temporary_postgres() as url:
        yield url


@contextmanager
def _fresh_database(cluster_url: str) -> Iterator[str]:
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(cluster_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield cluster_url.rsplit("/", 1)[0] + f"/{name}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database in the session's PostgreSQL cluster (skipped without one)."""
    if not _postgres_available():
        pytest.skip("needs PostgreSQL server binaries (initdb, pg_ctl) and "
                    "pip install 'modelbook[postgres]'")  # fmt: skip
    with _fresh_database(request.getfixturevalue("postgres_cluster")) as url:
        yield url


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clearml-mode", action="store_true",
        help="run against the strict-ClearML harness (tests/clearml_strict) instead of the "
        "embedded store",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "embedded_only: its subject is not the registry, or what only modelbook's own registries "
        "do (the embedded store, byte ownership): left out by --clearml-mode",
    )
    config.addinivalue_line(
        "markers",
        "sql_agnostic: the store's SQL is not its subject; the registry fixture's http-postgres "
        "case (the http case on PostgreSQL) is left out",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    clearml_mode = config.getoption("--clearml-mode")
    keep: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("registry") if callspec is not None else None
        if clearml_mode:
            drop = backend is not None or item.get_closest_marker("embedded_only") is not None
        else:
            sql_agnostic = item.get_closest_marker("sql_agnostic") is not None
            drop = backend == "http-postgres" and sql_agnostic
        (left if drop else keep).append(item)
    config.hook.pytest_deselected(items=left)
    items[:] = keep


def _clearml_mode(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--clearml-mode"))


@contextmanager
def _live_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str | None = None,
    strict: bool = True,
) -> Iterator[Any]:
    """A live server (strict: ``--clearml-strict`` behind the schema gate) that modelbook is
    configured for, here and in subprocesses (``MODELBOOK_*``); on leaving, the uploads are
    waited for and any request a real ClearML server would refuse fails the test."""
    from modelbook.server.testing import running_server

    with ExitStack() as stack:
        server = stack.enter_context(running_server(
            tmp_path / "server", db_url=db_url, extra_args=["--clearml-strict"] if strict else [],
        ))  # fmt: skip
        gate = None
        if strict:
            from clearml_strict.gate import SchemaGate

            gate = SchemaGate(int(server.api_host.rsplit(":", 1)[1]))
            stack.callback(gate.close)
        for var, value in {
            "MODELBOOK_API_HOST": gate.url if gate else server.api_host,
            "MODELBOOK_FILES_HOST": server.files_host,
            "MODELBOOK_API_ACCESS_KEY": server.access_key,
            "MODELBOOK_API_SECRET_KEY": server.secret_key,
        }.items():
            monkeypatch.setenv(var, value)
        modelbook.configure(home=tmp_path / "home")
        yield server
        modelbook.OutputModel.wait_for_uploads(timeout=30)
        assert gate is None or not gate.violations, "\n".join(gate.violations)


@pytest.fixture(autouse=True)
def _isolated(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    for var in list(os.environ):
        if var.startswith(("CLEARML_", "MODELBOOK_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "no-clearml.conf"))
    monkeypatch.setenv("MODELBOOK_HOME", str(tmp_path / "home"))
    modelbook.configure()
    Task._current = None
    with ExitStack() as stack:
        if _clearml_mode(request) and "registry" not in request.fixturenames:
            stack.enter_context(_live_registry(tmp_path, monkeypatch))
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
    """Configure modelbook for one backend; yields its kind ("embedded" or "http").

    "http-postgres" is "http" with the server's store on a fresh PostgreSQL database;
    "clearml" is the HTTP backend in ClearML mode against the strict-ClearML harness
    (``tests/clearml_strict``): the test also fails on any request a real ClearML server
    would not take as meant.
    """
    if request.param == "embedded":
        modelbook.configure(home=tmp_path / "home")
        yield Registry("embedded")
        return
    monkeypatch = request.getfixturevalue("monkeypatch")
    with ExitStack() as stack:
        db_url = None
        if request.param == "http-postgres":
            cluster = request.getfixturevalue("postgres_cluster")
            db_url = stack.enter_context(_fresh_database(cluster))
        strict = request.param == "clearml"
        kind = Registry(request.param if strict else "http")
        kind.server = stack.enter_context(_live_registry(tmp_path, monkeypatch, db_url, strict))
        yield kind


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


@pytest.fixture
def other_file_system(tmp_path: Path) -> Iterator[Path]:
    """A folder on another file system than the temporary folder (and so the spool): the
    one case where storing into a folder destination is a copy, not a rename."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the temporary folder")
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="modelbook-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
