"""Crash safety: a process killed mid-transfer leaves no model pointing at a partial file,
and the next process that opens the same home finishes the transfer from the spool.

The destination is a local folder, and the files server of a live ``modelbook server`` on
127.0.0.1 when the server package is installed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import modelbook
from modelbook import Model, OutputModel, Task

HTTP_AVAILABLE = importlib.util.find_spec("starlette") is not None

TRAINER = textwrap.dedent(
    """
    import sys
    from modelbook import OutputModel, Task
    task = Task.get_task(task_id=sys.argv[1])
    model = OutputModel(task=task, base_model_id=sys.argv[2], name="mdl")
    model.update_weights(weights_filename=sys.argv[3], iteration=2, auto_delete_file=False)
    print("queued", flush=True)
    OutputModel.wait_for_uploads(timeout=600)
    """
)
RESUMER = textwrap.dedent(
    """
    from modelbook import OutputModel
    left = OutputModel.wait_for_uploads(timeout=120)
    print("left", len(left), flush=True)
    """
)


@contextmanager
def _destination(
    kind: str, tmp_path: Path, other_file_system: Path
) -> Iterator[tuple[dict[str, str], Path, str]]:
    """(environment for the child processes, folder where partial files show, glob)."""
    env = {**os.environ, "MODELBOOK_HOME": str(tmp_path / "home")}
    if kind == "folder":
        modelbook.configure(home=tmp_path / "home")
        yield env, other_file_system, "*.partial"
        return
    from modelbook.server.testing import running_server

    with running_server(tmp_path / "server") as server:
        settings = {
            "MODELBOOK_API_HOST": server.api_host,
            "MODELBOOK_FILES_HOST": server.files_host,
            "MODELBOOK_API_ACCESS_KEY": server.access_key,
            "MODELBOOK_API_SECRET_KEY": server.secret_key,
        }
        os.environ.update(settings)  # undone by the autouse fixture
        modelbook.configure()
        yield {**env, **settings}, Path(server.files_root), "*.part"


def _run(code: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env
    )


KINDS = ["folder", "files server"] if HTTP_AVAILABLE else ["folder"]


@pytest.mark.parametrize("kind", KINDS)
def test_killed_mid_transfer_then_resumed(
    kind: str, tmp_path: Path, other_file_system: Path
) -> None:
    with _destination(kind, tmp_path, other_file_system) as (env, partial_root, pattern):
        output_uri = str(partial_root) if kind == "folder" else True
        task = Task.init(project_name="proj", task_name="crash", output_uri=output_uri)
        model = OutputModel(task=task, name="mdl")
        small = tmp_path / "v1.pt"
        small.write_bytes(b"v1" * 1000)
        model.update_weights(str(small), iteration=1, auto_delete_file=False, async_enable=False)
        big = tmp_path / "v2.pt"
        with open(big, "wb") as fh:  # large enough that the transfer takes a while
            for _ in range(768):
                fh.write(os.urandom(1 << 20))

        trainer = _run(TRAINER, env, task.id, model.id, str(big))
        try:
            assert trainer.stdout.readline().strip() == "queued"
            deadline = time.monotonic() + 60
            while not list(partial_root.rglob(pattern)) and time.monotonic() < deadline:
                time.sleep(0.002)
            assert list(partial_root.rglob(pattern)), "the transfer never started"
            trainer.send_signal(signal.SIGKILL)
            trainer.wait(timeout=30)
        finally:
            if trainer.poll() is None:
                trainer.kill()
                trainer.wait(timeout=30)

        killed = Model(model.id)
        assert killed.iteration == 1 and [v.version for v in killed.versions] == [1]
        assert Path(killed.get_local_copy()).read_bytes() == b"v1" * 1000

        resumer = _run(RESUMER, env)
        out, _ = resumer.communicate(timeout=180)
        assert out.strip() == "left 0"
        done = Model(model.id)
        assert done.iteration == 2 and [v.iteration for v in done.versions] == [1, 2]
        local = Path(done.get_local_copy(force_download=True, raise_on_error=True))
        assert local.stat().st_size == big.stat().st_size
        assert done.versions[-1].sha256 == done._data().sha256
        assert not list((tmp_path / "home" / "spool" / "jobs").iterdir())


def test_half_written_snapshots_are_swept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    leftover = home / "spool" / ".000-dead.partial"
    leftover.mkdir(parents=True)
    (leftover / "payload").write_bytes(b"half")
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    modelbook.configure(home=home)
    task = Task.init(project_name="proj", task_name="after")
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"ok" * 10)
    model = OutputModel(task=task)
    model.update_weights(weights_filename=str(weights))
    OutputModel.wait_for_uploads(timeout=30)
    assert Path(Model(model.id).get_local_copy()).read_bytes() == b"ok" * 10
    assert not leftover.exists()
