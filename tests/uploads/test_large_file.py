"""A 2 GiB file goes up to the files server and comes back with memory flat.

Peak RSS (``VmHWM``) of the client process is read before and after; the transfer streams
in chunks both ways, so the growth must stay far below the file's size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from modelbook.server.testing import running_server

SIZE = 2 << 30
MAX_GROWTH = 64 << 20

CLIENT = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    import modelbook
    from modelbook import Model, OutputModel, Task

    def peak():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    home, api, files, key, secret, weights = sys.argv[1:]
    modelbook.configure(home=home, api_host=api, files_host=files, access_key=key,
                        secret_key=secret)
    task = Task.init(project_name="large", task_name="2gib")
    model = OutputModel(task=task, name="big")
    model.set_metadata("warm", "up")  # the record exists; the clients are loaded
    before = peak()
    model.update_weights(weights, iteration=1, auto_delete_file=False)
    assert OutputModel.wait_for_uploads(timeout=900) == []
    local = Model(model.id).get_local_copy(force_download=True, raise_on_error=True)
    after = peak()
    print(json.dumps({"before": before, "after": after, "local": local,
                      "url": Model(model.id).url, "size": Path(local).stat().st_size}))
    """
)


@pytest.mark.slow
def test_two_gib_round_trip_keeps_memory_flat(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    if free < 5 * SIZE:
        pytest.skip(f"needs {5 * SIZE >> 30} GiB of free disk, {free >> 30} GiB free")
    weights = tmp_path / "weights.bin"
    block = os.urandom(1 << 20)
    with open(weights, "wb") as fh:
        for _ in range(SIZE >> 20):
            fh.write(block)
    with running_server(tmp_path / "server") as server:
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, str(tmp_path / "home"), server.api_host,
             server.files_host, server.access_key, server.secret_key, str(weights)],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["url"].startswith(server.files_host)
    assert result["size"] == SIZE
    growth = result["after"] - result["before"]
    print(f"peak RSS {result['before'] >> 20} -> {result['after'] >> 20} MiB moving 2 GiB")
    assert growth <= MAX_GROWTH, f"peak RSS grew by {growth >> 20} MiB moving 2 GiB"
