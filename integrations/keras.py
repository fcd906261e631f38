"""Keras 3: register the best model in modelbook each time an epoch ends with a better metric.

Backend-agnostic (JAX, TensorFlow, torch): only ``keras`` is imported. The decision is taken
in ``on_epoch_end`` from its ``logs``; an epoch without the monitored key (for example with
``validation_freq > 1``) is skipped, not saved. The callback snapshots the weights it
registers, so ``EarlyStopping(restore_best_weights=True)`` does not change what is registered.

Keras has no place for callback state in its checkpoints: on resume, pass the same task
(``task=Task.get_task(task_id=...)``) and the callback continues that task's model, seeded with
the best value the registry holds, so a worse model is never registered as the best.

Background saving (``save_weights_only=True``, on the torch and JAX backends running on the
CPU): at an improvement the variables of the model and its optimizer are copied into a clone
(built once, reused) and the clone's ``save_weights`` runs on the writer's thread. At the
first improvement both are saved and compared byte for byte; if the clone's file differs
(a layer whose state a clone does not carry), every improvement is saved on the training
thread. TensorFlow, GPUs and full ``.keras`` saves stay on the training thread: Keras does
not promise that a variable may be read from another thread while ``fit`` updates it there.
"""

from __future__ import annotations

import filecmp
import logging
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import keras
    import numpy as np
except ImportError as exc:  # pragma: no cover - exercised without keras installed
    raise ImportError(
        "modelbook.integrations.keras needs Keras 3: pip install 'modelbook[keras]'"
    ) from exc

from modelbook import Framework
from modelbook.integrations._callback import RegistryArgs, SharedCallback
from modelbook.integrations.monitor import Monitor

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ModelbookCallback"]
log = logging.getLogger("modelbook")


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
        self._background: bool | None = None  # None: not checked yet (first improvement)
        self._spare: list[keras.Model] = []  # the clone checked at the first improvement

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        optimizer = getattr(self.model, "optimizer", None)
        hparams = optimizer.get_config() if optimizer is not None else None
        self._background, self._spare = None, []  # checked again for this model
        self.registrar.start(self.monitor, hparams, section="optimizer")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        step = self._global_step(epoch)
        decision = self.monitor.update(logs, step=step)
        self.registrar.record(logs, step)
        if not decision.improved:
            return
        suffix = ".weights.h5" if self.save_weights_only else ".keras"
        extra = {"keras_backend": keras.backend.backend()}
        metadata = self._metadata(decision, logs, epoch=epoch, step=step, extra=extra)
        save = self.model.save_weights if self.save_weights_only else self.model.save
        write, stager = partial(_save, save), None
        if self.save_weights_only and self.registrar.snapshot_memory > 0:
            if self._background is None:  # the first improvement: saved here, clone checked
                write, self._spare = self._check_clone()
                self._background = bool(self._spare)
            elif self._background:
                stager = _KerasStager(self.model, self._spare)
        self.registrar.save(f"model-step{step}{suffix}", step, metadata, write, stager)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.registrar.finish(success=True)
        self.monitor.raise_if_never_seen()

    def _check_clone(self) -> tuple[Any, list[keras.Model]]:
        """Save the model now, and a clone holding a copy of its variables: if both files
        are the same bytes, later improvements copy into clones saved in the background.
        Returns the writer of this improvement (the model's file) and the clones to use."""
        model = self.model
        folder = Path(tempfile.mkdtemp(prefix="modelbook-keras-"))
        mine = folder / "model.weights.h5"
        model.save_weights(str(mine))
        try:
            if not _on_cpu(model):
                return partial(_move, mine, folder), []
            clone = _clone(model)
            _copy(model, clone)
            clone.save_weights(str(folder / "clone.weights.h5"))
            same = filecmp.cmp(mine, folder / "clone.weights.h5", shallow=False)
        except Exception as exc:  # a model Keras cannot clone: saved on the training thread
            log.info("%s: saving on the training thread: cannot clone the model (%s: %s)",
                     type(self).__name__, type(exc).__name__, exc)  # fmt: skip
            return partial(_move, mine, folder), []
        if not same:
            log.info("%s: saving on the training thread: a clone of the model does not save "
                     "to the same bytes", type(self).__name__)  # fmt: skip
            return partial(_move, mine, folder), []
        return partial(_move, mine, folder), [clone]

    def _global_step(self, epoch: int) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return epoch
        return int(optimizer.iterations)


class _KerasStager:
    """Copies the variables of a model and its optimizer into a clone (the buffers: one
    reused per snapshot slot) that the writer's thread saves with ``save_weights``."""

    def __init__(self, model: keras.Model, spare: list[keras.Model]) -> None:
        self.model, self.spare = model, spare

    @property
    def nbytes(self) -> int:
        return sum(keras.ops.convert_to_numpy(v).nbytes for v in _variables(self.model))

    def stage(self, buffers: keras.Model | None) -> tuple[keras.Model, Any]:
        clone = buffers or (self.spare.pop() if self.spare else _clone(self.model))
        _copy(self.model, clone)
        return clone, partial(_save, clone.save_weights)


def _save(save: Any, path: Path) -> None:
    save(str(path))


def _move(source: Path, folder: Path, path: Path) -> None:
    shutil.move(source, path)
    shutil.rmtree(folder, ignore_errors=True)


def _on_cpu(model: keras.Model) -> bool:
    """The backend lets another thread read a copy while fit goes on: torch or JAX, CPU."""
    backend = keras.backend.backend()
    if backend == "torch":
        return all(v.value.device.type == "cpu" for v in model.weights)
    if backend == "jax":
        import jax

        return bool(jax.default_backend() == "cpu")
    return False


def _variables(model: keras.Model) -> list[Any]:
    optimizer = getattr(model, "optimizer", None)
    return list(model.weights) + (list(optimizer.variables) if optimizer is not None else [])


def _clone(model: keras.Model) -> keras.Model:
    """The same layers (names included) and a fresh optimizer of the same configuration."""
    clone = keras.models.clone_model(model)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        fresh = type(optimizer).from_config(optimizer.get_config())
        clone.compile(optimizer=fresh)
        fresh.build(clone.trainable_variables)
    mine, theirs = _variables(model), _variables(clone)
    kinds = [[(tuple(v.shape), v.dtype) for v in variables] for variables in (mine, theirs)]
    if kinds[0] != kinds[1]:
        raise ValueError("the clone's variables differ from the model's")
    return clone


def _copy(model: keras.Model, clone: keras.Model) -> None:
    """Each variable's value into the clone's (a copy: training goes on with the model's)."""
    jax = keras.backend.backend() == "jax"  # its arrays may be donated to the next step
    for source, target in zip(_variables(model), _variables(clone), strict=True):
        value = keras.ops.convert_to_numpy(source)
        target.assign(np.array(value) if jax else value)
