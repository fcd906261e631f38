"""Every bad input gets a ModelbookError naming what was wrong and what is accepted."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from modelbook import InputModel, Model, OutputModel, Task
from modelbook.errors import (
    BlobCorruptedError,
    InvalidArgumentError,
    ModelbookError,
    ModelNotFoundError,
    ModelPublishedError,
    TagFilterError,
    TaskNotFoundError,
    WeightsArgumentError,
    WeightsFileNotFoundError,
)


@pytest.fixture
def model(registry: str) -> OutputModel:
    return OutputModel(task=Task.init(project_name="proj", task_name="train"))


@pytest.fixture
def local_model() -> OutputModel:
    """For argument checks made before any registry call: the embedded store alone."""
    return OutputModel(task=Task.init(project_name="proj", task_name="train"))


@pytest.mark.embedded_only  # checked before any registry call
@pytest.mark.parametrize(
    "labels, message",
    [
        ({"cat": "0"}, r"not str -> int: \{'cat': '0'\}"),
        ({"cat": 1.5}, "not str -> int"),
        ({"cat": True}, "not str -> int"),
        ({1: 1}, "not str -> int"),
        (["cat"], "must be a dict of label name to int id"),
    ],
)
def test_label_values_must_be_int(
    local_model: OutputModel, labels: object, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        local_model.update_labels(labels)  # type: ignore[arg-type]


@pytest.mark.embedded_only  # checked before any registry call
def test_both_or_neither_weights_source(local_model: OutputModel, weights) -> None:
    with pytest.raises(WeightsArgumentError, match=r"both weights_filename=.* and register_uri"):
        local_model.update_weights(weights_filename=str(weights()), register_uri="https://x/w.pt")
    with pytest.raises(WeightsArgumentError, match="neither"):
        local_model.update_weights()


@pytest.mark.embedded_only  # checked before any registry call
def test_missing_weights_file(local_model: OutputModel, tmp_path: Path) -> None:
    with pytest.raises(WeightsFileNotFoundError, match=r"nope\.pt' does not exist"):
        local_model.update_weights(weights_filename=str(tmp_path / "nope.pt"))
    assert local_model.id is None  # nothing was registered


def test_unknown_ids(registry: str) -> None:
    with pytest.raises(
        ModelNotFoundError, match=r"no model with id 'deadbeef'.*modelbook models ls"
    ):
        _ = Model("deadbeef").name
    with pytest.raises(TaskNotFoundError, match="no task with id 'deadbeef'"):
        Task.get_task(task_id="deadbeef")


@pytest.mark.embedded_only  # checked before any registry call
@pytest.mark.parametrize("name", ["", "   "])
def test_empty_names(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="must be a non-empty string"):
        Task.init(project_name=name, task_name="train")
    task = Task.init(project_name="proj", task_name="train")
    with pytest.raises(InvalidArgumentError, match="model name must be a non-empty string"):
        OutputModel(task=task, name=name)


@pytest.mark.embedded_only  # checked before any registry call
@pytest.mark.parametrize("tags", ["demo", ["ok", 3], [None]])
def test_tags_must_be_strings(tags: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"tags must be a list of (non-empty )?strings"):
        InputModel.import_model(weights_url="https://x/w.pt", tags=tags)  # type: ignore[arg-type]


@pytest.mark.embedded_only  # checked before any registry call
def test_string_tags_suggest_a_list() -> None:
    with pytest.raises(InvalidArgumentError, match=r"did you mean \['demo'\]"):
        Task.init(project_name="proj", task_name="train", tags="demo")  # type: ignore[arg-type]


def test_published_model(model: OutputModel, weights) -> None:
    model.update_weights(str(weights()), async_enable=False)
    model.publish()
    with pytest.raises(ModelPublishedError) as info:
        model.update_weights(str(weights()))
    assert isinstance(info.value, ValueError)  # code written for ClearML catches ValueError
    assert model.id in str(info.value) and "create a new OutputModel" in str(info.value)


def test_unknown_tag_operator(registry: str) -> None:
    with pytest.raises(TagFilterError, match="accepted operators"):
        Model.query_models(tags=["__$maybe", "x"])


def test_corrupted_blob_raises(model: OutputModel, weights, registry) -> None:
    model.update_weights(str(weights()), async_enable=False)
    if registry != "embedded":  # corrupt the server's copy; the download must refuse it
        relative = Model(model.id).url[len(registry.server.files_host) :].lstrip("/")
        stored = Path(registry.server.files_root) / unquote(relative)
    else:
        stored = Path(Model(model.id).get_local_copy())
    stored.write_bytes(b"garbage")
    with pytest.raises(BlobCorruptedError, match="is corrupted: its sha256 is"):
        Model(model.id).get_local_copy(force_download=True)


@pytest.mark.embedded_only  # checked before any registry call
def test_config_text_and_dict_are_exclusive() -> None:
    with pytest.raises(InvalidArgumentError, match="either config_text or config_dict"):
        InputModel.import_model(weights_url="https://x/w.pt", config_text="a", config_dict={})


def test_every_error_is_a_modelbook_error() -> None:
    for exc in (BlobCorruptedError, ModelNotFoundError, TagFilterError, WeightsFileNotFoundError):
        assert issubclass(exc, ModelbookError)


def test_configure_upload_timeout_is_used_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelbook
    from modelbook import config
    from modelbook.errors import ConfigurationError

    modelbook.configure(home=tmp_path, upload_timeout=0)
    assert config.upload_timeout() == 0.0  # zero means "do not wait", not the default
    modelbook.configure(home=tmp_path, upload_timeout=7.5)
    assert config.upload_timeout() == 7.5
    monkeypatch.setenv("MODELBOOK_UPLOAD_TIMEOUT", "12")
    modelbook.configure(home=tmp_path)
    assert config.upload_timeout() == 12.0
    for bad in ("abc", -1, float("nan"), True):
        with pytest.raises(ConfigurationError, match="upload_timeout"):
            modelbook.configure(home=tmp_path, upload_timeout=bad)  # type: ignore[arg-type]
    monkeypatch.setenv("MODELBOOK_UPLOAD_TIMEOUT", "abc")
    with pytest.raises(ConfigurationError, match="MODELBOOK_UPLOAD_TIMEOUT"):
        config.upload_timeout()


# not on PostgreSQL again: the messages; the store's SQL is tested elsewhere
pytestmark = pytest.mark.sql_agnostic
