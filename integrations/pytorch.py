"""Plain PyTorch: register the best model from your own training loop.

For loops written by hand, or driven by Lightning Fabric or Hugging Face Accelerate: no
callback hooks, so the loop reports its metrics with :meth:`BestModel.update` and the helper
applies the same improvement rule (:class:`~modelbook.integrations.monitor.Monitor`) and the
same registry logic as the ``ModelbookCallback`` classes.

When ``torch.distributed`` is initialised, rank zero decides from its own metrics and
broadcasts the decision, so every rank agrees; only rank zero talks to the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

try:
    import torch
    import torch.distributed as dist
except ImportError as exc:  # pragma: no cover - exercised without torch installed
    raise ImportError("modelbook.integrations.pytorch needs PyTorch: pip install torch") from exc

from modelbook import Framework
from modelbook.errors import InvalidArgumentError
from modelbook.integrations._callback import RegistryArgs, SharedCallback
from modelbook.integrations._torch_snapshot import TorchStager
from modelbook.integrations.monitor import Decision, Monitor

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

__all__ = ["BestModel"]

T = TypeVar("T")


class BestModel(SharedCallback):
    """Registers the best model as a modelbook ``OutputModel`` from a hand-written loop.

    Call :meth:`update` after each validation with the metrics and the model (or a state
    dict). The first improvement creates the model (connected to the task); each later one
    adds a version with ``iteration`` = ``step`` and metadata: the monitored metric, its value
    and mode, every metric reported, epoch, step, ``framework`` "pytorch" and the torch and
    modelbook versions.

    Use it as a context manager: entering starts the registry side (resolves the task,
    records ``hparams``, adopts the model an earlier session of the run registered); leaving
    waits (bounded) for the uploads, prunes and publishes as the callbacks do. Without a
    ``with`` block, the first :meth:`update` starts it and :meth:`close` ends it.

    Distributed (``torch.distributed`` initialised): construct it, enter it, call
    :meth:`update` and leave it on every rank, at the same points (they are collective).
    Rank zero decides and broadcasts the decision with ``broadcast_object_list``; only rank
    zero saves and talks to the registry. With a sharded model, every rank calls
    ``model.state_dict()`` on an improvement; configure the sharding so that rank zero gets
    the full state dict, or pass the state dict you gathered.

    Args:
        monitor: the metric to watch, a key of the mapping given to :meth:`update`.
        mode: "min" or "max"; may be omitted only for ``val_loss`` / ``loss`` (then "min").
        min_delta: how much a value must beat the best by (>= 0).
        save_weights_only: recorded in the metadata. True (default): a module is saved as its
            ``state_dict()`` (``model.load_state_dict(torch.load(path))``). False: a module is
            saved whole (``torch.load(path, weights_only=False)``). A mapping given to
            :meth:`update` (a state dict, or a checkpoint of your own) is saved as is.
        hparams: hyper-parameters recorded on the task (section "General") at start.
        **registry: ``task``, ``project_name``, ``task_name``, ``model_name``, ``tags``,
            ``labels``, ``upload_uri``, ``keep_last``, ``publish_on_end``: the registry
            arguments all callbacks share (:class:`~modelbook.integrations.RegistryArgs`).

    Raises:
        InvalidArgumentError: a bad argument (checked here, before training).
        MetricNotFoundError: when the block ends (or :meth:`close`) without an exception and
            ``monitor`` was never reported.

    Example:
        >>> import torch
        >>> from modelbook import Model
        >>> from modelbook.integrations.pytorch import BestModel
        >>> net = torch.nn.Linear(2, 1)
        >>> with BestModel("val_loss", project_name="demo", task_name="loop") as best:
        ...     for epoch, val_loss in enumerate([0.9, 0.7, 0.8]):  # your validation loss
        ...         improved = best.update({"val_loss": val_loss}, net, step=epoch, epoch=epoch)
        >>> best.best, Model(best.model_id).iteration
        (0.7, 1)

        See ``examples/pytorch_loop_example.py`` and ``examples/fabric_example.py``.
    """

    framework, framework_version = "pytorch", torch.__version__
    model_framework = Framework.pytorch
    monitor: Monitor

    def __init__(
        self,
        monitor: str,
        mode: str | None = None,
        min_delta: float = 0.0,
        *,
        save_weights_only: bool = True,
        hparams: Mapping[str, Any] | None = None,
        **registry: Unpack[RegistryArgs],
    ) -> None:
        if hparams is not None and not isinstance(hparams, Mapping):
            raise InvalidArgumentError(f"hparams must be a mapping, got {type(hparams).__name__}")
        checked = Monitor(monitor, mode, min_delta, name=type(self).__name__)
        self._setup(checked, save_weights_only, registry)
        self.hparams = dict(hparams) if hparams is not None else None
        self._started = False
        self._closed = False

    # -- what a loop reads ------------------------------------------------------------------
    @property
    def best(self) -> float | None:
        """The best value so far (None before the first finite one)."""
        return self.monitor.best

    @property
    def model_id(self) -> str | None:
        """The registered model's id (rank zero; None before the first registration)."""
        return self.registrar.model_id

    @property
    def task_id(self) -> str | None:
        """The task's id (rank zero, once started)."""
        return self.registrar.task_id

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the registry side (done by ``with`` or the first :meth:`update`).

        Rank zero resolves the task, records ``hparams`` and adopts the model (and its best
        value) that an earlier session registered; the best value is then broadcast.
        """
        if self._started:
            return self
        self._started, self._closed = True, False
        if _rank() == 0:
            self.registrar.start(self.monitor, self.hparams)
        if _distributed():
            self.monitor.load_state_dict(_from_rank_zero(self.monitor.state_dict()))
        return self

    def close(self, success: bool = True) -> None:
        """End the run: rank zero retries a pending best, waits (bounded) for the uploads,
        prunes and publishes (``publish_on_end``, only if ``success``).

        Raises:
            MetricNotFoundError: ``success`` and ``monitor`` was never reported.
        """
        if self._closed:
            return
        self._closed = True
        if self._started and _rank() == 0:
            self.registrar.finish(success=success)
        self._started = False
        if success:
            self.monitor.raise_if_never_seen()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(success=exc is None)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` saved for the same monitor and mode (else ignore it).

        Call it before the ``with`` block (or the first :meth:`update`), on every rank.

        Raises:
            InvalidArgumentError: the run has already started.
        """
        if self._started:
            raise InvalidArgumentError(
                "BestModel.load_state_dict must be called before the run starts (before the "
                "with block or the first update()): the task and model are resolved at start"
            )
        super().load_state_dict(state_dict)

    # -- the loop's call --------------------------------------------------------------------
    def update(
        self,
        metrics: Mapping[str, Any],
        model_or_state: torch.nn.Module | Mapping[str, Any],
        *,
        step: int,
        epoch: int | None = None,
    ) -> bool:
        """Report the metrics of one validation; register the model if they are the best.

        Args:
            metrics: ``{name: value}``; values are numbers or one-element tensors. Only rank
                zero's are used when distributed.
            model_or_state: the module (its ``state_dict()`` is saved; ``DistributedDataParallel``,
                ``DataParallel`` and ``torch.compile`` wrappers are unwrapped), or the
                mapping to save.
            step: the global step, the version's ``iteration``.
            epoch: recorded in the metadata when given.

        Returns:
            Whether this was an improvement (the same on every rank).
        """
        if not self._started:
            self.start()
        step = int(step)
        zero = _rank() == 0
        decision: Decision | None = None
        if zero:
            decision = self.monitor.update(metrics, step=step)
            self.registrar.record(metrics, step)
        if _distributed():
            decision = _from_rank_zero(decision)
            if not zero:
                self.monitor.apply(decision)
        decided = cast(Decision, decision)
        if decided.improved:
            self._register(decided, metrics, model_or_state, step=step, epoch=epoch, zero=zero)
        return decided.improved

    # -- internals --------------------------------------------------------------------------
    def _register(
        self, decision: Decision, metrics: Mapping[str, Any],
        model_or_state: torch.nn.Module | Mapping[str, Any], *, step: int, epoch: int | None,
        zero: bool,
    ) -> None:  # fmt: skip
        # every rank: gathering a sharded module's state dict is collective
        payload = self._payload(model_or_state)
        if not zero:
            return
        extra = {"world_size": dist.get_world_size()} if _distributed() else None
        metadata = self._metadata(decision, metrics, epoch=epoch, step=step, extra=extra)
        # a state dict is copied into memory and written in the background; a whole module
        # (save_weights_only=False) is pickled on the training thread
        stager = TorchStager.of(payload) if isinstance(payload, Mapping) else None
        self.registrar.save(f"model-step{step}.pt", step, metadata,
                            partial(torch.save, payload), stager)  # fmt: skip

    def _payload(self, model_or_state: torch.nn.Module | Mapping[str, Any]) -> Any:
        if isinstance(model_or_state, torch.nn.Module):
            module = _unwrap(model_or_state)
            return module.state_dict() if self.save_weights_only else module
        if isinstance(model_or_state, Mapping):
            return model_or_state
        raise InvalidArgumentError(
            "BestModel.update needs a torch.nn.Module or a state dict (a mapping), got "
            f"{type(model_or_state).__name__}"
        )


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _from_rank_zero(value: T | None) -> T:
    """``value`` as rank zero has it (the other ranks pass None)."""
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return cast(T, box[0])


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP / DataParallel / ``torch.compile`` wrappers (their state dict
    keys carry a prefix that the bare module would not load)."""
    while True:
        if isinstance(module, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), torch.nn.Module):
            module = cast(torch.nn.Module, module._orig_mod)
        else:
            return module
