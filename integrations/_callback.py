"""What the three ``ModelbookCallback`` classes share; no framework is imported here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from modelbook.integrations._registry import Registrar, version_metadata
from modelbook.integrations.monitor import Decision, Monitor
from modelbook.records import Metadata

#: The registry arguments every callback takes, after monitor / mode / min_delta.
REGISTRY_ARGS = ("task", "project_name", "task_name", "model_name", "tags", "labels",
                 "upload_uri", "keep_last", "publish_on_end")  # fmt: skip


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
        self, monitor: Monitor | None, save_weights_only: bool, arguments: Mapping[str, Any]
    ) -> None:
        """Keep ``monitor``; build the registrar from the constructor's ``arguments``."""
        self.monitor = monitor
        registry = {name: arguments[name] for name in REGISTRY_ARGS}
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
