"""Lightning: register the best model in modelbook each time validation improves.

The decision is taken on global rank zero from ``trainer.callback_metrics`` after each
validation run of ``fit`` (not during the sanity check, ``validate`` or ``test``) and
broadcast, so every rank agrees; weights are gathered collectively and only rank zero talks to
the registry. The callback's state rides in Lightning's checkpoints, so ``fit(ckpt_path=...)``
continues the same model and never registers a worse one.

It works with either Lightning package: the unified ``lightning`` (``lightning.pytorch``) or the
classic ``pytorch_lightning``. With both installed, ``ModelbookCallback`` is a ``Callback`` of
both, so a ``Trainer`` of either accepts it, and each version records the package of the
``Trainer`` that trained it (metadata ``framework``: "lightning" or "pytorch_lightning").
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised without torch installed
    raise ImportError(
        "modelbook.integrations.lightning needs Lightning: pip install 'modelbook[lightning]' "
        "(or 'modelbook[pytorch-lightning]')"
    ) from exc

from modelbook import Framework
from modelbook.integrations._callback import RegistryArgs, SharedCallback
from modelbook.integrations._registry import Snapshot
from modelbook.integrations._torch_snapshot import TorchStager
from modelbook.integrations.monitor import Decision, Monitor, as_scalar

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ModelbookCallback"]

T = TypeVar("T")


class _Package(NamedTuple):
    """One installed Lightning package, as the callback needs it."""

    name: str  # the import name, recorded as the metadata's "framework"
    version: str
    callback: type
    trainer: type
    fitting: Any  # its TrainerFn.FITTING
    strategy: type  # its Strategy base class
    torch_io: type  # its TorchCheckpointIO


def _load(name: str, module: str) -> _Package:
    """``name`` (``module`` holds its Trainer), or ImportError when it is not installed."""
    root = importlib.import_module(name)
    pl = importlib.import_module(module)
    states = importlib.import_module(f"{module}.trainer.states")
    strategies = importlib.import_module(f"{module}.strategies")
    plugins = importlib.import_module(f"{module}.plugins")
    return _Package(name, root.__version__, pl.Callback, pl.Trainer, states.TrainerFn.FITTING,
                    strategies.Strategy, plugins.TorchCheckpointIO)  # fmt: skip


def _installed() -> tuple[_Package, ...]:
    packages, errors = [], []
    for name, module in [("lightning", "lightning.pytorch"), ("pytorch_lightning",) * 2]:
        try:
            packages.append(_load(name, module))
        except ImportError as exc:
            errors.append(exc)
    if not packages:
        raise ImportError(
            "modelbook.integrations.lightning needs Lightning: pip install 'modelbook[lightning]' "
            "(or 'modelbook[pytorch-lightning]')"
        ) from errors[0]
    return tuple(packages)


_PACKAGES = _installed()  # "lightning" first: the default where nothing says which

if TYPE_CHECKING:
    from lightning.pytorch import Callback as _Callback
    from lightning.pytorch import LightningModule, Trainer
elif len(_PACKAGES) == 1:
    _Callback = _PACKAGES[0].callback
else:
    # Each Trainer checks its callbacks with isinstance against its own package's Callback: one
    # class deriving from both is accepted by either (their hooks are all no-op defaults).
    _Callback = type("_Callback", tuple(p.callback for p in _PACKAGES), {"__module__": __name__})


def _package(trainer: Trainer) -> _Package:
    """The installed package ``trainer`` comes from."""
    return next((p for p in _PACKAGES if isinstance(trainer, p.trainer)), _PACKAGES[0])


def _fitting(trainer: Trainer) -> bool:
    return bool(trainer.state.fn == _package(trainer).fitting)


class ModelbookCallback(SharedCallback, _Callback):
    """Registers the best model as a modelbook ``OutputModel`` while Lightning trains.

    A ``Callback`` of ``lightning.pytorch`` and of ``pytorch_lightning``, whichever are
    installed: one instance fits a ``Trainer`` of either package.

    The first improvement creates the model (connected to the task); each later one adds a
    version with ``iteration`` = global step and metadata: the monitored metric, its value and
    mode, every metric in ``trainer.callback_metrics``, epoch, global step and versions.
    ``pl_module.hparams`` go onto the task (section "hparams").

    Args:
        monitor: metric to watch, as logged with ``self.log``.
        mode: "min" or "max"; may be omitted only for ``val_loss`` / ``loss`` (then "min").
        min_delta: how much a value must beat the best by (>= 0).
        **registry: ``task``, ``project_name``, ``task_name``, ``model_name``, ``tags``,
            ``labels``, ``upload_uri``, ``keep_last``, ``publish_on_end``: the registry
            arguments all callbacks share (:class:`~modelbook.integrations.RegistryArgs`).
        save_weights_only: register ``model.state_dict()`` (a ``.pt`` file loadable with
            ``load_state_dict``); False registers ``trainer.save_checkpoint``'s full ``.ckpt``
            (a folder, for sharded strategies, goes up as a zip package).

    Saving stalls training only for a copy into host memory: the state dict, or the dict
    ``trainer.save_checkpoint`` would write (optimizer state included), is copied into
    reused buffers and written and registered in the background. Sharded strategies and a
    custom ``CheckpointIO`` keep their own synchronous save.

    Raises:
        InvalidArgumentError: a bad argument (checked here, before training).
        MetricNotFoundError: at the end of ``fit``, if ``monitor`` was never logged.

    Example:
        >>> from modelbook.integrations.lightning import ModelbookCallback
        >>> callback = ModelbookCallback(monitor="val_acc", mode="max", project_name="demo")
        >>> callback.state_key
        "ModelbookCallback{'monitor': 'val_acc', 'mode': 'max'}"

        Then ``Trainer(callbacks=[callback]).fit(model)``; see ``examples/lightning_example.py``.
    """

    # until a Trainer says which package it is from: the only one installed, else "lightning"
    framework, framework_version = _PACKAGES[0].name, _PACKAGES[0].version
    model_framework = Framework.pytorch
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
        checked = Monitor(monitor, mode, min_delta, name=type(self).__name__)
        self._setup(checked, save_weights_only, registry)
        self.registrar.owner = __name__  # what the user imported, whichever the package
        self._active = False

    @property
    def state_key(self) -> str:
        return self._generate_state_key(**self.monitor.key)

    # -- hooks ------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after the checkpoint's callback states are restored, whatever the strategy
        # a dry run registers nothing; Lightning sets fast_dev_run without declaring it on Trainer
        self._active = not trainer.fast_dev_run  # type: ignore[attr-defined]
        package = _package(trainer)
        self.framework, self.framework_version = package.name, package.version
        if self._active and trainer.is_global_zero:
            self.registrar.start(self.monitor, dict(pl_module.hparams), section="hparams")
        self.monitor.load_state_dict(trainer.strategy.broadcast(self.monitor.state_dict(), 0))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active or trainer.sanity_checking or not _fitting(trainer):
            return
        metrics: dict[str, float] = {}
        decision: Decision | None = None
        if trainer.is_global_zero:
            metrics = _scalars(trainer.callback_metrics)
            decision = self.monitor.update(metrics, step=trainer.global_step)
            self.registrar.record(metrics, trainer.global_step)
        decided = _from_rank_zero(trainer, decision)
        if not trainer.is_global_zero:
            self.monitor.apply(decided)
        if decided.improved:
            self._register(trainer, decided, metrics)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active:
            return
        if trainer.is_global_zero:
            self.registrar.finish(success=True)
        self.monitor.raise_if_never_seen()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if self._active and trainer.is_global_zero and _fitting(trainer):
            self.registrar.finish(success=False)

    # -- internals --------------------------------------------------------------------------
    def _register(self, trainer: Trainer, decision: Decision, metrics: dict[str, float]) -> None:
        step, zero = trainer.global_step, trainer.is_global_zero
        name = f"model-step{step}" + (".pt" if self.save_weights_only else ".ckpt")
        extra = {"strategy": type(trainer.strategy).__name__}
        meta = partial(self._metadata, decision, metrics, epoch=trainer.current_epoch, step=step,
                       extra=extra)  # fmt: skip
        # every rank takes part: gathering a sharded model and saving a checkpoint are collective
        if self.save_weights_only:
            state = trainer.strategy.lightning_module_state_dict()
            if zero:
                write = partial(torch.save, state)
                self.registrar.save(name, step, meta(), write, TorchStager.of(state))
            return
        io = _plain_io(trainer)
        if io is not None:  # the dict trainer.save_checkpoint would hand its CheckpointIO
            checkpoint = _checkpoint(trainer)
            if zero:
                write = partial(io.save_checkpoint, checkpoint)
                stager = TorchStager.of(checkpoint, _save_as_io)
                self.registrar.save(name, step, meta(), write, stager)
            return
        # a sharded strategy's collective save (or a CheckpointIO of the user's): synchronous
        path, workdir = _from_rank_zero(trainer, self.registrar.staging(name) if zero else None)
        snapshot = Snapshot(path, step, workdir=workdir)
        trainer.save_checkpoint(path)
        if zero:
            snapshot.metadata = meta()
            self.registrar.register(snapshot)


class _Capture:
    """Stands in for the strategy's ``CheckpointIO``: keeps the checkpoint it is handed."""

    checkpoint: dict[str, Any] | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
                        ) -> None:  # fmt: skip
        self.checkpoint = checkpoint


def _plain_io(trainer: Trainer) -> Any:
    """The strategy's ``TorchCheckpointIO`` when the strategy saves through it unchanged
    (not sharded, no CheckpointIO of the user's): its checkpoint can be copied and written
    in the background. Else None."""
    package, strategy = _package(trainer), trainer.strategy
    io = strategy.checkpoint_io
    base = package.strategy.save_checkpoint  # type: ignore[attr-defined]
    same = type(strategy).save_checkpoint is base
    return io if same and type(io) is package.torch_io else None


def _save_as_io(checkpoint: Any, path: Any) -> None:
    """``torch.save`` as ``TorchCheckpointIO`` calls it, into a stream: the archive inside
    is then named "archive", not after the file, and the bytes are the same."""
    with open(path, "wb") as stream:
        torch.save(checkpoint, stream)


def _checkpoint(trainer: Trainer) -> dict[str, Any] | None:
    """What ``trainer.save_checkpoint`` hands the strategy's ``CheckpointIO`` (on global
    rank zero; None on the others): every callback and hook runs as for a saved file."""
    strategy, capture = trainer.strategy, _Capture()
    io = strategy.checkpoint_io
    strategy.checkpoint_io = capture  # type: ignore[assignment]
    try:
        trainer.save_checkpoint("modelbook-snapshot.ckpt")  # nothing is written
    finally:
        strategy.checkpoint_io = io
    return capture.checkpoint


def _from_rank_zero(trainer: Trainer, value: T | None) -> T:
    """``value`` as global rank zero has it: only rank zero computes it, never as None."""
    return cast(T, trainer.strategy.broadcast(value, 0))


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    numbers = {key: as_scalar(value) for key, value in metrics.items()}
    return {key: value for key, value in numbers.items() if value is not None}
