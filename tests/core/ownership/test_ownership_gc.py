"""Garbage collection (``retention.collect``, ``modelbook gc``) and the prune and gc JSON output."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from ownership_support import Place, assert_nothing_lost, exists, owned_unreferenced, sha, store

import modelbook
from modelbook import Model, OutputModel, Task, retention
from modelbook.cli import main as cli
from modelbook.storage.local import to_path

# which bytes modelbook deletes: none on a ClearML server (docs/compatibility.md), so
# --clearml-mode leaves this out; the place fixture covers modelbook's own server
pytestmark = pytest.mark.embedded_only


# -- gc ----------------------------------------------------------------------------------------


def test_gc_after_removals_leaves_no_owned_unreferenced_object(
    place: Place, task: Task, weights
) -> None:
    shared = os.urandom(1000)
    a, b, c = (OutputModel(task=task, name=n) for n in "abc")
    for content in (shared, os.urandom(1000), os.urandom(1000)):
        store(a, weights, content)
    store(b, weights, shared)
    store(c, weights, os.urandom(1000))
    store(c, weights, os.urandom(1000))
    uris = {m.id: [v.uri for v in Model(m.id).versions] for m in (a, b, c)}

    Model(a.id).prune_versions(keep_last=1)
    assert Model.remove(c.id)
    assert not any(exists(u) for u in uris[c.id])
    _, deleted = retention.collect(pending_grace=0)
    assert not deleted.failed
    assert owned_unreferenced(place) == []
    assert_nothing_lost(a.id, b.id)

    assert Model.remove(b.id)
    retention.collect(pending_grace=0)
    assert owned_unreferenced(place) == []
    assert exists(uris[b.id][0]) == (uris[b.id][0] == Model(a.id).url)
    assert not exists(uris[a.id][1])
    assert_nothing_lost(a.id)

    assert Model.remove(a.id)
    retention.collect(pending_grace=0)
    assert owned_unreferenced(place) == []
    assert not any(exists(u) for u in {*uris[a.id], *uris[b.id]})


def _abandoned_object(place: Place) -> tuple[str, Path]:
    """An object a writer recorded and wrote, then died before any model referenced it."""
    backend = modelbook.config.get_backend()
    root = place.output_uri or str(modelbook.config.home() / "blobs")
    data = os.urandom(700)
    digest = sha(data)
    path = Path(root) / digest[:2] / digest / "orphan.pt"
    uri = f"file://{path}"
    backend.begin_object_write(uri, digest, len(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return uri, path


def test_gc_dry_run_deletes_nothing(place: Place, task: Task, weights, tmp_path: Path) -> None:
    if place.name == "files":
        pytest.skip("an abandoned object is written by hand to a local folder")
    model = OutputModel(task=task, name="m")
    store(model, weights, os.urandom(1000))
    store(model, weights, os.urandom(1000))
    uri, path = _abandoned_object(place)

    found, deleted = retention.collect(pending_grace=0, dry_run=True)
    assert uri in found.doomed and deleted.removed == [] and path.is_file()
    assert cli(["gc", "--dry-run", "--older-than", "0"]) == 0
    assert path.is_file()
    assert [u for u, _ in owned_unreferenced(place)] == [uri]  # still pending, not doomed
    found, deleted = retention.collect(pending_grace=3600)  # too young to be abandoned
    assert uri not in found.doomed and path.is_file()
    assert_nothing_lost(model.id)

    found, deleted = retention.collect(pending_grace=0)
    assert uri in found.doomed and not path.exists()
    assert owned_unreferenced(place) == []
    assert_nothing_lost(model.id)


def test_gc_removes_stale_partial_files_of_the_blob_folder(tmp_path: Path, weights) -> None:
    modelbook.configure(home=tmp_path / "home")
    task = Task.init(project_name="own", task_name="partials")
    model = OutputModel(task=task)
    store(model, weights, os.urandom(1000))
    blob = to_path(Model(model.id).url)
    stale = blob.parent / f".{blob.name}.0123456789ab.partial"
    top = modelbook.config.home() / "blobs" / ".x.partial"
    fresh = blob.parent / f".{blob.name}.ba9876543210.partial"
    for partial in (stale, top, fresh):
        partial.write_bytes(b"half a copy")
    old = time.time() - 7200
    for partial in (stale, top):
        os.utime(partial, (old, old))
    expected = sorted([f"file://{stale}", f"file://{top}"])

    found, _ = retention.collect(pending_grace=3600, dry_run=True)
    assert sorted(found.partials) == expected and stale.exists() and top.exists()
    found, _ = retention.collect(pending_grace=3600)
    assert sorted(found.partials) == expected
    assert not stale.exists() and not top.exists() and fresh.exists() and blob.is_file()
    assert_nothing_lost(model.id)


# -- the command line --------------------------------------------------------------------------


def test_cli_prune_and_gc_print_json(
    place: Place, task: Task, weights, capsys: pytest.CaptureFixture[str]
) -> None:
    model = OutputModel(task=task, name="cli")
    for _ in range(3):
        store(model, weights, os.urandom(1000))
    uris = [v.uri for v in Model(model.id).versions]
    capsys.readouterr()

    assert cli(["models", "prune", model.id, "--keep-last", "0", "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["dry_run"] is True and planned["pruned"] == [1, 2]
    assert [v.pruned for v in Model(model.id).versions] == [False, False, False]
    assert all(exists(u) for u in uris)

    assert cli(["models", "prune", model.id, "--keep-last", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pruned"] == [1, 2] and report["failed"] == {} and report["dry_run"] is False
    assert report["kept"] == {"3": "the model's current weights"}
    assert set(report["deleted"]) <= set(uris[:2])
    assert not exists(uris[0]) and not exists(uris[1]) and exists(uris[2])

    assert cli(["gc", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"objects", "partials", "failed", "dry_run"}
    assert result["objects"] == [] and result["failed"] == {} and result["dry_run"] is False
    assert cli(["gc", "--dry-run", "--older-than", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    assert_nothing_lost(model.id)
