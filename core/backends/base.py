"""The abstract backend: the primitive verbs every registry (embedded store, HTTP) provides.

``Task`` and ``Model`` are written only against this interface, so a new backend slots in
without touching them. Records are plain dataclasses from :mod:`modelbook.records`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from modelbook import storage
from modelbook.records import (
    GcResult,
    Metadata,
    ModelQuery,
    ModelRecord,
    ModelVersionRecord,
    ProjectRecord,
    PruneResult,
    ReportEvent,
    ScalarEvent,
    ScalarStats,
    TaskRecord,
)
from modelbook.storage import StorageDriver


class Backend(ABC):
    """Primitive registry verbs over projects, tasks, models and their metadata.

    Every method raises a :class:`~modelbook.errors.ModelbookError` subclass on failure:
    ``ModelNotFoundError`` / ``TaskNotFoundError`` for unknown ids, ``RegistryError`` for a
    failed remote call.
    """

    #: A short name for messages and ``modelbook models ls`` ("embedded", "http").
    kind: str = "abstract"
    #: How weights are laid out under :meth:`default_destination`: ``"content"`` (by sha256,
    #: the embedded store) or ``"clearml"`` (``<project>/<task>.<id>/models/<file>``).
    default_layout: str = "clearml"

    @property
    def registry_id(self) -> str:
        """Identifies the registry, so spooled uploads resume only against the same one."""
        return f"{self.kind}:{getattr(self, 'api_host', '')}"

    # -- projects -------------------------------------------------------------------------
    @abstractmethod
    def get_or_create_project(self, name: str) -> ProjectRecord:
        """Return the project with exactly this name, creating it if needed."""

    @abstractmethod
    def find_project(self, name: str) -> ProjectRecord | None:
        """Return the project with exactly this name, or None."""

    @abstractmethod
    def get_project(self, project_id: str) -> ProjectRecord:
        """Return a project by id."""

    @abstractmethod
    def list_projects(self) -> list[ProjectRecord]:
        """Return every project, by name."""

    # -- tasks ----------------------------------------------------------------------------
    @abstractmethod
    def create_task(
        self,
        *,
        name: str,
        project: str | None,
        type: str = "training",
        tags: list[str] | None = None,
        comment: str = "",
        output_destination: str | None = None,
        system_tags: list[str] | None = None,
    ) -> TaskRecord:
        """Create a task in status ``created``."""

    @abstractmethod
    def get_task(self, task_id: str) -> TaskRecord:
        """Return a task by id."""

    @abstractmethod
    def find_tasks(self, *, project: str | None, name: str) -> list[TaskRecord]:
        """Return the tasks of a project with exactly this name, newest created first."""

    @abstractmethod
    def update_task(self, task_id: str, **fields: Any) -> TaskRecord:
        """Set the given fields of a task (only those) and return the new record.

        Accepted fields: name, comment, tags, system_tags, status, output_destination,
        labels, model_config, last_iteration (only ever raised), and ``hyperparams``, which
        is merged section by section into the existing ones.
        """

    @abstractmethod
    def set_task_model(self, task_id: str, kind: str, name: str, model_id: str) -> TaskRecord:
        """Add or replace the task's ``kind`` ("input" / "output") model entry ``name``."""

    # -- models ---------------------------------------------------------------------------
    @abstractmethod
    def create_model(self, **fields: Any) -> ModelRecord:
        """Create a model. Fields are those of :class:`ModelRecord` but id and dates."""

    @abstractmethod
    def get_model(self, model_id: str) -> ModelRecord:
        """Return a model by id."""

    @abstractmethod
    def update_model(self, model_id: str, **fields: Any) -> ModelRecord:
        """Set the given fields of a model (only those) and return the new record.

        ``add_system_tags`` / ``remove_system_tags`` change system tags without a race.
        """

    @abstractmethod
    def add_model_version(
        self,
        model_id: str,
        *,
        uri: str,
        sha256: str | None,
        size: int | None,
        iteration: int | None,
        comment: str | None = None,
        framework: str | None = None,
        is_package: bool = False,
        metadata: Metadata | None = None,
        owned: bool = True,
    ) -> ModelRecord:
        """Point the model at newly stored weights and record that as a new version.

        One transaction: the model's uri, sha256, size, iteration (and comment, framework
        and ``metadata`` when given) change together, the version
        counter goes up, a version row with a snapshot of the model's metadata is written,
        and the object at ``uri`` is recorded as referenced (``owned``: the registry wrote
        it, so it may delete it once nothing references it; see
        :mod:`modelbook.store.objects`).

        Raises:
            ModelPublishedError: the model is published.
            StorageError: the object at ``uri`` is being deleted (transient: store it again).
        """

    @abstractmethod
    def list_model_versions(self, model_id: str) -> list[ModelVersionRecord]:
        """Every version of a model, oldest first."""

    @abstractmethod
    def query_models(self, query: ModelQuery) -> list[ModelRecord]:
        """Models matching ``query`` (see :class:`ModelQuery` for the semantics)."""

    @abstractmethod
    def count_models(self, query: ModelQuery) -> int:
        """How many models match ``query`` (paging ignored)."""

    @abstractmethod
    def delete_model(
        self, model_id: str, delete_objects: bool = True, force: bool = True
    ) -> list[str]:
        """Delete a model record, its metadata and versions, and the task entries naming it.

        Returns the URIs of objects the registry wrote that nothing references any more
        (now doomed): the caller deletes their bytes, then calls :meth:`forget_objects`.
        With ``delete_objects=False`` those objects are disowned instead (kept forever).
        Without ``force``, a model ``models.delete`` protects is refused
        (:class:`~modelbook.errors.ModelInUseError`: published, a task's input, or made by a
        published task).
        """

    # -- reported scalars -----------------------------------------------------------------
    @abstractmethod
    def add_scalars(self, task_id: str, events: Sequence[ScalarEvent]) -> int:
        """Add a task's reported values (a value reported again for an iteration replaces
        it); returns how many were added."""

    @abstractmethod
    def add_model_scalars(self, model_id: str, events: Sequence[ScalarEvent]) -> int:
        """Add values reported on a model (ClearML's ``model.report_scalar``)."""

    @abstractmethod
    def scalar_events(
        self, task_id: str | None = None, *, model_id: str | None = None
    ) -> list[ScalarEvent]:
        """A task's values (or, with ``model_id`` alone, a model's own), by metric, variant
        and iteration."""

    @abstractmethod
    def add_reports(
        self, task_id: str | None, events: Sequence[ReportEvent], *, model_id: str | None = None
    ) -> int:
        """Keep a task's (or, ``task_id`` None, a model's) reported plots and text."""

    @abstractmethod
    def reports(
        self, task_id: str | None, kind: str, *, model_id: str | None = None
    ) -> list[ReportEvent]:
        """A task's (or a model's) reports of ``kind`` ("plot" / "text"), oldest first."""

    @abstractmethod
    def last_scalars(self, task_id: str) -> dict[str, dict[str, ScalarStats]]:
        """``{metric: {variant: stats}}`` of a task (ClearML's ``last_metrics``)."""

    # -- ownership of stored objects ------------------------------------------------------
    @abstractmethod
    def prune_versions(self, model_id: str, keep_last: int, dry_run: bool = False) -> PruneResult:
        """Mark all but the newest ``keep_last`` versions pruned, except the current weights
        and the best version by the monitored metric; doom the objects nothing references
        any more (returned in :class:`PruneResult` for the caller to delete).

        Raises:
            ModelPublishedError: the model is published (read-only).
        """

    @abstractmethod
    def begin_object_write(self, uri: str, sha256: str | None, size: int | None) -> None:
        """Record that the registry is about to write ``uri``, before any byte is written.

        Raises:
            StorageError: ``uri`` holds an object the registry did not write or other bytes,
                or is being deleted (transient).
        """

    @abstractmethod
    def collect_garbage(self, pending_grace: float = 86400.0, dry_run: bool = False) -> GcResult:
        """Find owned objects nothing references (unfinished uploads older than
        ``pending_grace`` seconds included) and temporary files crashed uploads left;
        unless ``dry_run``, doom the objects (for the caller to delete) and remove the
        temporary files."""

    @abstractmethod
    def is_referenced(self, uri: str) -> bool:
        """Whether a model's current weights or an unpruned version name ``uri``."""

    @abstractmethod
    def forget_objects(self, uris: list[str]) -> None:
        """Drop the records of doomed objects whose bytes were deleted."""

    def driver_for(self, uri: str) -> StorageDriver:
        """The storage driver for ``uri``, with this registry's credentials where it has
        some for that location (the HTTP backend's files server)."""
        return storage.driver_for(uri)

    @abstractmethod
    def set_model_metadata(
        self, model_id: str, items: Metadata, replace: bool = False
    ) -> ModelRecord:
        """Add or update metadata entries; ``replace`` drops the other keys."""

    # -- storage --------------------------------------------------------------------------
    @abstractmethod
    def default_destination(self) -> str:
        """Where weights go when neither the call, the model nor the task names one."""

    # -- reachability ---------------------------------------------------------------------
    def reachable(self) -> bool:
        """Whether the registry answers at all, asked once, without retries, in a few
        seconds at most (a local store always does)."""
        return True

    def fail_fast(self) -> AbstractContextManager[None]:
        """Within this context, a call that cannot reach the registry fails at once (one
        attempt, short timeouts) instead of being retried: for calls made on the training
        thread, which the caller defers when they fail."""
        return nullcontext()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The backend may not be used afterwards."""
