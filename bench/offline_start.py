"""Offline start: a Lightning fit with the registry down for the whole run, against the same
fit with the registry up (issue 10: 153 s against 3 s before the spool took the registry
calls of ``Task.init``, model creation and hyper-parameters).

A 2-layer net learns a synthetic regression on the CPU for 8 epochs of ~0.3 s (a sleep at
each epoch's end); the scripted ``val_loss`` improves at epochs 0, 1, 3, 5 and 7, and every
improvement registers the model. Each fit runs in its own process (``bench/_offline_fit.py``:
the Task singleton and the backend settings are process-wide) with a fresh
``MODELBOOK_HOME`` and only the ``MODELBOOK_*`` settings of its case; the time is that of
``trainer.fit`` alone (not the interpreter's start nor the imports). Cases:

* no callback (reference);
* ``ModelbookCallback``, registry up: a ``modelbook server`` on 127.0.0.1 (the baseline); the
  fit ends once the best model is stored and registered;
* ``ModelbookCallback``, registry down: API and files hosts on a 127.0.0.1 port where nothing
  listens, for the whole run; everything waits in the spool under local ids;
* ``ModelbookCallback``, offline mode (``MODELBOOK_OFFLINE=1``) with the server up; after each
  of its fits, untimed there, ``modelbook sync --json`` on the same home sends what waits (its
  wall time, a fresh interpreter included, and the jobs it sent are a column).

Usage: ``python bench/offline_start.py [--quick] [--runs N]``
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import Case, Goal, Table, header, measure, missing, options, python, report
from _offline_fit import VAL_LOSS

NEEDS = ["torch", "lightning", "starlette", "uvicorn"]
FIT = Path(__file__).with_name("_offline_fit.py")
EPOCH_SECONDS = 0.3
TIMEOUT = 600.0
NONE = "no callback"
UP = "ModelbookCallback, registry up"
DOWN = "ModelbookCallback, registry down (nothing listens)"
OFFLINE = "ModelbookCallback, offline mode (MODELBOOK_OFFLINE=1)"


def environment(home: Path, server: Any, api_host: str | None, **extra: str) -> dict[str, str]:
    """A child's environment: no inherited ``MODELBOOK_*``/``CLEARML_*``, its own home, the
    server's keys, and ``api_host`` (files at ``<api_host>/files``) instead of the server's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELBOOK_", "CLEARML_"))}
    env.update(
        MODELBOOK_HOME=str(home),
        MODELBOOK_API_HOST=api_host or server.api_host,
        MODELBOOK_FILES_HOST=f"{api_host}/files" if api_host else server.files_host,
        MODELBOOK_API_ACCESS_KEY=server.access_key,
        MODELBOOK_API_SECRET_KEY=server.secret_key,
        **extra,
    )
    return env


def run_json(command: Sequence[str], env: dict[str, str], ok: Sequence[int] = (0,)) -> Any:
    """Run ``command``; the JSON it printed last (stdout from its last line starting a JSON
    value), or RuntimeError with its output."""
    done = subprocess.run(
        list(command), env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    lines = done.stdout.splitlines()
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i][:1] in "{["), None)
    if done.returncode not in ok or start is None:
        raise RuntimeError(f"{command[1:3]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads("\n".join(lines[start:]))


def cases(
    root: Path, server: Any, epochs: int, seen: dict[str, list[str]], syncs: list[float]
) -> dict[str, Case]:
    """The four fits; ``seen`` gets, per row and run, the ids and spool after the fit, and
    ``syncs`` the wall time of each ``modelbook sync`` after an offline fit."""
    from modelbook.server.testing import free_port
    from modelbook.sync import waiting

    homes = itertools.count()
    dead = f"http://127.0.0.1:{free_port()}"  # bound, then closed: nothing listens there

    def fit(row: str, callback: bool = True, api_host: str | None = None, **extra: str) -> Case:
        def case() -> float:
            home = root / f"home-{next(homes)}"
            env = environment(home, server, api_host, **extra)
            flag = [] if callback else ["--no-callback"]
            args = [str(root / "fit"), str(epochs), str(EPOCH_SECONDS), *flag]
            found = run_json([python(), str(FIT), *args], env)
            if found["failures"]:
                raise RuntimeError(f"{row}: registry failures {found['failures']}")
            task = found["task_id"]
            ids = "—" if task is None else "local" if task.startswith("local-") else "registry"
            spooled = len(waiting(home)[0]) if callback else 0
            more = f"{ids} ids, {spooled} jobs spooled" if callback else "—"
            if extra.get("MODELBOOK_OFFLINE"):
                env.pop("MODELBOOK_OFFLINE")
                start = time.perf_counter()
                sent = run_json([python(), "-m", "modelbook.cli", "sync", "--json"], env, (0, 1))
                wall = time.perf_counter() - start
                syncs.append(wall)
                left = len(sent["left"]) + len(sent["failed"])
                more += f"; sync {wall:.2f} s: {len(sent['sent'])} sent, {left} left"
            seen.setdefault(row, []).append(more)
            return float(found["fit_seconds"])

        return case

    return {
        NONE: fit(NONE, callback=False),
        UP: fit(UP),
        DOWN: fit(DOWN, api_host=dead),
        OFFLINE: fit(OFFLINE, MODELBOOK_OFFLINE="1"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(__doc__.splitlines()[0], argv, runs=3, quick_runs=1)
    head = header("7. Offline start", opts, ["torch", "lightning"])
    lacking = missing(NEEDS)
    if lacking:
        print(
            head + f"\nskipped: {', '.join(lacking)} not installed "
            "(pip install 'modelbook[lightning,server]')"
        )
        return 0
    from modelbook.server.testing import running_server

    epochs = 3 if opts.quick else 8
    root = Path(tempfile.mkdtemp(prefix="modelbook-bench-offline-"))
    seen: dict[str, list[str]] = {}
    syncs: list[float] = []
    try:
        with running_server(root / "server") as server:
            samples = measure(cases(root, server, epochs, seen, syncs), opts.runs, opts.warmup)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    title = f"Lightning fit, {epochs} epochs of ~{EPOCH_SECONDS} s, a process per fit"
    table = Table(title, "s", UP, samples=samples)
    table.columns["after the fit (last run)"] = {row: runs[-1] for row, runs in seen.items()}
    table.goals.append(Goal("registry down <= 1.2x registry up", DOWN, 1.2))
    table.goals.append(Goal("offline mode over registry up", OFFLINE, None))
    losses = VAL_LOSS[:epochs]
    improved = sum(1 for i, v in enumerate(losses) if v < min(losses[:i], default=float("inf")))
    sync = statistics.median(syncs[-opts.runs :])  # the warm-up's came first
    report(
        head,
        [table],
        [
            f"val_loss improved in {improved} of {epochs} epochs per run (each registers the "
            "model); each run is one fit in a fresh process with a fresh MODELBOOK_HOME",
            "registry down: a 127.0.0.1 port bound then closed, so every connection is "
            "refused at once (a host that drops packets costs connect timeouts instead)",
            f"`modelbook sync --json` after each offline fit, same home, server up: median "
            f"{sync:.2f} s wall (a fresh interpreter: imports, probe, sending the jobs)",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
