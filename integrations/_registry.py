"""The registry side shared by the callbacks; framework-free and used on rank zero only.

A :class:`Registrar` finds or creates the task, adopts the model a previous session of the
run registered, creates the ``OutputModel`` at the first improvement, hands each new best
with its metadata to the core's upload queue (which stores it in the background), prunes old
versions (``keep_last``, through the core's retention), publishes at the end, and turns every
registry or storage failure into a warning: training never stops because of it.

:meth:`Registrar.save` takes an improvement from the training thread: staged into host
memory and written by a :class:`~modelbook.integrations._background.BackgroundWriter` when
the framework can stage it, else written there and then. Registry calls from the training
thread and from the writer's thread are serialised by one lock; versions are registered in
the order of their improvements (an older snapshot finished after a newer one is dropped).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import modelbook
from modelbook import Model, OutputModel, Task, config, uploads, validate
from modelbook.deferred import is_local
from modelbook.errors import InvalidArgumentError, ModelbookError, NotFoundError
from modelbook.integrations._background import BackgroundWriter, Slot, Stager, Write, memory_cap
from modelbook.integrations.monitor import Decision, Monitor, as_scalar
from modelbook.records import Metadata, to_metadata

T = TypeVar("T")
log = logging.getLogger("modelbook")
#: The project of a task a callback creates when it is given nothing to name one.
DEFAULT_PROJECT = "Untitled"


class RegistryWarning(UserWarning):
    """A registry or storage call failed; training goes on."""


@dataclass
class Snapshot:
    """Weights written for one improvement, waiting to be registered.

    Attributes:
        path: the file, or the folder (registered as a zip package).
        iteration: the global step.
        metadata: the model version's :data:`~modelbook.records.Metadata`.
        workdir: a private folder holding ``path``; deleted once handed to the upload queue.
            None for files that are not ours (the Trainer's checkpoint folder).
        seq: the improvement's number in this run (0: unordered): a snapshot older than
            one already registered is dropped.
    """

    path: Path
    iteration: int
    metadata: Metadata = field(default_factory=dict)
    workdir: Path | None = None
    seq: int = 0

    def discard(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def version_metadata(
    monitor: Monitor,
    decision: Decision,
    metrics: Mapping[str, Any],
    *,
    epoch: float | None,
    global_step: int,
    framework: str,
    framework_version: str,
    save_weights_only: bool,
    extra: Mapping[str, Any] | None = None,
) -> Metadata:
    """The metadata each registered version carries (numbers keep their exact value)."""
    values: dict[str, Any] = {
        "monitor": monitor.monitor, "monitor_mode": monitor.mode,
        "monitor_value": float(decision.value),  # type: ignore[arg-type]
        "min_delta": float(monitor.min_delta), "global_step": int(global_step),
        "framework": framework, "framework_version": framework_version,
        "modelbook_version": modelbook.__version__, "save_weights_only": bool(save_weights_only),
    }  # fmt: skip
    if epoch is not None:
        values["epoch"] = epoch if isinstance(epoch, int) else float(epoch)
    for key, value in metrics.items():
        number = as_scalar(value)
        if number is not None:
            values[f"metrics/{key}"] = float(number)
    values.update({str(k): str(v) for k, v in (extra or {}).items()})
    return to_metadata(values)


def _number(text: str | None) -> float | None:
    """A metadata value (a string) as a finite float, else None."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class Registrar:
    """Registers the best model of one training run. Call it on rank zero only.

    Args: see the callbacks, which pass their own arguments through.

    Raises:
        InvalidArgumentError: an argument of the wrong type or range (checked eagerly).
        StorageError: ``upload_uri`` is not a destination modelbook can write to.
    """

    def __init__(
        self,
        *,
        owner: str,
        framework: str,
        task: Task | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        model_name: str | None = None,
        tags: Sequence[str] | None = None,
        labels: Mapping[str, int] | None = None,
        upload_uri: str | None = None,
        keep_last: int | None = None,
        publish_on_end: bool = False,
        snapshot_memory: int | None = None,
    ) -> None:
        if task is not None and not isinstance(task, Task):
            raise InvalidArgumentError(f"task must be a modelbook Task, got {type(task).__name__}")
        if keep_last is not None and (
            not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 0
        ):
            raise InvalidArgumentError(f"keep_last must be None or an int >= 0, got {keep_last!r}")
        for what, value in (("project_name", project_name), ("task_name", task_name),
                            ("model_name", model_name)):  # fmt: skip
            if value is not None:
                validate.name(value, what)
        self.owner, self.framework = owner, framework
        self.project_name, self.task_name, self.model_name = project_name, task_name, model_name
        self.tags = validate.tags(tags)
        self.labels = validate.labels(labels) if labels is not None else None
        self.upload_uri = validate.destination(upload_uri) if upload_uri else None
        self.keep_last, self.publish_on_end = keep_last, bool(publish_on_end)
        self._snapshot_memory = snapshot_memory
        self.snapshot_memory = memory_cap(snapshot_memory)  # bytes; 0: always synchronous
        self._task = task
        self._explicit_task_id = task.id if task is not None else None
        self.task_id: str | None = self._explicit_task_id
        self.model_id: str | None = None
        self._model: OutputModel | None = None
        self.pending: Snapshot | None = None  # a best that could not be registered yet
        self.failures: list[str] = []
        self.registered = 0
        self.last_iteration: int | None = None  # of the newest best handed to the queue
        self._finished = False
        self._lock = threading.RLock()  # registry calls: the training thread and the writer's
        self.writer: BackgroundWriter | None = None
        self._seq = 0  # improvements saved so far
        self._newest = 0  # the seq of the newest snapshot handed to register()

    def arguments(self) -> dict[str, Any]:
        """The constructor arguments except ``task``, JSON-friendly."""
        return {
            "project_name": self.project_name, "task_name": self.task_name,
            "model_name": self.model_name, "tags": list(self.tags), "labels": self.labels,
            "upload_uri": self.upload_uri, "keep_last": self.keep_last,
            "publish_on_end": self.publish_on_end, "snapshot_memory": self._snapshot_memory,
        }  # fmt: skip

    # -- pickling and resume ----------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_task"] = state["_model"] = None  # clients stay in their process
        state["_lock"] = state["writer"] = None  # so do threads and their buffers
        current = Task.current_task()
        if state["task_id"] is None and current is not None:
            state["task_id"] = current.id  # a spawned worker has no current task of its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def state_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "model_id": self.model_id}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self._explicit_task_id is None and state.get("task_id"):
            self.task_id = state["task_id"]
        self.model_id = state.get("model_id") or self.model_id

    # -- lifecycle --------------------------------------------------------------------------
    def start(
        self, monitor: Monitor, hparams: Mapping[str, Any] | None = None, section: str = "General"
    ) -> None:
        """Training starts: resolve the task, record ``hparams``, and adopt the model (and
        its best value, into ``monitor``) that an earlier session of this run registered.

        With no task and nothing to name one, a task named after the script is created in
        the project ``MODELBOOK_PROJECT`` (default "Untitled"), and one log line says so.
        """
        if not (self._task or self.task_id or Task.current_task()
                or self.project_name or self.task_name):  # fmt: skip
            self.project_name = os.environ.get("MODELBOOK_PROJECT") or DEFAULT_PROJECT
            self.task_name = Path(sys.argv[0] or "training").stem or "training"
            log.warning(
                "%s: no task given; registering models on a new task %r in project %r (pass "
                "task=, project_name=/task_name=, or set MODELBOOK_PROJECT to choose)",
                self.owner, self.task_name, self.project_name,
            )  # fmt: skip
        self._finished = False
        with self._lock:
            ok, task = self.attempt("find or create the task", self._resolve_task)
            if not ok or task is None:
                return
            if hparams:
                params = dict(hparams)
                self.attempt("record the hyper-parameters", lambda: task.connect(params, section))
            self.attempt("look up the model registered earlier",
                         lambda: self._adopt(task, monitor))  # fmt: skip

    def record(self, metrics: Mapping[str, Any], step: int) -> None:
        """Report the numeric ``metrics`` seen at an evaluation as the task's scalars (title
        and series: the key), so the run's curves sit beside its versions. Queued in the
        background; never raises."""
        if self._task is None:
            return
        logger = self._task.get_logger()

        def report() -> None:
            for key, value in metrics.items():
                number = as_scalar(value)
                if number is not None and math.isfinite(number):
                    logger.report_scalar(str(key), str(key), number, int(step))

        # not under the lock: the reports are batched in memory (thread-safe), and the
        # training thread must not wait while the writer's thread registers a version
        self.attempt("report the metrics", report)

    def staging(self, filename: str) -> tuple[Path, Path]:
        """Where to save the next snapshot, and the private folder holding it.

        A path in the upload spool when the model is reachable, so ``update_weights`` moves
        the file instead of copying it; else a temporary folder.
        """
        with self._lock:
            ok, path = self.attempt("prepare the model", lambda: self._staging_path(filename))
        if ok and path is not None:
            return path, path.parent
        workdir = Path(tempfile.mkdtemp(prefix="modelbook-"))
        return workdir / filename, workdir

    def save(
        self, filename: str, iteration: int, metadata: Metadata, write: Write,
        stager: Stager | None = None,
    ) -> None:  # fmt: skip
        """Register an improvement as the model's next version, saved to ``filename``.

        With a ``stager`` (the state can be copied into host memory) and room under the
        snapshot memory cap, the state is copied and this returns; the writer's thread then
        serialises the copy and registers it. Otherwise ``write(path)`` saves the live state
        here and it is registered at once. Never raises for registry or storage failures.
        """
        self._seq += 1
        seq = self._seq
        if stager is not None and self.snapshot_memory > 0:
            writer = self.writer
            if writer is None:
                writer = self.writer = BackgroundWriter(self.owner, self.snapshot_memory,
                                                        self._deliver)  # fmt: skip
            slot = writer.reserve(stager.nbytes)
            if slot is not None:
                try:
                    slot.buffers, staged = stager.stage(slot.buffers)
                except Exception as exc:  # a state the copy cannot take: saved as usual
                    writer.cancel(slot)
                    log.warning("%s: could not copy the state of step %d into memory (%s: %s); "
                                "saving it on the training thread", self.owner, iteration,
                                type(exc).__name__, exc)  # fmt: skip
                else:
                    slot.nbytes = stager.nbytes
                    writer.submit(slot, staged, filename, iteration=iteration,
                                  metadata=metadata, seq=seq)  # fmt: skip
                    return
        path, workdir = self.staging(filename)
        snapshot = Snapshot(path, iteration, metadata, workdir, seq)
        saved, _ = self.attempt("save the weights", partial(write, path))
        if not saved:
            snapshot.discard()
            return
        self.register(snapshot)

    def register(self, snapshot: Snapshot) -> bool:
        """Queue ``snapshot`` as the model's newest version (stored in the background).
        Returns whether it was queued; if not, it is kept and retried at the end unless a
        newer best replaces it. A snapshot older than one registered before is dropped."""
        with self._lock:
            if snapshot.seq and snapshot.seq < self._newest:
                log.info("%s: the snapshot of step %d was dropped: a newer best was registered "
                         "before it was written", self.owner, snapshot.iteration)  # fmt: skip
                snapshot.discard()
                return False
            self._newest = max(self._newest, snapshot.seq)
            if self.pending is not None and self.pending is not snapshot:
                self.pending.discard()
            self.pending = snapshot
            ok, _ = self.attempt(f"register the model at step {snapshot.iteration}",
                                  lambda: self._store(snapshot))  # fmt: skip
            if not ok:
                return False
            self.pending = None
            snapshot.discard()
            self.registered += 1
            self.last_iteration = snapshot.iteration
            if self.keep_last is not None:
                self.attempt("delete old snapshots", self._prune)
            return True

    def _deliver(self, slot: Slot) -> None:
        """On the writer's thread: serialise a staged snapshot, then register it."""
        if slot.seq < self._newest or slot.write is None:
            return  # a newer best was registered (saved synchronously) meanwhile
        path, workdir = self.staging(slot.filename)
        snapshot = Snapshot(path, slot.iteration, slot.metadata, workdir, slot.seq)
        what = f"save the snapshot of step {slot.iteration}"
        try:
            saved, _ = self.attempt(what, partial(slot.write, path))
        except Exception as exc:  # a serialisation error: reported like a registry failure
            with self._lock:
                self.failures.append(f"could not {what}: {type(exc).__name__}: {exc}")
            log.error("%s: could not %s: %s: %s", self.owner, what, type(exc).__name__, exc)
            saved = False
        if not saved:
            snapshot.discard()
            return
        self.register(snapshot)

    def finish(self, success: bool) -> None:
        """Training ended: retry a pending best, wait (bounded) for the upload queue, check
        that the best is the model's current version, prune, publish, report failures."""
        if self._finished:  # a hook that raised at the end is followed by on_exception
            return
        self._finished = True
        wait = config.upload_timeout()  # what is left keeps uploading in the background
        if self.writer is not None:  # not under the lock: the writer registers through it
            unwritten = self.writer.close(wait)
            if unwritten:
                self.failures.append(
                    f"snapshot(s) of step(s) {unwritten} still being written after {wait:.0f} "
                    "s; they are registered in the background when done"
                )
        if self.pending is not None:
            self.register(self.pending)
        # not under the lock either: a writer still running registers through it
        ok, left = self.attempt("wait for uploads", lambda: OutputModel.wait_for_uploads(wait))
        with self._lock:
            self._settle(success, wait, settled=ok and not left, left=len(left or []))

    def _settle(self, success: bool, wait: float, settled: bool, left: int) -> None:
        """After the uploads: check, prune, publish, and report the failures."""
        if left and self._online():  # the registry away is no failure: the core said so
            self.failures.append(
                f"{left} upload(s) still pending after {wait:.0f} s; they stay "
                "in the spool and resume in the background or in the next process"
            )
        model = self._model
        if model is not None and model.id is not None and settled:
            self.model_id = model.id
            self.attempt("check the registered model", self._check_current)
            if self.keep_last is not None:
                self.attempt("delete old snapshots", self._prune)
        ready = model is not None and model.id is not None and (settled or not self._online())
        if ready and success and self.publish_on_end and self.pending is None:
            self.attempt("publish the best model", model.publish)  # type: ignore[union-attr]
        if self.failures:
            kept = (f" The best model was NOT registered; its weights are kept at "
                    f"{self.pending.path}." if self.pending else "")  # fmt: skip
            warnings.warn(
                f"{self.owner}: {len(self.failures)} registry operation(s) failed during "
                f"training; first: {self.failures[0]}; last: {self.failures[-1]}.{kept}",
                RegistryWarning,
                stacklevel=4,
            )

    def attempt(self, what: str, fn: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``fn``; a registry or storage failure becomes a warning and ``(False, None)``."""
        try:
            return True, fn()
        except (ModelbookError, OSError) as exc:
            self.failures.append(f"could not {what}: {exc}")
            if len(self.failures) == 1:
                warnings.warn(
                    f"{self.owner}: could not {what}: {exc}. Training continues; failures are "
                    "summarised when it ends",
                    RegistryWarning,
                    stacklevel=4,
                )
            return False, None

    # -- internals --------------------------------------------------------------------------

    def _resolve_task(self) -> Task:
        if self._task is None:
            if self.task_id:
                self._task = Task.get_task(task_id=self.task_id)
            else:
                self._task = Task.current_task() or Task.init(
                    project_name=self.project_name, task_name=self.task_name
                )
        self.task_id = self._task.id
        return self._task

    def _entry(self, task: Task) -> str:
        return self.model_name or task.name

    def _adopt(self, task: Task, monitor: Monitor) -> None:
        model_id = self.model_id
        try:
            if model_id is not None and Model(model_id).task != task.id:
                model_id = None  # saved by a run on another task: not ours
        except NotFoundError:
            model_id = None  # deleted since, or not registered: the next best creates one
        if model_id is None:
            found = task.models["output"].get(self._entry(task))
            model_id = found.id if found is not None else None
        if model_id is None:
            return
        self.model_id = model_id
        other = 0
        for version in Model(model_id).versions:
            meta = version.metadata
            if (
                meta.get("monitor", {}).get("value"),
                meta.get("monitor_mode", {}).get("value"),
            ) != (monitor.monitor, monitor.mode):
                other += 1
                continue
            monitor.seed(_number(meta.get("monitor_value", {}).get("value")), version.iteration)
        if other:
            warnings.warn(
                f"{self.owner}: model {model_id} has {other} version(s) registered for another "
                f"monitor or mode than {monitor.monitor!r} ({monitor.mode}); they are not compared",
                RegistryWarning,
                stacklevel=4,
            )

    def _output_model(self, task: Task) -> OutputModel:
        if self._model is None:
            self._model = OutputModel(
                task=task,
                name=self._entry(task),
                tags=self.tags,
                label_enumeration=self.labels,
                framework=self.framework,
                # adopting needs the registry; while it is away the best goes on a new model
                base_model_id=self.model_id if self._online() else None,
                comment=f"best model registered by {self.owner}",
            )
            self._model.connect(task, self._entry(task))
        return self._model

    @staticmethod
    def _online() -> bool:
        return uploads.queue_for(config.get_backend(), config.home()).online()

    def _staging_path(self, filename: str) -> Path:
        return self._output_model(self._resolve_task()).staging_path(filename)

    def _store(self, snapshot: Snapshot) -> None:
        model = self._output_model(self._resolve_task())
        # weights and metadata go together: the version's metadata describes its weights
        if snapshot.path.is_dir():
            model.update_weights_package(
                weights_path=str(snapshot.path), upload_uri=self.upload_uri,
                target_filename=snapshot.path.name, auto_delete_file=False,
                iteration=snapshot.iteration, metadata=snapshot.metadata,
            )  # fmt: skip
        else:
            model.update_weights(
                weights_filename=str(snapshot.path), upload_uri=self.upload_uri,
                auto_delete_file=False, iteration=snapshot.iteration, metadata=snapshot.metadata,
            )  # fmt: skip
        self.model_id = model.id or self.model_id  # None while the registry is unreachable

    def _check_current(self) -> None:
        current = Model(self.model_id).iteration if self.model_id else None
        if self.last_iteration is not None and current != self.last_iteration:
            self.failures.append(
                f"the best model (step {self.last_iteration}) is not the model's current "
                f"version (step {current}): its upload failed; see the modelbook log"
            )

    def _prune(self) -> None:
        """Prune the model's versions older than the current one and the newest
        ``keep_last`` before it, through the core's retention: the current weights, the
        best version and bytes anything else references are never deleted."""
        model = self._model
        if model is None or model.id is None or is_local(model.id) or model.published:
            return  # nothing registered yet
        report = model.prune_versions(keep_last=int(self.keep_last or 0) + 1)
        for uri, why in report.failed.items():
            self.failures.append(f"could not delete the pruned weights {uri}: {why}")
