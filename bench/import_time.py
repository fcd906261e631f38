"""Import time: a fresh ``python -c "import X"`` for modelbook, requests, clearml, mlflow.

Each run starts a new interpreter. Two numbers per module:

* wall: the whole ``python -c "import X"`` process, start to exit (what a user waits for);
* import: ``time.perf_counter()`` around the import statement inside that process (the
  module's own cost, without interpreter start-up and exit).

The goal is on the import column: modelbook within 50 ms of requests.

Usage: ``python bench/import_time.py [--quick] [--runs N] [--no-peers]``
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial

from _common import Goal, Table, header, installed, measure, options, python, report

MODULES = ["requests", "modelbook", "clearml", "mlflow"]
PEERS = {"clearml", "mlflow"}
TIMEOUT = 120.0
BARE = "python -c pass"
PROBE = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"


def import_once(module: str, inner: dict[str, list[float]]) -> float:
    """One fresh interpreter importing ``module`` (none: ``pass``): its wall time; the import
    time it printed is appended to ``inner[module]``."""
    code = PROBE.format(module) if module else "pass"
    start = time.perf_counter()
    done = subprocess.run(
        [python(), "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"python -c 'import {module}' failed:\n{done.stderr[-2000:]}")
    if module:
        inner.setdefault(module, []).append(float(done.stdout.split()[-1]))
    return wall


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(__doc__.splitlines()[0], argv, runs=15, quick_runs=2)
    notes = {}
    modules = [""]  # the bare interpreter, for reference
    for module in MODULES:
        if module in PEERS and not opts.peers:
            notes[module] = "skipped (--no-peers)"
        elif not installed(module):
            notes[module] = "not installed"
        else:
            modules.append(module)
    inner: dict[str, list[float]] = {}
    cases = {m or BARE: partial(import_once, m, inner) for m in modules}
    wall = measure(cases, opts.runs, opts.warmup)

    imports = Table("Import time (inside a fresh interpreter)", "ms", "requests", scale=1000)
    walls = Table('Wall time of a fresh `python -c "import X"`', "ms", "requests", scale=1000)
    walls.samples[BARE] = wall[BARE]
    for module in MODULES:
        if module in notes:
            imports.notes[module] = walls.notes[module] = notes[module]
            continue
        imports.samples[module] = inner[module][-opts.runs :]  # the warm-ups came first
        walls.samples[module] = wall[module]
    imports.goals.append(Goal("modelbook within 50 ms of requests", "modelbook", 50, "diff<="))
    walls.goals.append(Goal("modelbook within 50 ms of requests", "modelbook", 50, "diff<="))
    report(header("1. Import time", opts, ["requests", "clearml", "mlflow"]), [imports, walls])
    return 0


if __name__ == "__main__":
    sys.exit(main())
