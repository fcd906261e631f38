"""A callback given nothing to name a task creates one after the script, and says so."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

import modelbook
from modelbook import Task
from modelbook.integrations._registry import Registrar
from modelbook.integrations.monitor import Monitor


@pytest.mark.parametrize("project", [None, "team-runs"])
def test_no_task_and_no_names_creates_one_after_the_script(
    project: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    modelbook.configure(home=tmp_path / "home")
    monkeypatch.setattr(Task, "_current", None)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "train_resnet.py")])
    if project:
        monkeypatch.setenv("MODELBOOK_PROJECT", project)
    else:
        monkeypatch.delenv("MODELBOOK_PROJECT", raising=False)
    registrar = Registrar(owner="modelbook.integrations.test", framework="PyTorch")
    with caplog.at_level(logging.WARNING, logger="modelbook"):
        registrar.start(Monitor("val_loss", None, 0.0))
    assert not registrar.failures
    task = Task.get_task(task_id=registrar.task_id)
    assert (task.name, task.get_project_name()) == ("train_resnet", project or "Untitled")
    said = [r.getMessage() for r in caplog.records if "no task given" in r.getMessage()]
    assert len(said) == 1 and "'train_resnet'" in said[0] and repr(project or "Untitled") in said[0]
    task.close()
