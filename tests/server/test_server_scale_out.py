"""Scale-out (issue 13): eight concurrent writers against one server lose nothing, and a
``kill -9`` of the whole server loses no acknowledged write and leaves no model pointing at
a partial file. Each test runs on SQLite with one worker and on PostgreSQL with
``modelbook server --workers 2``.

The writers are threads: six drive :class:`~modelbook.backends.http.HttpBackend` (models,
weights uploaded to the files server, metadata, tags; on their own models and on two shared
ones), two the public API (``OutputModel``, ``Model``) configured through the
``MODELBOOK_*`` variables. The kill test uses ``HttpBackend`` only: a call the backend has
answered is acknowledged, one that failed is not (the public API would spool it for later).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pytest

import modelbook
from modelbook import Model, OutputModel, Task
from modelbook.backends.api_client import ApiClient
from modelbook.backends.http import HttpBackend
from modelbook.errors import ModelbookError
from modelbook.records import ModelQuery, ModelRecord, to_metadata
from modelbook.server.testing import LiveServer, live_server
from modelbook.storage import http as files_driver

WRITERS, API_WRITERS, ROUNDS = 8, 2, 3
JOIN_TIMEOUT = 120
WEIGHTS_SIZE = 64 * 1024


@pytest.fixture(params=["sqlite", "postgres"])
def deployment(request: pytest.FixtureRequest) -> Iterator[tuple[str | None, int]]:
    """(store URL, workers): SQLite in the server's folder with one worker, or a fresh
    database of the session's PostgreSQL cluster with two."""
    if request.param == "sqlite":
        yield None, 1
        return
    yield request.getfixturevalue("postgres_database"), 2


def _backend(server: LiveServer) -> HttpBackend:
    return HttpBackend(
        api_host=server.api_host,
        files_host=server.files_host,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )


@dataclass
class Acks:
    """The writes the server acknowledged, in order (each writer keeps its own)."""

    created: list[str] = field(default_factory=list)
    metadata: list[tuple[str, str, str]] = field(default_factory=list)  # model, key, value
    system_tags: list[tuple[str, str]] = field(default_factory=list)  # model, tag
    versions: list[tuple[str, str, str]] = field(default_factory=list)  # model, uri, sha256
    tags: list[tuple[str, list[str]]] = field(default_factory=list)  # model, its tags


def _weights(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(hashlib.sha256(name.encode()).digest() * (WEIGHTS_SIZE // 32))
    return path


def _upload(backend: HttpBackend, src: Path, relative: str) -> tuple[str, str, int]:
    """Store ``src`` on the files server as the upload queue does: recorded first, then
    sent with its sha256 (the server keeps it only if it matches)."""
    uri = f"{backend.files_host}/scale/{relative}"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    backend.begin_object_write(uri, digest, src.stat().st_size)
    stored = backend.driver_for(uri).put(src, uri, sha256=digest)
    return stored.uri, stored.sha256, stored.size


def _write(
    n: int, backend: HttpBackend, project: str, shared: list[str], folder: Path,
    acks: Acks, rounds: int | None, stop: threading.Event,
) -> None:  # fmt: skip
    """Writer ``n``: its own model, then rounds of metadata, system tags and weights on a
    shared model and metadata, weights and tags on its own, until ``rounds`` or ``stop``."""
    own = backend.create_model(name=f"writer-{n}", project=project).id
    acks.created.append(own)
    i = 0
    while (rounds is None or i < rounds) and not stop.is_set():
        target = shared[(n + i) % len(shared)]
        key, value = f"w{n}-r{i}", f"{n}.{i}"
        backend.set_model_metadata(target, to_metadata({key: value}))
        acks.metadata.append((target, key, value))
        backend.update_model(target, add_system_tags=[f"w{n}"])
        acks.system_tags.append((target, f"w{n}"))
        for model, name in ((own, f"own-{n}-{i}"), (target, f"shared-{n}-{i}")):
            uri, digest, size = _upload(backend, _weights(folder, name), f"w{n}/{name}.bin")
            backend.add_model_version(model, uri=uri, sha256=digest, size=size, iteration=i)
            acks.versions.append((model, uri, digest))
        backend.set_model_metadata(own, to_metadata({f"k{i}": i}))
        acks.metadata.append((own, f"k{i}", str(i)))
        tags = [f"w{n}", f"round-{i}"]
        backend.update_model(own, tags=tags)
        acks.tags.append((own, tags))
        i += 1


def _write_through_api(n: int, task_id: str, shared: list[str], folder: Path, acks: Acks) -> None:
    """Writer ``n`` through the public API, configured by the ``MODELBOOK_*`` variables."""
    out = OutputModel(task=task_id, name=f"api-writer-{n}", tags=[f"api-{n}"])
    for i in range(ROUNDS):
        target = shared[(n + i) % len(shared)]
        assert Model(target).set_metadata(f"api{n}-r{i}", f"{n}.{i}")
        acks.metadata.append((target, f"api{n}-r{i}", f"{n}.{i}"))
        weights = _weights(folder, f"api-{n}-{i}")
        out.update_weights(weights_filename=str(weights), iteration=i, async_enable=False)
    acks.created.append(out.id)


def _run(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
        assert not thread.is_alive(), "a writer hangs"


def _catching(
    errors: list[BaseException], target: Callable[..., object], *args: object
) -> threading.Thread:
    def run() -> None:
        try:
            target(*args)
        except BaseException as exc:
            errors.append(exc)

    return threading.Thread(target=run)


def _check_files(server: LiveServer, backend: HttpBackend, models: list[ModelRecord]) -> int:
    """Every version of every model, and every model's current weights, is a complete file
    under the files root whose sha256 is the recorded one; returns the versions checked."""
    checked = 0
    for model in models:
        versions = backend.list_model_versions(model.id)
        pairs = [(v.uri, v.sha256) for v in versions]
        if model.uri:
            assert (model.uri, model.sha256) in pairs, model
        for uri, digest in pairs:
            path = server.files_root / unquote(uri.split("/files/", 1)[1])
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, uri
            checked += 1
    return checked


def _project_models(backend: HttpBackend, project: str) -> list[ModelRecord]:
    return backend.query_models(ModelQuery(projects=[project], limit=1000))


def _merged(acks: list[Acks]) -> Acks:
    every = Acks()
    for ack in acks:
        for name in ("created", "metadata", "system_tags", "versions", "tags"):
            getattr(every, name).extend(getattr(ack, name))
    return every


def _writers_run_to_the_end(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[str], list[Acks]]:
    """Phase one: eight writers run to the end; every write is there, counts exact.
    Returns the project, the shared models and the writes."""
    for var, value in {
        "MODELBOOK_API_HOST": server.api_host, "MODELBOOK_FILES_HOST": server.files_host,
        "MODELBOOK_API_ACCESS_KEY": server.access_key,
        "MODELBOOK_API_SECRET_KEY": server.secret_key,
    }.items():  # fmt: skip
        monkeypatch.setenv(var, value)
    modelbook.configure(home=tmp_path / "home")
    task = Task.init(project_name="scale", task_name="writers")
    backends = [_backend(server) for _ in range(WRITERS - API_WRITERS)]
    try:
        project = task.project
        assert project is not None
        shared = [backends[0].create_model(name=f"shared-{k}", project=project).id
                  for k in range(2)]  # fmt: skip
        acks = [Acks() for _ in range(WRITERS)]
        errors: list[BaseException] = []
        stop = threading.Event()
        threads = [
            _catching(errors, _write, n, b, project, shared, tmp_path, acks[n], ROUNDS, stop)
            for n, b in enumerate(backends)
        ] + [
            _catching(errors, _write_through_api, n, task.id, shared, tmp_path, acks[n])
            for n in range(len(backends), WRITERS)
        ]
        _run(threads)
        assert not errors, errors
        task.close()

        reader = backends[0]
        models = {m.id: m for m in _project_models(reader, project)}
        assert len(models) == 2 + WRITERS  # counts exact: no model lost, none doubled
        every = _merged(acks)
        assert set(every.created) | set(shared) == set(models)
        for model_id in shared:
            written = {k: v for m, k, v in every.metadata if m == model_id}
            stored = models[model_id].metadata
            assert {k: item["value"] for k, item in stored.items()} == written
            tags = {t for m, t in every.system_tags if m == model_id}
            assert tags and set(models[model_id].system_tags) == tags
            uploads = [(u, d) for m, u, d in every.versions if m == model_id]
            versions = reader.list_model_versions(model_id)
            assert sorted((v.uri, v.sha256) for v in versions) == sorted(uploads)
            assert [v.version for v in versions] == list(range(1, len(uploads) + 1))
        for n, ack in enumerate(acks):
            own = models[ack.created[0]]
            assert len(reader.list_model_versions(own.id)) == ROUNDS
            if n < len(backends):
                assert own.tags == [f"w{n}", f"round-{ROUNDS - 1}"]
                assert {k: i["value"] for k, i in own.metadata.items()} == {
                    f"k{i}": str(i) for i in range(ROUNDS)
                }
                assert own.uri == [u for m, u, _ in ack.versions if m == own.id][-1]
        assert _check_files(server, reader, list(models.values())) == (
            len(every.versions) + API_WRITERS * ROUNDS
        )
    finally:
        for backend in backends:
            backend.close()
        modelbook.configure()
    return project, shared, acks


def _writers_killed(
    server: LiveServer, project: str, shared: list[str], tmp_path: Path
) -> list[Acks]:
    """Phase two: eight more writers (``HttpBackend``, one try per call) run until the whole
    server is killed with SIGKILL under them; returns what was acknowledged before."""
    acks = [Acks() for _ in range(WRITERS)]
    backends = [_backend(server) for _ in range(WRITERS)]
    failures: list[BaseException] = []
    stop = threading.Event()

    def writer(k: int) -> None:
        with ApiClient.fail_fast():  # one try each: the first failure ends the writer
            _write(100 + k, backends[k], project, shared, tmp_path, acks[k], None, stop)

    threads = [_catching(failures, writer, k) for k in range(WRITERS)]
    killed = False
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while sum(len(a.versions) for a in acks) < 3 * WRITERS:  # well under way
            assert time.monotonic() < deadline and not failures, (failures, server.log())
            time.sleep(0.02)
        server.kill()  # the writers run on until their first call that fails
        killed = True
    finally:
        if not killed:
            stop.set()
        for thread in threads:
            thread.join(timeout=JOIN_TIMEOUT)
        for backend in backends:
            backend.close()
    assert not any(thread.is_alive() for thread in threads), "a writer hangs after the kill"
    assert len(failures) == WRITERS and all(isinstance(f, ModelbookError) for f in failures), (
        failures
    )
    return acks


def _check_survivors(server: LiveServer, project: str, shared: list[str], acks: Acks) -> None:
    """Every acknowledged write is there; every model's weights are complete files with
    the recorded sha256 (no partial file referenced); the server takes writes again."""
    reader = _backend(server)
    try:
        models = {m.id: m for m in _project_models(reader, project)}
        assert set(shared) | set(acks.created) <= set(models)
        for model_id, key, value in acks.metadata:
            assert models[model_id].metadata[key]["value"] == value, (model_id, key)
        for model_id, tag in acks.system_tags:
            assert tag in models[model_id].system_tags
        stored = {(v.model, v.uri, v.sha256)
                  for m in models for v in reader.list_model_versions(m)}  # fmt: skip
        assert set(acks.versions) <= stored
        for model_id, tags in dict(acks.tags).items():  # the last acknowledged, or the next
            assert models[model_id].tags in (tags, [tags[0], _next_round(tags)]), model_id
        assert _check_files(server, reader, list(models.values())) >= len(acks.versions)
        fresh = reader.create_model(name="after the crash", project=project)
        assert reader.get_model(fresh.id).name == "after the crash"
    finally:
        reader.close()


def _next_round(tags: list[str]) -> str:
    """The round tag after ``tags``' one (written, perhaps, when the server died)."""
    return f"round-{int(tags[1].split('-')[1]) + 1}"


def test_writers_lose_nothing_and_kill_9_loses_no_acknowledged_write(
    deployment: tuple[str | None, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight writers run to the end: nothing lost, counts exact. Eight more run until the
    server's whole process group is killed with SIGKILL; a server restarted on the same
    store and files root (one worker is enough to read) has every write acknowledged in
    either phase, and no model points at a partial file."""
    db_url, workers = deployment
    root = tmp_path / "server"
    with live_server(root, db_url=db_url, workers=workers) as first:
        project, shared, finished = _writers_run_to_the_end(first, tmp_path, monkeypatch)
        monkeypatch.setattr(files_driver, "UPLOAD_ATTEMPTS", 1)  # no back-off once it is gone
        killed = _writers_killed(first, project, shared, tmp_path)
    with live_server(root, db_url=db_url, workers=1) as second:
        _check_survivors(second, project, shared, _merged(finished + killed))
