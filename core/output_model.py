"""``OutputModel``: the model a task produces, and the one place weights get registered."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbook import config, deferred, uploads, validate
from modelbook.errors import (
    InvalidArgumentError,
    ModelbookError,
    ModelPublishedError,
    UploadError,
    WeightsArgumentError,
    WeightsFileNotFoundError,
    is_transient,
)
from modelbook.frameworks import Framework
from modelbook.localcopy import make_package
from modelbook.model import BaseModel
from modelbook.records import PACKAGE_TAG, Metadata, ModelRecord, to_metadata
from modelbook.storage import scheme_of
from modelbook.storage.local import to_uri
from modelbook.storage.placement import Destination, is_object_path
from modelbook.storage.spool import Job

if TYPE_CHECKING:
    from modelbook.task import Task

log = logging.getLogger("modelbook")
_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelRecord))
#: Waits run before :meth:`OutputModel.wait_for_uploads` waits for the queue: producers that
#: still hand weights to it (the integrations' background snapshot writers). Each takes the
#: timeout left and returns whether it is done.
_producers: list[Callable[[float | None], bool]] = []


def add_upload_producer(wait: Callable[[float | None], bool]) -> None:
    """Make ``wait_for_uploads`` first call ``wait(timeout)`` (once per distinct ``wait``)."""
    if wait not in _producers:
        _producers.append(wait)


class OutputModel(BaseModel):
    """A model owned by a task; each ``update_weights`` registers a new version of it.

    Nothing is written until the first ``update_weights`` (or metadata / publish call):
    then the model record is created, connected to the task, and the weights are stored.
    While the registry is away (or in offline mode) the model gets a local id
    (``local-...``) and all of that happens in the background when it answers again.

    Args:
        task: the owning task, or its id (default: ``Task.current_task()``).
        config_text: the model design as text (exclusive with ``config_dict``).
        config_dict: the model design as a dict.
        label_enumeration: ``{label: int id}``; default: the task's labels.
        name: model name; default: the task name.
        tags: user tags.
        comment: free text, after "Created by task id: <id>".
        framework: e.g. "PyTorch"; default: inferred from the first weights file name.
        base_model_id: reuse this existing model record instead of creating one.

    Example:
        >>> import modelbook, tempfile, pathlib
        >>> from modelbook import Task
        >>> modelbook.configure(home=tempfile.mkdtemp())
        >>> task = Task.init(project_name="docs", task_name="output model")
        >>> weights = pathlib.Path(tempfile.mkdtemp()) / "model.pt"
        >>> _ = weights.write_bytes(b"weights")
        >>> model = OutputModel(task=task, framework="PyTorch")
        >>> model.update_labels({"background": 0, "label": 255})
        >>> uri = model.update_weights(weights_filename=str(weights), iteration=1)
        >>> OutputModel.wait_for_uploads(timeout=60)  # stored in the background until then
        []
        >>> model.reload()
        >>> model.iteration, model.labels["label"], model.get_weights() is not None
        (1, 255, True)
        >>> task.close()
    """

    def __init__(
        self,
        task: Task | str | None = None,
        config_text: str | None = None,
        config_dict: dict | None = None,
        label_enumeration: Mapping[str, int] | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        comment: str | None = None,
        framework: str | None = None,
        base_model_id: str | None = None,
    ) -> None:
        from modelbook.task import Task

        if isinstance(task, str) and task:  # a task id: that task
            task = Task.get_task(task_id=task)
        task = task or Task.current_task()
        if task is None:
            raise InvalidArgumentError(
                "task object was not provided, and no current task was found; "
                "call Task.init(...) first or pass task="
            )
        if not isinstance(task, Task):
            raise InvalidArgumentError(
                f"task must be a Task (or a task id), got {type(task).__name__} {task!r}"
            )
        super().__init__(task._be)
        self._task = task
        self._id: str | None = None
        self._key = deferred.new_local_id()  # names this model until the registry does
        self._queued = False  # its creation waits in the spool
        self._stale = False
        self._entry_name: str | None = None
        self._upload_uri: str | None = task.output_uri
        self._pending: dict[str, Any] = {
            "name": validate.name(name, "model name") if name is not None else task.name,
            "tags": validate.tags(tags),
            "comment": f"Created by task id: {task.id}"
            + (f"\n{validate.free_text(comment, 'comment')}" if comment else ""),
            "framework": validate.framework(framework),
            "design": validate.config_text(config_text, config_dict),
            "labels": validate.labels(label_enumeration) if label_enumeration is not None else None,
        }
        if base_model_id:
            self._adopt(base_model_id, name is not None)

    @property
    def id(self) -> str | None:
        """The registry's id; the local id while its creation waits for the registry; None
        before anything was written."""
        return self._registry_id() or (self._key if self._queued else None)

    def _registry_id(self) -> str | None:
        if self._id is None:  # the upload worker may have created it since
            self._id = self._queue().mapped(self._key)
        return self._id

    @property
    def upload_storage_uri(self) -> str | None:
        return self._upload_uri

    def _adopt(self, model_id: str, rename: bool) -> None:
        record = self._be.get_model(model_id)
        pending, task_record = self._pending, self._task._data()
        own = record.task == self._task.id  # a resumed run re-attaching to its own model
        fields: dict[str, Any] = {"task": self._task.id, "project": self._task.project}
        if not own:
            fields["comment"] = record.comment + f"\nOverwritten by task id: {self._task.id}"
        if rename:
            fields["name"] = pending["name"]
        for key in ("design", "labels", "framework"):
            if pending[key] is not None:
                fields[key] = pending[key]
        if pending["tags"]:
            fields["tags"] = pending["tags"]
        self._id = model_id
        self._record = self._be.update_model(model_id, **fields)
        entry = next((e.name for e in task_record.output_models if e.model == model_id), None)
        if entry is None:
            entry = Path(record.uri).stem if record.uri else "Output Model"
            self._task._connect_model(self, "output", entry, self._record.design,
                                      self._record.labels)  # fmt: skip
        self._entry_name = entry

    def _create_fields(self, entry: str | None) -> dict[str, Any]:
        pending, task_record = self._pending, self._task._data()
        parent = next(
            (e.model for e in task_record.input_models if e.name == (self._entry_name or entry)),
            None,
        )
        return {
            "name": pending["name"],
            "project": task_record.project,
            "task": task_record.id,
            "comment": pending["comment"],
            "tags": pending["tags"],
            "framework": pending["framework"],
            "design": pending["design"]
            if pending["design"] is not None
            else task_record.model_config,
            "labels": pending["labels"] if pending["labels"] is not None else task_record.labels,
            "parent": parent,
        }

    def _create_spec(self, entry: str | None) -> dict[str, Any]:
        """What the upload worker needs to create this model later (and connect it to its
        task as ``entry``, when it has one)."""
        self._entry_name = self._entry_name or entry
        return {
            "fields": self._create_fields(entry),
            "task": self._task.id,
            "entry": self._entry_name,
        }

    def _ensure_created(self, entry_name: str | None = None) -> None:
        """Create the model record and connect it to the task, once; when the registry is
        away (or offline), the creation waits in the spool and the model has a local id."""
        if self.id is not None:
            return
        spec = self._create_spec(entry_name)  # no entry yet: the first weights name it
        record = self._queue().call(self._task._chain, "create_model",
                                    {"key": self._key, **spec}, model_key=self._key)  # fmt: skip
        if record is None:
            self._queued = True
            return
        self._id, self._record = record.id, record
        self._task._record = None  # its model entries, design and labels changed

    def _report_target(self) -> tuple[str, Callable[[], str]]:
        self._ensure_created()  # reports go behind the model's creation, in its task's chain
        return self._task._chain, lambda: self._ref

    def _registered_id(self) -> str | None:
        return self._registry_id()

    @property
    def _ref(self) -> str:
        """How deferred calls name this model: its registry id, else its local id."""
        return self._registry_id() or self._key

    def _set(self, **fields: Any) -> None:
        self._ensure_created()
        known = self._data()
        record = self._queue().call(self._task._chain, "update_model",
                                    {"model": self._ref, "fields": fields}, self._key)  # fmt: skip
        plain = {k: v for k, v in fields.items() if k in _RECORD_FIELDS}
        self._record = record if record is not None else dataclasses.replace(known, **plain)

    def _set_metadata(self, items: Metadata, replace: bool) -> None:
        self._ensure_created()
        known = self._data()
        args = {"model": self._ref, "items": items, "replace": replace}
        record = self._queue().call(self._task._chain, "set_model_metadata", args, self._key)
        merged = dict(items) if replace else {**known.metadata, **items}
        self._record = record if record is not None else dataclasses.replace(known, metadata=merged)

    def _data(self) -> ModelRecord:
        registry_id = self._registry_id()
        if registry_id is None:  # not registered yet: what it will be created with
            return self._record if self._record is not None else self._planned()
        queue = self._queue()
        if (self._record is None or self._stale) and queue.online() and not queue.waiting_calls(
            self._task._chain
        ):
            try:
                with self._be.fail_fast():
                    self._record = self._be.get_model(registry_id)
                self._stale = any(j.model_key == self._key for j in queue.pending())
            except ModelbookError as exc:
                if not is_transient(exc):
                    raise
                queue.mark_unreachable(exc)
        return self._record if self._record is not None else self._planned()

    def _planned(self) -> ModelRecord:
        """The record this model is created with."""
        pending, task = self._pending, self._task._data()
        return ModelRecord(
                id=self.id,  # type: ignore[arg-type]
                name=pending["name"],
                project=task.project,
                task=task.id,
                comment=pending["comment"],
                tags=list(pending["tags"]),
                framework=pending["framework"],
                design=pending["design"] if pending["design"] is not None else task.model_config,
                labels=pending["labels"] if pending["labels"] is not None else task.labels,
            )

    def _model_id(self) -> str:
        self._ensure_created()
        return self._queue().resolve(self._ref)

    # -- ClearML surface ------------------------------------------------------------------
    def publish(self) -> None:
        """Publish the model with the weights last given to ``update_weights``: waits (up to
        the upload timeout) until they are stored, then makes the model read-only.

        While the registry is away (or offline), publishing is queued behind the model's
        uploads, and done when they are.

        Raises:
            UploadError: its weights are still uploading after the upload timeout.
        """
        timeout = config.upload_timeout()
        queue = self._queue()
        left = queue.wait(timeout, model_key=self._key)
        if not queue.online():
            log.warning("model %s is published once the registry has its weights (%d upload(s) "
                        "waiting; the registry is away or offline mode is on)", self.id,
                        len(left))  # fmt: skip
            self._set(ready=True)
            return
        if left:
            raise UploadError(
                f"cannot publish model {self.id}: {len(left)} upload(s) of its weights still "
                f"pending after {timeout:.0f} s ({left[-1].last_error or 'waiting'}); they "
                "resume in the background: publish once OutputModel.wait_for_uploads() is done"
            )
        self._record = None  # the queued versions changed it
        super().publish()

    def connect(self, task: Task, name: str | None = None, **_: Any) -> None:
        """Connect to the owning task under the entry ``name``."""
        if task.id != self._task.id:
            raise InvalidArgumentError(
                "Can only connect preexisting model to task, but this is a fresh model: "
                f"this OutputModel belongs to task {self._task.id!r}, not {task.id!r}"
            )
        if name:
            self._entry_name = name
        if self.id is not None:
            record = self._data()
            self._task._connect_model(
                self, "output", self._entry_name or "Output Model", record.design, record.labels
            )

    def set_upload_destination(self, uri: str) -> None:
        """Store this model's weights under ``uri`` (a folder, ``file://``, ``http(s)://``)."""
        if not uri:
            return
        self._check_not_published("set the upload destination")
        self._upload_uri = validate.destination(uri)

    def update_labels(self, labels: Mapping[str, int]) -> None:
        """Set the label enumeration ``{name: int}`` of the model (and of its task)."""
        checked = validate.labels(labels)
        self._check_not_published("change the labels")
        if self.id is None:
            self._pending["labels"] = checked
        else:  # the model first: published elsewhere, it refuses and the task stays as is
            self._set(labels=checked)
        self._task._update(labels=checked)

    def update_design(
        self, config_text: str | None = None, config_dict: dict | None = None
    ) -> bool:
        """Set the model design (architecture / configuration) text."""
        design = validate.config_text(config_text, config_dict) or ""
        self._check_not_published("change the design")
        if self.id is None:
            self._pending["design"] = design
        else:  # the model first: published elsewhere, it refuses and the task stays as is
            self._set(design=design)
        if not self._task._data().model_config:
            self._task._update(model_config=design)
        return True

    @property
    def labels(self) -> dict[str, int]:
        return super().labels

    @labels.setter
    def labels(self, value: Mapping[str, int]) -> None:
        self.update_labels(value)

    @property
    def config_text(self) -> str:
        return super().config_text

    @config_text.setter
    def config_text(self, value: str) -> None:
        self.update_design(config_text=value)

    @property
    def config_dict(self) -> dict[str, Any]:
        return super().config_dict

    @config_dict.setter
    def config_dict(self, value: dict) -> None:
        self.update_design(config_dict=value)

    def update_weights(
        self,
        weights_filename: str | os.PathLike[str] | None = None,
        upload_uri: str | None = None,
        target_filename: str | None = None,
        auto_delete_file: bool = True,
        register_uri: str | None = None,
        iteration: int | None = None,
        update_comment: bool = True,
        is_package: bool = False,
        async_enable: bool = True,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Register new weights as the model's next version.

        Give exactly one of ``weights_filename`` (a local file, or a folder: it is stored as
        a package) and ``register_uri`` (a file already stored elsewhere, not copied).

        The call returns once the weights are snapshotted into the local spool, so the
        caller may overwrite or delete its file at once; a background worker stores them
        and then moves the model to them (``async_enable=False`` does all of it before
        returning). A file written to :meth:`staging_path` is moved, not copied.

        Where the file goes: ``upload_uri``, else the destination set earlier on this model,
        else the task's ``output_uri``, else the backend's default (the embedded store's
        blob folder, or the server's files host). The model's URL moves only once the file
        is completely stored and its sha256 and size checked.

        Args:
            metadata: modelbook extension: ``{key: value}`` set on the model together with
                these weights (so metadata and weights never disagree).

        Returns:
            The URI the weights are stored at (None for a staged file in the embedded store).

        Raises:
            WeightsArgumentError: both or neither of weights_filename and register_uri.
            WeightsFileNotFoundError: weights_filename does not exist.
            ModelPublishedError: the model is published.
            UploadError: the weights could not be snapshotted (e.g. the disk is full).
        """
        if (weights_filename is None) == (register_uri is None):
            raise WeightsArgumentError(weights_filename, register_uri)
        if iteration is not None:
            iteration = validate.integer(iteration, "iteration", validate.INT32)
        metadata = validate.metadata(metadata) or None
        self._check_not_published("update the weights")
        if register_uri is not None:
            register_uri = validate.register_uri(register_uri)
            uri = register_uri if scheme_of(register_uri) else to_uri(register_uri)
            prefix = f"snapshot {uri} stored\n" if update_comment else None
            self._submit(None, False, Path(uri).name, uri, iteration, prefix, is_package,
                         metadata, wait=not async_enable)  # fmt: skip
            return uri
        path = validate.weights_path(weights_filename)
        if path.is_dir():
            return self.update_weights_package(
                weights_path=str(path), upload_uri=upload_uri,
                target_filename=target_filename or path.name,
                auto_delete_file=auto_delete_file, iteration=iteration, async_enable=async_enable,
            )  # fmt: skip
        if upload_uri:
            self.set_upload_destination(upload_uri)
        target = validate.file_name(target_filename or path.name)
        staged = self._queue().spool.owns(path)
        handed_over = auto_delete_file and self._upload_uri is not None and path.is_file()
        move = staged or (handed_over and not self._registry_file(path))
        prefix = f"snapshot {weights_filename} stored\n" if update_comment else None
        destination = self._destination()
        job = self._submit(path, move, target, None, iteration, prefix, is_package, metadata,
                           wait=not async_enable, destination=destination,
                           hash_now=destination.needs_digest and not staged)  # fmt: skip
        if destination.needs_digest and job.sha256 is None:
            return None  # type: ignore[return-value]  # a staged file: hashed by the worker
        return destination.object_uri(job.sha256, target, job.id)

    def _registry_file(self, path: Path) -> bool:
        """A file that belongs to a registry (the modelbook home, a stored object handed out
        in place by ``get_local_copy``, or a user file a model is registered on): copied,
        never moved away."""
        resolved = path.resolve()
        if resolved.is_relative_to(config.home().resolve()) or is_object_path(resolved):
            return True
        if not self._queue().online():  # cannot ask: copy, never move
            return True
        names = dict.fromkeys([to_uri(path), to_uri(resolved)])  # as registered, and resolved
        return any(self._be.is_referenced(name) for name in names)

    def staging_path(self, filename: str) -> Path:
        """A fresh path to save weights to; ``update_weights`` then moves the file into the
        spool instead of copying or hashing it, so the training loop pays only for writing
        it (the integrations use this)."""
        return self._queue().spool.incoming_path(filename)

    def _queue(self) -> uploads.UploadQueue:
        return uploads.queue_for(self._be, config.home())

    def _destination(self) -> Destination:
        """Where this model's weights go: the upload destination set on the model or task
        (ClearML's layout), else the backend's default."""
        task = self._task
        if self._upload_uri is None:
            root, layout = self._be.default_destination(), self._be.default_layout
        else:
            root, layout = self._upload_uri, "clearml"
        return Destination.for_task(root, layout, task.project_name or "", task.name, task.id)

    def _submit(
        self,
        source: Path | None,
        move: bool,
        target: str,
        register_uri: str | None,
        iteration: int | None,
        comment_prefix: str | None,
        is_package: bool,
        metadata: Mapping[str, Any] | None,
        wait: bool,
        hash_now: bool = True,
        destination: Destination | None = None,
    ) -> Job:
        """Queue one registration; ``hash_now`` hashes the file while it is snapshotted (the
        content layout names objects by their sha256, so the URI is then known at once)."""
        self._ensure_created(Path(target).stem)
        if self._entry_name is None:  # created before any weights (a name, metadata)
            self._stale = True  # the registry is called anyway: published elsewhere since?
            entry, known = Path(target).stem, self._data()
            if known.ready:
                raise ModelPublishedError(self.id, known.name, "update the weights")
            self._task._connect_model(self, "output", entry, known.design, known.labels)
            self._entry_name = entry  # once connected: a refused call changes nothing
        job = Job(
            id=Job.new_id(), model_key=self._key, registry=self._queue().registry,
            chain=self._task._chain, model_id=self._registry_id(),
            destination=(destination or self._destination()).to_json(), filename=target,
            register_uri=register_uri, iteration=iteration, comment_prefix=comment_prefix,
            framework=None if self._known().framework else Framework.infer(target),
            is_package=is_package, metadata=to_metadata(metadata) or None,
        )  # fmt: skip
        job = self._queue().submit(job, source, move, hash_now=hash_now and source is not None,
                                   wait=wait)  # fmt: skip
        self._stale = True
        return job

    def update_weights_package(
        self,
        weights_filenames: Sequence[str] | None = None,
        weights_path: str | None = None,
        upload_uri: str | None = None,
        target_filename: str | None = None,
        auto_delete_file: bool = True,
        iteration: int | None = None,
        async_enable: bool = True,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Store several files, or a whole folder (recursively), as one zip package.

        The model gets the ``package`` system tag; ``get_local_copy()`` returns the
        extracted folder. Returns the URI of the stored zip. The files and folders handed
        in are never deleted (``auto_delete_file`` applies to the zip modelbook made).
        """
        if (weights_filenames is None) == (weights_path is None):
            raise InvalidArgumentError(
                "update_weights_package takes exactly one of weights_filenames (a list of "
                "files) or weights_path (a folder)"
            )
        if weights_path is not None:
            base = validate.weights_path(weights_path)
            if not base.is_dir():
                raise WeightsFileNotFoundError(base)
            paths = [base]
        else:
            names = validate.tags(weights_filenames, "weights_filenames")
            if not names:
                raise WeightsFileNotFoundError("(empty list)")
            paths = [validate.weights_path(p) for p in names]
            base = paths[0].parent if len(paths) == 1 else Path(os.path.commonpath(paths))
        if upload_uri:
            self.set_upload_destination(upload_uri)
        target = validate.file_name(target_filename or "model_package.zip")
        target = target if target.endswith(".zip") else f"{target}.zip"
        archive = self.staging_path(target)
        try:
            make_package(paths, base, archive)
        except OSError as exc:
            shutil.rmtree(archive.parent, ignore_errors=True)
            raise UploadError(f"cannot package {base} into {archive.parent}: {exc}") from exc
        return self.update_weights(
            weights_filename=str(archive), target_filename=target, auto_delete_file=True,
            iteration=iteration, update_comment=False, is_package=True,
            async_enable=async_enable, metadata=metadata,
        )  # fmt: skip

    @classmethod
    def wait_for_uploads(
        cls, timeout: float | None = None, max_num_uploads: int | None = None
    ) -> list[Job]:
        """Wait up to ``timeout`` seconds for this registry's pending uploads.

        Returns the uploads still pending (empty when all are done); they stay in the spool
        and resume in the background, or in the next process that opens this home.
        """
        queue = uploads.queue_for(config.get_backend(), config.home())
        started = time.monotonic()
        for producer in list(_producers):
            producer(timeout)
        spent = time.monotonic() - started
        left = queue.wait(None if timeout is None else max(0.0, timeout - spent))
        queue.report_left(left, timeout)
        return left

    @classmethod
    def set_default_upload_uri(cls, output_uri: str | None) -> None:
        """Kept for ClearML compatibility; set ``Task.init(output_uri=...)`` instead."""
        log.warning("OutputModel.set_default_upload_uri is ignored; use Task.init(output_uri=...)")


__all__ = ["PACKAGE_TAG", "OutputModel"]
