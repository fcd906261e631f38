"""modelbook's background threads run below the training's CPU priority.

Each check reads the niceness of the very thread doing the work (Linux sets it per thread),
from inside that work: the snapshot writer, the upload worker, a plain thread.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import pytest

from modelbook import OutputModel, Task
from modelbook.integrations._background import BackgroundWriter, Slot
from modelbook.storage.local import LocalDriver
from modelbook.threads import ENV, background_nice, run_in_background

pytestmark = [
    pytest.mark.embedded_only,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice: Linux"),
]


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def lowered_in_a_thread() -> tuple[int | None, int]:
    """In a fresh thread: what ``run_in_background`` returned, and the niceness it left."""
    out: list[tuple[int | None, int]] = []
    thread = threading.Thread(target=lambda: out.append((run_in_background(), own_nice())))
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return out[0]


def test_a_background_thread_runs_at_the_configured_niceness_above_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = own_nice()
    monkeypatch.setenv(ENV, "5")
    set_to, seen = lowered_in_a_thread()
    assert set_to == seen == min(19, base + 5)
    assert own_nice() == base  # the calling thread keeps its priority


def test_nice_zero_leaves_the_thread_at_the_training_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "0")
    assert lowered_in_a_thread() == (own_nice(), own_nice())


@pytest.mark.parametrize("value", ["-1", "20", "high", "1.5"])
def test_a_bad_setting_is_named_and_the_thread_keeps_running(
    value: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV, value)
    with pytest.raises(Exception, match=f"{ENV} must be a whole number from 0 .* to 19"):
        background_nice()
    with caplog.at_level(logging.WARNING, logger="modelbook"):
        assert lowered_in_a_thread() == (None, own_nice())
    assert ENV in caplog.text and repr(value) in caplog.text


def test_the_default_is_ten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert background_nice() == 10


def test_the_snapshot_writer_serialises_below_the_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "7")
    seen: list[int] = []
    writer = BackgroundWriter("test", cap=1 << 20, deliver=lambda slot: seen.append(own_nice()))
    slot = writer.reserve(10)
    assert isinstance(slot, Slot)
    writer.submit(slot, lambda path: None, "w.pt", iteration=1, metadata={}, seq=1)
    assert writer.close(10) == []
    assert seen == [min(19, own_nice() + 7)]


def test_the_upload_worker_stores_weights_below_the_training(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV, "3")
    seen: list[int] = []
    put = LocalDriver.put

    def recording(self: LocalDriver, *args: object, **kwargs: object) -> object:
        seen.append(own_nice())
        return put(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalDriver, "put", recording)
    task = Task.init(project_name="threads", task_name="upload")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    OutputModel(task=task).update_weights(str(weights), iteration=1)
    assert OutputModel.wait_for_uploads(timeout=30) == []
    task.close()
    assert seen and set(seen) == {min(19, own_nice() + 3)}
