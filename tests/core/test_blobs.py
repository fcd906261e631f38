"""Crash safety of stored weights: a killed writer leaves no partial blob and no model
pointing at one; the previous version stays intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from modelbook import Model, OutputModel, Task
from modelbook.config import configure

WRITER = textwrap.dedent(
    """
    import sys
    from modelbook import OutputModel, Task, configure
    configure(home=sys.argv[1])
    task = Task.get_task(task_id=sys.argv[2])
    model = OutputModel(task=task, base_model_id=sys.argv[3])
    print("ready", flush=True)
    model.update_weights(weights_filename=sys.argv[4], iteration=2)
    print("done", flush=True)
    """
)


def _partials(home: Path) -> list[Path]:
    return list((home / "blobs").rglob("*.partial"))


def test_writer_killed_mid_copy_leaves_previous_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    configure(home=home)
    task = Task.init(project_name="p", task_name="crash")
    model = OutputModel(task=task, name="m")
    small = tmp_path / "v1.pt"
    small.write_bytes(b"v1" * 1000)
    model.update_weights(weights_filename=str(small), iteration=1)
    big = tmp_path / "v2.pt"
    with open(big, "wb") as fh:  # large enough that the copy takes a while
        for _ in range(768):
            fh.write(os.urandom(1 << 20))

    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home), task.id, model.id, str(big)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not _partials(home) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert _partials(home), "the writer never started copying"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    after = Model(model.id)
    assert after.iteration == 1 and [v.version for v in after.versions] == [1]
    assert Path(after.get_local_copy()).read_bytes() == b"v1" * 1000
    for blob in (home / "blobs").rglob("*"):
        if blob.is_file() and not blob.name.endswith(".partial"):
            assert blob.name == "v1.pt"  # no complete-looking file holds partial bytes


def test_update_after_a_crash_succeeds(tmp_path: Path) -> None:
    home = tmp_path / "home"
    configure(home=home)
    staging = home / "blobs" / "staging"
    staging.mkdir(parents=True)
    (staging / ".leftover.blob.0123.partial").write_bytes(b"half")
    task = Task.init(project_name="p", task_name="after")
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"ok" * 10)
    model = OutputModel(task=task)
    model.update_weights(weights_filename=str(weights))
    assert Path(Model(model.id).get_local_copy()).read_bytes() == b"ok" * 10
