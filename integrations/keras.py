"""Keras 3: register the best model in modelbook each time an epoch ends with a better metric.

Backend-agnostic (JAX, TensorFlow, torch): only ``keras`` is imported. The decision is taken
in ``on_epoch_end`` from its ``logs``; an epoch without the monitored key (for example with
``validation_freq > 1``) is skipped, not saved. The callback snapshots the weights it
registers, so ``EarlyStopping(restore_best_weights=True)`` does not change what is registered.

Keras has no place for callback state in its checkpoints: on resume, pass the same task
(``task=Task.get_task(task_id=...)``) and the callback continues that task's model, seeded with
the best value the registry holds, so a worse model is never registered as the best.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

try:
    import keras
except ImportError as exc:  # pragma: no cover - exercised without keras installed
    raise ImportError(
        "modelbook.integrations.keras needs Keras 3: pip install 'modelbook[keras]'"
    ) from exc

from modelbook import Framework
from modelbook.integrations._callback import RegistryArgs, SharedCallback
from modelbook.integrations._registry import Snapshot
from modelbook.integrations.monitor import Monitor

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ModelbookCallback"]


class ModelbookCallback(SharedCallback, keras.callbacks.Callback):
    """Registers the best model as a modelbook ``OutputModel`` while ``model.fit`` runs.

    The first improvement creates the model (connected to the task); each later one adds a
    version with ``iteration`` = the optimizer's step count and metadata: the monitored metric,
    its value and mode, every value in the epoch ``logs``, epoch, step, backend and versions.
    The optimizer's config goes onto the task (section "optimizer").

    Args:
        monitor: a key of the epoch logs (``val_`` prefix for validation metrics).
        mode: "min" or "max"; may be omitted only for ``val_loss`` / ``loss`` (then "min").
        min_delta: how much a value must beat the best by (>= 0).
        **registry: ``task``, ``project_name``, ``task_name``, ``model_name``, ``tags``,
            ``labels``, ``upload_uri``, ``keep_last``, ``publish_on_end``: the registry
            arguments all callbacks share (:class:`~modelbook.integrations.RegistryArgs`).
        save_weights_only: register ``model.weights.h5`` (``model.load_weights``); False
            registers the whole model as ``model.keras`` (``keras.models.load_model``).

    Raises:
        InvalidArgumentError: a bad argument (checked here, before training).
        MetricNotFoundError: at the end of ``fit``, if ``monitor`` never appeared in the logs.

    Example:
        >>> from modelbook.integrations.keras import ModelbookCallback
        >>> callback = ModelbookCallback(monitor="val_accuracy", mode="max", project_name="demo")
        >>> callback.monitor
        Monitor(monitor='val_accuracy', mode='max', min_delta=0.0, best=None)

        Then ``model.fit(x, y, validation_split=0.2, callbacks=[callback])``; see
        ``examples/keras_example.py``.
    """

    framework, framework_version = "keras", keras.__version__
    model_framework = Framework.keras
    monitor: Monitor  # set in __init__, unlike the transformers callback's

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str | None = None,
        min_delta: float = 0.0,
        *,
        save_weights_only: bool = True,
        **registry: Unpack[RegistryArgs],
    ) -> None:
        super().__init__()
        checked = Monitor(monitor, mode, min_delta, name=type(self).__name__)
        self._setup(checked, save_weights_only, registry)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        optimizer = getattr(self.model, "optimizer", None)
        hparams = optimizer.get_config() if optimizer is not None else None
        self.registrar.start(self.monitor, hparams, section="optimizer")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        step = self._global_step(epoch)
        decision = self.monitor.update(logs, step=step)
        self.registrar.record(logs, step)
        if not decision.improved:
            return
        suffix = ".weights.h5" if self.save_weights_only else ".keras"
        path, workdir = self.registrar.staging(f"model-step{step}{suffix}")
        snapshot = Snapshot(path, step, workdir=workdir)
        save = self.model.save_weights if self.save_weights_only else self.model.save
        saved, _ = self.registrar.attempt("save the model", partial(save, str(path)))
        if not saved:
            snapshot.discard()
            return
        extra = {"keras_backend": keras.backend.backend()}
        snapshot.metadata = self._metadata(decision, logs, epoch=epoch, step=step, extra=extra)
        self.registrar.register(snapshot)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.registrar.finish(success=True)
        self.monitor.raise_if_never_seen()

    def _global_step(self, epoch: int) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return epoch
        return int(optimizer.iterations)
