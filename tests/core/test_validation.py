"""Bad input gets a clear error naming what was wrong and what is accepted (issue 13): names,
tags, configuration, counts, and the store's and the environment's own problems."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import modelbook
from modelbook import InputModel, Model, OutputModel, Task
from modelbook.errors import ConfigurationError, InvalidArgumentError, ModelPublishedError

# argument checks made before any registry call, and the embedded store's own problems
pytestmark = pytest.mark.embedded_only


@pytest.mark.parametrize(
    ("name", "message"),
    [("a" * 1025, "1025 characters; at most 1024"), ("bad\x00name", "control character '\\\\x00'"),
     ("two\nlines", "control character '\\\\n'"), ("", "non-empty string")],
)  # fmt: skip
def test_names_a_registry_cannot_keep_are_refused(name: str, message: str) -> None:
    task = Task.init(project_name="checks", task_name="names")
    with pytest.raises(InvalidArgumentError, match=message):
        OutputModel(task=task, name=name)


@pytest.mark.parametrize(
    ("tags", "message"),
    [(5, "must be a list of strings, got int 5"), ([""], "non-empty strings"),
     (["ok", 3], "non-empty strings, but \\[3\\]"), (["a\tb"], "control character")],
)  # fmt: skip
def test_bad_tags_are_refused(tags: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        Task.init(project_name="checks", task_name="tags", tags=tags)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "message"),
    [({"fn": print}, r"config_dict\['fn'\] is a builtin_function_or_method .*; accepted: strings"),
     ({"s": {1, 2}}, r"config_dict\['s'\] is a set"),
     ({"lr": [0.1, math.nan]}, r"config_dict\['lr'\]\[1\] is nan: numbers must be finite"),
     ({1: "x"}, "has the key 1: keys must be strings")],
)  # fmt: skip
def test_configuration_must_round_trip(config: dict, message: str) -> None:
    task = Task.init(project_name="checks", task_name="config")
    with pytest.raises(InvalidArgumentError, match=message):
        OutputModel(task=task, config_dict=config)


def test_counts_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="max_results must be a non-negative int"):
        Model.query_models(max_results=True)  # type: ignore[arg-type]
    # each key is a sub-query; SQLite nests 1 000 at most: refused here, not deep in SQLite
    with pytest.raises(InvalidArgumentError, match="holds 1000 keys; at most 100"):
        Model.query_models(metadata={f"k{n}": n for n in range(1000)})
    done = subprocess.run([sys.executable, "-m", "modelbook.cli", "models", "ls", "-n", "-1"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "argument -n: must be >= 0, got -1" in done.stderr


def test_store_and_environment_problems_name_the_path_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    modelbook.configure(home=a_file)
    with pytest.raises(ConfigurationError, match="is a file, not a folder; point MODELBOOK_HOME"):
        Task.init(project_name="checks", task_name="home")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "store.db").write_bytes(b"not sqlite" * 100)
    modelbook.configure(home=garbage)
    with pytest.raises(ConfigurationError, match=r"store.db is damaged or not a SQLite database"):
        Task.init(project_name="checks", task_name="store")
    done = subprocess.run([sys.executable, "-m", "modelbook.cli", "models", "ls"],
                          env={"MODELBOOK_HOME": str(garbage), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"mv {garbage / 'store.db'}" in done.stderr
    modelbook.configure(home=tmp_path / "home")
    monkeypatch.setenv("MODELBOOK_UPLOAD_TIMEOUT", "abc")
    with pytest.raises(ConfigurationError, match="MODELBOOK_UPLOAD_TIMEOUT must be a number"):
        Task.init(project_name="checks", task_name="timeout")  # said before training starts


def test_a_read_only_home_names_the_fix(tmp_path: Path) -> None:
    home = tmp_path / "read-only"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(home)],
                             capture_output=True, timeout=30)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("needs mount (root) for a read-only file system")
    try:
        modelbook.configure(home=home)
        with pytest.raises(ConfigurationError, match=r"cannot write the modelbook store .*chmod"):
            Task.init(project_name="checks", task_name="read-only")
    finally:
        modelbook.configure(home=tmp_path / "home")
        subprocess.run(["umount", str(home)], capture_output=True, timeout=30)


# -- metadata: keys, values, and NaN never stored as non-standard JSON ----------------------
@pytest.mark.parametrize(
    ("key", "message"),
    [("", "metadata keys must be non-empty strings"), (5, "non-empty strings, got int 5"),
     ("a\x00b", "metadata key 'a\\\\x00b': it holds the control character"),
     ("k" * 1025, "1025 characters; at most 1024"), (("a",), "got tuple")],
)  # fmt: skip
def test_metadata_keys_are_non_empty_strings_without_control_characters(
    key: object, message: str
) -> None:
    model = OutputModel(task=Task.init(project_name="checks", task_name="keys"))
    with pytest.raises(InvalidArgumentError, match=message):
        model.set_metadata(key, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=message):
        model.get_metadata(key)  # type: ignore[arg-type]
    assert model.id is None  # refused before anything was written


@pytest.mark.parametrize(
    ("value", "message"),
    [(math.nan, r"metadata\['acc'\] is nan: numbers must be finite"),
     (-math.inf, r"metadata\['acc'\] is -inf: numbers must be finite"),
     ([0.5, math.inf], r"metadata\['acc'\]\[1\] is inf"),
     (print, r"metadata\['acc'\] is a builtin_function_or_method .*; accepted: strings, finite"),
     ({1, 2}, r"metadata\['acc'\] is a set"), (b"x", "is a bytes"), (1j, "is a complex"),
     ([{1}], r"metadata\['acc'\]\[0\] is a set"),
     pytest.param(10**5000, "an int too large", id="huge int"),
     ("a\x00", "holds the NUL character"),
     ("x" * 2600, "take 2603 bytes in UTF-8; at most 2600 are kept together")],
)  # fmt: skip
def test_metadata_values_must_be_finite_and_serialisable(value: object, message: str) -> None:
    task = Task.init(project_name="checks", task_name="values")
    model = OutputModel(task=task, name="values")
    for call in (lambda: model.set_metadata("acc", value, "float"),
                 lambda: model.set_all_metadata({"acc": {"value": value, "type": "float"}}),
                 lambda: model.update_weights(register_uri="s3://b/w.pt",
                                              metadata={"acc": value})):  # fmt: skip
        with pytest.raises(InvalidArgumentError, match=message):
            call()
    assert model.id is None


def test_accepted_metadata_values_round_trip() -> None:
    import numpy as np

    model = OutputModel(task=Task.init(project_name="checks", task_name="round trip"))
    values = {"f": (0.25, "float"), "np": (np.float32(0.5), "float"), "i": (np.int64(3), "int"),
              "b": (True, "bool"), "n": (None, "str"), "t": ((1, "a"), "tuple"),
              "d": ({"k": [1, None]}, "dict"), "s": ("名前", "str")}  # fmt: skip
    for key, (value, kind) in values.items():
        assert model.set_metadata(key, value, kind)
    model.reload()
    casted = model.get_all_metadata_casted()
    assert casted["f"] == 0.25 and casted["np"] == 0.5 and casted["i"] == 3
    assert casted["t"] == (1, "a") and casted["d"] == {"k": [1, None]} and casted["s"] == "名前"


def test_nan_never_reaches_the_store_as_non_standard_json() -> None:
    """Config, metadata, version metadata (the integrations' metrics travel as strings) and
    reported values: every JSON text the store holds parses without NaN or Infinity."""
    from modelbook import config
    from modelbook.records import to_metadata
    from modelbook.store import schema

    task = Task.init(project_name="checks", task_name="nan")
    model = OutputModel(task=task, name="nan", config_dict={"lr": 0.1})
    with pytest.raises(InvalidArgumentError):
        model.update_design(config_dict={"lr": math.nan})
    with pytest.raises(InvalidArgumentError):
        model.set_metadata("loss", math.inf)
    task.get_logger().report_scalar("loss", "train", math.nan, iteration=1)  # dropped, said
    task.get_logger().report_scalar("loss", "train", 0.5, iteration=2)
    # what a callback hands over for a diverged metric: its text, never a float NaN
    metrics = to_metadata({"metrics/val_loss": math.nan, "epoch": 1})
    model.update_weights(register_uri="s3://b/w.pt", metadata=metrics, async_enable=False)
    task.connect({"lr": math.nan})  # hyper-parameters are strings, as in ClearML
    task.close()

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant} stored")

    with config.get_backend().engine.connect() as conn:  # the raw text SQLite holds
        rows = [row for table in schema.metadata.sorted_tables
                for row in conn.exec_driver_sql(f'SELECT * FROM "{table.name}"')]  # fmt: skip
    texts = [v for row in rows for v in row if isinstance(v, str) and v[:1] in ("[", "{")]
    assert texts, "nothing was stored as JSON"
    for text in texts:
        json.loads(text, parse_constant=refuse)
    assert math.isnan(Model(model.id).get_metadata_casted("metrics/val_loss"))  # kept, as text


# -- findings of the API state machine (tests/core/test_api_state_machine.py), pinned -------
@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda m: m.set_all_metadata(5), "metadata must be a dict of key to value"),
     (lambda m: m.get_metadata([1]), "metadata keys must be non-empty strings"),
     (lambda m: setattr(m, "comment", [1]), "comment must be a string"),
     (lambda m: m.update_weights(register_uri="s3://b/w.pt", iteration=2**40),
      r"iteration must be an int \(at most 2147483647"),
     (lambda m: m.update_weights(register_uri="s3://b/w.pt", metadata=5),
      "metadata must be a dict"),
     (lambda m: m.update_weights("a" * 5000), "cannot be a file on this machine"),
     (lambda m: m.update_weights_package(weights_path=str(Path(__file__).parent),
                                         target_filename=5),
      "target_filename must be a non-empty string"),
     (lambda m: m.update_weights(register_uri="s3://b/a\x00.pt"), "control character"),
     (lambda m: m.update_labels({"cat": 2**70}), r"labels\['cat'\] must be an int"),
     (lambda m: m.prune_versions(keep_last=True), "keep_last must be a non-negative int"),
     (lambda m: Model.query_models(metadata=5), "metadata filter must be a dict"),
     (lambda m: Model.query_models(project_name=[]), "project_name must be a non-empty string"),
     (lambda m: Model.query_models(model_name=5), "model_name must be a string"),
     (lambda m: Model.query_models(max_results=2**70), "max_results must be a non-negative"),
     (lambda m: InputModel.import_model("https://e.com/w.pt", name="\ud800"), "lone surrogate"),
     (lambda m: InputModel.import_model("https://e.com/w.pt", framework=5), "framework must"),
     (lambda m: OutputModel(name="字" * 900), "takes 2700 bytes in UTF-8; at most 2600"),
     (lambda m: Task.current_task().set_parameters(5), "params must be a dict"),
     (lambda m: Task.current_task().set_parameters({1: 2}), "parameter names must be"),
     (lambda m: Task.get_task(task_name="t", tags=5), "tags must be a list of strings"),
     (lambda m: Task.get_task(task_name="t", task_filter=5), "task_filter must be a dict")],
)  # fmt: skip
def test_bad_arguments_once_escaped_untyped(call: Any, message: str, weights: Any) -> None:
    """Each was a TypeError, AttributeError, OverflowError, OSError or sqlite3 error."""
    task = Task.init(project_name="checks", task_name="t")
    model = OutputModel(task=task, name="untyped")
    with pytest.raises(InvalidArgumentError, match=message):
        call(model)
    for target, text in [(5, "must be a non-empty string"), ("x" * 300, "takes 300 bytes"),
                         ("a\x00.pt", "control character")]:  # fmt: skip
        with pytest.raises(InvalidArgumentError, match=text):
            model.update_weights(str(weights()), target_filename=target)
    assert model.id is None  # none of them wrote anything


def test_a_model_published_elsewhere_refuses_without_touching_its_task(weights: Any) -> None:
    task = Task.init(project_name="checks", task_name="published elsewhere")
    model = OutputModel(task=task, name="m")
    model.set_metadata("k", 1)  # created, without weights (so no task entry yet)
    Model(model.id).publish()  # through another handle: this one's snapshot is stale
    with pytest.raises(ModelPublishedError):
        model.update_labels({"cat": 1})
    with pytest.raises(ModelPublishedError):
        model.update_design(config_dict={"lr": 0.1})
    with pytest.raises(ModelPublishedError):
        model.update_weights(str(weights()), async_enable=False)
    task.reload()
    record = task._data()
    assert (record.labels, record.model_config, record.output_models) == ({}, "", [])


def test_a_closed_task_still_takes_output_weights_but_no_inputs_or_parameters(
    weights: Any,
) -> None:
    task = Task.init(project_name="checks", task_name="closed")
    early = OutputModel(task=task, name="early")
    early.set_metadata("k", 1)  # created before its first weights
    source = InputModel.import_model("https://e.com/w.pt", name="source")
    task.close()
    late = OutputModel(task=task, name="late")
    for model in (early, late, early):  # the same, whether created before or after close()
        model.update_weights(str(weights()), async_enable=False)
    assert [len(Model(m.id).versions) for m in (early, late)] == [2, 1]
    assert [Model(m.id).task for m in (early, late)] == [task.id, task.id]
    for refused in (lambda: task.connect({"lr": 0.1}), lambda: task.connect(source)):
        with pytest.raises(InvalidArgumentError, match="is closed"):
            refused()
    assert Task.get_task(task_id=task.id)._data().input_models == []


def test_import_model_checks_every_argument_even_when_the_url_exists() -> None:
    InputModel.import_model("https://e.com/w.pt", name="first")
    with pytest.raises(InvalidArgumentError, match="project must be a non-empty string"):
        InputModel.import_model("https://e.com/w.pt", project=5)  # type: ignore[arg-type]
