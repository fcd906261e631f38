"""Code written for ClearML runs with only the import changed (issue 12): the task calls
model code makes, ClearML's casts and parsers, and ClearML's exception classes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelbook import InputModel, Model, OutputModel, Task
from modelbook.errors import InvalidArgumentError, ModelbookError, ModelInUseError


def _weights(folder: Path, name: str, data: bytes | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data or os.urandom(256))
    return str(path)


def test_task_calls_of_model_code(registry: str, tmp_path: Path) -> None:
    task = Task.init(project_name="fidelity", task_name="calls",
                     task_type=Task.TaskTypes.testing)  # fmt: skip
    assert task.task_type == "testing" == Task.TaskTypes.testing
    task.set_comment("trained on the synthetic set")
    assert task.connect_label_enumeration({"cat": 1, "dog": 2}) == {"cat": 1, "dog": 2}
    task.set_model_config(config_text="net { depth = 50 }\na.b = 1")
    assert task.get_model_config_dict() == {"net": {"depth": 50}, "a": {"b": 1}}

    # a name and metadata before the first weights: the entry is still the file's stem
    model = OutputModel(task=task)
    model.name = "named-first"
    model.set_metadata("stage", "warmup")
    model.update_weights(_weights(tmp_path / "w", "best_ckpt.pt"), async_enable=False)
    assert model.labels == {"cat": 1, "dog": 2}  # the task's, as connected
    assert model.config_dict == {"net": {"depth": 50}, "a": {"b": 1}}

    model.publish()
    task.set_input_model(model_name="named-first", name="warm-start")
    reloaded = Task.get_task(task_id=task.id)
    assert reloaded.comment == "trained on the synthetic set"
    assert reloaded.models["output"]["best_ckpt"].id == model.id
    assert reloaded.output_models_id == {"best_ckpt": model.id}
    assert reloaded.input_models_id == {"warm-start": model.id}
    assert reloaded.get_model_config_text() == "net { depth = 50 }\na.b = 1"
    task.close()


def test_task_types_are_checked() -> None:
    with pytest.raises(ValueError, match="not supported, options are: training, testing"):
        Task.init(project_name="fidelity", task_name="typed", task_type="trainng")
    assert str(Task.TaskTypes.data_processing) == "data_processing"


def test_get_task_by_tags_archive_and_filter() -> None:
    first = Task.init(project_name="fidelity", task_name="same", tags=["best"])
    first.close()
    second = Task.init(project_name="fidelity", task_name="same", tags=["debug"],
                       reuse_last_task_id=False)  # fmt: skip
    second.close()
    pick = Task.get_task
    assert pick(project_name="fidelity", task_name="same").id == second.id  # the newest
    assert pick(project_name="fidelity", task_name="same", tags=["best"]).id == first.id
    assert pick(project_name="fidelity", task_name="same", tags=["-debug"]).id == first.id
    ordered = pick(project_name="fidelity", task_name="same",
                   task_filter={"order_by": ["created"], "status": ["completed"]})  # fmt: skip
    assert ordered.id == first.id
    second.set_archived(True)
    assert second.get_archived()
    assert pick(project_name="fidelity", task_name="same", allow_archived=False).id == first.id
    with pytest.raises(ValueError, match="unknown task_filter keys \\['parent'\\]; accepted: st"):
        pick(project_name="fidelity", task_name="same", task_filter={"parent": "x"})
    with pytest.raises(ValueError, match="with tags \\['nope'\\]"):
        pick(project_name="fidelity", task_name="same", tags=["nope"])


@pytest.mark.parametrize(
    ("value", "v_type", "expected"),
    [([1, 2], "list", [1, 2]), ((1, "a"), "tuple", (1, "a")), (["a", "b"], "list", ["a", "b"]),
     ({"k": 1}, "dict", {"k": 1}), ("[a, b]", "list", ["a", "b"]), (3, "int", 3),
     ("no [list", "list", "no [list")],
)  # fmt: skip
def test_metadata_casts_as_clearml(value: object, v_type: str, expected: object) -> None:
    task = Task.init(project_name="fidelity", task_name="casts")
    model = OutputModel(task=task, name="casts")
    model.set_metadata("key", value, v_type)
    assert model.get_metadata_casted("key") == expected
    assert type(model.get_metadata_casted("key")) is type(expected)


def test_hocon_design_as_clearml_reads_it() -> None:
    task = Task.init(project_name="fidelity", task_name="hocon")
    model = OutputModel(task=task, config_text='opt { lr = 0.1, betas = [0.9, 0.99] }\n'
                                               'x = ${opt.lr}\n"a.b" = 1')  # fmt: skip
    assert model.config_dict == {"opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "x": 0.1, "a.b": 1}
    model.update_design(config_dict={"a.b": {"c": 1}})  # written as JSON: dotted keys kept
    assert model.config_dict == {"a.b": {"c": 1}}
    model.update_design(config_text="net {")
    with pytest.raises(ValueError, match=r"HOCON .*line 1"):
        _ = model.config_dict


def test_clearml_value_errors(tmp_path: Path) -> None:
    task = Task.init(project_name="fidelity", task_name="errors")
    model = OutputModel(task=task, name="empty")
    model.set_metadata("k", "v")  # registered, without weights
    with pytest.raises(ValueError, match="has no weights yet"):
        Model(model.id).get_local_copy(raise_on_error=True)
    with pytest.raises(ValueError, match="has no weights yet"):
        Model(model.id).get_weights(raise_on_error=True)
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a folder")
    with pytest.raises(ValueError, match="Could not set destination uri"):
        model.set_upload_destination(str(blocked / "sub"))
    with pytest.raises(ValueError, match="no model"):
        Model.remove("0" * 32, raise_on_errors=True)
    assert Model.remove("0" * 32) is False


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda m: m.update_weights(weights_filename=123), "weights_filename must be a path"),
     (lambda m: m.update_weights(register_uri=123), "register_uri must be a URI or a path"),
     (lambda m: Model.remove(None, raise_on_errors=True), "a model id or a Model, got None"),
     (lambda m: OutputModel(task=5), "task must be a Task \\(or a task id\\), got int")],
)  # fmt: skip
def test_misuse_is_a_typed_error(call, message: str) -> None:
    model = OutputModel(task=Task.init(project_name="fidelity", task_name="misuse"))
    with pytest.raises(InvalidArgumentError, match=message) as raised:
        call(model)
    assert isinstance(raised.value, (ValueError, ModelbookError))
    assert Model.remove(None) is False


def test_output_model_of_a_task_id_and_input_model_task(tmp_path: Path) -> None:
    task = Task.init(project_name="fidelity", task_name="by-id")
    model = OutputModel(task=task.id, name="by-id")
    model.update_weights(_weights(tmp_path, "m.pt"), async_enable=False)
    assert Model(model.id).task == task.id
    task.close()
    user = Task.init(project_name="fidelity", task_name="user")
    loaded = InputModel(model.id)
    assert loaded.task == task.id  # the creator, until connected
    loaded.connect(user)
    assert loaded.task == user.id and loaded.original_task == task.id


def test_model_remove_needs_force_for_published_and_used_models(
    registry: str, tmp_path: Path
) -> None:
    task = Task.init(project_name="fidelity", task_name="remove")
    published = OutputModel(task=task, name="released")
    published.update_weights(_weights(tmp_path / "a", "a.pt"), async_enable=False)
    published.publish()
    used = OutputModel(task=task, name="used")
    used.update_weights(_weights(tmp_path / "b", "b.pt"), async_enable=False)
    task.close()
    reader = Task.init(project_name="fidelity", task_name="reader")
    InputModel(used.id).connect(reader)
    for model, reason in ((published, "published"), (used, "in_use")):
        name = model.name
        assert Model.remove(model.id) is False
        with pytest.raises(ModelInUseError, match="pass force") as refused:
            Model.remove(model.id, raise_on_errors=True)
        assert isinstance(refused.value, ValueError) and refused.value.reason == reason
        assert Model(model.id).name  # still there
        assert Model.remove(model.id, force=True)
        assert not Model.query_models(project_name="fidelity", model_name=name)


def test_labels_follow_update_labels_and_bad_destinations_are_value_errors(
    tmp_path: Path,
) -> None:
    task = Task.init(project_name="fidelity", task_name="labels")
    first = OutputModel(task=task, label_enumeration={"a": 1})
    first.update_labels({"a": 1, "b": 2})
    assert task.get_labels_enumeration() == {"a": 1, "b": 2}
    assert OutputModel(task=task).labels == {"a": 1, "b": 2}  # the next model: the new ones
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    task.close()
    with pytest.raises(ValueError, match="Could not set destination uri"):
        Task.init(project_name="fidelity", task_name="dest", output_uri=str(blocked / "x"))
    package = OutputModel(task=Task.init(project_name="fidelity", task_name="pkg"), name="pkg")
    package.set_metadata("k", "v")
    with pytest.raises(ValueError, match="Model is not packaged"):
        Model(package.id).get_weights_package(raise_on_error=True)
