"""Every docstring example in the installed package ``modelbook`` runs, each as its own test.

The modules are those of ``modelbook``, ``modelbook.integrations`` and ``modelbook.server`` (three
folders mapped into one package, so each is walked); ``__main__`` modules are entry points and
are not imported. An integration module whose framework is not installed is skipped; any other
import failure fails. The examples (module, class, function and method docstrings, as
``doctest.DocTestFinder`` finds them) run with doctest's default options in a fresh
``MODELBOOK_HOME`` and working folder, with no network but the loopback addresses.

Separately, every public class of a public module shows an example in its own docstring (the
classes that had none when the check came in are listed, and the list only shrinks).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import ipaddress
import os
import pkgutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import modelbook
from modelbook.task import Task

# Keras reads its backend once, at import: modelbook[keras] runs it on torch.
os.environ.setdefault("KERAS_BACKEND", "torch")

ROOTS = ("modelbook", "modelbook.integrations", "modelbook.server")
FINDER = doctest.DocTestFinder()


def _ignore(name: str) -> None:
    """A subpackage that failed to import while walking: _import_all imports it again and
    tells why."""


def _module_names() -> list[str]:
    names: list[str] = []
    for root in ROOTS:
        package = importlib.import_module(root)
        names.append(root)
        for info in pkgutil.walk_packages(package.__path__, f"{root}.", onerror=_ignore):
            if info.name.rpartition(".")[2] != "__main__":  # runs a command when imported
                names.append(info.name)
    return list(dict.fromkeys(names))  # the roots are also found by walking on an installed copy


def _missing_framework(name: str, error: BaseException) -> str | None:
    """The third-party module whose absence made integration module ``name`` fail, if that
    is why it failed."""
    if not name.startswith("modelbook.integrations."):
        return None
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            top = seen.name.partition(".")[0]
            return None if top == "modelbook" else top
        seen = seen.__cause__ or seen.__context__
    return None


def _import_all() -> tuple[dict[str, ModuleType], dict[str, BaseException], dict[str, str]]:
    modules: dict[str, ModuleType] = {}
    failed: dict[str, BaseException] = {}
    skipped: dict[str, str] = {}
    for name in _module_names():
        try:
            modules[name] = importlib.import_module(name)
        except Exception as e:
            framework = _missing_framework(name, e)
            if framework is not None:
                skipped[name] = f"{name} needs {framework}, which is not installed"
            else:
                failed[name] = e
    return modules, failed, skipped


MODULES, IMPORT_FAILURES, SKIPPED = _import_all()
EXAMPLES: dict[str, tuple[str, doctest.DocTest]] = {
    test.name: (module.__name__, test)
    for module in MODULES.values()
    for test in FINDER.find(module)
    if test.examples
}


def test_every_module_imports() -> None:
    assert not IMPORT_FAILURES, "\n".join(
        f"{name}: {type(e).__name__}: {e}" for name, e in sorted(IMPORT_FAILURES.items())
    )


class _NetworkBlocked(RuntimeError):
    """Not an OSError, so retry loops that swallow connection errors don't hide it."""


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).partition("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuses connections and lookups of anything but the loopback addresses (Unix sockets
    pass); yields the refused attempts."""
    refused: list[str] = []

    def check(what: str, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if isinstance(address, tuple) and not _is_loopback(host):
            refused.append(f"{what} {address!r}")
            raise _NetworkBlocked(
                f"docstring examples may only reach 127.0.0.1: {what} {address!r}"
            )

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_sendto, real_getaddrinfo = socket.socket.sendto, socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        check("connect", address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check("connect", address)
        return real_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        check("sendto", args[-1])
        return real_sendto(self, data, *args)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check("getaddrinfo", (host,))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield refused


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ``MODELBOOK_HOME`` (and working folder), configured before and reset after."""
    for var in list(os.environ):
        if var.startswith(("CLEARML_", "MODELBOOK_")):
            monkeypatch.delenv(var)
    home = tmp_path / "home"
    monkeypatch.setenv("MODELBOOK_HOME", str(home))
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "no-clearml.conf"))
    monkeypatch.chdir(tmp_path)
    scratch = tmp_path / "tmp"  # the examples' tempfile.mkdtemp() folders land here
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    modelbook.configure(home=home)
    Task._current = None
    try:
        yield home
    finally:
        try:
            modelbook.OutputModel.wait_for_uploads(timeout=30)
        finally:
            if Task._current is not None and not Task._current._closed:
                Task._current._closed = True
            Task._current = None
            modelbook.configure()


@pytest.mark.parametrize(
    "name",
    [
        *sorted(EXAMPLES),
        *(pytest.param(m, marks=pytest.mark.skip(reason=r)) for m, r in SKIPPED.items()),
    ],
)
def test_docstring_example(name: str, isolated_home: Path, no_network: list[str]) -> None:
    module_name, found = EXAMPLES[name]
    # a fresh copy of the module's globals each run (the runner clears the ones it used)
    test = doctest.DocTest(
        found.examples, dict(vars(importlib.import_module(module_name))), found.name,
        found.filename, found.lineno, found.docstring,
    )  # fmt: skip
    report: list[str] = []
    runner = doctest.DocTestRunner(verbose=False)
    result = runner.run(test, out=report.append)
    assert not no_network, f"{name} tried to reach the network: {no_network}"
    if result.failed:
        pytest.fail(
            f"{result.failed} of {result.attempted} examples failed in {name}:\n" + "".join(report),
            pytrace=False,
        )


def _has_example(cls: type) -> bool:
    doc = cls.__dict__.get("__doc__")  # its own docstring, not one inherited
    return isinstance(doc, str) and bool(doctest.DocTestParser().get_examples(doc))


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


CLASSES_WITHOUT_EXAMPLE = sorted(
    f"{module.__name__}.{name}"
    for module in MODULES.values()
    if _public(module.__name__)
    for name, obj in vars(module).items()
    if inspect.isclass(obj) and obj.__module__ == module.__name__ and _public(name)
    and not _has_example(obj)
)  # fmt: skip


#: Public classes that had no example when this check came in (exceptions, plain records,
#: server internals). The list only shrinks: a new class needs an example, and a class given
#: one must leave the list.
KNOWN_WITHOUT_EXAMPLE = frozenset(
    {
        "modelbook.backends.api_client.ApiClient",
        "modelbook.backends.base.Backend",
        "modelbook.errors.BlobCorruptedError",
        "modelbook.errors.ConfigurationError",
        "modelbook.errors.InvalidArgumentError",
        "modelbook.errors.ModelNotFoundError",
        "modelbook.errors.ModelPublishedError",
        "modelbook.errors.ModelbookError",
        "modelbook.errors.NotFoundError",
        "modelbook.errors.ProjectNotFoundError",
        "modelbook.errors.RegistryError",
        "modelbook.errors.StorageError",
        "modelbook.errors.TagFilterError",
        "modelbook.errors.TaskNotFoundError",
        "modelbook.errors.UploadError",
        "modelbook.errors.WeightsArgumentError",
        "modelbook.errors.WeightsFileNotFoundError",
        "modelbook.integrations.monitor.Decision",
        "modelbook.integrations.monitor.MetricNotFoundError",
        "modelbook.integrations.monitor.MonitorWarning",
        "modelbook.integrations.monitor.Reason",
        "modelbook.model.BaseModel",
        "modelbook.records.ModelQuery",
        "modelbook.records.ModelRecord",
        "modelbook.records.ModelVersionRecord",
        "modelbook.records.ProjectRecord",
        "modelbook.records.TaskModelEntry",
        "modelbook.records.TaskRecord",
        "modelbook.server.api.Api",
        "modelbook.server.credentials.Credentials",
        "modelbook.server.credentials.Identity",
        "modelbook.server.credentials.SettingsStore",
        "modelbook.server.envelope.ApiError",
        "modelbook.server.files.FilesError",
        "modelbook.server.files.FilesServer",
        "modelbook.server.paths.UnsafePathError",
        "modelbook.server.services.call.Call",
        "modelbook.server.stored.StoredFile",
        "modelbook.server.stored.StoredIndex",
        "modelbook.server.testing.LiveServer",
        "modelbook.server.tokens.TokenService",
        "modelbook.storage.base.StorageDriver",
        "modelbook.storage.base.StoredObject",
        "modelbook.storage.local.LocalDriver",
        "modelbook.storage.s3.S3Location",
        "modelbook.storage.s3.SourceChangedError",
        "modelbook.storage.spool.Job",
        "modelbook.storage.spool.Spool",
        "modelbook.store.tagfilter.TagFilter",
        "modelbook.task_models.ModelList",
        "modelbook.task_models.TaskModels",
        "modelbook.uploads.UploadQueue",
    }
)


def test_every_public_class_shows_an_example() -> None:
    new = sorted(set(CLASSES_WITHOUT_EXAMPLE) - KNOWN_WITHOUT_EXAMPLE)
    assert not new, "public classes without a docstring example:\n" + "\n".join(new)
    done = sorted(KNOWN_WITHOUT_EXAMPLE - set(CLASSES_WITHOUT_EXAMPLE))
    assert not done, "these have an example (or are gone) now; drop them from the list:\n" + (
        "\n".join(done)
    )


# not on PostgreSQL again: the examples run; the store's SQL is tested elsewhere
pytestmark = pytest.mark.sql_agnostic
