"""Reporting, ClearML's ``Logger``: scalars and single values of a task or of a model.

``report_*`` appends to an in-memory batch and returns at once: the training thread never
waits for the registry. One daemon thread per process sends each batch every
:data:`FLUSH_INTERVAL` seconds (at once past :data:`MAX_BATCH` values) through the upload
queue's ``call`` — made at once while the registry answers, spooled behind the task's other
calls while it does not (:mod:`modelbook.deferred`) — and ``flush()`` / ``task.close()`` send
what waits. The reads (``get_reported_scalars`` ...) flush first, so they see what this
process reported.

Single values are scalars of the title "Summary" at iteration ``-2**31``, as ClearML stores
them. Plots are kept as plotly figures (:mod:`modelbook.plots`), text as the task's console
log (and Python logging, logger ``modelbook.report``).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelbook import config, plots
from modelbook.errors import InvalidArgumentError, ModelbookError
from modelbook.records import ScalarEvent
from modelbook.threads import run_in_background

if TYPE_CHECKING:
    from modelbook.backends.base import Backend
    from modelbook.uploads import UploadQueue

log = logging.getLogger("modelbook")
text_log = logging.getLogger("modelbook.report")

#: Seconds between two sends of the batches.
FLUSH_INTERVAL = 2.0
#: Values past which a batch is sent without waiting for the interval.
MAX_BATCH = 1000
#: Where ClearML reports single values.
SUMMARY = "Summary"
SINGLE_VALUE_ITERATION = -(2**31)


@dataclass
class _Batch:
    """Values of one owner (a task, or a model) waiting to be sent."""

    queue: UploadQueue
    chain: str
    owner: Callable[[], str]  # its id now: a local id until the registry has it
    model: bool
    op: str = "add_scalars"  # or "add_reports" (plots and text)
    events: list[list[Any]] = field(default_factory=list)


class _Sender:
    """The process's batches and the daemon thread sending them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # one send at a time: batches stay in order
        self._batches: dict[tuple[str, bool, str, str], _Batch] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, batch: _Batch, event: list[Any]) -> None:
        key = (batch.chain, batch.model, batch.owner(), batch.op)
        with self._lock:
            waiting = self._batches.setdefault(key, batch)
            waiting.events.append(event)
            full = len(waiting.events) >= MAX_BATCH
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="modelbook-reports",
                                                daemon=True)  # fmt: skip
                self._thread.start()
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Send every waiting batch now; returns how many values could not be sent."""
        with self._send_lock:
            with self._lock:
                batches, self._batches = list(self._batches.values()), {}
            lost = 0
            for batch in batches:
                target = "model" if batch.model else "task"
                args = {target: batch.owner(), "events": batch.events}
                try:
                    batch.queue.call(batch.chain, batch.op, args)
                except (ModelbookError, OSError) as exc:  # refused, or no spool: said, not raised
                    lost += len(batch.events)
                    log.warning("could not record %d reported values of %s %s: %s",
                                len(batch.events), target, args[target], exc)  # fmt: skip
            return lost

    def _run(self) -> None:
        run_in_background()
        while True:
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            self.flush()


_sender = _Sender()


def flush_reports() -> int:
    """Send every value reported in this process that still waits (see the module)."""
    return _sender.flush()


class _Plots:
    """The plot family of ClearML's ``Logger`` and ``Model``: each builds the plotly figure
    (:mod:`modelbook.plots`) and reports it under ``title`` / ``series`` / ``iteration``."""

    def _report_plot(self, title: str, series: str, iteration: int | None,
                     figure: dict[str, Any]) -> None:  # fmt: skip
        raise NotImplementedError

    def report_histogram(self, title: str, series: str, values: Any,
                         iteration: int | None = None, **options: Any) -> None:  # fmt: skip
        self._report_plot(title, series, iteration, plots.histogram(title, series, values,
                                                                    **options))  # fmt: skip

    def report_vector(self, title: str, series: str, values: Any,
                      iteration: int | None = None, **options: Any) -> None:  # fmt: skip
        self._report_plot(title, series, iteration, plots.histogram(title, series, values,
                                                                    **options))  # fmt: skip

    def report_table(self, title: str, series: str, iteration: int | None = None,
                     table_plot: Any = None, csv: str | None = None,
                     **options: Any) -> None:  # fmt: skip
        figure = plots.table(title, series, table_plot, csv, **options)
        self._report_plot(title, series, iteration, figure)

    def report_line_plot(self, title: str, series: Any, iteration: int | None = None,
                         **options: Any) -> None:  # fmt: skip
        self._report_plot(title, "", iteration, plots.line_plot(title, series, **options))

    def report_scatter2d(self, title: str, series: str, scatter: Any,
                         iteration: int | None = None, **options: Any) -> None:  # fmt: skip
        figure = plots.scatter2d(title, series, scatter, **options)
        self._report_plot(title, series, iteration, figure)

    def report_scatter3d(self, title: str, series: str, scatter: Any,
                         iteration: int | None = None, **options: Any) -> None:  # fmt: skip
        figure = plots.scatter3d(title, series, scatter, **options)
        self._report_plot(title, series, iteration, figure)

    def report_confusion_matrix(self, title: str, series: str, matrix: Any,
                                iteration: int | None = None, **options: Any) -> None:  # fmt: skip
        self._report_plot(title, series, iteration, plots.matrix(title, series, matrix,
                                                                 **options))  # fmt: skip

    def report_matrix(self, title: str, series: str, matrix: Any,
                      iteration: int | None = None, **options: Any) -> None:  # fmt: skip
        self.report_confusion_matrix(title, series, matrix, iteration, **options)

    def report_surface(self, title: str, series: str, matrix: Any,
                       iteration: int | None = None, **options: Any) -> None:  # fmt: skip
        figure = plots.matrix(title, series, matrix, kind="surface", **options)
        self._report_plot(title, series, iteration, figure)


class Logger(_Plots):
    """ClearML's ``Logger`` for a task (``task.get_logger()``) or a model (its ``report_*``).

    Example:
        >>> import modelbook, tempfile
        >>> from modelbook import Task
        >>> modelbook.configure(home=tempfile.mkdtemp())
        >>> task = Task.init(project_name="examples", task_name="curves")
        >>> logger = task.get_logger()
        >>> for step, loss in enumerate([0.9, 0.5, 0.4]):
        ...     logger.report_scalar("loss", "train", loss, iteration=step)
        >>> logger.report_single_value("accuracy", 0.93)
        >>> task.get_reported_scalars()["loss"]["train"]
        {'x': [0, 1, 2], 'y': [0.9, 0.5, 0.4]}
        >>> task.get_reported_single_value("accuracy")
        0.93
    """

    def __init__(self, queue: UploadQueue, chain: str, owner: Callable[[], str],
                 model: bool = False) -> None:  # fmt: skip
        self._queue, self._chain, self._owner, self._model = queue, chain, owner, model
        self._skipped = False

    @classmethod
    def current_logger(cls) -> Logger | None:
        """The logger of the task :meth:`Task.init` started in this process, if any."""
        from modelbook.task import Task

        task = Task.current_task()
        return task.get_logger() if task is not None else None

    def _add(self, title: str, series: str, value: Any, iteration: int) -> None:
        for name, text in (("title", title), ("series", series)):
            if not isinstance(text, str):
                raise InvalidArgumentError(f"{name} must be a string, got {text!r}")
        if isinstance(iteration, bool) or not isinstance(iteration, int):
            raise InvalidArgumentError(f"iteration must be an int, got {iteration!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)  # numpy and torch scalars
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"value of {title}/{series} must be a number, got {value!r}"
                ) from None
        if not math.isfinite(value):
            if not self._skipped:
                self._skipped = True
                log.warning("reported value %r of %s/%s is not finite: not recorded (said once)",
                            value, title, series)  # fmt: skip
            return
        batch = _Batch(self._queue, self._chain, self._owner, self._model)
        _sender.add(batch, [title, series, iteration, float(value), int(time.time() * 1000)])

    def report_scalar(self, title: str, series: str, value: float, iteration: int) -> None:
        """One point of the series ``series`` of the plot ``title``."""
        self._add(title, series, value, iteration)

    def report_single_value(self, name: str, value: float) -> None:
        """A value of the whole run (final accuracy, mAP): ``get_reported_single_value``."""
        self._add(SUMMARY, name, value, SINGLE_VALUE_ITERATION)

    def _add_report(self, kind: str, title: str, series: str, iteration: int | None,
                    body: dict[str, Any]) -> None:  # fmt: skip
        for name, text in (("title", title), ("series", series)):
            if not isinstance(text, str):
                raise InvalidArgumentError(f"{name} must be a string, got {text!r}")
        if iteration is not None and (
            isinstance(iteration, bool) or not isinstance(iteration, int)
        ):
            raise InvalidArgumentError(f"iteration must be an int, got {iteration!r}")
        batch = _Batch(self._queue, self._chain, self._owner, self._model, op="add_reports")
        _sender.add(batch, [kind, title, series, iteration or 0, body, int(time.time() * 1000)])

    def _report_plot(self, title: str, series: str, iteration: int | None,
                     figure: dict[str, Any]) -> None:  # fmt: skip
        try:
            text = json.dumps(figure, allow_nan=False, default=_number)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"plot {title}/{series}: not plottable: {exc}") from None
        self._add_report("plot", title, series, iteration, {"plot_str": text})

    def report_text(self, msg: Any, level: int = logging.INFO, print_console: bool = True,
                    *args: Any, **_: Any) -> None:  # fmt: skip
        """A line of the run's console log (kept; also to Python logging,
        ``modelbook.report``, when ``print_console``)."""
        text = str(msg) % args if args else str(msg)
        if print_console:
            text_log.log(level, text)
        if not self._model:  # ClearML keeps no console log of a model
            self._add_report("text", "", "", None, {"level": int(level), "msg": text})

    def flush(self, wait: bool = False) -> bool:
        """Send what waits; True when nothing was refused."""
        return flush_reports() == 0


def _number(value: Any) -> Any:
    """numpy / torch numbers inside a figure, as JSON numbers."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a number")


def read_plots(backend: Backend, task_id: str | None = None,
               model_id: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """ClearML's ``get_reported_plots``: ``[{metric, variant, iter, plot_str, timestamp}]``."""
    flush_reports()
    found = backend.reports(task_id, "plot", model_id=model_id)
    return [{"metric": r.metric, "variant": r.variant, "iter": r.iteration,
             "plot_str": r.body.get("plot_str", ""), "timestamp": r.timestamp} for r in found]


def read_scalars(
    backend: Backend, task_id: str | None = None, model_id: str | None = None
) -> tuple[dict[str, dict[str, dict[str, list]]], dict[str, float]]:
    """``({title: {series: {"x": [...], "y": [...]}}}, {single value name: value})`` of a
    task or a model, after sending what this process reported."""
    flush_reports()
    events: list[ScalarEvent] = (
        backend.scalar_events(task_id) if task_id else backend.scalar_events(model_id=model_id)
    )
    series: dict[str, dict[str, dict[str, list]]] = {}
    singles: dict[str, float] = {}
    for e in events:
        if e.metric == SUMMARY and e.iteration == SINGLE_VALUE_ITERATION:
            singles[e.variant] = e.value
            continue
        points = series.setdefault(e.metric, {}).setdefault(e.variant, {"x": [], "y": []})
        points["x"].append(e.iteration)
        points["y"].append(e.value)
    return series, singles


def queue_of(backend: Backend) -> UploadQueue:
    from modelbook import uploads

    return uploads.queue_for(backend, config.home())


class TaskReports:
    """Reporting of a :class:`~modelbook.task.Task` (mixed into it).

    Example:
        >>> import modelbook, tempfile
        >>> from modelbook import Task
        >>> modelbook.configure(home=tempfile.mkdtemp())
        >>> task = Task.init(project_name="examples", task_name="summary")
        >>> task.get_logger().report_single_value("accuracy", 0.9)
        >>> task.get_last_scalar_metrics()["Summary"]["accuracy"]["last"]
        0.9
    """

    _be: Backend

    @property
    def id(self) -> str:
        raise NotImplementedError

    @property
    def _chain(self) -> str:
        raise NotImplementedError

    def _registry_id(self) -> str | None:
        raise NotImplementedError

    def get_logger(self) -> Logger:
        """This task's :class:`Logger` (scalars are sent in the background)."""
        return Logger(queue_of(self._be), self._chain, lambda: self.id)

    def _scalars(self) -> tuple[dict[str, dict[str, dict[str, list]]], dict[str, float]]:
        registry_id = self._registry_id()
        return read_scalars(self._be, task_id=registry_id) if registry_id else ({}, {})

    def get_reported_scalars(self, max_samples: int = 0, x_axis: str = "iter") -> dict:
        """``{title: {series: {"x": [iterations], "y": [values]}}}`` (``x_axis`` "iter")."""
        if x_axis != "iter":
            raise InvalidArgumentError(f"x_axis {x_axis!r}: modelbook keeps iterations only")
        return self._scalars()[0]

    def get_reported_single_values(self) -> dict[str, float]:
        return self._scalars()[1]

    def get_reported_single_value(self, name: str) -> float | None:
        return self._scalars()[1].get(name)

    def get_reported_plots(self, max_iterations: int | None = None) -> list[dict[str, Any]]:
        """``[{metric, variant, iter, plot_str, timestamp}]``, oldest first; with
        ``max_iterations``, those of the newest that many iterations."""
        registry_id = self._registry_id()
        found = read_plots(self._be, task_id=registry_id) if registry_id else []
        if max_iterations:
            newest = sorted({p["iter"] for p in found})[-max_iterations:]
            found = [p for p in found if p["iter"] in newest]
        return found

    def get_reported_console_output(self, number_of_reports: int = 1) -> list[str]:
        """The last ``number_of_reports`` lines given to ``report_text``."""
        flush_reports()
        registry_id = self._registry_id()
        lines = self._be.reports(registry_id, "text") if registry_id else []
        return [str(r.body.get("msg", "")) for r in lines[-number_of_reports:]]

    def get_last_scalar_metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{title: {series: {"last": v, "min": v, "max": v}}}``, as ClearML's."""
        flush_reports()
        registry_id = self._registry_id()
        stats = self._be.last_scalars(registry_id) if registry_id else {}
        return {
            title: {name: {"last": s.last, "min": s.min, "max": s.max}
                    for name, s in series.items()}
            for title, series in stats.items()
        }  # fmt: skip


class ModelReports(_Plots):
    """ClearML's ``report_*`` of a model (mixed into ``BaseModel``): values about the model
    itself, kept apart from any task's.

    Example:
        >>> import modelbook, tempfile
        >>> from modelbook import OutputModel, Task
        >>> modelbook.configure(home=tempfile.mkdtemp())
        >>> model = OutputModel(task=Task.init(project_name="examples", task_name="evaluated"))
        >>> model.report_scalar("calibration", "ece", 0.03, iteration=1)
        >>> model.get_reported_scalars()
        {'calibration': {'ece': {'x': [1], 'y': [0.03]}}}
    """

    @property
    def _be(self) -> Backend:
        raise NotImplementedError

    def _report_target(self) -> tuple[str, Callable[[], str]]:
        """The spool chain of the model's reports and its id (registering it if needed)."""
        raise NotImplementedError

    def _registered_id(self) -> str | None:
        raise NotImplementedError

    def _logger(self) -> Logger:
        chain, owner = self._report_target()
        return Logger(queue_of(self._be), chain, owner, model=True)

    def report_scalar(self, title: str, series: str, value: float, iteration: int) -> None:
        self._logger().report_scalar(title, series, value, iteration)

    def _report_plot(self, title: str, series: str, iteration: int | None,
                     figure: dict[str, Any]) -> None:  # fmt: skip
        self._logger()._report_plot(title, series, iteration, figure)

    def get_reported_plots(self) -> list[dict[str, Any]]:
        """The plots reported on this model (as ``Task.get_reported_plots``)."""
        model_id = self._registered_id()
        return read_plots(self._be, model_id=model_id) if model_id else []

    def report_single_value(self, name: str, value: float) -> None:
        self._logger().report_single_value(name, value)

    def get_reported_scalars(self) -> dict:
        """``{title: {series: {"x": [...], "y": [...]}}}`` reported on this model."""
        model_id = self._registered_id()
        return read_scalars(self._be, model_id=model_id)[0] if model_id else {}

    def get_reported_single_values(self) -> dict[str, float]:
        model_id = self._registered_id()
        return read_scalars(self._be, model_id=model_id)[1] if model_id else {}
