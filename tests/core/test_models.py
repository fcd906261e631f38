"""The Model API's behaviour: versions, packages, metadata, publish, archive, remove, tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelbook
from modelbook import InputModel, Model, OutputModel, Task
from modelbook.errors import ModelPublishedError


@pytest.fixture
def task(registry: str) -> Task:
    return Task.init(project_name="proj", task_name="train")


def settle() -> None:
    """Wait for the background uploads; none may be left."""
    assert OutputModel.wait_for_uploads(timeout=60) == []


def test_each_update_is_a_version_and_the_url_moves(task: Task, weights) -> None:
    model = OutputModel(task=task, name="net", tags=["cnn"], framework="PyTorch")
    assert model.id is None  # nothing is written before the first weights
    first, second = weights(), weights()
    model.update_weights(weights_filename=str(first), iteration=10, async_enable=False)
    model_id = model.id
    url = model.update_weights(weights_filename=str(second), iteration=20)
    settle()
    assert model.id == model_id and model.url == url and model.iteration == 20
    versions = Model(model_id).versions
    assert [(v.version, v.iteration) for v in versions] == [(1, 10), (2, 20)]
    assert Path(Model(model_id).get_local_copy()).read_bytes() == second.read_bytes()
    assert Task.get_task(task_id=task.id).get_last_iteration() == 20
    assert first.exists() and second.exists()  # the embedded store copies, never deletes


def test_identical_weights_are_stored_once_in_the_blob_store(task: Task, weights) -> None:
    data = b"same bytes" * 100
    one, two = OutputModel(task=task, name="one"), OutputModel(task=task, name="two")
    a = one.update_weights(str(weights("w.pt", content=data)))
    b = two.update_weights(str(weights("w.pt", content=data)))
    settle()
    if modelbook.config.get_backend().default_layout == "content":
        assert a == b  # content-addressed: one object, referenced twice
    else:  # the ClearML layout names each upload apart: same file name, two objects
        assert a != b and a.endswith("/w.pt") and b.endswith("/w.pt")
    for model in (one, two):
        assert Path(Model(model.id).get_local_copy(raise_on_error=True)).read_bytes() == data


def test_explicit_destination_uses_clearml_layout(task: Task, weights, tmp_path: Path) -> None:
    model = OutputModel(task=task)
    model.set_upload_destination(str(tmp_path / "dest"))
    source = weights("best.pt")
    url = model.update_weights(weights_filename=str(source), auto_delete_file=False)
    assert url.startswith(f"file://{tmp_path}/dest/proj/train.{task.id}/models/")
    assert url.endswith("/best.pt")  # the ClearML prefix, a folder of its own, the file name
    assert source.exists()
    second = model.update_weights(weights_filename=str(source))  # auto_delete_file: True
    assert not source.exists()  # handed over to the spool at once
    settle()
    assert second != url  # each version its own object, though the file name repeats
    assert Model(model.id).url == second and Path(Model(model.id).get_local_copy()).is_file()
    assert Path(Model(model.id).get_local_copy(version=1)).is_file()


def test_metadata_round_trip_and_snapshot_per_version(task: Task, weights) -> None:
    model = OutputModel(task=task)
    model.set_metadata("val_loss", 0.5, "float")
    model.update_weights(str(weights()), async_enable=False)
    model.update_weights(str(weights()), metadata={"val_loss": 0.25, "epoch": 3})
    settle()
    again = Model(model.id)
    assert again.get_all_metadata()["epoch"] == {"key": "epoch", "value": "3", "type": "int"}
    assert again.get_metadata_casted("val_loss") == 0.25
    assert [v.metadata["val_loss"]["value"] for v in again.versions] == ["0.5", "0.25"]
    model.set_all_metadata({"note": {"value": "hi", "type": "str"}}, replace=True)
    assert Model(model.id).get_all_metadata() == {
        "note": {"key": "note", "value": "hi", "type": "str"}
    }


def test_published_model_refuses_changes(task: Task, weights) -> None:
    model = OutputModel(task=task)
    model.update_weights(str(weights()), async_enable=False)
    model.publish()
    model.publish()  # idempotent
    for change in (
        lambda: model.update_weights(str(weights())),
        lambda: model.update_labels({"a": 1}),
        lambda: model.update_design(config_text="x"),
    ):
        with pytest.raises(ModelPublishedError, match="published and cannot be changed"):
            change()
    model.tags = ["release"]  # tags, name and metadata stay editable, as in ClearML
    assert Model(model.id).tags == ["release"] and Model(model.id).published


def test_package_round_trip(task: Task, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "shard.bin").write_bytes(b"\x01" * 1000)
    model = OutputModel(task=task)
    model.update_weights(weights_filename=str(folder), iteration=3)
    settle()
    assert "package" in model.system_tags
    local = Path(Model(model.id).get_local_copy())
    assert (local / "sub" / "shard.bin").read_bytes() == b"\x01" * 1000
    assert sorted(p.name for p in Model(model.id).get_weights_package()) == ["config.json", "sub"]
    assert folder.exists()


def test_archive_remove_and_task_models(task: Task, weights, registry: str) -> None:
    model = OutputModel(task=task, name="keep")
    task.connect(model, name="best")
    model.update_weights(str(weights()))
    other = task.update_output_model(str(weights("extra.pt")), name="extra")
    settle()
    models = task.models
    assert models.output["best"].id == model.id
    assert models["output"][-1].url == other
    model.archive()
    assert Model(model.id).archived and not Model.query_models(model_name="keep")
    model.unarchive()
    url = Model(model.id).url
    assert Model.remove(model.id)
    # a ClearML server keeps no record of who wrote what: the bytes stay (docs/compatibility)
    kept = registry == "clearml"
    assert modelbook.config.get_backend().driver_for(url).exists(url) == kept
    assert not Model.remove(model.id)  # already gone: False, not an exception


def test_input_model_connect_copies_design_and_labels(registry: str) -> None:
    imported = InputModel.import_model(
        weights_url="https://example.com/backbone.pt",
        config_dict={"layers": 4},
        label_enumeration={"cat": 0},
    )
    task = Task.init(project_name="proj", task_name="finetune")
    task.connect(InputModel(model_id=imported.id), name="backbone")
    assert task.models.input["backbone"].id == imported.id
    assert task.get_labels_enumeration() == {"cat": 0}
    out = OutputModel(task=task)
    task.connect(out, name="backbone")
    assert out.config_dict == {"layers": 4} and out.labels == {"cat": 0}
    assert InputModel(name=imported.name).id == imported.id


def test_hyperparameters_and_close(registry: str) -> None:
    task = Task.init(project_name="proj", task_name="hparams")
    assert Task.init(project_name="proj", task_name="hparams") is task
    task.connect({"lr": 0.1, "opt": {"name": "adam", "betas": [0.9, 0.99]}})
    task.connect({"batch": 32}, name="data")
    assert task.get_parameters() == {
        "General/lr": "0.1",
        "General/opt/name": "adam",
        "General/opt/betas": "[0.9, 0.99]",
        "data/batch": "32",
    }
    task.close()
    assert Task.current_task() is None
    assert Task.get_task(project_name="proj", task_name="hparams").status == "completed"
    assert Task.init(project_name="proj", task_name="hparams").id != task.id


def test_register_uri_keeps_iteration(task: Task) -> None:
    model = OutputModel(task=task)
    url = model.update_weights(register_uri="s3://bucket/models/w.pt", iteration=7)
    settle()
    assert url == model.url == "s3://bucket/models/w.pt" and model.iteration == 7
