"""Weights you can trust: no call deletes bytes a model or a user still needs.

Each test provokes one way weights used to get lost and checks that nothing is: every
unpruned version of every model still reads back with its sha256. The ``place`` fixture runs
a test on each destination where the loss applies:

* ``blobs``: the embedded store's content-addressed blob folder (identical bytes are one
  object, shared by every model that stored them);
* ``folder``: the embedded store, weights in a folder (``Task.init(output_uri=<folder>)``);
* ``files``: a live ``modelbook server`` on 127.0.0.1, weights on its files server;
* ``files+folder``: the same server, weights in a local folder (the client deletes them).

S3 is covered in ``tests/storage/test_s3_ownership.py`` (its fixtures live there); garbage
collection in ``test_ownership_gc.py``. The ``place`` and ``task`` fixtures are in this
folder's ``conftest.py``, the helpers in ``ownership_support.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from ownership_support import (
    Place,
    assert_nothing_lost,
    exists,
    owned_unreferenced,
    read_version,
    settle,
    sha,
    store,
)

import modelbook
from modelbook import InputModel, Model, OutputModel, Task, retention
from modelbook.cli import main as cli
from modelbook.errors import InvalidArgumentError, ModelPublishedError, StorageError
from modelbook.storage.local import to_path

# which bytes modelbook deletes: none on a ClearML server (docs/compatibility.md), so
# --clearml-mode leaves this out; the place fixture covers modelbook's own server
pytestmark = pytest.mark.embedded_only


# -- 1. update_weights of a path that is not the weights ------------------------------------


def test_update_weights_refuses_paths_that_are_not_weights(
    place: Place, task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "sentinel.txt").write_text("keep me")
    (work / "sub").mkdir()
    (work / "sub" / "notes.md").write_text("mine")
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    (user_home / ".bashrc").write_text("# mine")
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.chdir(work)
    listing, home_listing = sorted(work.rglob("*")), sorted(user_home.rglob("*"))
    store_home = modelbook.config.home()

    bad = ["", "  ", ".", "./", Path("."), str(work), "/", "~", str(user_home),
           str(store_home), str(store_home.parent), str(tmp_path)]  # fmt: skip
    model = OutputModel(task=task, name="refused")
    for path in bad:
        for async_enable in (True, False):
            with pytest.raises(InvalidArgumentError) as raised:
                model.update_weights(path, async_enable=async_enable)  # type: ignore[arg-type]
            assert isinstance(raised.value, ValueError), path
        if str(path).strip():
            with pytest.raises(InvalidArgumentError):
                model.update_weights_package(weights_path=str(path))
            with pytest.raises(InvalidArgumentError):
                model.update_weights(str(path), upload_uri=str(tmp_path / "elsewhere"))

    assert sorted(work.rglob("*")) == listing
    assert (work / "sentinel.txt").read_text() == "keep me"
    assert (work / "sub" / "notes.md").read_text() == "mine"
    assert sorted(user_home.rglob("*")) == home_listing
    assert (user_home / ".bashrc").read_text() == "# mine"
    assert OutputModel.wait_for_uploads(timeout=10) == []
    assert model.id is None  # nothing was registered
    assert not list(store_home.rglob("*.zip")), "something was packaged"
    assert not Model.query_models(project_name="own")


# -- 2. pruning while content-addressed blobs are shared ------------------------------------


def test_prune_keeps_bytes_another_model_uses(place: Place, task: Task, weights) -> None:
    shared, mid, last = os.urandom(3000), os.urandom(3000), os.urandom(3000)
    a = OutputModel(task=task, name="a")
    for content in (shared, mid, last):
        store(a, weights, content)
    task.close()  # a seeded re-run of the same task: identical bytes again
    rerun = Task.init(project_name="own", task_name="run", output_uri=place.output_uri)
    assert rerun.id != task.id
    b = OutputModel(task=rerun, name="b")
    store(b, weights, shared)
    a_versions = Model(a.id).versions
    if place.content_addressed:
        assert a_versions[0].uri == Model(b.id).url  # one object, two models

    report = Model(a.id).prune_versions(keep_last=1)
    assert report.pruned == [1, 2] and not report.failed
    versions = Model(a.id).versions
    assert [v.pruned for v in versions] == [True, True, False]
    assert [(v.uri, v.sha256) for v in versions] == [(v.uri, v.sha256) for v in a_versions]
    assert not exists(a_versions[1].uri)  # pruning frees what nothing else uses
    assert exists(a_versions[0].uri) == (a_versions[0].uri == Model(b.id).url)
    for version in (1, 2):
        with pytest.raises(StorageError, match="pruned"):
            Model(a.id).get_local_copy(version=version, raise_on_error=True)
        assert Model(a.id).get_local_copy(version=version) is None

    again = Model(a.id).prune_versions(keep_last=0)  # only the current weights are left
    assert again.pruned == [] and again.kept == {3: "the model's current weights"}
    Model(b.id).prune_versions(keep_last=0)
    assert_nothing_lost(a.id, b.id)
    assert sha(Path(Model(b.id).get_local_copy(raise_on_error=True)).read_bytes()) == sha(shared)


def test_prune_dry_run_reports_only_what_a_prune_deletes(place: Place, task: Task, weights):
    shared = os.urandom(2000)
    a, b = OutputModel(task=task, name="a"), OutputModel(task=task, name="b")
    store(a, weights, shared)
    store(a, weights, os.urandom(2000))
    store(a, weights, os.urandom(2000))
    store(b, weights, shared)
    planned = Model(a.id).prune_versions(keep_last=0, dry_run=True)
    assert [v.pruned for v in Model(a.id).versions] == [False, False, False]
    assert all(exists(v.uri) for v in Model(a.id).versions)
    assert_nothing_lost(a.id, b.id)

    done = Model(a.id).prune_versions(keep_last=0)
    assert planned.pruned == done.pruned == [1, 2]
    gone = {v.uri for v in Model(a.id).versions if not exists(v.uri)}
    assert set(planned.doomed) == gone, "a dry run must list exactly what the prune deletes"
    assert_nothing_lost(a.id, b.id)


def test_prune_never_removes_the_current_or_the_best_version(
    place: Place, task: Task, weights
) -> None:
    model = OutputModel(task=task, name="monitored")
    first = os.urandom(1000)
    accuracies = [0.5, 0.9, 0.7, 0.6]
    for acc in accuracies:
        meta = {"monitor": "val_acc", "monitor_mode": "max", "monitor_value": acc}
        store(model, weights, os.urandom(1000), metadata=meta)
    store(model, weights, first)  # the current weights: no monitor recorded on this one
    report = Model(model.id).prune_versions(keep_last=0)
    assert report.pruned == [1, 3, 4]
    assert report.kept == {2: "the best version by the monitored metric",
                           5: "the model's current weights"}  # fmt: skip
    assert [v.pruned for v in Model(model.id).versions] == [True, False, True, True, False]
    assert sha(read_version(model.id, 2)) == Model(model.id).versions[1].sha256
    assert_nothing_lost(model.id)

    low = OutputModel(task=task, name="min-mode")
    for loss in (0.3, 0.1, 0.2):
        meta = {"monitor": "val_loss", "monitor_mode": "min", "monitor_value": loss}
        store(low, weights, os.urandom(500), metadata=meta)
    assert Model(low.id).prune_versions(keep_last=0).pruned == [1]
    assert [v.pruned for v in Model(low.id).versions] == [True, False, False]
    assert_nothing_lost(low.id)


def test_current_weights_equal_to_an_old_version_are_kept(place: Place, task, weights) -> None:
    model = OutputModel(task=task, name="back")
    same = os.urandom(1000)
    store(model, weights, same)
    store(model, weights, os.urandom(1000))
    store(model, weights, same)  # rolled back to the first weights
    Model(model.id).prune_versions(keep_last=0)
    assert_nothing_lost(model.id)


def test_published_model_refuses_prune_and_update(place: Place, task: Task, weights) -> None:
    model = OutputModel(task=task, name="release")
    for _ in range(3):
        store(model, weights, os.urandom(800))
    model.publish()
    before = Model(model.id).versions
    with pytest.raises(ModelPublishedError):
        Model(model.id).prune_versions(keep_last=0)
    with pytest.raises(ModelPublishedError):
        Model(model.id).prune_versions(keep_last=0, dry_run=True)
    with pytest.raises(ModelPublishedError):
        model.update_weights(str(weights()), async_enable=False)
    with pytest.raises(ModelPublishedError):
        retention.prune(modelbook.config.get_backend(), model.id, keep_last=0)
    assert Model(model.id).versions == before
    assert_nothing_lost(model.id)
    assert cli(["models", "prune", model.id, "--keep-last", "0"]) == 4  # refused: published


# -- 3. removing models that name the user's own files --------------------------------------


@pytest.mark.parametrize("delete_weights_file", [True, False])
def test_remove_never_deletes_the_users_files(
    place: Place, task: Task, tmp_path: Path, delete_weights_file: bool
) -> None:
    user = tmp_path / "user"
    (user / "checkpoint").mkdir(parents=True)
    (user / "checkpoint" / "config.json").write_text("{}")
    (user / "checkpoint" / "shard.bin").write_bytes(os.urandom(500))
    for name in ("a.pt", "b.pt", "c.pt"):
        (user / name).write_bytes(os.urandom(700))
    files = {p: p.read_bytes() for p in user.rglob("*") if p.is_file()}

    by_file = InputModel.import_model(weights_url=str(user / "a.pt"), name="by-file")
    by_uri = InputModel.import_model(weights_url=f"file://{user / 'b.pt'}", name="by-uri")
    by_folder = InputModel.import_model(weights_url=str(user / "checkpoint"), name="by-folder")
    registered = OutputModel(task=task, name="registered")
    registered.update_weights(register_uri=str(user / "c.pt"), async_enable=False)
    registered.update_weights(register_uri=str(user / "a.pt"), async_enable=False)
    known = {f"file://{p}": sha(data) for p, data in files.items()}
    assert_nothing_lost(by_file.id, by_uri.id, registered.id, known=known)

    Model(registered.id).prune_versions(keep_last=0)  # prunes the version naming c.pt
    for model in (by_file, by_uri, by_folder, registered):
        assert Model.remove(model.id, delete_weights_file=delete_weights_file)
    retention.collect(pending_grace=0)
    assert cli(["gc", "--older-than", "0"]) == 0
    for path, data in files.items():
        assert path.read_bytes() == data, f"{path} was changed or deleted"
    assert sorted(p.name for p in user.iterdir()) == ["a.pt", "b.pt", "c.pt", "checkpoint"]


def test_output_model_registered_on_a_user_file_keeps_it(place: Place, task, tmp_path) -> None:
    user_file = tmp_path / "user" / "best.pt"
    user_file.parent.mkdir()
    user_file.write_bytes(data := os.urandom(900))
    model = OutputModel(task=task, name="reg")
    model.update_weights(register_uri=str(user_file))  # async, then auto_delete_file default
    settle()
    Model.remove(model.id, delete_weights_file=True)
    retention.collect(pending_grace=0)
    assert user_file.read_bytes() == data


# -- 4. handing a stored object back to update_weights ---------------------------------------


@pytest.mark.parametrize("async_enable", [False, True])
def test_local_copy_handed_back_to_update_weights_stays(
    place: Place, task: Task, weights, tmp_path: Path, async_enable: bool
) -> None:
    a = OutputModel(task=task, name="a")
    store(a, weights, data := os.urandom(2500))
    local = Model(a.id).get_local_copy(raise_on_error=True)
    assert local is not None
    a_uri = Model(a.id).url
    task.close()
    other = Task.init(project_name="own", task_name="finetune",
                      output_uri=str(tmp_path / "other-dest"))  # fmt: skip
    b = OutputModel(task=other, name="b")
    b.update_weights(local, async_enable=async_enable)  # auto_delete_file=True (default)
    assert Path(local).is_file() and Path(local).read_bytes() == data
    settle()
    assert exists(a_uri)
    if a_uri.startswith("file://"):
        assert to_path(a_uri).is_file() and sha(to_path(a_uri).read_bytes()) == sha(data)
    assert Path(local).is_file() and Path(local).read_bytes() == data
    assert_nothing_lost(a.id, b.id)
    assert Model(b.id).url != a_uri


def test_local_copy_of_a_registered_user_file_handed_back_stays(
    place: Place, task: Task, tmp_path: Path
) -> None:
    """``get_local_copy`` hands local weights out in place: for a model registered on the
    user's own file, that is the user's file; handing it to ``update_weights``
    (``auto_delete_file`` defaults to True) must not move it away from the model."""
    user_file = tmp_path / "user" / "pretrained.pt"
    user_file.parent.mkdir()
    user_file.write_bytes(data := os.urandom(1000))
    imported = InputModel.import_model(weights_url=str(user_file), name="pretrained")
    registered = OutputModel(task=task, name="registered")
    registered.update_weights(register_uri=str(user_file), async_enable=False)
    local = Model(imported.id).get_local_copy(raise_on_error=True)
    assert local is not None
    task.close()
    other = Task.init(project_name="own", task_name="finetune",
                      output_uri=str(tmp_path / "other-dest"))  # fmt: skip
    finetuned = OutputModel(task=other, name="finetuned")
    finetuned.update_weights(local, async_enable=False)
    assert user_file.is_file() and user_file.read_bytes() == data
    known = {f"file://{user_file}": sha(data)}
    assert_nothing_lost(imported.id, registered.id, finetuned.id, known=known)


def test_local_copy_handed_back_to_the_same_destination(place: Place, task, weights) -> None:
    a = OutputModel(task=task, name="a")
    store(a, weights, os.urandom(2500))
    local = Model(a.id).get_local_copy(raise_on_error=True)
    b = OutputModel(task=task, name="b")
    b.update_weights(local, async_enable=False)  # same destination as a's weights
    c = OutputModel(task=task, name="c")
    c.update_weights(local, target_filename="renamed.pt", async_enable=False)
    assert Path(local).is_file()
    Model.remove(b.id)
    Model.remove(c.id)
    retention.collect(pending_grace=0)
    assert_nothing_lost(a.id)


# -- 5. files that share a name --------------------------------------------------------------


@pytest.mark.parametrize("async_enable", [False, True])
def test_same_file_name_gets_a_uri_per_version(
    place: Place, task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, async_enable: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    model = OutputModel(task=task, name="same-name")
    contents = [os.urandom(1500), os.urandom(1500), os.urandom(1500)]
    uris = []
    for content in contents:
        Path("model.pt").write_bytes(content)
        uris.append(model.update_weights("model.pt", async_enable=async_enable))
        if async_enable:
            settle()  # each version stored before the next (newer ones supersede queued)
    versions = Model(model.id).versions
    assert len({v.uri for v in versions}) == 3, [v.uri for v in versions]
    assert [v.uri for v in versions] == uris
    assert all(v.uri.endswith("/model.pt") for v in versions)
    assert [v.sha256 for v in versions] == [sha(c) for c in contents]
    for v, content in zip(versions, contents, strict=True):
        assert read_version(model.id, v.version) == content
    assert_nothing_lost(model.id)

    twin = OutputModel(task=task, name="other-model")  # another model, the same file name
    Path("model.pt").write_bytes(extra := os.urandom(1500))
    twin.update_weights("model.pt", async_enable=False)
    assert Model(twin.id).url not in uris
    assert_nothing_lost(model.id, twin.id)
    assert Path(Model(twin.id).get_local_copy()).read_bytes() == extra


def test_same_name_and_same_bytes_read_back(place: Place, task: Task, weights) -> None:
    model = OutputModel(task=task, name="twice")
    data = os.urandom(1200)
    first, second = store(model, weights, data), store(model, weights, data)
    assert (first == second) == place.content_addressed
    Model(model.id).prune_versions(keep_last=1)
    assert_nothing_lost(model.id)


# -- 6. removing a model whose objects another model's older version names ------------------


@pytest.mark.parametrize("delete_weights_file", [True, False])
def test_remove_keeps_objects_an_older_version_of_another_model_names(
    place: Place, task: Task, weights, delete_weights_file: bool
) -> None:
    shared = os.urandom(2000)
    a = OutputModel(task=task, name="a")
    store(a, weights, shared)
    a_uri = Model(a.id).url
    b = OutputModel(task=task, name="b")
    if place.content_addressed:
        store(b, weights, shared)  # the same blob
    else:  # explicit destinations name each upload apart: share through register_uri
        b.update_weights(register_uri=a_uri, async_enable=False)
    assert Model(b.id).versions[0].uri == a_uri
    store(b, weights, os.urandom(2000))  # b's current weights are other bytes
    known = {a_uri: sha(shared)}

    assert Model.remove(a.id, delete_weights_file=delete_weights_file)
    assert exists(a_uri)
    assert_nothing_lost(b.id, known=known)
    retention.collect(pending_grace=0)
    assert exists(a_uri)
    assert read_version(b.id, 1) == shared

    Model(b.id).prune_versions(keep_last=0)  # now nothing references a's object
    assert [v.pruned for v in Model(b.id).versions] == [True, False]
    assert_nothing_lost(b.id)
    if delete_weights_file:
        assert not exists(a_uri)  # the last reference went: the registry's object goes


def test_remove_keeping_the_weights_keeps_shared_ones_for_good(place: Place, task, weights):
    """``Model.remove(delete_weights_file=False)``: "the model's own objects are kept for
    good (never deleted later either)", also when another model's version still names
    them at the time."""
    shared = os.urandom(2000)
    a = OutputModel(task=task, name="a")
    store(a, weights, shared)
    a_uri = Model(a.id).url
    b = OutputModel(task=task, name="b")
    if place.content_addressed:
        store(b, weights, shared)
    else:
        b.update_weights(register_uri=a_uri, async_enable=False)
    store(b, weights, os.urandom(2000))
    assert Model.remove(a.id, delete_weights_file=False)
    Model(b.id).prune_versions(keep_last=0)
    retention.collect(pending_grace=0)
    assert exists(a_uri), "a's weights, kept on remove, were deleted by b's prune"
    assert_nothing_lost(b.id)


def test_remove_keeps_what_a_model_imported_from_the_registry_names(
    place: Place, task: Task, weights
) -> None:
    a = OutputModel(task=task, name="a")
    store(a, weights, data := os.urandom(1000))
    store(a, weights, os.urandom(1000))
    old_uri = Model(a.id).versions[0].uri  # not a's current URL: import makes a new model
    imported = InputModel.import_model(weights_url=old_uri, name="imported")
    assert imported.id != a.id
    Model(a.id).prune_versions(keep_last=0)
    assert Model.remove(a.id)
    retention.collect(pending_grace=0)
    assert exists(old_uri)
    assert_nothing_lost(imported.id, known={old_uri: sha(data)})
    assert Model.remove(imported.id)  # the registry's object, now unreferenced: it goes
    retention.collect(pending_grace=0)
    assert not exists(old_uri)
    assert owned_unreferenced(place) == []


# -- races and re-runs in the embedded blob folder -------------------------------------------


@pytest.fixture
def blobs(tmp_path: Path) -> Task:
    modelbook.configure(home=tmp_path / "home")
    return Task.init(project_name="own", task_name="blobs")


def test_rerun_after_remove_keeping_the_weights_stores_the_same_bytes(blobs: Task, weights):
    data = os.urandom(1500)
    a = OutputModel(task=blobs, name="a")
    store(a, weights, data)
    a_uri = Model(a.id).url
    assert Model.remove(a.id, delete_weights_file=False)  # kept for good
    b = OutputModel(task=blobs, name="b")
    store(b, weights, data)  # a seeded re-run: the identical blob
    assert Model(b.id).url == a_uri
    assert_nothing_lost(b.id)
    assert Model.remove(b.id)
    retention.collect(pending_grace=0)
    assert to_path(a_uri).is_file()  # disowned by the first remove: never deleted


def test_remove_racing_an_upload_of_the_same_bytes_loses_nothing(
    blobs: Task, weights, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model b uploads bytes the blob folder already holds (model a's): it finds them
    stored and skips the copy; before b's version is recorded, a is removed."""
    data = os.urandom(1500)
    a = OutputModel(task=blobs, name="a")
    store(a, weights, data)
    backend = modelbook.config.get_backend()
    real = backend.add_model_version

    def a_removed_first(model_id: str, **fields: Any) -> Any:
        monkeypatch.setattr(backend, "add_model_version", real)
        assert Model.remove(a.id)
        return real(model_id, **fields)

    monkeypatch.setattr(backend, "add_model_version", a_removed_first)
    b = OutputModel(task=blobs, name="b")
    b.update_weights(str(weights(content=data)))  # in the background: retried if transient
    settle()
    assert_nothing_lost(b.id)
