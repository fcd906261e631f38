"""ClearML task fields, ``tasks.clone`` / ``tasks.delete``, ``projects.update`` and reported
scalars on ``modelbook server``, through its API (what the unmodified SDK does with them is
in test_server_clearml_sdk.py).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from modelbook.errors import ModelNotFoundError
from modelbook.server.testing import envelope_data, envelope_meta


def ok(response: Any) -> dict[str, Any]:
    return envelope_data(response)


def refused(response: Any) -> tuple[int, int, str]:
    meta = envelope_meta(response)
    assert response.status_code == meta["result_code"], meta
    return response.status_code, meta["result_subcode"], meta["result_msg"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def project(api) -> str:
    return ok(api("projects.create", {"name": "documents"}))["id"]


def new_task(api, project: str, **body: Any) -> str:
    return ok(api("tasks.create", {"name": unique("t"), "project": project, **body}))["id"]


def get(api, task_id: str) -> dict[str, Any]:
    return ok(api("tasks.get_by_id", {"task": task_id}))["task"]


def scalar(task: str, iteration: int, value: float, **extra: Any) -> dict[str, Any]:
    return {"type": "training_stats_scalar", "task": task, "metric": "loss", "variant": "train",
            "iter": iteration, "value": value, **extra}  # fmt: skip


def test_clearml_fields_are_kept_and_returned(api, backend, project) -> None:
    script = {"binary": "python3", "entry_point": "train.py", "working_dir": "."}
    task_id = new_task(
        api, project, script=script, container={"image": "python:3.11"},
        hyperparams={"Args": {"lr": {"section": "Args", "name": "lr", "value": "0.1",
                                     "type": "float", "description": "step"}}},
        configuration={"General": {"name": "General", "value": "layers: 3"},
                       "train": {"name": "train", "value": "lr = 0.1", "type": "dictionary"}},
        execution={"model_labels": {"cat": 1}, "framework": "PyTorch"},
    )  # fmt: skip
    doc = get(api, task_id)
    assert doc["script"] == script and doc["container"] == {"image": "python:3.11"}
    assert doc["hyperparams"]["Args"]["lr"] == {"section": "Args", "name": "lr", "value": "0.1",
                                                "type": "float", "description": "step"}
    assert doc["configuration"]["General"]["value"] == "layers: 3"
    assert doc["configuration"]["train"]["type"] == "dictionary"
    assert doc["execution"] == {"artifacts": [], "framework": "PyTorch", "model_labels": {"cat": 1}}
    record = backend.get_task(task_id)
    assert record.model_config == "layers: 3" and record.labels == {"cat": 1}

    # modelbook merges tasks.edit section by section (strict mode replaces, as ClearML does)
    model = backend.create_model(name=unique("input"), project=project)
    ok(api("tasks.edit", {"task": task_id, "runtime": {"progress": "5"},
                          "configuration": {"data": {"value": "path = /d"}},
                          "execution": {"queue": "q"},
                          "models": {"input": [{"name": "in", "model": model.id}]}}))
    doc = get(api, task_id)
    assert sorted(doc["configuration"]) == ["General", "data", "train"]
    assert doc["runtime"] == {"progress": "5"}
    assert doc["execution"]["framework"] == "PyTorch" and doc["execution"]["queue"] == "q"
    assert doc["models"]["input"] == [{"name": "in", "model": model.id}]
    only = ["script.entry_point", "configuration.train.value"]
    (listed,) = ok(api("tasks.get_all", {"id": [task_id], "only_fields": only}))["tasks"]
    assert listed == {"id": task_id, "script": {"entry_point": "train.py"},
                      "configuration": {"train": {"value": "lr = 0.1"}}}  # fmt: skip

    # the configuration endpoints
    body = {"tasks": [task_id], "names": ["train"]}
    (found,) = ok(api("tasks.get_configurations", body))["configurations"]
    assert [c["value"] for c in found["configuration"]] == ["lr = 0.1"]
    (names,) = ok(api("tasks.get_configuration_names", {"tasks": [task_id]}))["configurations"]
    assert names == {"task": task_id, "names": ["General", "data", "train"]}
    gone = {"task": task_id, "configuration": ["train", "General", "absent"]}
    assert ok(api("tasks.delete_configuration", gone))["deleted"] == 2
    assert list(get(api, task_id)["configuration"]) == ["data"]
    assert backend.get_task(task_id).model_config == ""
    edit = {"task": task_id, "configuration": [{"name": "General", "value": "v2"}],
            "replace_configuration": True}  # fmt: skip
    ok(api("tasks.edit_configuration", edit))
    assert list(get(api, task_id)["configuration"]) == ["General"]

    # hyper-parameters keep their types; replace_hyperparams "section" replaces the section
    items = [{"section": "Args", "name": "epochs", "value": "3", "type": "int"}]
    ok(api("tasks.edit_hyper_params", {"task": task_id, "hyperparams": items,
                                       "replace_hyperparams": "section"}))  # fmt: skip
    (params,) = ok(api("tasks.get_hyper_params", {"tasks": [task_id]}))["params"]
    assert [(p["name"], p["value"], p["type"]) for p in params["hyperparams"]] == [
        ("epochs", "3", "int")
    ]
    ok(api("tasks.delete_hyper_params", {"task": task_id, "hyperparams": [{"section": "Args"}]}))
    assert get(api, task_id)["hyperparams"] == {}

    # requirements and artifacts
    ok(api("tasks.set_requirements", {"task": task_id, "requirements": {"pip": "torch"}}))
    assert get(api, task_id)["script"] == {**script, "requirements": {"pip": "torch"}}
    artifacts = [{"key": "a", "type": "dict", "uri": "http://files/a.json"},
                 {"key": "b", "type": "custom", "mode": "input"}]  # fmt: skip
    assert ok(api("tasks.add_or_update_artifacts", {"task": task_id, "artifacts": artifacts}))
    changed = [{"key": "a", "type": "dict", "uri": "http://files/a2.json"}]
    ok(api("tasks.add_or_update_artifacts", {"task": task_id, "artifacts": changed}))
    body = {"task": task_id, "artifacts": [{"key": "b", "mode": "input"}, {"key": "zz"}]}
    assert ok(api("tasks.delete_artifacts", body)) == {"deleted": 1}
    assert get(api, task_id)["execution"]["artifacts"] == [
        {"key": "a", "type": "dict", "uri": "http://files/a2.json", "mode": "output"}
    ]


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("tasks.create", {"name": "bad", "script": "train.py"}, "'script'"),
        ("tasks.edit", {"configuration": {"a": {"value": 5}}}, "configuration['a'].value"),
        ("tasks.edit", {"execution": {"artifacts": [{"key": "a"}]}}, "execution.artifacts[0].type"),
        ("tasks.edit", {"hyperparams": {"Args": {"lr": {"value": 1, "type": 3}}}},
         "hyperparams['Args']['lr'].type"),
        ("tasks.edit", {"models": {"input": [{"name": "x"}]}}, "models.input[0]"),
        ("tasks.add_or_update_artifacts", {"artifacts": [{"key": "k", "type": "t", "mode": "up"}]},
         "artifacts[0].mode"),
        ("tasks.edit_hyper_params", {"hyperparams": [], "replace_hyperparams": "some"},
         "replace_hyperparams"),
        ("tasks.clone", {"new_task_input_models": [{"name": 1}]}, "new_task_input_models"),
        ("events.add_batch", [{"type": "training_stats_scalar", "metric": "m", "iter": 1,
                               "value": "high"}], "events[0].value"),
        ("events.add_batch", [{"type": "training_stats_scalar", "value": 1.0, "iter": 2.5}],
         "events[0].iter"),
        ("events.scalar_metrics_iter_histogram", {"samples": 0}, "'samples'"),
        ("events.scalar_metrics_iter_histogram", {"key": "epoch"}, "'key'"),
        ("projects.update", {"description": 5}, "'description'"),
    ],
)  # fmt: skip
def test_malformed_fields_are_400_naming_the_field(api, project, endpoint, body, field) -> None:
    task_id = new_task(api, project)
    if isinstance(body, list):  # a batch of events
        body = [{"task": task_id, **event} for event in body]
    elif endpoint.startswith("projects."):
        body = {"project": project, **body}
    else:
        body = {"task": task_id, **body}
    status, subcode, message = refused(api(endpoint, body))
    assert (status, subcode) == (400, 12) and field in message, message


def test_scalars_are_stored_sampled_and_paged(api, backend, project) -> None:
    task_id = new_task(api, project)
    batch = [scalar(task_id, i, float(i), timestamp=1_000 * i) for i in range(10)]
    batch += [{"type": "log", "task": task_id, "msg": "hi"}, scalar("nope", 1, 1.0)]
    reply = ok(api("events.add_batch", batch))
    assert reply == {"added": 11, "errors": 1, "errors_info": {"Invalid task id nope": 1}}
    ok(api("events.add_batch", [scalar(task_id, 9, 90.0, timestamp=99_000)]))  # replaces
    histogram = {"task": task_id, "samples": 5}
    series = ok(api("events.scalar_metrics_iter_histogram", histogram))["loss"]["train"]
    assert series == {"name": "train", "x": [0, 2, 4, 6, 8], "y": [0.5, 2.5, 4.5, 6.5, 49.0]}
    by_time = {"task": task_id, "key": "iso_time", "metrics": [{"metric": "loss"}]}
    series = ok(api("events.scalar_metrics_iter_histogram", by_time))["loss"]["train"]
    assert series["x"][:2] == ["1970-01-01T00:00:00.000Z", "1970-01-01T00:00:01.000Z"]
    pages, scroll = [], None
    for _ in range(5):
        page = ok(api("events.get_task_events", {"task": task_id, "batch_size": 4,
                                                 "event_type": "training_stats_scalar",
                                                 "scroll_id": scroll}))  # fmt: skip
        pages.append([e["iter"] for e in page["events"]])
        scroll = page["scroll_id"]
        if page["returned"] < 4:
            break
    assert pages == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and page["total"] == 10
    assert refused(api("events.get_task_events", {"task": task_id, "scroll_id": "x"}))[:2] == (
        400, 1104)
    latest = ok(api("events.get_task_latest_scalar_values", {"task": task_id}))
    assert latest["metrics"] == [{"name": "loss", "variants": [{"name": "train",
                                                                "last_value": 90.0}]}]
    assert latest["last_iter"] == 9 and backend.get_task(task_id).last_iteration == 9
    (stats,) = get(api, task_id)["last_metrics"].values()
    (train,) = stats.values()
    assert (train["value"], train["max_value"], train["count"]) == (90.0, 90.0, 11)

    # a model's own scalars; a published task refuses events unless allow_locked
    model = backend.create_model(name=unique("scored"), project=project)
    event = scalar(model.id, 1, 0.5, model_event=True)
    assert ok(api("events.add_batch", [event]))["added"] == 1
    found = ok(api("events.scalar_metrics_iter_histogram", {"task": model.id,
                                                            "model_events": True}))
    assert found["loss"]["train"]["y"] == [0.5]
    ok(api("tasks.publish", {"task": task_id, "force": True}))
    assert refused(api("events.add_batch", [scalar(task_id, 10, 1.0)]))[:2] == (400, 131)
    assert ok(api("events.add_batch", [scalar(task_id, 10, 1.0, allow_locked=True)]))["added"]
    assert ok(api("events.delete_for_task", {"task": task_id, "allow_locked": True}))["deleted"]
    assert get(api, task_id)["last_metrics"] == {}


def _owned_model(backend, server, tmp_path, task: str, name: str, *, ready: bool = False):
    """A model of ``task`` whose weights the registry wrote to its files server."""
    model = backend.create_model(name=unique(name), project=backend.get_task(task).project,
                                 task=task)  # fmt: skip
    local = tmp_path / f"{unique(name)}.pt"
    local.write_bytes(os.urandom(64))
    uri = f"{server.files_host}/documents/{unique(name)}/w.pt"
    stored = backend.driver_for(uri).put(local, uri)
    model = backend.add_model_version(model.id, uri=stored.uri, sha256=stored.sha256,
                                      size=stored.size, iteration=1)  # fmt: skip
    return backend.update_model(model.id, ready=True) if ready else model


def _file(server, uri: str):
    return server.files_root / uri[len(server.files_host) + 1 :]


def test_tasks_delete_refuses_without_force_and_keeps_what_it_must(
    api, backend, server, project, tmp_path
) -> None:
    task = backend.create_task(name=unique("done"), project=project)
    draft = _owned_model(backend, server, tmp_path, task.id, "draft")
    used = _owned_model(backend, server, tmp_path, task.id, "used")
    published = _owned_model(backend, server, tmp_path, task.id, "published", ready=True)
    other = backend.create_task(name=unique("consumer"), project=project)
    backend.set_task_model(other.id, "input", "in", used.id)
    backend.set_task_model(task.id, "output", "best", draft.id)
    ok(api("tasks.add_or_update_artifacts", {"task": task.id, "artifacts": [
        {"key": "stats", "type": "dict", "uri": f"{server.files_host}/documents/stats.json"}]}))
    ok(api("events.add_batch", [scalar(task.id, 1, 0.5)]))
    backend.update_task(task.id, status="completed")

    status, subcode, message = refused(api("tasks.delete", {"task": task.id}))
    assert (status, subcode) == (400, 123) and "force" in message
    backend.update_task(task.id, status="created")
    status, subcode, message = refused(api("tasks.delete", {"task": task.id}))
    assert (status, subcode) == (400, 123) and published.id in message

    reply = ok(api("tasks.delete", {"task": task.id, "force": True, "return_file_urls": True}))
    assert reply["deleted"] is True and reply["updated_models"] == 2 and reply["doomed"] == []
    assert reply["urls"]["model_urls"] == [draft.uri]
    assert reply["urls"]["artifact_urls"] == [f"{server.files_host}/documents/stats.json"]
    assert refused(api("tasks.get_by_id", {"task": task.id}))[:2] == (400, 101)
    with pytest.raises(ModelNotFoundError):
        backend.get_model(draft.id)
    assert not _file(server, draft.uri).exists()  # the registry's bytes, nothing else used them
    for kept in (used, published):  # used elsewhere / published: kept, bytes and all
        assert backend.get_model(kept.id).task is None
        assert _file(server, kept.uri).exists()
    histogram = {"task": task.id}
    assert refused(api("events.scalar_metrics_iter_histogram", histogram))[:2] == (400, 101)

    # delete_output_models false: the draft models stay
    task = backend.create_task(name=unique("keep"), project=project)
    draft = _owned_model(backend, server, tmp_path, task.id, "kept")
    ok(api("tasks.delete", {"task": task.id, "delete_output_models": False}))
    assert backend.get_model(draft.id).task is None and _file(server, draft.uri).exists()


def test_models_delete_refuses_models_in_use_without_force(api, backend, project) -> None:
    model = backend.create_model(name=unique("input"), project=project)
    task = backend.create_task(name=unique("consumer"), project=project)
    backend.set_task_model(task.id, "input", "in", model.id)
    status, subcode, message = refused(api("models.delete", {"model": model.id}))
    assert (status, subcode) == (400, 205) and "force" in message
    assert ok(api("models.delete", {"model": model.id, "force": True}))["deleted"]
    assert backend.get_task(task.id).input_models == []


def test_projects_update_renames_sub_projects_and_keeps_the_description(api, backend) -> None:
    base = unique("team")
    parent = ok(api("projects.create", {"name": base}))["id"]
    child = ok(api("projects.create", {"name": f"{base}/sub"}))["id"]
    renamed = unique("crew")
    body = {"project": parent, "name": f" {renamed}/", "description": "the crew",
            "tags": ["a"], "default_output_destination": "http://dest"}  # fmt: skip
    reply = ok(api("projects.update", body))
    assert reply["updated"] == 1 and reply["fields"]["name"] == renamed
    doc = ok(api("projects.get_by_id", {"project": parent}))["project"]
    assert (doc["name"], doc["description"], doc["tags"]) == (renamed, "the crew", ["a"])
    assert doc["default_output_destination"] == "http://dest"
    assert backend.get_project(child).name == f"{renamed}/sub"
    listed = ok(api("projects.get_all", {"name": f"^{renamed}$"}))["projects"]
    assert [p["description"] for p in listed] == ["the crew"]

    moved = {"project": child, "name": "elsewhere/sub"}
    assert refused(api("projects.update", moved))[:2] == (400, 408)
    assert refused(api("projects.update", {"project": parent, "name": " / "}))[:2] == (400, 407)
    other = ok(api("projects.create", {"name": unique("taken")}))["id"]
    taken = {"project": other, "name": renamed}
    status, subcode, message = refused(api("projects.update", taken))
    assert (status, subcode) == (400, 12) and renamed in message


def test_reset_by_a_clearml_client_clears_what_the_run_reported(api, project) -> None:
    task_id = new_task(api, project, execution={"queue": "q"})
    ok(api("tasks.edit", {"task": task_id, "runtime": {"progress": "50"}}))
    artifacts = [{"key": "out", "type": "dict"}, {"key": "in", "type": "dict", "mode": "input"}]
    ok(api("tasks.add_or_update_artifacts", {"task": task_id, "artifacts": artifacts}))
    ok(api("events.add_batch", [scalar(task_id, 1, 0.5)]))
    ok(api("tasks.reset", {"task": task_id}))  # modelbook's clients: only the status
    assert get(api, task_id)["last_metrics"] != {}
    clearml = {"X-ClearML-Client": "clearml-2.1.12"}
    doc = ok(api("tasks.reset", {"task": task_id}, headers=clearml))["task"]
    assert doc["status"] == "created" and doc["last_metrics"] == {} and doc["runtime"] == {}
    assert doc["execution"]["artifacts"] == [{"key": "in", "type": "dict", "mode": "input"}]
    assert "queue" not in doc["execution"]
    assert ok(api("events.scalar_metrics_iter_histogram", {"task": task_id})) == {}
