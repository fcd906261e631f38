"""Reporting cost on the training thread: ``logger.report_scalar`` against a plain
``list.append`` of the same values (the floor) and against writing each value to the store
at once (what a synchronous logger pays), issue 12.

Each case reports N values (``loss/train`` at iterations 0..N-1) into a fresh embedded home;
the time is that of the N calls on the calling thread. ``report_scalar`` cases exclude the
background send; a last column times ``flush()`` after them (the send itself, off the
training thread in a run).

Usage: ``python bench/reporting.py [--quick] [--runs N]``
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence

from _common import Goal, Table, header, measure, options, report

import modelbook
from modelbook import Task
from modelbook.records import ScalarEvent


def _task() -> Task:
    modelbook.configure(home=tempfile.mkdtemp(prefix="mb-bench-report-"))
    Task._current = None
    return Task.init(project_name="bench", task_name="reporting")


def append(n: int) -> float:
    values: list[tuple[str, str, int, float]] = []
    start = time.perf_counter()
    for i in range(n):
        values.append(("loss", "train", i, 1.0 / (i + 1)))
    return time.perf_counter() - start


def logger(n: int, flushes: list[float]) -> float:
    task = _task()
    log = task.get_logger()
    start = time.perf_counter()
    for i in range(n):
        log.report_scalar("loss", "train", 1.0 / (i + 1), iteration=i)
    spent = time.perf_counter() - start
    start = time.perf_counter()
    log.flush()
    flushes.append(time.perf_counter() - start)
    task.close()
    return spent


def synchronous(n: int) -> float:
    task = _task()
    backend = modelbook.config.get_backend()
    start = time.perf_counter()
    for i in range(n):
        backend.add_scalars(task.id, [ScalarEvent("loss", "train", i, 1.0 / (i + 1))])
    spent = time.perf_counter() - start
    task.close()
    return spent


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(__doc__.splitlines()[0], argv, runs=5, quick_runs=1)
    n = 200 if opts.quick else 5000
    flushes: list[float] = []
    cases = {
        "list.append (floor)": lambda: append(n),
        "modelbook logger.report_scalar": lambda: logger(n, flushes),
        "modelbook, a store write per value": lambda: synchronous(n),
    }
    samples = measure(cases, opts.runs, opts.warmup)
    table = Table(f"Training-thread time of {n} reported values (embedded store)", "ms",
                  "modelbook logger.report_scalar", scale=1000)  # fmt: skip
    table.samples.update(samples)
    table.columns["flush() after"] = {
        "modelbook logger.report_scalar": f"{1000 * sorted(flushes)[len(flushes) // 2]:.1f} ms"
    }
    table.goals.append(Goal("a synchronous write per value costs >= 10x report_scalar",
                            "modelbook, a store write per value", 10, "ratio>="))  # fmt: skip
    report(header("Reporting cost", opts), [table])
    return 0


if __name__ == "__main__":
    sys.exit(main())
