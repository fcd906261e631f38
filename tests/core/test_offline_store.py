"""Offline mode over the embedded store: everything waits in the spool under local ids, and
``modelbook sync`` registers it once, with the command line saying what it did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelbook
from modelbook import Model, OutputModel, Task, config, uploads
from modelbook.cli import main
from modelbook.deferred import is_local
from modelbook.errors import NotRegisteredError
from modelbook.sync import sync


@pytest.fixture
def offline(tmp_path: Path):
    modelbook.configure(home=tmp_path / "home")
    Task.set_offline(True)
    try:
        yield tmp_path / "home"
    finally:
        Task.set_offline(False)


def train_offline(weights) -> tuple[Task, OutputModel]:
    task = Task.init(project_name="offline", task_name="run")
    task.connect({"lr": 0.5, "optimizer": {"name": "sgd"}})
    model = OutputModel(task=task, name="net")
    for step in (1, 2, 3):
        model.update_weights(weights_filename=str(weights(content=bytes([step]) * 100)),
                             iteration=step, metadata={"loss": 1 / step})  # fmt: skip
    model.set_metadata("dataset", "synthetic", "str")
    model.publish()  # published once its weights are in
    task.close()
    return task, model


def test_offline_run_is_kept_local_then_synced_once(offline: Path, weights, capsys) -> None:
    task, model = train_offline(weights)
    assert is_local(task.id) and is_local(model.id)
    assert task.get_parameters()["General/optimizer/name"] == "sgd"  # it shows what it was told
    assert model.get_metadata("dataset") == "synthetic" and model.published
    with pytest.raises(NotRegisteredError, match="modelbook sync"):
        _ = Model(model.id).name
    with pytest.raises(NotRegisteredError):
        Task.get_task(task_id=task.id)
    assert config.get_backend().list_projects() == []  # nothing reached the store

    assert main(["uploads"]) == 0
    listed = capsys.readouterr().out
    assert "create task 'offline' / 'run'" in listed and "offline mode is on" in listed

    assert main(["sync"]) == 0
    said = capsys.readouterr()
    assert f"{task._local} -> " in said.out and "1 task(s) and 1 model(s) registered" in said.out
    assert "job(s)" in said.err  # the progress bar

    stored = Model(model.id)  # the local id names the registered model from now on
    assert not is_local(stored.task) and stored.published
    assert stored.iteration == 3 and stored.get_metadata_casted("loss") == pytest.approx(1 / 3)
    assert stored.get_metadata("dataset") == "synthetic"
    assert [v.iteration for v in stored.versions] == [3]  # the newest weights win in the spool
    run = Task.get_task(task_id=task.id)
    assert run.status == "completed" and run.get_parameters()["General/lr"] == "0.5"
    assert [m.id for m in run.models["output"]] == [stored.id]

    again = sync()  # nothing twice
    assert again.sent == [] and len(Model.query_models(project_name="offline")) == 1


def test_uploads_and_sync_print_json(offline: Path, weights, capsys) -> None:
    train_offline(weights)
    assert main(["uploads", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["offline"] is True and listed["failed"] == []
    assert [v["what"].split(" (")[0] for v in listed["waiting"]][:2] == [
        "create task 'offline' / 'run'", "set status of task",
    ]  # fmt: skip
    assert main(["sync", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["left"] == [] and len(report["ids"]) == 2
    assert main(["uploads", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["waiting"] == []


def test_creations_replayed_after_a_lost_answer_find_what_they_made(registry) -> None:
    """A creation whose answer was lost runs again: it finds its record by the local id's
    tag instead of making a second one (the upload worker relies on it)."""
    from modelbook import deferred

    backend = config.get_backend()
    queue = uploads.queue_for(backend, config.home())
    task_key, model_key = deferred.new_local_id(), deferred.new_local_id()
    create_task = {"key": task_key, "project_name": "replay", "name": "run", "tags": ["a"]}
    first = deferred.run(backend, queue.resolve, "create_task", create_task)
    again = deferred.run(backend, queue.resolve, "create_task", create_task)
    assert again.id == first.id and deferred.key_tag(task_key) in first.system_tags
    queue.remember(task_key, first.id)
    fields = {"name": "net", "comment": f"Created by task id: {task_key}"}
    create_model = {"key": model_key, "task": task_key, "entry": "best", "fields": fields}
    model = deferred.run(backend, queue.resolve, "create_model", create_model)
    assert deferred.run(backend, queue.resolve, "create_model", create_model).id == model.id
    assert model.task == first.id and model.comment == f"Created by task id: {first.id}"
    assert [m.id for m in Model.query_models(project_name="replay")] == [model.id]
    assert [e.model for e in backend.get_task(first.id).output_models] == [model.id]


def test_an_import_killed_mid_copy_is_redone_once(offline: Path, weights, tmp_path: Path) -> None:
    """A session imported into another home, after an import that died while copying a job."""
    from modelbook.sync import import_session

    train_offline(weights)
    modelbook.configure(home=tmp_path / "desk")  # still offline: the sync sends regardless
    first = sorted((offline / "spool" / "jobs").iterdir())[0].name
    stale = tmp_path / "desk" / "spool" / f".{first}.partial"
    stale.mkdir(parents=True)
    (stale / "job.json").write_text("half")
    task_id = import_session(offline)
    assert task_id and not is_local(task_id) and not stale.exists()
    assert import_session(offline) == task_id  # again: nothing twice
    assert len(Model.query_models(project_name="offline")) == 1
