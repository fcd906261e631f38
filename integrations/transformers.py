"""transformers: register the best model in modelbook each time ``Trainer`` evaluates better.

Decides in ``on_evaluate``, by default with the Trainer's own documented rule
(``metric_for_best_model`` with its ``eval_`` prefix, and ``greater_is_better``), and
registers the ``save_pretrained`` folder, or the Trainer's ``checkpoint-N`` folder.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

try:
    import torch
    import transformers
    from transformers import TrainerCallback
    from transformers import TrainerControl as Control
    from transformers import TrainerState as State
    from transformers import TrainingArguments as Args
    from transformers.trainer_callback import ExportableState
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
except ImportError as exc:  # pragma: no cover - exercised without transformers installed
    raise ImportError(
        "modelbook.integrations.transformers needs transformers: "
        "pip install 'modelbook[transformers]'"
    ) from exc

from modelbook import Framework
from modelbook.integrations._callback import RegistryArgs, SharedCallback
from modelbook.integrations._registry import Snapshot
from modelbook.integrations._torch_snapshot import TorchStager
from modelbook.integrations.monitor import Decision, Monitor

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ModelbookCallback"]


class ModelbookCallback(SharedCallback, TrainerCallback, ExportableState):
    """Registers the best model as a modelbook ``OutputModel`` while ``Trainer`` trains.

    The first improvement creates the model; each later one adds a version (``iteration`` =
    global step) with the monitored value, every metric of that evaluation, epoch and versions
    as metadata. ``TrainingArguments`` go onto the task. Only world process zero talks to the
    registry. The state (best value, task and model ids) rides in ``trainer_state.json``, so
    ``train(resume_from_checkpoint=...)`` continues the same model (checked with the registry).

    Args:
        monitor: metric to watch; default ``args.metric_for_best_model``, else ``eval_loss``.
        mode: "min" or "max"; default from ``args.greater_is_better`` when ``monitor`` is the
            ``metric_for_best_model``, "min" for ``eval_loss``, otherwise required.
        min_delta: how much a value must beat the best by (>= 0).
        **registry: ``task``, ``project_name``, ``task_name``, ``model_name``, ``tags``,
            ``labels``, ``upload_uri``, ``keep_last``, ``publish_on_end``: the registry
            arguments all callbacks share (:class:`~modelbook.integrations.RegistryArgs`).
        save_weights_only: register the ``save_pretrained`` folder; False registers the
            Trainer's ``checkpoint-N`` folder (optimizer, scheduler and RNG state included),
            asking the Trainer to save at each improvement.

    With ``save_weights_only``, an improvement stalls training only for a copy of the
    weights into host memory (and for writing the tokenizer's files): ``save_pretrained``
    then writes the config and the safetensors from the copy in the background. Quantized,
    tensor-parallel and offloaded models are saved on the training thread.

    Raises:
        InvalidArgumentError: a bad argument (checked here, or when training starts).
        MetricNotFoundError: at the end of training, if ``monitor`` was never reported.

    Example:
        >>> from modelbook.integrations.transformers import ModelbookCallback
        >>> callback = ModelbookCallback(monitor="accuracy", mode="max", project_name="demo")
        >>> callback.state()["args"]["monitor"]
        'accuracy'

        Then ``Trainer(..., callbacks=[callback]).train()``; see
        ``examples/transformers_example.py``.
    """

    framework, framework_version = "transformers", transformers.__version__
    model_framework = Framework.pytorch

    def __init__(
        self,
        monitor: str | None = None,
        mode: str | None = None,
        min_delta: float = 0.0,
        *,
        save_weights_only: bool = True,
        **registry: Unpack[RegistryArgs],
    ) -> None:
        Monitor(monitor or "eval_loss", mode or "min", min_delta)  # eager checks
        self._setup(None, save_weights_only, registry)  # monitor: from TrainingArguments later
        # JSON-friendly constructor arguments: the Trainer rebuilds callbacks from them
        self._config = {
            "monitor": monitor,
            "mode": mode,
            "min_delta": min_delta,
            **self.registrar.arguments(),
            "save_weights_only": save_weights_only,
        }
        self._resume: dict[str, Any] | None = None  # set by the Trainer on restore
        self._training = False
        self._step: int | None = None  # the step of the metrics gathered so far
        self._step_metrics: dict[str, Any] = {}
        self._decided = False
        self._full_pending: tuple[int, dict[str, dict[str, str]]] | None = None

    def state(self) -> dict[str, Any]:
        """For ``trainer_state.json``: constructor arguments, and :meth:`state_dict`."""
        return {"args": dict(self._config), "attributes": {"_resume": self.state_dict()}}

    # -- hooks ------------------------------------------------------------------------------
    def on_train_begin(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        self.monitor = _resolve_monitor(self._config, args, type(self).__name__)
        self._training, self._step, self._step_metrics, self._decided = True, None, {}, False
        for saved in [self._resume, *_saved_states(state, type(self).__name__)]:
            self.load_state_dict(saved or {})  # only a state for this monitor and mode loads
        if state.is_world_process_zero:
            model = kwargs.get("model")
            id2label = getattr(getattr(model, "config", None), "id2label", None)
            if self.registrar.labels is None and id2label:
                self.registrar.labels = {str(name): int(i) for i, name in id2label.items()}
            self.registrar.start(self.monitor, args.to_sanitized_dict(), "TrainingArguments")
        self.monitor.load_state_dict(_broadcast(self.monitor.state_dict()))

    def on_evaluate(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        if not self._training or self.monitor is None:
            return  # trainer.evaluate() outside train()
        metrics, step = kwargs.get("metrics") or {}, state.global_step
        if self._step != step:  # several eval datasets report one by one, in the same step
            self._flush(state)
            self._step = step
        self._step_metrics.update(metrics)
        if self.monitor.monitor not in metrics:
            return  # decided when it shows up; warned about if it never does
        self._decided = True
        decision = self._decide(state, self._step_metrics, step)
        if not decision.improved:
            return
        meta = self._metadata(decision, self._step_metrics, epoch=state.epoch, step=step)
        if not self.save_weights_only:
            self._drop_unsaved(state)
            control.should_save = True  # registered in on_save, once the folder exists
            self._full_pending = (step, meta)
        elif state.is_world_process_zero:
            self._register_pretrained(step, meta, kwargs)

    def on_save(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        if self._full_pending is None or self._full_pending[0] != state.global_step:
            return
        step, meta = self._full_pending
        self._full_pending = None
        if state.is_world_process_zero:
            assert args.output_dir is not None  # TrainingArguments gives it a default
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}"
            self.registrar.register(Snapshot(folder, step, meta))  # the Trainer's own folder

    def on_train_end(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        if not self._training or self.monitor is None:
            return
        self._flush(state)
        self._drop_unsaved(state)
        self._training = False
        if state.is_world_process_zero:
            self.registrar.finish(success=True)
        self.monitor.raise_if_never_seen()

    # -- internals --------------------------------------------------------------------------
    def _decide(self, state: State, metrics: Mapping[str, Any], step: int) -> Decision:
        """Process zero decides (and warns); the others follow its decision."""
        monitor = self.monitor
        assert monitor is not None  # resolved in on_train_begin; the hooks return while None
        zero = state.is_world_process_zero
        decision: Decision = _broadcast(monitor.update(metrics, step) if zero else None)
        if zero:
            self.registrar.record(metrics, step)
        if not zero:
            monitor.apply(decision)
        return decision

    def _flush(self, state: State) -> None:
        """Close the previous evaluation step; a monitor that never showed up is "missing"."""
        if self._step is not None and not self._decided:
            self._decide(state, self._step_metrics, self._step)
        self._step, self._step_metrics, self._decided = None, {}, False

    def _drop_unsaved(self, state: State) -> None:
        """A full checkpoint was asked for but never saved (``save_strategy="best"`` decides
        by the Trainer's own rule): report it."""
        if self._full_pending is not None and state.is_world_process_zero:
            self.registrar.failures.append(
                f"the best at step {self._full_pending[0]} was not registered: the Trainer "
                "saved no checkpoint at that step"
            )
        self._full_pending = None

    def _register_pretrained(self, step: int, meta: dict, kwargs: dict[str, Any]) -> None:
        model, tokenizer = kwargs["model"], kwargs.get("processing_class")
        tokenizer = tokenizer if hasattr(tokenizer, "save_pretrained") else None

        def save(folder: Path) -> None:
            for part in (model, tokenizer):
                if part is not None:
                    part.save_pretrained(folder)

        background = self.registrar.snapshot_memory > 0
        stager = _stager(model, tokenizer) if background else None
        self.registrar.save(f"model-step{step}", step, meta, save, stager)


def _stager(model: Any, tokenizer: Any) -> TorchStager | None:
    """Stages ``model``'s weights for ``save_pretrained(folder, state_dict=copy)`` in the
    background; the tokenizer's files are written now (a fast tokenizer may not be used from
    two threads) and copied in after. None where ``save_pretrained`` would not save the
    state dict handed to it as is (quantized, tensor-parallel or offloaded models)."""
    if not hasattr(model, "save_pretrained") or any(
        getattr(model, name, None) for name in ("hf_quantizer", "_tp_size", "hf_device_map")
    ):
        return None
    files: tempfile.TemporaryDirectory[str] | None = None
    if tokenizer is not None:
        files = tempfile.TemporaryDirectory(prefix="modelbook-tokenizer-")
        tokenizer.save_pretrained(files.name)
    return TorchStager.of(model.state_dict(), partial(_save_pretrained, model, files))


def _save_pretrained(
    model: Any, files: tempfile.TemporaryDirectory[str] | None, state: Any, folder: Path
) -> None:
    """On the writer's thread: the model's folder from the staged ``state``, then the
    tokenizer's files (deleted with ``files``, when the snapshot is dropped)."""
    model.save_pretrained(folder, state_dict=state)
    if files is not None:
        shutil.copytree(files.name, folder, dirs_exist_ok=True)


def _resolve_monitor(config: Mapping[str, Any], args: Args, owner: str) -> Monitor:
    """The Trainer's rule: ``metric_for_best_model`` with ``eval_`` added, its direction from
    ``greater_is_better``; an explicit ``monitor``/``mode`` wins."""

    def eval_name(name: str) -> str:
        return name if name.startswith("eval_") else f"eval_{name}"

    best = args.metric_for_best_model
    name = eval_name(config["monitor"] or best or "loss")
    mode = config["mode"]
    if mode is None and best and eval_name(best) == name and args.greater_is_better is not None:
        mode = "max" if args.greater_is_better else "min"
    return Monitor(name, mode, config["min_delta"], name=owner)


def _saved_states(state: State, name: str) -> list[dict]:
    """Our entries in ``state.stateful_callbacks`` (from a resumed ``trainer_state.json``)."""
    # typed as a list, but TrainerState.__post_init__ makes it a dict {callback name: state(s)}
    callbacks = cast("dict[str, Any]", state.stateful_callbacks or {})
    saved = callbacks.get(name)
    entries = saved if isinstance(saved, list) else [saved]
    return [((e or {}).get("attributes") or {}).get("_resume") or {} for e in entries]


def _broadcast(obj: Any) -> Any:
    """``obj`` as process zero has it, when several processes train."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
