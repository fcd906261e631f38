"""The registry and files server go away during training and come back.

Real parts: a ``modelbook server`` subprocess on 127.0.0.1, reached through a TCP proxy
that the test cuts (connections refused and reset) and restores. The training loop is a
timed loop that saves weights at each improvement, as a callback would.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import modelbook
from modelbook import Model, OutputModel, Task

pytest.importorskip("starlette")
from modelbook.server.testing import running_server

from .proxy import FlakyProxy

EPOCHS, OUTAGE = 14, range(4, 10)  # the destination is down for epochs 4..9
EPOCH_SECONDS, WEIGHTS_MIB = 0.3, 16


def test_outage_loses_nothing_and_does_not_stretch_training(tmp_path: Path) -> None:
    with running_server(tmp_path / "server") as server:
        proxy = FlakyProxy(urlsplit(server.api_host).port)
        try:
            url = f"http://127.0.0.1:{proxy.port}"
            modelbook.configure(
                home=tmp_path / "home", api_host=url, files_host=f"{url}/files",
                access_key=server.access_key, secret_key=server.secret_key,
            )  # fmt: skip
            task = Task.init(project_name="outage", task_name="train")
            model = OutputModel(task=task, name="net")
            saved: dict[int, str] = {}
            call_seconds: dict[str, list[float]] = {"up": [], "down": []}
            best = float("inf")
            for epoch in range(EPOCHS):
                if epoch == OUTAGE.start:
                    proxy.down()
                if epoch == OUTAGE.stop:
                    proxy.up()
                time.sleep(EPOCH_SECONDS)  # a training epoch
                val_loss = 1.0 / (epoch + 1) if epoch % 3 else best + 1  # every third: worse
                if val_loss >= best:
                    continue
                best = val_loss
                path = model.staging_path("weights.bin")
                data = os.urandom(WEIGHTS_MIB << 20)
                path.write_bytes(data)
                saved[epoch] = hashlib.sha256(data).hexdigest()
                started = time.perf_counter()
                model.update_weights(str(path), iteration=epoch, metadata={"val_loss": val_loss})
                phase = "down" if epoch in OUTAGE else "up"
                call_seconds[phase].append(time.perf_counter() - started)
                if phase == "up":  # a server that keeps up: no newer best overtakes this one
                    assert OutputModel.wait_for_uploads(timeout=60) == []
            assert OutputModel.wait_for_uploads(timeout=180) == []
            final = Model(model.id)
            versions, final_iteration = final.versions, final.iteration
            final_loss = final.get_metadata_casted("val_loss")
        finally:
            proxy.close()

    improvements = sorted(saved)
    iterations = [v.iteration for v in versions]
    assert iterations == sorted(set(iterations)), "registered twice, or out of order"
    assert set(iterations) <= set(improvements)
    up = [e for e in improvements if e not in OUTAGE]
    assert set(up) <= set(iterations)  # nothing lost while the server was up
    assert iterations[-1] == improvements[-1]  # the best is the current version
    for version in versions:  # each version holds the bytes saved at its step
        assert version.sha256 == saved[version.iteration]
    assert final_iteration == improvements[-1]
    assert final_loss == pytest.approx(1 / (improvements[-1] + 1))
    # Training paid only for the local snapshot, with or without a server.
    assert statistics.median(call_seconds["down"]) <= 3 * statistics.median(call_seconds["up"])
