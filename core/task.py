"""``Task``: one run of a training script, the owner of the models it produces."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from modelbook import config, deferred, uploads, validate
from modelbook.backends.base import Backend
from modelbook.errors import InvalidArgumentError, ModelbookError, TaskNotFoundError, is_transient
from modelbook.input_model import InputModel
from modelbook.model import BaseModel
from modelbook.records import ARCHIVED_TAG, ModelQuery, TaskRecord
from modelbook.reporting import TaskReports, flush_reports
from modelbook.task_filter import filter_tasks
from modelbook.task_models import _ModelEntries

log = logging.getLogger("modelbook")


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = "" if value is None else str(value)
    return flat


class Task(_ModelEntries, TaskReports):
    """A training run: it owns output models and records hyper-parameters and inputs.

    Create one with :meth:`Task.init`; fetch one with :meth:`Task.get_task`.

    Example:
        >>> import modelbook, tempfile
        >>> modelbook.configure(home=tempfile.mkdtemp())
        >>> task = Task.init(project_name="examples", task_name="demo")
        >>> task.connect({"lr": 0.1, "layers": 2})["lr"]
        0.1
        >>> task.get_parameters()["General/lr"]
        '0.1'
        >>> task.close()
        >>> Task.get_task(task_id=task.id).status
        'completed'
    """

    class TaskTypes(Enum):
        """ClearML's task types: ``Task.init(..., task_type=Task.TaskTypes.testing)``."""

        def __str__(self) -> str:
            return str(self.value)

        def __eq__(self, other: object) -> bool:
            return str(self) == str(other)

        def __hash__(self) -> int:
            return hash(str(self))

        training = "training"
        testing = "testing"
        inference = "inference"
        data_processing = "data_processing"
        application = "application"
        monitor = "monitor"
        controller = "controller"
        optimizer = "optimizer"
        service = "service"
        qc = "qc"
        custom = "custom"

    _current: ClassVar[Task | None] = None
    _exit_hooked: ClassVar[bool] = False
    _failed: ClassVar[bool] = False
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, record: TaskRecord, backend: Backend, local: str | None = None) -> None:
        """Wrap a task record; use :meth:`init` or :meth:`get_task` instead.

        ``local``: the local id the task was created under (its record may wait in the
        spool, see :mod:`modelbook.deferred`)."""
        self._be = backend
        self._record: TaskRecord | None = record
        self._local = local
        self._id: str | None = None if deferred.is_local(record.id) else record.id
        self._closed = False
        self._project_name: str | None = None

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        project_name: str | None = None,
        task_name: str | None = None,
        task_type: str | Task.TaskTypes = "training",
        tags: Sequence[str] | None = None,
        reuse_last_task_id: bool | str = True,
        continue_last_task: bool | str | int = False,
        output_uri: str | bool | None = None,
        auto_connect_arg_parser: bool | Mapping[str, bool] = True,
        auto_connect_frameworks: bool | Mapping[str, Any] = True,
        auto_resource_monitoring: bool = True,
        auto_connect_streams: bool | Mapping[str, bool] = True,
        deferred_init: bool = False,
    ) -> Task:
        """Start the task of this process (or return it, if one was already started).

        Args:
            project_name: project to create the task in (created if needed).
            task_name: task name; default: the script's file name.
            task_type: a :class:`Task.TaskTypes` member or its name ("training", "testing",
                "inference", ...).
            tags: user tags.
            reuse_last_task_id: reuse the newest task with the same project and name if it
                holds nothing yet (no models, no parameters); a string reuses that task id.
            continue_last_task: continue the newest task with this project and name, keeping
                its models; a string continues that task id.
            output_uri: default weights destination of its models: a folder, ``file://``,
                ``http(s)://`` files server; True = the backend's default; False/None = none
                (weights go to the backend default store, as with True).
            auto_connect_arg_parser: accepted for compatibility; modelbook never patches.
            auto_connect_frameworks: accepted for compatibility; use the integrations.
            auto_resource_monitoring: accepted for compatibility.
            auto_connect_streams: accepted for compatibility.
            deferred_init: accepted for compatibility.
        """
        with cls._lock:
            current = cls._current
            if current is not None and not current._closed:
                if (project_name, task_name) != (None, None) and (
                    task_name not in (None, current.name)
                    or project_name not in (None, current.project_name)
                ):
                    log.warning(
                        "Task.init was already called in this process: returning task %r "
                        "(%s / %s); call task.close() first to start another",
                        current.id,
                        current.project_name,
                        current.name,
                    )
                return current
            task_type = cls._task_type(task_type)
            config.upload_timeout()  # a bad MODELBOOK_UPLOAD_TIMEOUT is said now, not at close
            backend = config.get_backend()
            project_name = validate.name(
                "Untitled" if project_name is None else project_name, "project_name"
            )
            default_name = Path(sys.argv[0] or "task").stem or "Untitled Task"
            name = validate.name(default_name if task_name is None else task_name, "task_name")
            local = deferred.new_local_id()
            create = {
                "key": local, "project_name": project_name, "name": name, "type": task_type,
                "tags": validate.tags(tags),
                "output_destination": cls._destination(output_uri, backend),
            }  # fmt: skip
            fields: dict[str, Any] = {"status": "in_progress"}
            if output_uri is not None:
                fields["output_destination"] = create["output_destination"]
            queue = uploads.queue_for(backend, config.home())
            record = None
            if queue.online():
                try:
                    with backend.fail_fast():
                        record = cls._open(backend, queue, create, fields, reuse_last_task_id,
                                           continue_last_task)  # fmt: skip
                except ModelbookError as exc:
                    if not is_transient(exc):
                        raise
                    queue.mark_unreachable(exc)
            if record is None:  # registered later, by the upload worker or `modelbook sync`
                log.info("task %r has the local id %s until the registry has it", name, local)
                queue.call(local, "create_task", create)
                queue.call(local, "update_task", {"task": local, "fields": fields})
                record = _apply(TaskRecord(
                    id=local, name=name, project=None, type=task_type, tags=validate.tags(tags),
                    system_tags=[deferred.key_tag(local)],
                ), fields)  # fmt: skip
            created = record.id == local or queue.mapped(local) is not None
            task = cls(record, backend, local=local if created else None)
            task._project_name = project_name
            cls._current = task
            cls._hook_exit()
            return task

    @classmethod
    def _open(
        cls,
        backend: Backend,
        queue: uploads.UploadQueue,
        create: dict[str, Any],
        fields: dict[str, Any],
        reuse: bool | str,
        cont: bool | str | int,
    ) -> TaskRecord:
        """Find the task to reuse or create it, then start it (the registry answers)."""
        project = backend.get_or_create_project(create["project_name"])
        record = cls._reusable(backend, project.id, create["name"], reuse, cont)
        if record is None:
            record = deferred.create_task(backend, queue.resolve, create)
            queue.remember(create["key"], record.id)
        return backend.update_task(record.id, **fields)

    @classmethod
    def _task_type(cls, task_type: object) -> str:
        names = [t.value for t in cls.TaskTypes]
        if task_type is None:
            return "training"
        if str(task_type) not in names:
            raise InvalidArgumentError(
                f"Task type {task_type!r} not supported, options are: {', '.join(names)}"
            )
        return str(task_type)

    @staticmethod
    def _destination(output_uri: str | bool | None, backend: Backend) -> str | None:
        if output_uri is True:
            return backend.default_destination()
        if output_uri in (None, False):
            return None
        return validate.destination(output_uri)  # type: ignore[arg-type]

    @staticmethod
    def _reusable(
        backend: Backend, project: str, name: str, reuse: bool | str, cont: bool | str | int
    ) -> TaskRecord | None:
        for wanted in (cont, reuse):
            if isinstance(wanted, str) and wanted:
                return backend.get_task(wanted)
        previous = backend.find_tasks(project=project, name=name)
        if not previous:
            return None
        last = previous[0]
        if cont:
            return last
        empty = not (last.output_models or last.input_models or last.hyperparams)
        has_models = backend.count_models(ModelQuery(task=last.id)) > 0
        if (
            reuse
            and empty
            and not has_models
            and last.status in ("created", "in_progress", "failed")
        ):
            return last
        return None

    @classmethod
    def _hook_exit(cls) -> None:
        if cls._exit_hooked:
            return
        cls._exit_hooked = True
        previous = sys.excepthook

        def excepthook(*args: Any) -> None:
            cls._failed = True
            previous(*args)

        sys.excepthook = excepthook
        atexit.register(cls._close_at_exit)

    @classmethod
    def _close_at_exit(cls) -> None:
        task = cls._current
        if task is not None and not task._closed:
            try:
                task._finish("failed" if cls._failed else "completed")
            except Exception as exc:  # at exit there is no caller left to raise to
                log.warning("could not close task %s at exit: %s", task.id, exc)

    # -- offline mode (ClearML's names) ---------------------------------------------------
    @classmethod
    def set_offline(cls, offline_mode: bool = False) -> None:
        """Keep everything local: tasks and models get local ids, calls and weights wait in
        the spool of the modelbook home until ``modelbook sync`` (or
        :meth:`import_offline_session`) sends them. Same as ``MODELBOOK_OFFLINE=1``."""
        config.set_offline(offline_mode)

    @classmethod
    def is_offline(cls) -> bool:
        return config.offline()

    @classmethod
    def get_offline_mode_folder(cls) -> Path | None:
        """The spool holding what waits for the registry (of this task's home)."""
        return config.home() / "spool"

    @classmethod
    def import_offline_session(
        cls, session_folder_zip: str, previous_task_id: str | None = None,
        iteration_offset: int | None = 0,
    ) -> str | None:
        """Send what an offline run left in a spool (a folder, a home, or a zip of one) to
        the configured registry, waiting up to the upload timeout. Returns the registry id
        of the (first) task it created, or None if nothing could be sent yet."""
        from modelbook.sync import import_session

        return import_session(Path(session_folder_zip), timeout=config.upload_timeout())

    @classmethod
    def current_task(cls) -> Task | None:
        """The task started by :meth:`init` in this process, or None."""
        return cls._current

    @classmethod
    def get_task(
        cls,
        task_id: str | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        tags: Sequence[str] | None = None,
        allow_archived: bool = True,
        task_filter: Mapping[str, Any] | None = None,
    ) -> Task:
        """A task by id, or the newest task with this project and name.

        Args:
            tags: only tasks matching this ClearML tag filter (``["best", "-debug"]``,
                ``"__$all"``, ``"__$not"``).
            allow_archived: False leaves archived tasks out.
            task_filter: more conditions: ``status``, ``type`` (lists of accepted values),
                ``system_tags``, ``order_by`` (``["-last_update"]``).
        """
        backend = config.get_backend()
        if task_id:
            current = cls._current
            if current is not None and task_id in (current._local, current.id):
                return current
            registry_id = uploads.queue_for(backend, config.home()).resolve(task_id)
            return cls(backend.get_task(registry_id), backend)
        if not task_name:
            raise InvalidArgumentError(
                "Task.get_task needs task_id, or task_name (and project_name)"
            )
        project = backend.find_project(project_name) if project_name else None
        if project_name and project is None:
            raise TaskNotFoundError(f"named {task_name!r}: project {project_name!r} does not exist")
        found = backend.find_tasks(project=project.id if project else None, name=task_name)
        found = filter_tasks(found, validate.tags(tags, allow_none_terms=True), allow_archived,
                             task_filter)  # fmt: skip
        if not found:
            raise TaskNotFoundError(
                f"named {task_name!r} in project {project_name!r}"
                + (f" with tags {list(tags)!r}" if tags else "")
                + (f" matching {dict(task_filter)!r}" if task_filter else "")
            )
        return cls(found[0], backend)

    # -- properties -----------------------------------------------------------------------
    def _queue(self) -> uploads.UploadQueue:
        return uploads.queue_for(self._be, config.home())

    @property
    def _chain(self) -> str:
        """The spool chain of this task's calls and uploads (they run in order)."""
        return self._local or self._id or ""

    def _registry_id(self) -> str | None:
        """The id the registry gave this task, once it has it."""
        if self._id is None and self._local is not None:
            self._id = self._queue().mapped(self._local)
        return self._id

    def _fresh(self) -> TaskRecord:
        """The record as the registry has it now; what this task knows of it when the
        registry is away or has not received the task's calls yet."""
        registry_id = self._registry_id()
        queue = self._queue()
        if registry_id is not None and queue.online() and not queue.waiting_calls(self._chain):
            try:
                with self._be.fail_fast():
                    self._record = self._be.get_task(registry_id)
            except ModelbookError as exc:
                if not is_transient(exc):
                    raise
                queue.mark_unreachable(exc)
        return self._data()

    def _data(self) -> TaskRecord:
        if self._record is None:
            self._record = self._be.get_task(self._queue().resolve(self.id))
        return self._record

    def reload(self) -> None:
        self._record = None
        self._fresh()

    def _update(self, **fields: Any) -> None:
        """Set fields now, or (registry away, offline) when the registry answers; this task
        shows them at once either way."""
        known = _apply(self._data(), fields)
        record = self._queue().call(self._chain, "update_task",
                                    {"task": self.id, "fields": fields})  # fmt: skip
        self._record = record if record is not None else known

    @property
    def id(self) -> str:
        """The registry's id; a local id (``local-...``) until the registry has the task."""
        return self._registry_id() or self._local or ""

    @property
    def name(self) -> str:
        return self._data().name

    @property
    def project(self) -> str | None:
        """The project **id** (as in ClearML)."""
        return self._data().project

    @property
    def project_name(self) -> str:
        if self._project_name is None:
            project = self._data().project
            self._project_name = self._be.get_project(project).name if project else ""
        return self._project_name

    def get_project_name(self) -> str:
        return self.project_name

    @property
    def status(self) -> str:
        return self._fresh().status

    @property
    def comment(self) -> str:
        return self._data().comment

    def set_comment(self, comment: str) -> None:
        if not isinstance(comment, str):
            raise InvalidArgumentError(f"comment must be a string, got {comment!r}")
        self._update(comment=comment)

    def set_archived(self, archive: bool) -> None:
        """Archive the task (or bring it back): ``get_task(allow_archived=False)`` skips it."""
        tags = [t for t in self._data().system_tags if t != ARCHIVED_TAG]
        self._update(system_tags=[*tags, ARCHIVED_TAG] if archive else tags)

    def get_archived(self) -> bool:
        return ARCHIVED_TAG in self._fresh().system_tags

    @property
    def task_type(self) -> str:
        return self._data().type

    @property
    def output_uri(self) -> str | None:
        return self._data().output_destination

    @output_uri.setter
    def output_uri(self, value: str | bool | None) -> None:
        self._update(output_destination=self._destination(value, self._be))

    storage_uri = output_uri

    def get_last_iteration(self) -> int:
        return self._fresh().last_iteration

    # -- parameters and models ------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError(
                f"task {self._id!r} is closed; start a new one with Task.init"
            )

    def connect(
        self, mutable: Any, name: str | None = None, ignore_remote_overrides: bool = False
    ) -> Any:
        """Connect a model or hyper-parameters to this task and return it.

        ``OutputModel`` / ``InputModel``: registered as the task's output / input under
        ``name``. A dict (nested dicts flattened with "/"): stored as hyper-parameters in
        section ``name`` (default "General"). A closed task refuses hyper-parameters and
        input models (what a run started from is fixed when it ends) but still takes output
        models, as a ClearML server takes models for a completed task: a best model whose
        weights arrive after ``close()`` is registered, not lost.
        """
        from modelbook.output_model import OutputModel

        if isinstance(mutable, OutputModel):  # also once closed: late weights are not lost
            mutable.connect(self, name)
            return mutable
        self._check_open()
        if isinstance(mutable, InputModel):
            self._update(comment=f"{self._data().comment}\nUsing model id: {mutable.id}".lstrip())
            mutable.connect(self, name, ignore_remote_overrides)
        elif isinstance(mutable, Mapping):
            self._update(hyperparams={name or "General": _flatten(mutable)})
        elif hasattr(mutable, "__dict__") and not isinstance(mutable, BaseModel):
            self._update(hyperparams={name or "General": _flatten(vars(mutable))})
        else:
            raise InvalidArgumentError(
                f"cannot connect {type(mutable).__name__}; accepted: OutputModel, InputModel, "
                "a dict of hyper-parameters, or an object with attributes (e.g. argparse.Namespace)"
            )
        return mutable

    def get_parameters(self) -> dict[str, str]:
        """Hyper-parameters as ``{"Section/name": "value"}`` strings."""
        return {
            f"{section}/{key}": value
            for section, params in self._fresh().hyperparams.items()
            for key, value in params.items()
        }

    def get_parameters_as_dict(self) -> dict[str, dict[str, str]]:
        return {k: dict(v) for k, v in self._fresh().hyperparams.items()}

    def set_parameters(self, params: Mapping[str, Any]) -> None:
        """Set ``{"Section/name": value}`` hyper-parameters (no section: "General")."""
        if not isinstance(params, Mapping):
            raise InvalidArgumentError(
                f"params must be a dict of 'Section/name' to value, got {params!r:.80}"
            )
        sections: dict[str, dict[str, str]] = {}
        for key, value in params.items():
            if not isinstance(key, str) or not key:
                raise InvalidArgumentError(
                    f"parameter names must be non-empty strings ('Section/name'), got {key!r:.80}"
                )
            section, _, name = key.rpartition("/") if "/" in key else ("General", "", key)
            sections.setdefault(section, {})[name] = str(value)
        self._update(hyperparams=sections)

    # -- lifecycle ------------------------------------------------------------------------
    def mark_started(self, force: bool = False) -> None:
        self._update(status="in_progress")

    def mark_completed(
        self, ignore_errors: bool = True, status_message: str | None = None, force: bool = False
    ) -> None:
        self._update(status="completed")

    def mark_stopped(self, force: bool = False, status_message: str | None = None) -> None:
        self._update(status="stopped")

    def mark_failed(
        self,
        ignore_errors: bool = True,
        status_reason: str | None = None,
        status_message: str | None = None,
        force: bool = False,
    ) -> None:
        self._update(status="failed")

    def flush(self, wait_for_uploads: bool = False) -> bool:
        """Send the reported values that wait; with ``wait_for_uploads``, wait (up to the
        upload timeout) for pending uploads; returns False if some are still pending."""
        from modelbook.output_model import OutputModel

        flush_reports()
        if wait_for_uploads:
            return not OutputModel.wait_for_uploads(timeout=config.upload_timeout())
        return True

    def _finish(self, status: str) -> None:
        self.flush(wait_for_uploads=True)
        self._update(status=status)  # behind the calls still waiting, if any
        self._closed = True
        with Task._lock:
            if Task._current is self:
                Task._current = None

    def close(self) -> None:
        """Wait for pending uploads (up to ``modelbook.configure(upload_timeout=...)``,
        default 300 s, reporting what is left), mark the task completed, and end it."""
        if not self._closed:
            self._finish("completed")

    def __repr__(self) -> str:
        return f"<Task id={self.id!r} name={self._data().name!r}>"


def _apply(record: TaskRecord, fields: Mapping[str, Any]) -> TaskRecord:
    """``record`` with ``fields`` set as ``Backend.update_task`` sets them."""
    values = {k: v for k, v in fields.items() if k not in ("hyperparams", "last_iteration")}
    if fields.get("hyperparams"):
        merged = {k: dict(v) for k, v in record.hyperparams.items()}
        for section, params in fields["hyperparams"].items():
            merged.setdefault(section, {}).update({k: str(v) for k, v in params.items()})
        values["hyperparams"] = merged
    if fields.get("last_iteration") is not None:
        values["last_iteration"] = max(record.last_iteration, int(fields["last_iteration"]))
    return dataclasses.replace(record, **values)
