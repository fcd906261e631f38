"""The registry is away when training starts, comes back mid-run, answers errors at random,
and the training is killed while offline: training never waits, nothing is lost, nothing is
registered twice, and no version lands on the wrong model.

Real parts: Lightning fits and ``modelbook sync`` in their own processes, a ``modelbook
server`` on 127.0.0.1 behind a TCP proxy that refuses connections while down, or an HTTP
proxy that answers errors at random (before the server saw the call, or after: a lost
answer). What the server holds is read directly, not through the trainings' homes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import modelbook
from modelbook import OutputModel, Task
from modelbook.deferred import is_local

from .chaos import ChaosProxy
from .conftest import HERE, RUN_TIMEOUT, Site

VAL_LOSS = [3.0, 2.0, 2.5, 1.0, 1.5, 0.5]  # as lightning_run.py logs them
STEPS_PER_EPOCH = 4


def registered_once(site: Site, project: str, status: str = "completed") -> tuple:
    """The one task and the one model of ``project``, checked whole: hyper-parameters, the
    model connected to its task, versions in order and each once, metadata of the best."""
    tasks, models = site.tasks(project), site.models(project)
    assert len(tasks) == 1, [t.id for t in tasks]
    assert len(models) == 1, [(m.id, m.name) for m in models]
    task, model = tasks[0], models[0]
    assert task.status == status
    assert task.hyperparams["hparams"]["lr"] == "0.01"
    assert task.hyperparams["hparams"]["width"] == "8"
    assert model.task == task.id and [e.model for e in task.output_models] == [model.id]
    versions = site.backend().list_model_versions(model.id)
    iterations = [v.iteration for v in versions]
    assert iterations and iterations == sorted(set(iterations)), iterations
    assert model.iteration == iterations[-1] and model.sha256 == versions[-1].sha256
    epoch = int(model.metadata["epoch"]["value"])
    assert model.iteration == (epoch + 1) * STEPS_PER_EPOCH
    assert float(model.metadata["monitor_value"]["value"]) == VAL_LOSS[epoch]
    assert f"Created by task id: {task.id}" in model.comment
    return task, model


def sync(site: Site, env: dict[str, str]) -> dict:
    done = site.cli(env, "sync", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout)


def waiting(site: Site, env: dict[str, str]) -> list[dict]:
    listed = site.cli(env, "uploads", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["waiting"]


def start_fit(env: dict[str, str], root: Path, epoch_seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "lightning_run.py"), str(root / "fit"), str(epoch_seconds)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def wait_for_weights_job(home: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the training queued weights in its spool (it is past its first improvement)."""
    deadline = time.monotonic() + timeout
    while not list((home / "spool" / "jobs").glob("*/payload")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the training queued no weights"
        time.sleep(0.05)


def test_registry_down_for_the_whole_run(site: Site) -> None:
    up = site.fit(site.env("home-up", MODELBOOK_TEST_PROJECT="up"), epoch_seconds=0.4)
    registered_once(site, "up")
    site.proxy.down()
    env = site.env("home-down", MODELBOOK_TEST_PROJECT="down")
    down = site.fit(env, epoch_seconds=0.4)

    # training did not wait for the registry, and nothing failed: it all waits in the spool
    assert down["failures"] == [] and up["failures"] == []
    assert down["fit_seconds"] <= 1.2 * up["fit_seconds"], (down, up)
    assert is_local(down["task_id"]) and is_local(down["model_id"])
    assert site.tasks("down") == []
    what = [view["what"] for view in waiting(site, env)]
    assert what[0].startswith("create task 'down' / 'fit'"), what
    assert any(w.startswith("store the weights of model") for w in what), what

    site.proxy.up()  # a later process on the same home registers it all, once
    report = sync(site, env)
    task, model = registered_once(site, "down")
    assert report["ids"][down["task_id"]] == task.id
    assert report["ids"][down["model_id"]] == model.id
    assert model.iteration == 6 * STEPS_PER_EPOCH  # the best: the last improvement
    assert waiting(site, env) == []

    # local ids keep working after the mapping, in any process on that home
    code = ("from modelbook import Model, Task; import sys; print(Model(sys.argv[1]).iteration,"
            " Task.get_task(task_id=sys.argv[2]).id)")  # fmt: skip
    command = [sys.executable, "-c", code, down["model_id"], down["task_id"]]
    shown = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert shown.stdout.split() == [str(model.iteration), task.id], shown.stderr

    assert sync(site, env)["summary"] == "nothing waits for the registry"
    registered_once(site, "down")


def test_registry_back_mid_run(site: Site) -> None:
    site.proxy.down()
    env = site.env("home", MODELBOOK_TEST_PROJECT="mid")
    proc = start_fit(env, site.root, epoch_seconds=0.5)
    try:
        wait_for_weights_job(site.root / "home", proc)
        site.proxy.up()
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["failures"] == []
    _, model = registered_once(site, "mid")  # the run's own end sent everything
    assert model.iteration == 6 * STEPS_PER_EPOCH
    assert waiting(site, env) == []


def test_killed_while_offline_then_resumed_by_later_processes(site: Site) -> None:
    env = site.env("home", MODELBOOK_TEST_PROJECT="killed")
    proc = start_fit({**env, "MODELBOOK_OFFLINE": "1"}, site.root, epoch_seconds=0.5)
    try:
        wait_for_weights_job(site.root / "home", proc)
        time.sleep(0.7)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert site.tasks("killed") == []
    # the sync itself is killed a few times, at different points, before one completes
    for delay in (0.8, 1.2, 1.6):
        sync_proc = subprocess.Popen([sys.executable, "-m", "modelbook.cli", "sync"], env=env,
                                     start_new_session=True)  # fmt: skip
        time.sleep(delay)
        os.killpg(sync_proc.pid, signal.SIGKILL)
        sync_proc.wait(timeout=30)
    sync(site, env)
    registered_once(site, "killed", status="in_progress")  # killed: it never ended
    assert waiting(site, env) == []


def test_registry_answering_errors_at_random(site: Site) -> None:
    port = urlsplit(site.server.api_host).port
    chaos = ChaosProxy(port or 80, before=0.15, after=0.15, seed=7)
    try:
        env = site.env("home", api_host=f"http://127.0.0.1:{chaos.port}",
                       MODELBOOK_TEST_PROJECT="flaky")  # fmt: skip
        report = site.fit(env, epoch_seconds=0.2)
        assert report["failures"] == []
        for _ in range(10):  # whatever the run's end left, later processes send
            if site.cli(env, "sync").returncode == 0:
                break
        assert waiting(site, env) == []
    finally:
        chaos.close()
    assert chaos.counts["refused"] > 0 and chaos.counts["lost"] > 0, chaos.counts
    registered_once(site, "flaky")


def test_offline_mode_and_import_on_another_machine(site: Site, tmp_path: Path) -> None:
    """ClearML's offline flow: Task.set_offline(True), train, then import the session."""
    server = site.server
    settings = dict(api_host=server.api_host, files_host=server.files_host,
                    access_key=server.access_key, secret_key=server.secret_key)  # fmt: skip
    weights = tmp_path / "model.pt"
    weights.write_bytes(os.urandom(5000))
    modelbook.configure(home=tmp_path / "laptop", **settings)
    Task.set_offline(True)
    try:
        assert Task.is_offline()
        task = Task.init(project_name="offline-mode", task_name="fit")
        assert is_local(task.id)
        task.connect({"lr": 0.1, "layers": 2})
        model = OutputModel(task=task, name="net", framework="PyTorch")
        model.update_labels({"cat": 1, "dog": 2})
        model.update_weights(weights_filename=str(weights), iteration=3)
        model.set_metadata("accuracy", 0.9, "float")
        assert is_local(model.id)
        assert task.get_parameters()["General/lr"] == "0.1"
        assert model.get_metadata("accuracy") == "0.9" and model.labels == {"cat": 1, "dog": 2}
        task.close()
        assert site.tasks("offline-mode") == []  # nothing was sent
        folder = Task.get_offline_mode_folder()
        archive = shutil.make_archive(str(tmp_path / "session"), "zip", folder)
    finally:
        Task.set_offline(False)

    modelbook.configure(home=tmp_path / "desk", **settings)  # another machine
    task_id = Task.import_offline_session(archive)
    assert task_id and not is_local(task_id)
    imported = Task.get_task(task_id=task_id)
    assert imported.get_parameters()["General/lr"] == "0.1"
    assert imported.status == "completed"
    (entry,) = imported.models["output"]
    assert entry.labels == {"cat": 1, "dog": 2} and entry.get_metadata_casted("accuracy") == 0.9
    assert entry.iteration == 3
    stored = Path(entry.get_local_copy(raise_on_error=True))
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(
        weights.read_bytes()
    ).digest()
    assert Task.import_offline_session(archive) == task_id  # once, however often
    assert len(site.tasks("offline-mode")) == 1 and len(site.models("offline-mode")) == 1
    assert [v.iteration for v in site.backend().list_model_versions(entry.id)] == [3]
