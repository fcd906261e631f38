"""Ownership of stored objects on ``modelbook server``: published models are read-only, and
the files server never destroys bytes that a model references.

* a published model refuses new weights, design and labels (ClearML's "model is ready",
  400/203); other edits still apply;
* ``POST`` onto a file a published model references and ``DELETE`` of any referenced file
  answer 409 naming the model, and leave the bytes alone; an upload onto a file an older,
  unpublished version references keeps the old bytes under a version-specific name;
* ``models.delete`` / ``models.prune_versions`` delete the files only they referenced;
* the unmodified clearml SDK re-uploading the same file name keeps every version readable.

``storage.gc`` is tested in ``test_server_ownership_gc.py``; the helpers are in
``server_ownership_support.py``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from server_ownership_support import (
    TIMEOUT,
    _add_version,
    _delete,
    _downloads_with,
    _get,
    _model,
    _new_model,
    _ok,
    _put,
    _relative,
    _sha,
    _tmp_files,
    _unique,
    _upload,
    _url,
    _versions,
)

from modelbook.server.testing import envelope_meta


# -- helpers (the others in server_ownership_support.py) -----------------------------------
@pytest.fixture(scope="module")
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- 1. a published model is read-only ------------------------------------------------------
@pytest.fixture(scope="module")
def published(server, auth, api) -> dict[str, Any]:
    """A published model with weights on the files server, design and labels."""
    folder = _unique("published")
    weights = os.urandom(700)
    uri = _put(server, auth, f"{folder}/m.pt", weights)
    model_id = _new_model(
        api, "published", design={"design": "layers: 3"}, labels={"cat": 1}, comment="v1"
    )
    _add_version(api, model_id, uri, weights, iteration=1)
    _ok(api, "models.set_ready", {"model": model_id})
    # a file a ClearML client could point the model at (the SDK's update_weights path)
    other = _put(server, auth, f"{folder}/other.pt", b"other weights")
    return {"id": model_id, "uri": uri, "sha256": _sha(weights), "folder": folder,
            "stored_other": other}  # fmt: skip


CLEARML_CLIENT = {"X-ClearML-Client": "clearml-2.1.12"}

FROZEN_EDITS = [
    pytest.param("models.edit", {"uri": "https://elsewhere.invalid/new.pt"}, {}, id="edit-uri"),
    pytest.param("models.update", {"uri": "https://elsewhere.invalid/new.pt"}, {}, id="update-uri"),
    pytest.param("models.edit", {"uri": "STORED"}, CLEARML_CLIENT, id="edit-uri-sdk-upload"),
    pytest.param("models.update", {"uri": "STORED"}, CLEARML_CLIENT, id="update-uri-sdk-upload"),
    pytest.param("models.edit", {"design": {"design": "layers: 4"}}, {}, id="edit-design"),
    pytest.param("models.update", {"design": "layers: 4"}, {}, id="update-design"),
    pytest.param("models.edit", {"labels": {"dog": 2}}, {}, id="edit-labels"),
    pytest.param("models.update", {"labels": {"dog": 2}}, {}, id="update-labels"),
    pytest.param(
        "models.edit", {"comment": "not applied", "labels": {"dog": 2}}, {}, id="edit-mixed"
    ),
    pytest.param(
        "models.add_version",
        {"uri": "STORED", "sha256": _sha(b"other weights"), "size": 13},
        {},
        id="add_version",
    ),
]


@pytest.mark.parametrize(("endpoint", "change", "headers"), FROZEN_EDITS)
def test_published_model_refuses_new_weights_design_and_labels(
    api, published, endpoint, change, headers
) -> None:
    before = _model(api, published["id"])
    body = {k: published["stored_other"] if v == "STORED" else v for k, v in change.items()}
    response = api(endpoint, {"model": published["id"], **body}, headers=headers)
    meta = envelope_meta(response)
    assert response.status_code == 400, response.text
    assert (meta["result_code"], meta["result_subcode"]) == (400, 203), meta
    assert "published" in meta["result_msg"]
    after = _model(api, published["id"])
    for field in ("uri", "sha256", "size", "design", "labels", "comment", "version", "ready"):
        assert after[field] == before[field], field
    assert after["uri"] == published["uri"] and after["sha256"] == published["sha256"]
    assert [v["version"] for v in _versions(api, published["id"])] == [1]


def test_published_model_accepts_other_edits(api, published) -> None:
    model_id = published["id"]
    edited = _ok(api, "models.edit", {"model": model_id, "comment": "final", "tags": ["prod"]})
    assert edited["model"]["comment"] == "final" and edited["model"]["tags"] == ["prod"]
    updated = _ok(api, "models.update", {"model": model_id, "tags": ["prod", "best"]})
    assert updated["model"]["tags"] == ["prod", "best"]
    after = _model(api, model_id)
    assert after["ready"] is True
    assert (after["comment"], after["tags"]) == ("final", ["prod", "best"])
    assert after["uri"] == published["uri"] and after["sha256"] == published["sha256"]
    assert after["design"] == {"design": "layers: 3"} and after["labels"] == {"cat": 1}


def test_published_model_refuses_pruning_and_a_second_publish(api, published) -> None:
    for endpoint, body in (
        ("models.prune_versions", {"keep_last": 0}),
        ("models.set_ready", {}),
    ):
        response = api(endpoint, {"model": published["id"], **body})
        meta = envelope_meta(response)
        assert response.status_code == 400, (endpoint, response.text)
        assert (meta["result_code"], meta["result_subcode"]) == (400, 203), (endpoint, meta)
    assert [v["version"] for v in _versions(api, published["id"])] == [1]


# -- 2. the files server never destroys referenced bytes -----------------------------------
@pytest.mark.parametrize("quoted", [False, True], ids=["plain-uri", "quoted-uri"])
def test_upload_onto_a_published_models_file_is_409(server, auth, api, quoted) -> None:
    path = f"{_unique('pub dir')}/m v1.pt"  # a space: the SDK names it percent-quoted
    weights = os.urandom(1000)
    _put(server, auth, path, weights)
    uri = _url(server, path) if quoted else f"{server.files_host}/{path}"
    model_id = _new_model(api, "pub-upload")
    _add_version(api, model_id, uri, weights)
    _ok(api, "models.set_ready", {"model": model_id})

    response = _upload(server.files_host, auth, path, b"new bytes")
    assert response.status_code == 409, response.text
    assert model_id in response.json()["error"]
    assert (server.files_root / path).read_bytes() == weights
    assert _get(server, auth, path).content == weights
    assert not _tmp_files(server)
    model = _model(api, model_id)
    assert model["uri"] == uri and model["sha256"] == _sha(weights)
    assert [v["uri"] for v in _versions(api, model_id)] == [uri]
    # the file is still referenced: it cannot be deleted either
    response = _delete(server, auth, path)
    assert response.status_code == 409 and model_id in response.json()["error"]
    assert (server.files_root / path).read_bytes() == weights


def test_upload_into_a_folder_onto_a_published_models_file_is_409(server, auth, api) -> None:
    folder = _unique("pub-folder")
    weights = os.urandom(200)
    uri = _put(server, auth, f"{folder}/m.pt", weights)
    model_id = _new_model(api, "pub-folder")
    _add_version(api, model_id, uri, weights)
    _ok(api, "models.set_ready", {"model": model_id})
    response = requests.post(
        f"{server.files_host}/{folder}",
        files={"/m.pt": ("/m.pt", b"new bytes", "binary/octet-stream")},
        headers=auth,
        timeout=TIMEOUT,
    )
    assert response.status_code == 409 and model_id in response.json()["error"], response.text
    assert (server.files_root / folder / "m.pt").read_bytes() == weights


@pytest.mark.parametrize("method", ["DELETE", "POST"])
def test_referenced_bytes_are_safe_whatever_host_the_request_names(
    server, auth, api, method
) -> None:
    """The same files server reached as ``localhost:<port>`` (what a client configured with
    ``http://localhost:<port>`` sends) must not bypass the guard on URIs naming 127.0.0.1."""
    folder = _unique("host")
    weights = os.urandom(200)
    uri = _put(server, auth, f"{folder}/m.pt", weights)
    model_id = _new_model(api, "host")
    _add_version(api, model_id, uri, weights)
    _ok(api, "models.set_ready", {"model": model_id})
    port = urlsplit(server.api_host).port
    headers = {**auth, "Host": f"localhost:{port}"}
    if method == "DELETE":
        response = requests.delete(_url(server, f"{folder}/m.pt"), headers=headers,
                                   timeout=TIMEOUT)  # fmt: skip
    else:
        response = requests.post(
            f"{server.files_host}/",
            files={f"/{folder}/m.pt": (f"/{folder}/m.pt", b"new bytes", "binary/octet-stream")},
            headers=headers,
            timeout=TIMEOUT,
        )
    assert response.status_code == 409, response.text
    assert model_id in response.json()["error"]
    assert (server.files_root / folder / "m.pt").read_bytes() == weights


@pytest.mark.parametrize("how", ["current", "older-version", "published"])
def test_delete_of_a_referenced_file_is_409(server, auth, api, how) -> None:
    folder = _unique("del")
    first, second = os.urandom(300), os.urandom(400)
    first_uri = _put(server, auth, f"{folder}/v1.pt", first)
    second_uri = _put(server, auth, f"{folder}/v2.pt", second)
    model_id = _new_model(api, "del")
    _add_version(api, model_id, first_uri, first)
    if how == "older-version":  # v1 is no longer the model's weights, but a version's
        _add_version(api, model_id, second_uri, second)
    if how == "published":
        _ok(api, "models.set_ready", {"model": model_id})

    response = _delete(server, auth, f"{folder}/v1.pt")
    assert response.status_code == 409, response.text
    assert model_id in response.json()["error"]
    assert (server.files_root / folder / "v1.pt").read_bytes() == first
    assert _get(server, auth, f"{folder}/v1.pt").content == first


def test_upload_onto_an_older_versions_file_keeps_the_old_bytes(
    server, auth, api, backend, tmp_path
) -> None:
    folder = _unique("keep")
    old, current, new = os.urandom(500), os.urandom(600), os.urandom(700)
    old_uri = _put(server, auth, f"{folder}/w.pt", old)
    current_uri = _put(server, auth, f"{folder}/w2.pt", current)
    model_id = _new_model(api, "keep")
    _add_version(api, model_id, old_uri, old, iteration=1)
    _add_version(api, model_id, current_uri, current, iteration=2)

    response = _upload(server.files_host, auth, f"{folder}/w.pt", new)
    assert response.status_code == 200, response.text
    assert (server.files_root / folder / "w.pt").read_bytes() == new
    assert not _tmp_files(server)

    versions = _versions(api, model_id)
    assert [(v["version"], v["sha256"]) for v in versions] == [(1, _sha(old)), (2, _sha(current))]
    moved = versions[0]["uri"]
    assert moved != old_uri and moved.startswith(f"{server.files_host}/{folder}/")
    assert moved.endswith("/w.pt")
    assert (server.files_root / _relative(server, moved)).read_bytes() == old
    assert versions[1]["uri"] == current_uri
    model = _model(api, model_id)
    assert model["uri"] == current_uri and model["sha256"] == _sha(current)
    for v in backend.list_model_versions(model_id):
        _downloads_with(backend, v.uri, v.sha256, tmp_path / f"v{v.version}.pt")
    # the kept bytes are referenced: they cannot be deleted; the new upload is nobody's
    kept = _relative(server, moved)
    assert _delete(server, auth, kept).status_code == 409
    assert _delete(server, auth, f"{folder}/w.pt").status_code == 200


@pytest.mark.parametrize("quoted", [False, True], ids=["plain-uri", "quoted-uri"])
def test_upload_onto_the_current_weights_repoints_the_model(
    server, auth, api, backend, tmp_path, quoted
) -> None:
    path = f"{_unique('current dir')}/w 1.pt"
    old, new = os.urandom(800), os.urandom(900)
    _put(server, auth, path, old)
    uri = _url(server, path) if quoted else f"{server.files_host}/{path}"
    model_id = _new_model(api, "current")
    _add_version(api, model_id, uri, old, iteration=1)

    response = _upload(server.files_host, auth, path, new)
    assert response.status_code == 200, response.text
    assert (server.files_root / path).read_bytes() == new

    model = _model(api, model_id)
    versions = _versions(api, model_id)
    assert model["uri"] != uri and model["sha256"] == _sha(old) and model["version"] == 1
    assert [(v["version"], v["uri"], v["sha256"]) for v in versions] == [
        (1, model["uri"], _sha(old))
    ]
    assert (server.files_root / _relative(server, model["uri"])).read_bytes() == old
    _downloads_with(backend, model["uri"], _sha(old), tmp_path / "model.pt")
    # the new bytes become a version in their own right
    _add_version(api, model_id, uri, new, iteration=2)
    for v in backend.list_model_versions(model_id):
        _downloads_with(backend, v.uri, v.sha256, tmp_path / f"v{v.version}.pt")
    assert [v["sha256"] for v in _versions(api, model_id)] == [_sha(old), _sha(new)]


def test_model_delete_deletes_the_files_it_alone_referenced(server, auth, api) -> None:
    folder = _unique("gone")
    old, current, shared, new = (os.urandom(n) for n in (100, 200, 300, 400))
    old_uri = _put(server, auth, f"{folder}/w.pt", old)
    current_uri = _put(server, auth, f"{folder}/current.pt", current)
    shared_uri = _put(server, auth, f"{folder}/shared.pt", shared)
    model_id = _new_model(api, "gone")
    _add_version(api, model_id, old_uri, old)
    _add_version(api, model_id, shared_uri, shared)
    _add_version(api, model_id, current_uri, current)
    other_id = _new_model(api, "other")
    _add_version(api, other_id, shared_uri, shared)
    # an upload onto v1's name: v1's bytes are kept under a version-specific name
    assert _upload(server.files_host, auth, f"{folder}/w.pt", new).status_code == 200
    kept = _relative(server, _versions(api, model_id)[0]["uri"])
    assert kept != f"{folder}/w.pt" and (server.files_root / kept).read_bytes() == old

    data = _ok(api, "models.delete", {"model": model_id})
    assert data["deleted"] is True and data["doomed"] == []
    for path in (kept, f"{folder}/current.pt"):
        assert not (server.files_root / path).exists(), path
        assert _delete(server, auth, path).status_code == 404, path
        assert _get(server, auth, path).status_code == 404, path
    # the other model still references the shared file; the re-upload is nobody's model's
    assert (server.files_root / folder / "shared.pt").read_bytes() == shared
    response = _delete(server, auth, f"{folder}/shared.pt")
    assert response.status_code == 409 and other_id in response.json()["error"]
    assert (server.files_root / folder / "w.pt").read_bytes() == new


@pytest.mark.parametrize("operation", ["delete", "prune"])
@pytest.mark.parametrize("dropped_form", ["quoted", "plain"])
def test_dropping_one_reference_keeps_a_file_another_model_names_differently(
    server, auth, api, operation, dropped_form
) -> None:
    """The clearml SDK names files percent-quoted, modelbook's clients plainly: a file
    another model still references (in the other form) must survive."""
    path = f"{_unique('two forms')}/m 1.pt"
    weights, other = os.urandom(300), os.urandom(30)
    _put(server, auth, path, weights)
    plain, quoted = f"{server.files_host}/{path}", _url(server, path)
    dropped, kept = (quoted, plain) if dropped_form == "quoted" else (plain, quoted)
    model_id = _new_model(api, "drops")
    _add_version(api, model_id, dropped, weights)
    keeper_id = _new_model(api, "keeps")
    _add_version(api, keeper_id, kept, weights)
    if operation == "delete":
        _ok(api, "models.delete", {"model": model_id})
    else:
        other_uri = _put(server, auth, f"{path}.next", other)
        _add_version(api, model_id, other_uri, other)
        pruned = _ok(api, "models.prune_versions", {"model": model_id, "keep_last": 1})
        assert pruned["pruned"] == [1]

    assert (server.files_root / path).is_file(), f"{keeper_id}'s weights were deleted"
    assert (server.files_root / path).read_bytes() == weights
    response = _delete(server, auth, path)
    assert response.status_code == 409 and keeper_id in response.json()["error"], response.text


def test_model_delete_keeping_external_artifacts_keeps_the_files(server, auth, api) -> None:
    folder = _unique("kept")
    weights = os.urandom(100)
    uri = _put(server, auth, f"{folder}/w.pt", weights)
    model_id = _new_model(api, "kept")
    _add_version(api, model_id, uri, weights)
    _ok(api, "models.delete", {"model": model_id, "delete_external_artifacts": False})
    assert (server.files_root / folder / "w.pt").read_bytes() == weights
    assert _delete(server, auth, f"{folder}/w.pt").status_code == 200  # nobody's any more


def test_prune_versions_deletes_the_files_only_pruned_versions_referenced(
    server, auth, api, backend, tmp_path
) -> None:
    folder = _unique("prune")
    contents = [os.urandom(100 + i) for i in range(4)]
    uris = [_put(server, auth, f"{folder}/v{i + 1}.pt", c) for i, c in enumerate(contents)]
    model_id = _new_model(api, "prune")
    for uri, content in zip(uris, contents, strict=True):
        _add_version(api, model_id, uri, content)

    dry = _ok(api, "models.prune_versions", {"model": model_id, "keep_last": 2, "dry_run": True})
    assert dry["pruned"] == [1, 2] and sorted(dry["doomed"]) == sorted(uris[:2])
    assert all((server.files_root / folder / f"v{i}.pt").exists() for i in range(1, 5))

    done = _ok(api, "models.prune_versions", {"model": model_id, "keep_last": 2})
    assert done["pruned"] == [1, 2] and done["doomed"] == []  # held here: deleted at once
    for i in (1, 2):
        path = f"{folder}/v{i}.pt"
        assert not (server.files_root / path).exists(), path
        assert _delete(server, auth, path).status_code == 404, path
    for i in (3, 4):
        path = f"{folder}/v{i}.pt"
        response = _delete(server, auth, path)
        assert response.status_code == 409 and model_id in response.json()["error"], path
    live = [v for v in backend.list_model_versions(model_id) if not v.pruned]
    assert [v.version for v in live] == [3, 4]
    for v in live:
        _downloads_with(backend, v.uri, v.sha256, tmp_path / f"v{v.version}.pt")


# -- 3. the clearml SDK's re-uploads keep history -------------------------------------------
SAME_NAME_FLOW = '''
"""Two update_weights with the same file name and different bytes (clearml SDK)."""
import hashlib
import json
import os
import sys
from pathlib import Path


def main(folder: str) -> None:
    from clearml import OutputModel, Task

    task = Task.init(project_name="ownership", task_name="retrain", output_uri=True,
                     auto_connect_frameworks=False, auto_resource_monitoring=False)
    model = OutputModel(task=task, framework="PyTorch")
    weights = Path(folder) / "w.pt"
    digests, returned = [], []
    for iteration, size in ((1, 1500), (2, 2500)):
        weights.write_bytes(os.urandom(size))  # the SDK deletes the file after uploading
        digests.append(hashlib.sha256(weights.read_bytes()).hexdigest())
        returned.append(model.update_weights(str(weights), iteration=iteration))
        model.wait_for_uploads()
    task.close()
    result = {"task": task.id, "model": model.id, "returned": returned, "digests": digests}
    print("FLOW_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(*sys.argv[2:])
'''


@pytest.fixture(scope="module")
def sdk_machinery() -> Any:
    """tests/server/test_server_clearml_sdk.py (its env and ``run_flow``), imported only
    when the SDK is installed so that the rest of this module runs without it."""
    pytest.importorskip("clearml", reason="the SDK tests need: pip install clearml==2.1.12")
    import test_server_clearml_sdk

    return test_server_clearml_sdk


def test_sdk_reuploading_the_same_file_name_keeps_every_version(
    sdk_machinery, sdk_env, server, auth, backend, tmp_path
) -> None:
    script = tmp_path / "same_name_flow.py"
    script.write_text(SAME_NAME_FLOW)
    work = tmp_path / "work"
    work.mkdir()
    result = sdk_machinery.run_flow(sdk_env, work, "same_name", str(work), flows=script)
    first, second = result["digests"]
    assert first != second
    # the SDK's habit: both uploads go to the same name
    assert result["returned"][0] == result["returned"][1]
    path = f"ownership/retrain.{result['task']}/models/w.pt"
    assert result["returned"][0] == f"{server.files_host}/{path}"

    model = backend.get_model(result["model"])
    versions = backend.list_model_versions(model.id)
    assert [(v.version, v.sha256, v.size, v.iteration) for v in versions] == [
        (1, first, 1500, 1),
        (2, second, 2500, 2),
    ]
    assert versions[1].uri == model.uri == _url(server, path)
    assert versions[0].uri != versions[1].uri
    assert model.sha256 == second and model.version == 2
    assert _sha((server.files_root / path).read_bytes()) == second
    for v in versions:
        _downloads_with(backend, v.uri, v.sha256, tmp_path / f"v{v.version}.pt")

    # the model's files are its own: deleting the model deletes them
    kept = _relative(server, versions[0].uri)
    assert backend.delete_model(model.id) == []
    for relative in (kept, path):
        assert not (server.files_root / relative).exists(), relative
        assert _get(server, auth, relative).status_code == 404, relative
