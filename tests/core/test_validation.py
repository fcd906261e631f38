"""Bad input gets a clear error naming what was wrong and what is accepted (issue 13): names,
tags, configuration, counts, and the store's and the environment's own problems."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

import modelbook
from modelbook import Model, OutputModel, Task
from modelbook.errors import ConfigurationError, InvalidArgumentError

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
