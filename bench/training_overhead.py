"""Training overhead: a Lightning run with and without registering the best model.

A ~17 M-parameter MLP (67 MB of float32 weights) learns a synthetic regression from 128
samples for 10 epochs, monitoring ``val_loss``; with so little data per epoch, saving the
model at each improvement is a large share of the run, which is what is measured. Cases:

* no checkpointing (reference);
* Lightning ``ModelCheckpoint(monitor="val_loss", save_top_k=1)`` (the baseline);
* ``ModelbookCallback`` on the embedded store, its background threads at the default
  lower priority and, for comparison, with ``MODELBOOK_BACKGROUND_NICE=0`` (the training's);
* ``ModelbookCallback`` uploading to a ``modelbook server`` on 127.0.0.1;
* MLflow ``mlflow.pytorch.autolog(checkpoint=True, checkpoint_save_best_only=True)``, tracking
  to a local SQLite store and artifacts in a temporary folder (``log_models=False``: only the
  best-checkpointing is compared).

Two tables: all cases sharing the machine's cores; then (with 2 CPUs or more and the server
extra) the training process pinned to CPU 0 with one torch thread and every thread of the
server pinned to CPU 1, as when the server has a machine of its own. The 'versions' column
counts the versions each run registered.

The optimizer is plain SGD, which has no state, so a full Lightning / MLflow checkpoint and
modelbook's ``state_dict`` file hold the same 67 MB. Each case's time is ``trainer.fit``, which
for modelbook includes waiting at the end until the best model is stored and registered.

Usage: ``python bench/training_overhead.py [--quick] [--runs N] [--no-peers]``
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    Goal,
    Table,
    cpu_seconds,
    header,
    installed,
    measure,
    missing,
    modelbook_at,
    options,
    pin,
    report,
)

NEEDS = ["torch", "lightning"]
BASELINE = "Lightning ModelCheckpoint(save_top_k=1)"
EMBEDDED = "ModelbookCallback, embedded store"
REMOTE = "ModelbookCallback, modelbook server"
AUTOLOG = "MLflow autolog (best checkpoint)"
SAME_PRIORITY = "ModelbookCallback, embedded store, MODELBOOK_BACKGROUND_NICE=0"


@dataclass(frozen=True)
class Size:
    inputs: int
    hidden: tuple[int, ...]
    outputs: int
    samples: int
    epochs: int


FULL = Size(inputs=1024, hidden=(4096, 2048, 2048), outputs=10, samples=128, epochs=10)
QUICK = Size(inputs=32, hidden=(64, 64), outputs=4, samples=128, epochs=2)


def build(size: Size, root: Path) -> Callable[[list, dict], None]:
    """A function that trains a fresh model with the given callbacks and Trainer options."""
    import lightning.pytorch as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            widths = [size.inputs, *size.hidden]
            layers: list[nn.Module] = []
            for a, b in itertools.pairwise(widths):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.net = nn.Sequential(*layers, nn.Linear(widths[-1], size.outputs))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self(x), y)

        def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self(x), y))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(size.inputs, size.outputs, generator=gen) / size.inputs**0.5
    x = torch.randn(size.samples, size.inputs, generator=gen)
    y = x @ teacher + 0.01 * torch.randn(len(x), size.outputs, generator=gen)
    train = DataLoader(TensorDataset(x, y), batch_size=64)
    # validated on a quarter of the training samples: val_loss then improves every epoch
    val = DataLoader(TensorDataset(x[: size.samples // 4], y[: size.samples // 4]), batch_size=64)

    def fit(callbacks: list, trainer_options: dict) -> None:
        pl.seed_everything(0, verbose=False)
        model = MLP()
        trainer = pl.Trainer(
            max_epochs=size.epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(root),
            callbacks=callbacks,
            **trainer_options,
        )
        trainer.fit(model, train, val)

    return fit


def improvement_counter() -> object:
    """A Lightning callback counting the epochs whose ``val_loss`` beat the best so far."""
    import lightning.pytorch as pl

    class Counter(pl.Callback):
        def __init__(self) -> None:
            self.best, self.count = float("inf"), 0

        def on_validation_end(self, trainer: pl.Trainer, _: pl.LightningModule) -> None:
            value = float(trainer.callback_metrics["val_loss"])
            if value < self.best:
                self.best, self.count = value, self.count + 1

    return Counter()


def cases(
    fit: Callable[[list, dict], None],
    root: Path,
    server: Any,
    peers: bool,
    server_cpu: list[float],
    versions: dict[str, list[int]],
) -> tuple[dict[str, Callable[[], float | None]], dict[str, str], object]:
    """The cases to time, the rows skipped (with why), and the improvement counter; the CPU
    seconds the server used during each fit are appended to ``server_cpu``, the versions
    each modelbook run registered to ``versions[case]``."""
    import time

    from lightning.pytorch.callbacks import ModelCheckpoint

    from modelbook import Model, Task
    from modelbook.integrations.lightning import ModelbookCallback

    counter = improvement_counter()
    runs = iter(range(10**6))
    skipped: dict[str, str] = {}

    def none() -> None:
        counter.best, counter.count = float("inf"), 0  # type: ignore[attr-defined]
        fit([counter], {"enable_checkpointing": False})

    def lightning() -> None:
        folder = root / f"ckpt-{next(runs)}"
        checkpoint = ModelCheckpoint(dirpath=folder, monitor="val_loss", save_top_k=1)
        fit([checkpoint], {"enable_checkpointing": True})

    def with_modelbook(
        case: str, home: Path, server: Any, nice: str | None = None
    ) -> Callable[[], float]:
        def run() -> float:
            with modelbook_at(home, server), background_nice(nice):
                task = Task.init(project_name="bench", task_name=f"run-{next(runs)}")
                callback = ModelbookCallback(monitor="val_loss", task=task)
                cpu = cpu_seconds(server.pid) if server is not None else 0.0
                start = time.perf_counter()
                fit([callback], {"enable_checkpointing": False})
                elapsed = time.perf_counter() - start
                if server is not None:
                    server_cpu.append(cpu_seconds(server.pid) - cpu)
                task.close()
                model_id = callback.registrar.model_id
                count = len(Model(model_id).versions) if model_id else 0
                versions.setdefault(case, []).append(count)
                if callback.registry_failures:
                    raise RuntimeError(f"registry failures: {callback.registry_failures}")
                return elapsed

        return run

    found: dict[str, Callable[[], float | None]] = {
        "no checkpointing": none,
        BASELINE: lightning,
        EMBEDDED: with_modelbook(EMBEDDED, root / "home-embedded", None),
        SAME_PRIORITY: with_modelbook(SAME_PRIORITY, root / "home-nice-0", None, nice="0"),
    }
    if server is not None:
        found[REMOTE] = with_modelbook(REMOTE, root / "home-client", server)
    else:
        skipped[REMOTE] = "not measured: pip install 'modelbook[server]'"
    if not peers:
        skipped[AUTOLOG] = "skipped (--no-peers)"
    elif not installed("mlflow"):
        skipped[AUTOLOG] = "not installed"
    else:
        found[AUTOLOG] = with_mlflow(fit, root / "mlflow")
    return found, skipped, counter


@contextmanager
def background_nice(value: str | None) -> Iterator[None]:
    """``MODELBOOK_BACKGROUND_NICE`` set to ``value`` (left alone if None) within the block;
    modelbook's threads started meanwhile run at that priority."""
    if value is None:
        yield
        return
    before = os.environ.get("MODELBOOK_BACKGROUND_NICE")
    os.environ["MODELBOOK_BACKGROUND_NICE"] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ["MODELBOOK_BACKGROUND_NICE"]
        else:
            os.environ["MODELBOOK_BACKGROUND_NICE"] = before


def with_mlflow(fit: Callable[[list, dict], None], root: Path) -> Callable[[], None]:
    """A case training under ``mlflow.pytorch.autolog`` with best-checkpointing, tracking
    into SQLite and artifacts in ``root`` (MLflow 3's default store kind; its file store is
    in maintenance mode and refuses to start unless ``MLFLOW_ALLOW_FILE_STORE`` is set)."""
    import mlflow
    from mlflow.utils.mlflow_tags import LATEST_CHECKPOINT_ARTIFACT_TAG_KEY

    root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)

    def run() -> None:
        mlflow.pytorch.autolog(
            checkpoint=True,
            checkpoint_save_best_only=True,
            checkpoint_monitor="val_loss",
            checkpoint_mode="min",
            log_models=False,
            log_datasets=False,
        )
        try:
            fit([], {"enable_checkpointing": False})
        finally:
            mlflow.pytorch.autolog(disable=True)  # the patch must not reach the other cases
        last = mlflow.last_active_run()
        if last is None or LATEST_CHECKPOINT_ARTIFACT_TAG_KEY not in last.data.tags:
            raise RuntimeError("MLflow autolog logged no checkpoint; see its warnings above")

    return run


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(__doc__.splitlines()[0], argv, runs=5, quick_runs=1)
    head = header("2. Training overhead", opts, ["torch", "lightning", "mlflow"])
    lacking = missing(NEEDS)
    if lacking:
        print(
            head + f"\nskipped: {', '.join(lacking)} not installed "
            "(pip install 'modelbook[lightning]')"
        )
        return 0
    size = QUICK if opts.quick else FULL
    root = Path(tempfile.mkdtemp(prefix="modelbook-bench-train-"))
    for name in ("lightning.pytorch", "pytorch_lightning", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*(does not have many workers|FileStore).*")
    pinned: tuple[Table, int] | None = None
    try:
        with ExitStack() as stack:
            server = None
            if installed("modelbook.server.testing") and not missing(["starlette", "uvicorn"]):
                from modelbook.server.testing import live_server

                server = stack.enter_context(live_server(root / "server"))
            fit = build(size, root)
            shared = run_table(fit, root / "shared", server, opts, pinned=False)
            if server is not None and len(os.sched_getaffinity(0)) >= 2:
                pinned = run_table(fit, root / "pinned", server, opts, pinned=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    params = sum(a * b + b for a, b in _layers(size))
    what = f"{params / 1e6:.1f} M parameters ({params * 4 / 1e6:.0f} MB), {size.epochs} epochs"
    table, improved = shared
    table.title = f"Lightning fit, {what}, {size.samples} samples: the 2 cores shared"
    table.goals.append(Goal(f"modelbook (embedded store) <= 0.9x {BASELINE}", EMBEDDED, 0.9))
    tables, notes = (
        [table],
        [
            f"val_loss improved in {improved} of {size.epochs} epochs per run; 'versions' lists "
            "the versions each measured run registered (the background writer keeps only the "
            "newest snapshot waiting, so an improvement superseded before it was written is not "
            "registered)",
            "2 cores shared: the modelbook server runs on the same cores as the training; the CPU "
            "it spends receiving and checking the uploads ('server CPU', median per run) is "
            "taken from the training",
        ],
    )
    if pinned is not None:
        table = pinned[0]
        table.title = f"Lightning fit, {what}: training on CPU 0, the server on CPU 1"
        table.goals.append(Goal(f"modelbook (modelbook server) <= 1.05x {BASELINE}", REMOTE, 1.05))
        tables.append(table)
        notes.append(
            "pinned: every thread of the bench process on CPU 0 (torch.set_num_threads(1)), "
            "every thread of the modelbook server on CPU 1, as on a deployment where the "
            "server has a machine of its own"
        )
    else:
        notes.append("pinned table skipped: it needs the server extra and 2 CPUs")
    report(head, tables, notes)
    return 0


def run_table(
    fit: Callable[[list, dict], None], root: Path, server: Any, opts: Any, pinned: bool
) -> tuple[Table, int]:
    """Time every case, round-robin; with ``pinned`` this process runs on CPU 0 with one
    torch thread and the server on CPU 1. Returns the table (its title set by the caller)
    and the number of epochs whose val_loss improved in the last run."""
    import torch

    if pinned:
        pin(os.getpid(), {0})
        pin(server.pid, {1})
        torch.set_num_threads(1)
    server_cpu: list[float] = []
    versions: dict[str, list[int]] = {}
    found, skipped, counter = cases(
        fit, root, server, opts.peers and not pinned, server_cpu, versions
    )
    if pinned:
        for case in (AUTOLOG, SAME_PRIORITY):
            found.pop(case, None)
            skipped.pop(case, None)
    samples = measure(found, opts.runs, opts.warmup)
    table = Table("", "s", BASELINE, samples=samples)
    table.notes.update(skipped)
    if server_cpu:
        cpu = statistics.median(server_cpu[-opts.runs :])  # the warm-up came first
        table.columns["server CPU (s)"] = {REMOTE: f"{cpu:.2f}"}
    table.columns["versions"] = {
        case: "/".join(str(n) for n in counts[-opts.runs :]) for case, counts in versions.items()
    }
    return table, counter.count  # type: ignore[attr-defined]


def _layers(size: Size) -> list[tuple[int, int]]:
    widths = [size.inputs, *size.hidden, size.outputs]
    return list(itertools.pairwise(widths))


if __name__ == "__main__":
    sys.exit(main())
