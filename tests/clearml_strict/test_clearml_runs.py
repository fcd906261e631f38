"""Whole runs in ClearML mode through the strict harness: a Lightning fit registers its best
model, and an offline fit is sent by ``modelbook sync``, once (issue 10 on a ClearML server).
Each run is its own process; what the server holds is read through the harness too."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import modelbook
from modelbook import Model, Task
from modelbook.deferred import is_local

from .conftest import StrictSite

pytest.importorskip("lightning")
FIT = Path(__file__).parents[1] / "uploads" / "lightning_run.py"  # scripted val_loss
TIMEOUT = 240


def _env(site: StrictSite, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELBOOK_", "CLEARML_"))}
    s = site.server
    env.update(MODELBOOK_HOME=str(home), MODELBOOK_API_HOST=site.api_host,
               MODELBOOK_FILES_HOST=s.files_host, MODELBOOK_API_ACCESS_KEY=s.access_key,
               MODELBOOK_API_SECRET_KEY=s.secret_key, **extra)  # fmt: skip
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _read_back(site: StrictSite, home: Path, project: str) -> Model:
    s = site.server
    modelbook.configure(home=home, api_host=site.api_host, files_host=s.files_host,
                        access_key=s.access_key, secret_key=s.secret_key)  # fmt: skip
    (model,) = Model.query_models(project_name=project)
    versions = model.versions
    assert [v.iteration for v in versions] == sorted({v.iteration for v in versions})
    assert model.iteration == versions[-1].iteration == 24  # the last improvement: epoch 5
    local = Path(model.get_local_copy(raise_on_error=True))  # verified against its hash
    assert hashlib.sha256(local.read_bytes()).hexdigest() == versions[-1].sha256
    assert model.get_metadata("monitor_value") == "0.5"
    (task,) = [Task.get_task(task_id=model.task)]
    assert task.get_parameters()["hparams/width"] == "8"
    return model


def test_lightning_registers_its_best_model_on_a_clearml_server(
    strict: StrictSite, tmp_path: Path
) -> None:
    env = _env(strict, tmp_path / "home", MODELBOOK_TEST_PROJECT="strict-fit")
    report = json.loads(_run(env, str(FIT), str(tmp_path)).stdout.strip().splitlines()[-1])
    assert report["failures"] == []
    model = _read_back(strict, tmp_path / "home", "strict-fit")
    assert model.id == report["model_id"]


def test_an_offline_fit_is_sent_once_to_a_clearml_server(
    strict: StrictSite, tmp_path: Path
) -> None:
    env = _env(strict, tmp_path / "home", MODELBOOK_TEST_PROJECT="strict-offline")
    report = json.loads(_run({**env, "MODELBOOK_OFFLINE": "1"}, str(FIT), str(tmp_path))
                        .stdout.strip().splitlines()[-1])  # fmt: skip
    assert is_local(report["task_id"]) and report["failures"] == []
    assert "models.create" not in strict.gate.calls  # offline: nothing was sent
    _run(env, "-m", "modelbook.cli", "sync")
    _run(env, "-m", "modelbook.cli", "sync")  # nothing twice
    model = _read_back(strict, tmp_path / "home", "strict-offline")
    assert Model(report["model_id"]).iteration == model.iteration  # the local id resolves
    assert Task.get_task(task_id=report["task_id"]).id == model.task
