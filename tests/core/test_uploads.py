"""The upload queue: training is not blocked, latest wins, a full staging disk is a clear
error, and a file written to staging_path() is moved rather than copied."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from modelbook import Model, OutputModel, Task
from modelbook.config import configure
from modelbook.errors import UploadError


def _big(path: Path, mib: int) -> Path:
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))
    return path


def _wait_until_started(model: OutputModel, timeout: float = 30.0) -> None:
    """Until the worker holds the model's only job (or finished it)."""
    queue = model._queue()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = queue.pending()
        if not jobs:
            return
        with queue.spool.claim(jobs[0]) as free:
            if not free:
                return
        time.sleep(0.01)
    raise AssertionError("the upload worker never started the job")


def test_update_returns_before_the_transfer_and_latest_wins(
    tmp_path: Path, other_file_system: Path
) -> None:
    configure(home=tmp_path / "home")
    # storing into a folder on another file system is a copy that takes a while
    task = Task.init(project_name="proj", task_name="latest", output_uri=str(other_file_system))
    model = OutputModel(task=task)
    big = _big(tmp_path / "big.pt", 384)
    started = time.perf_counter()
    model.update_weights(str(big), iteration=1, auto_delete_file=False)
    queued = time.perf_counter() - started
    _wait_until_started(model)
    for step in (2, 3, 4):  # arrive while the first one is still being stored
        small = tmp_path / f"s{step}.pt"
        small.write_bytes(bytes([step]) * 1000)
        before = time.perf_counter()
        model.update_weights(str(small), iteration=step, target_filename=f"s{step}.pt")
        queued += time.perf_counter() - before
    assert OutputModel.wait_for_uploads(timeout=120) == []
    stored = time.perf_counter() - started
    iterations = [v.iteration for v in Model(model.id).versions]
    assert iterations[0] == 1 and iterations[-1] == 4, iterations
    assert 2 not in iterations and 3 not in iterations  # superseded before they started
    assert Model(model.id).iteration == 4
    assert queued < 0.75 * stored, (queued, stored)  # the caller paid for the snapshot only


@pytest.mark.embedded_only  # the embedded store's move into its blob folder
def test_staging_path_is_moved_not_copied(tmp_path: Path) -> None:
    configure(home=tmp_path / "home")
    model = OutputModel(task=Task.init(project_name="proj", task_name="move"))
    path = model.staging_path("model.pt")
    path.write_bytes(b"weights" * 100)
    inode = path.stat().st_ino
    assert model.update_weights(str(path), iteration=1) is None  # not even hashed yet
    assert not path.exists()
    assert OutputModel.wait_for_uploads(timeout=30) == []
    assert model.url.endswith("/model.pt")
    stored = Path(Model(model.id).get_local_copy())
    assert stored.stat().st_ino == inode and stored.read_bytes() == b"weights" * 100


@pytest.fixture
def tiny_spool(tmp_path: Path):
    """The spool on a 1 MiB tmpfs, so that it fills up for real."""
    spool = tmp_path / "home" / "spool"
    spool.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(spool)],
        capture_output=True,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield tmp_path / "home"
    finally:
        subprocess.run(["umount", "-l", str(spool)], capture_output=True, timeout=30)


def test_full_staging_disk_is_a_clear_error(tiny_spool: Path, tmp_path: Path) -> None:
    configure(home=tiny_spool)
    model = OutputModel(task=Task.init(project_name="proj", task_name="full"))
    small = tmp_path / "small.pt"
    small.write_bytes(b"ok" * 1000)
    model.update_weights(str(small), iteration=1, async_enable=False)
    too_big = _big(tmp_path / "big.pt", 4)
    with pytest.raises(UploadError, match="no space left in the spool") as info:
        model.update_weights(str(too_big), iteration=2)
    assert info.value.transient
    assert not list((tiny_spool / "spool").glob(".*.partial"))
    assert not list((tiny_spool / "spool" / "jobs").iterdir())
    assert Model(model.id).iteration == 1
    assert Path(Model(model.id).get_local_copy()).read_bytes() == b"ok" * 1000
    model.update_weights(str(small), iteration=3)  # training goes on: the next one works
    assert OutputModel.wait_for_uploads(timeout=30) == []
    assert Model(model.id).iteration == 3
