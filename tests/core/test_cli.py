"""The command line: models ls / show, as a user runs them (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelbook import InputModel, OutputModel, Task


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modelbook.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def test_models_ls_and_show(registry: str, weights, tmp_path: Path) -> None:
    if registry != "embedded":
        return  # the CLI over HTTP is covered by the server tests
    task = Task.init(project_name="vision", task_name="train")
    model = OutputModel(task=task, name="resnet", tags=["cnn"])
    model.update_weights(str(weights()), iteration=5)
    model.publish()
    other = InputModel.import_model(weights_url="https://x/w.pt", name="other", tags=["tf"])
    other.archive()

    listed = json.loads(_cli("models", "ls", "--json").stdout)
    assert [m["name"] for m in listed] == ["resnet"]
    assert listed[0]["project"] == "vision" and listed[0]["published"] is True
    names = [m["name"] for m in json.loads(_cli("models", "ls", "--archived", "--json").stdout)]
    assert names == ["other", "resnet"]
    assert json.loads(_cli("models", "ls", "--tag=-cnn", "--json").stdout) == []
    assert len(json.loads(_cli("models", "ls", "--published", "-n", "5", "--json").stdout)) == 1
    table = _cli("models", "ls", "--project", "vision").stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "NAME", "PROJECT"] and "resnet" in table

    shown = json.loads(_cli("models", "show", model.id, "--json").stdout)
    assert shown["iteration"] == 5 and shown["versions"][0]["iteration"] == 5
    assert "resnet" in _cli("models", "show", model.id).stdout


def test_cli_errors_are_one_clear_line(registry: str) -> None:
    if registry != "embedded":
        return
    result = _cli("models", "show", "nope")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "modelbook: error: no model with id 'nope'; list existing models with "
        "`modelbook models ls` or Model.query_models()"
    )
    result = _cli("models", "ls", "--project", "missing")
    assert result.returncode == 2 and "No projects found" in result.stderr


# not on PostgreSQL again: the command line; the store's SQL is tested elsewhere
pytestmark = pytest.mark.sql_agnostic
