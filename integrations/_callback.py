"""What the three ``ModelbookCallback`` classes share; no framework is imported here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast

from modelbook.errors import InvalidArgumentError
from modelbook.integrations._registry import Registrar, version_metadata
from modelbook.integrations.monitor import Decision, Monitor
from modelbook.records import Metadata

if TYPE_CHECKING:
    from modelbook import Task


class RegistryArgs(TypedDict, total=False):
    """The registry arguments every ``ModelbookCallback`` takes, by keyword, declared once.

    Attributes:
        task: the task to register on; default: the task saved in the resumed checkpoint,
            else ``Task.current_task()``, else one created from ``project_name`` /
            ``task_name``.
        project_name: project of the task created when there is none.
        task_name: name of the task created when there is none.
        model_name: model name and task entry; default: the task name.
        tags: model tags.
        labels: label enumeration ``{name: id}``.
        upload_uri: where the weights go (default: the task's output destination).
        keep_last: prune all but this many versions older than the current one (None keeps
            all); the current weights, the best version and bytes anything else references
            are never deleted (``Model.prune_versions``).
        publish_on_end: publish the best model when training ends without an exception.
        snapshot_memory: the most bytes of host memory the copies of improvements written in
            the background may hold (default: ``MODELBOOK_SNAPSHOT_MEMORY``, else 4 GiB or a
            quarter of the machine's memory if less; 0 saves on the training thread). Past
            it an improvement is saved on the training thread, with one warning.

    Example:
        >>> sorted(RegistryArgs.__annotations__)[:3]
        ['keep_last', 'labels', 'model_name']
    """

    task: Task | None
    project_name: str | None
    task_name: str | None
    model_name: str | None
    tags: Sequence[str] | None
    labels: Mapping[str, int] | None
    upload_uri: str | None
    keep_last: int | None
    publish_on_end: bool
    snapshot_memory: int | None


REGISTRY_ARGS = tuple(RegistryArgs.__annotations__)


class SharedCallback:
    """Mixin: the monitor, the registrar, their resumable state and the version metadata.

    Subclasses set ``framework`` (as recorded in metadata), ``framework_version`` and
    ``model_framework`` (ClearML's framework name for the model).
    """

    framework: str
    framework_version: str
    model_framework: str
    monitor: Monitor | None
    registrar: Registrar
    save_weights_only: bool

    def _setup(
        self, monitor: Monitor | None, save_weights_only: bool, registry: Mapping[str, Any]
    ) -> None:
        """Keep ``monitor``; build the registrar from the :class:`RegistryArgs` given.

        Raises:
            InvalidArgumentError: an argument the callbacks do not take.
        """
        unknown = sorted(set(registry) - set(REGISTRY_ARGS))
        if unknown:
            raise InvalidArgumentError(
                f"{type(self).__name__} got unknown argument(s) {unknown}; it takes monitor, "
                f"mode, min_delta, save_weights_only and {', '.join(REGISTRY_ARGS)}"
            )
        self.monitor = monitor
        owner = f"modelbook.integrations.{self.framework}"
        self.registrar = Registrar(owner=owner, framework=self.model_framework, **registry)
        self.save_weights_only = bool(save_weights_only)

    @property
    def registry_failures(self) -> list[str]:
        """Registry calls that failed in this process (empty when all went well)."""
        return list(self.registrar.failures)

    def state_dict(self) -> dict[str, Any]:
        """The best value and the task and model ids: what a resumed run needs."""
        monitor = self.monitor.state_dict() if self.monitor is not None else {}
        return {**monitor, **self.registrar.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` saved for the same monitor and mode (else ignore it)."""
        if self.monitor is not None and self.monitor.load_state_dict(state_dict):
            self.registrar.load_state_dict(state_dict)

    def _metadata(
        self, decision: Decision, metrics: Mapping[str, Any], *, epoch: float | None, step: int,
        extra: Mapping[str, Any] | None = None,
    ) -> Metadata:  # fmt: skip
        return version_metadata(
            cast(Monitor, self.monitor), decision, metrics, epoch=epoch, global_step=step,
            framework=self.framework, framework_version=self.framework_version,
            save_weights_only=self.save_weights_only, extra=extra,
        )  # fmt: skip
