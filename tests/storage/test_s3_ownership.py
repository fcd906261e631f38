"""Weights you can trust, on S3 (``output_uri="s3://<bucket>/prefix"``, a moto server on
127.0.0.1): no call deletes bytes a model or a user still needs; every unpruned version of
every model reads back with its sha256. The same losses on local destinations and the files
server are in ``tests/core/ownership/``; ``registry`` runs each test on the embedded
store and on a live ``modelbook server`` (the client deletes S3 objects the server dooms).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import modelbook
from modelbook import InputModel, Model, OutputModel, Task, retention
from modelbook.errors import InvalidArgumentError, StorageError
from modelbook.store import objects as ownership
from modelbook.store import schema

UPLOAD_TIMEOUT = 60


@pytest.fixture
def s3_uri(bucket: str) -> str:
    return f"s3://{bucket}/prefix"


@pytest.fixture
def task(registry: str, s3_uri: str) -> Task:
    return Task.init(project_name="own", task_name="run", output_uri=s3_uri)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store(model: OutputModel, tmp_path: Path, content: bytes, name: str = "model.pt") -> str:
    path = tmp_path / "weights" / os.urandom(6).hex() / name
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return model.update_weights(str(path), async_enable=False)


def read_version(model_id: str, version: int) -> bytes:
    path = Model(model_id).get_local_copy(version=version, raise_on_error=True)
    assert path is not None
    return Path(path).read_bytes()


def assert_nothing_lost(*model_ids: str, known: dict[str, str] | None = None) -> None:
    """Every unpruned version, and the current weights, of each model read back with their
    sha256 (``known``: ``{uri: sha256}`` for registrations that record none)."""
    known = known or {}
    backend = modelbook.config.get_backend()
    for model_id in model_ids:
        for v in [v for v in Model(model_id).versions if not v.pruned]:
            assert sha(read_version(model_id, v.version)) == (v.sha256 or known[v.uri]), v
        record = backend.get_model(model_id)
        current = Model(model_id).get_local_copy(raise_on_error=True)
        assert current is not None
        assert sha(Path(current).read_bytes()) == (record.sha256 or known[record.uri])


def exists(uri: str) -> bool:
    return modelbook.config.get_backend().driver_for(uri).exists(uri)


def put_user_object(uri: str, tmp_path: Path, content: bytes) -> None:
    """An object the user stored themselves, not through modelbook."""
    src = tmp_path / f"user-{os.urandom(4).hex()}"
    src.write_bytes(content)
    modelbook.config.get_backend().driver_for(uri).put(src, uri)


def owned_unreferenced(registry: Any) -> list[tuple[str, str]]:
    """``(uri, state)`` of the registry's own objects that nothing references or that are
    not live (the embedded store's database, or the live server's)."""
    server = getattr(registry, "server", None)
    if server is None:
        engine = modelbook.config.get_backend().engine  # type: ignore[attr-defined]
    else:
        engine = sa.create_engine(server.db_url)
    o = schema.objects
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(o.c.uri, o.c.state).where(o.c.owned.is_(True))).all()
            return [(u, s) for u, s in rows if s != "live" or not ownership.referenced(conn, u)]
    finally:
        if server is not None:
            engine.dispose()


# -- 1. ---------------------------------------------------------------------------------------


def test_paths_that_are_not_weights_are_refused(
    task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "sentinel.txt").write_text("keep me")
    monkeypatch.chdir(work)
    model = OutputModel(task=task)
    for path in ["", ".", "/", str(work), str(modelbook.config.home().parent)]:
        with pytest.raises(InvalidArgumentError) as raised:
            model.update_weights(path, async_enable=False)
        assert isinstance(raised.value, ValueError)
    assert [p.name for p in work.iterdir()] == ["sentinel.txt"]
    assert (work / "sentinel.txt").read_text() == "keep me"
    assert model.id is None
    client = modelbook.config.get_backend().driver_for(f"s3://{bucket}").client  # type: ignore[attr-defined]
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


# -- 2 and 6: prune and remove with objects another model names -------------------------------


def test_prune_and_remove_keep_what_another_model_names(
    registry: Any, task: Task, tmp_path: Path
) -> None:
    if registry == "clearml":
        pytest.skip("a ClearML server keeps no record of objects: nothing is deleted there")
    first = os.urandom(2000)
    a = OutputModel(task=task, name="model-a")
    for content in (first, os.urandom(2000), os.urandom(2000)):
        store(a, tmp_path, content)
    a_uris = [v.uri for v in Model(a.id).versions]
    assert all(u.startswith(task.output_uri + "/") for u in a_uris)
    b = OutputModel(task=task, name="model-b")
    b.update_weights(register_uri=a_uris[0], async_enable=False)
    store(b, tmp_path, os.urandom(2000))
    known = {a_uris[0]: sha(first)}

    report = Model(a.id).prune_versions(keep_last=0)
    assert report.pruned == [1, 2] and not report.failed
    assert [v.pruned for v in Model(a.id).versions] == [True, True, False]
    assert exists(a_uris[0]) and not exists(a_uris[1]) and exists(a_uris[2])
    with pytest.raises(StorageError, match="pruned"):
        Model(a.id).get_local_copy(version=1, raise_on_error=True)
    assert_nothing_lost(a.id, b.id, known=known)

    assert Model.remove(a.id)
    assert exists(a_uris[0]) and not exists(a_uris[2])
    retention.collect(pending_grace=0)
    assert read_version(b.id, 1) == first
    assert_nothing_lost(b.id, known=known)
    assert owned_unreferenced(registry) == []

    assert Model.remove(b.id)
    retention.collect(pending_grace=0)
    assert not exists(a_uris[0])
    assert owned_unreferenced(registry) == []


def test_prune_keeps_current_and_best(task: Task, tmp_path: Path) -> None:
    model = OutputModel(task=task)
    for acc in (0.4, 0.8, 0.6):
        path = tmp_path / f"w{acc}.pt"
        path.write_bytes(os.urandom(700))
        meta = {"monitor": "val_acc", "monitor_mode": "max", "monitor_value": acc}
        model.update_weights(str(path), async_enable=False, metadata=meta)
    report = Model(model.id).prune_versions(keep_last=0)
    assert report.pruned == [1] and sorted(report.kept) == [2, 3]
    assert_nothing_lost(model.id)


# -- 3. the user's own objects ----------------------------------------------------------------


@pytest.mark.parametrize("delete_weights_file", [True, False])
def test_remove_never_deletes_the_users_objects(
    task: Task, tmp_path: Path, bucket: str, delete_weights_file: bool
) -> None:
    imported_uri, registered_uri = f"s3://{bucket}/user/a.pt", f"s3://{bucket}/user/b.pt"
    put_user_object(imported_uri, tmp_path, a := os.urandom(800))
    put_user_object(registered_uri, tmp_path, b := os.urandom(800))
    imported = InputModel.import_model(weights_url=imported_uri, name="imported")
    registered = OutputModel(task=task, name="registered")
    registered.update_weights(register_uri=registered_uri, async_enable=False)
    known = {imported_uri: sha(a), registered_uri: sha(b)}
    assert_nothing_lost(imported.id, registered.id, known=known)
    for model_id in (imported.id, registered.id):
        assert Model.remove(model_id, delete_weights_file=delete_weights_file)
    retention.collect(pending_grace=0)
    assert exists(imported_uri) and exists(registered_uri)


# -- 4. a local copy handed back --------------------------------------------------------------


def test_local_copy_handed_back_to_update_weights_stays(
    task: Task, tmp_path: Path, bucket: str
) -> None:
    a = OutputModel(task=task, name="model-a")
    store(a, tmp_path, data := os.urandom(2500))
    local = Model(a.id).get_local_copy(raise_on_error=True)
    assert local is not None
    task.close()
    other = Task.init(project_name="own", task_name="finetune", output_uri=f"s3://{bucket}/b")
    b = OutputModel(task=other, name="model-b")
    b.update_weights(local)  # async, auto_delete_file=True (default)
    assert OutputModel.wait_for_uploads(timeout=UPLOAD_TIMEOUT) == []
    assert Path(local).is_file() and Path(local).read_bytes() == data
    assert_nothing_lost(a.id, b.id)


# -- 5. files that share a name ---------------------------------------------------------------


def test_same_file_name_gets_a_uri_per_version(
    task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = OutputModel(task=task)
    contents = [os.urandom(1000), os.urandom(1000), os.urandom(1000)]
    for content in contents:
        Path("model.pt").write_bytes(content)
        model.update_weights("model.pt", async_enable=False)
    versions = Model(model.id).versions
    assert len({v.uri for v in versions}) == 3
    assert all(v.uri.endswith("/model.pt") and v.uri.startswith("s3://") for v in versions)
    assert [read_version(model.id, v.version) for v in versions] == contents
    assert_nothing_lost(model.id)


# -- gc ----------------------------------------------------------------------------------------


def test_gc_dry_run_deletes_nothing_and_gc_deletes_an_abandoned_upload(
    registry: Any, task: Task, tmp_path: Path, s3_uri: str
) -> None:
    if registry == "clearml":
        pytest.skip("a ClearML server keeps no record of objects: gc finds nothing there")
    model = OutputModel(task=task)
    store(model, tmp_path, os.urandom(900))
    data = os.urandom(900)
    uri = f"{s3_uri}/abandoned/01795794940853584935-60779de3/model.pt"
    modelbook.config.get_backend().begin_object_write(uri, sha(data), len(data))
    put_user_object(uri, tmp_path, data)  # the writer died before any model referenced it

    found, deleted = retention.collect(pending_grace=0, dry_run=True)
    assert uri in found.doomed and deleted.removed == [] and exists(uri)
    found, _ = retention.collect(pending_grace=3600)
    assert uri not in found.doomed and exists(uri)
    found, deleted = retention.collect(pending_grace=0)
    assert uri in found.doomed and not deleted.failed and not exists(uri)
    assert owned_unreferenced(registry) == []
    assert_nothing_lost(model.id)
