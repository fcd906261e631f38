"""Crash safety: a process killed mid-transfer leaves no model pointing at a partial file,
and the next process that opens the same home finishes the transfer from the spool."""

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

TRAINER = textwrap.dedent(
    """
    import sys
    from modelbook import OutputModel, Task, configure
    configure(home=sys.argv[1])
    task = Task.get_task(task_id=sys.argv[2])
    model = OutputModel(task=task, base_model_id=sys.argv[3], name="m")
    model.update_weights(weights_filename=sys.argv[4], iteration=2, auto_delete_file=False)
    print("queued", flush=True)
    OutputModel.wait_for_uploads(timeout=600)
    """
)
RESUMER = textwrap.dedent(
    """
    import sys
    from modelbook import OutputModel, configure
    configure(home=sys.argv[1])
    left = OutputModel.wait_for_uploads(timeout=120)
    print("left", len(left), flush=True)
    """
)


def _run(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)


def test_killed_mid_transfer_then_resumed(tmp_path: Path) -> None:
    home, dest = tmp_path / "home", tmp_path / "dest"
    configure(home=home)
    task = Task.init(project_name="p", task_name="crash", output_uri=str(dest))
    model = OutputModel(task=task, name="m")
    small = tmp_path / "v1.pt"
    small.write_bytes(b"v1" * 1000)
    model.update_weights(weights_filename=str(small), iteration=1, auto_delete_file=False)
    OutputModel.wait_for_uploads(timeout=30)
    big = tmp_path / "v2.pt"
    with open(big, "wb") as fh:  # large enough that the transfer takes a while
        for _ in range(768):
            fh.write(os.urandom(1 << 20))

    trainer = _run(TRAINER, str(home), task.id, model.id, str(big))
    try:
        assert trainer.stdout.readline().strip() == "queued"
        deadline = time.monotonic() + 60
        while not list(dest.rglob("*.partial")) and time.monotonic() < deadline:
            time.sleep(0.002)
        assert list(dest.rglob("*.partial")), "the transfer never started"
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(timeout=30)
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait(timeout=30)

    killed = Model(model.id)
    assert killed.iteration == 1 and [v.version for v in killed.versions] == [1]
    assert Path(killed.get_local_copy()).read_bytes() == b"v1" * 1000

    resumer = _run(RESUMER, str(home))
    out, _ = resumer.communicate(timeout=180)
    assert out.strip() == "left 0"
    done = Model(model.id)
    assert done.iteration == 2 and [v.iteration for v in done.versions] == [1, 2]
    assert Path(done.get_local_copy()).stat().st_size == big.stat().st_size
    assert done.versions[-1].sha256 == done._data().sha256
    assert not list((home / "spool" / "jobs").iterdir())


def test_half_written_snapshots_are_swept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    leftover = home / "spool" / ".000-dead.partial"
    leftover.mkdir(parents=True)
    (leftover / "payload").write_bytes(b"half")
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    configure(home=home)
    task = Task.init(project_name="p", task_name="after")
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"ok" * 10)
    model = OutputModel(task=task)
    model.update_weights(weights_filename=str(weights))
    OutputModel.wait_for_uploads(timeout=30)
    assert Path(Model(model.id).get_local_copy()).read_bytes() == b"ok" * 10
    assert not leftover.exists()
