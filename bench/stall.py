"""Stall per improvement: how long the training loop waits inside the callback each time the
monitored metric improves, with 1 GiB of weights.

``ModelbookCallback`` copies the state dict into reused host buffers and returns; its writer
thread serialises the copy and registers it (``modelbook.integrations._background``). The
stall measured is that copy; the peak host memory the copies held is reported beside it.

A Lightning module holds 1 GiB of frozen float32 parameters (a few values change each epoch,
so every snapshot has new bytes) and logs a ``val_loss`` that improves every epoch. Each case
is a callback whose ``on_validation_end`` and ``on_train_epoch_end`` are timed:

* a bare ``torch.save(pl_module.state_dict(), path)`` (the baseline);
* the same, with the file then read back, hashed and fsynced between improvements (untimed),
  as modelbook's upload worker does in the background: a control for what that background
  I/O does to the next ``torch.save`` on this machine;
* Lightning ``ModelCheckpoint(save_weights_only=True, save_top_k=1)``;
* ``ModelbookCallback`` on the embedded store (local destination);
* ``ModelbookCallback`` uploading to a ``modelbook server`` on 127.0.0.1 (remote).

A second table, on a machine with CUDA, times ``BestModel.update`` with the same state dict on
the GPU (pinned buffers, a side stream) against ``torch.save`` of it: the host's time in the
call, and the time until the GPU is free again (``torch.cuda.synchronize()`` after it). It is
skipped, with the reason printed, where ``torch.cuda.is_available()`` is False.

After each improvement, outside the measurement, the upload queue is drained, the page
cache flushed (``os.sync``) and the files the case stored are deleted, so every improvement
starts from the same idle state (as when an epoch takes longer than the upload) and writes
into memory just freed. (In this Firecracker VM, writing a file into memory the guest has
not touched yet costs up to 3x more than into memory just freed: left alone, that, not the
callback, would decide which case looks faster; even so a 1 GiB ``torch.save`` takes 0.45 s
or about 1 s from one call to the next, so the table shows the fastest run too.) The first
improvement of each fit is a warm-up. Waiting for the upload queue waits for the writer
thread too, so its serialisation never overlaps the next timed improvement.

Usage: ``python bench/stall.py [--quick] [--runs N]``
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from _common import (
    GIB,
    MIB,
    Goal,
    Table,
    header,
    installed,
    missing,
    modelbook_at,
    options,
    report,
)

NEEDS = ["torch", "lightning"]
TENSOR = 64 * MIB  # bytes per frozen parameter tensor
UPLOAD_TIMEOUT = 600.0
BASELINE = "bare torch.save"
READ_BACK = "bare torch.save, file then read back + fsynced untimed (control)"


def make_module(total: int) -> Any:
    """A LightningModule with ``total`` bytes of frozen float32 weights and a tiny head."""
    import lightning.pytorch as pl
    import torch
    from torch import nn

    class Heavy(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            count = max(1, total // TENSOR)
            per = min(total, TENSOR) // 4
            self.frozen = nn.ParameterList(
                nn.Parameter(torch.rand(per), requires_grad=False) for _ in range(count)
            )
            self.head = nn.Linear(4, 1)

        def on_train_epoch_start(self) -> None:
            for tensor in self.frozen:  # new bytes in every snapshot, as real training gives
                tensor.data[:4] += 1.0

        def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.head(x), y)

        def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
            self.log("val_loss", 1.0 / (self.current_epoch + 1))  # improves every epoch

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.head.parameters(), lr=0.01)

    return Heavy()


def timed(cls: type, settle: Callable[[], None]) -> type:
    """``cls`` (a Lightning callback) with the time of its ``on_validation_end`` and
    ``on_train_epoch_end`` (where ``ModelCheckpoint`` saves) summed per epoch into ``stalls``;
    ``settle`` runs at the end of each epoch, outside the measurement."""

    class Timed(cls):  # type: ignore[valid-type, misc]
        stalls: list[float]
        _spent = 0.0

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            start = time.perf_counter()
            super().on_validation_end(trainer, pl_module)
            self._spent += time.perf_counter() - start

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            start = time.perf_counter()
            super().on_train_epoch_end(trainer, pl_module)
            self.stalls.append(self._spent + time.perf_counter() - start)
            self._spent = 0.0
            settle()

    Timed.__name__ = f"Timed{cls.__name__}"
    return Timed


def bare_save_callback(folder: Path) -> type:
    """A callback that saves the state dict with ``torch.save`` at every validation end."""
    import lightning.pytorch as pl
    import torch

    class BareSave(pl.Callback):
        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(pl_module.state_dict(), folder / f"step{trainer.global_step}.pt")

    return BareSave


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(__doc__.splitlines()[0], argv, runs=12, quick_runs=1)
    head = header("3. Stall per improvement", opts, ["torch", "lightning"])
    lacking = missing(NEEDS)
    if lacking:
        print(head + f"\nskipped: {', '.join(lacking)} not installed")
        return 0
    for name in ("lightning.pytorch", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    total = 8 * MIB if opts.quick else GIB
    root = Path(tempfile.mkdtemp(prefix="modelbook-bench-stall-"))
    try:
        with ExitStack() as stack:
            server = None
            if installed("modelbook.server.testing") and not missing(["starlette", "uvicorn"]):
                from modelbook.server.testing import live_server

                server = stack.enter_context(live_server(root / "server"))
            table = run(total, opts.runs, opts.warmup, root, server)
            gpu = cuda_table(total, opts.runs, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(
        head,
        [table] if gpu is None else [table, gpu],
        [
            "each run is one improvement; the first improvement of each fit is not counted",
            "between improvements (untimed): uploads drained, os.sync(), the stored files deleted",
            "peak snapshot memory: the most host memory the callback's copies held at once "
            "(at most two sets of buffers: one being written, one waiting)",
        ],
    )
    return 0


def run(total: int, runs: int, warmup: int, root: Path, server: Any) -> Table:
    """Fit once per case and round, interleaving cases; returns the table of stalls."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    from modelbook import OutputModel, Task
    from modelbook.integrations.lightning import ModelbookCallback
    from modelbook.storage import sha256_file

    module = make_module(total)
    data = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=8)
    counter = iter(range(10**6))
    epochs = warmup + min(runs, 2)  # improvements per fit; the first `warmup` are not counted
    rounds = -(-runs // (epochs - warmup))

    def settle(stored: Path, uploads: bool = False, read_back: bool = False) -> Callable[[], None]:
        """After each improvement: wait for the upload queue (or, with ``read_back``, read,
        hash and fsync the saved files as the queue's worker does), flush the page cache and
        delete what the case stored (every case then writes into memory just freed)."""

        def after_improvement() -> None:
            if uploads:
                left = OutputModel.wait_for_uploads(timeout=UPLOAD_TIMEOUT)
                if left:
                    raise RuntimeError(f"{len(left)} upload(s) pending after {UPLOAD_TIMEOUT} s")
            for saved in stored.glob("*.pt") if read_back else ():
                sha256_file(saved)
                with open(saved, "rb") as fh:
                    os.fsync(fh.fileno())
            os.sync()
            shutil.rmtree(stored, ignore_errors=True)

        return after_improvement

    def fit(callback: Any) -> list[float]:
        callback.stalls = []
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(root),
            callbacks=[callback],
            enable_checkpointing=isinstance(callback, ModelCheckpoint),
        )
        trainer.fit(module, data, data)
        return callback.stalls[warmup:]

    def bare(read_back: bool = False) -> list[float]:
        folder = root / f"bare-{next(counter)}"
        return fit(timed(bare_save_callback(folder), settle(folder, read_back=read_back))())

    def lightning() -> list[float]:
        folder = root / f"ckpt-{next(counter)}"
        cls = timed(ModelCheckpoint, settle(folder))
        return fit(cls(dirpath=folder, monitor="val_loss", save_top_k=1, save_weights_only=True))

    peaks: dict[str, int] = {}

    def with_modelbook(home: Path, remote: Any, row: str) -> Callable[[], list[float]]:
        stored = home / "blobs" if remote is None else remote.files_root / "bench"

        def case() -> list[float]:
            with modelbook_at(home, remote):
                task = Task.init(project_name="bench", task_name=f"stall-{next(counter)}")
                cls = timed(ModelbookCallback, settle(stored, uploads=True))
                callback = cls(monitor="val_loss", task=task)
                stalls = fit(callback)
                task.close()
            if callback.registry_failures:
                raise RuntimeError(f"registry failures: {callback.registry_failures}")
            writer = callback.registrar.writer
            peaks[row] = max(peaks.get(row, 0), writer.peak if writer is not None else 0)
            return stalls

        return case

    cases: dict[str, Callable[[], list[float]]] = {
        BASELINE: bare,
        READ_BACK: partial(bare, read_back=True),
        "Lightning ModelCheckpoint(save_weights_only=True)": lightning,
    }
    local_row = "ModelbookCallback, embedded store (local)"
    cases[local_row] = with_modelbook(root / "home-local", None, local_row)
    remote_row = "ModelbookCallback, modelbook server (remote)"
    if server is not None:
        cases[remote_row] = with_modelbook(root / "home-remote", server, remote_row)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for index in range(rounds):
        for name, case in cases.items():
            stalls = case()
            samples[name] += stalls
            shown = ", ".join(f"{x:.3f}" for x in stalls)
            print(f"  .. round {index + 1}/{rounds} {name}: {shown} s", file=sys.stderr, flush=True)
    size = f"{total / GIB:g} GiB" if total >= GIB else f"{total // MIB} MiB"
    table = Table(f"Time inside the callback per improvement, {size} of weights", "s", BASELINE)
    table.samples = {name: values[:runs] for name, values in samples.items()}
    # this VM's writes are bimodal (see the module docstring): the fastest run shows the cost
    # of the callback itself once the memory the file goes to is at hand
    table.columns["min (s)"] = {name: f"{min(v):.3f}" for name, v in table.samples.items()}
    table.columns["peak snapshot memory"] = {row: _size(peak) for row, peak in peaks.items()}
    if server is None:
        table.notes[remote_row] = "not measured: pip install 'modelbook[server]'"
    for row in ("embedded store (local)", "modelbook server (remote)"):
        name = f"ModelbookCallback, {row}"
        table.goals.append(Goal(f"{row} <= 0.3x bare torch.save", name, 0.3))
        table.goals.append(Goal(f"{row} <= 0.15x bare torch.save (the aim)", name, 0.15))
    for row in ("embedded store (local)", "modelbook server (remote)"):
        text = f"{row} over the control (same background I/O as the upload worker)"
        table.goals.append(Goal(text, f"ModelbookCallback, {row}", None, other=READ_BACK))
    return table


def _size(nbytes: int) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / MIB:.1f} MiB"


def cuda_table(total: int, runs: int, root: Path) -> Table | None:
    """Stall of ``BestModel.update`` for a state dict of ``total`` bytes on the GPU against
    ``torch.save`` of it, interleaved; None (the reason printed) without CUDA."""
    import torch

    if not torch.cuda.is_available():
        print("CUDA case skipped: torch.cuda.is_available() is False on this machine "
              f"(torch {torch.__version__})", file=sys.stderr, flush=True)  # fmt: skip
        return None
    from modelbook import OutputModel, Task
    from modelbook.integrations.pytorch import BestModel

    count, per = max(1, total // TENSOR), min(total, TENSOR) // 4
    state = {f"w{i}": torch.rand(per, device="cuda") for i in range(count)}
    home = root / "home-cuda"

    def bump() -> None:  # new bytes in every snapshot, written on the current stream
        for tensor in state.values():
            tensor[:4] += 1.0

    base, host, device = "bare torch.save (CUDA tensors)", "BestModel.update: host", (
        "BestModel.update + torch.cuda.synchronize(): GPU free again")  # fmt: skip
    samples: dict[str, list[float]] = {base: [], host: [], device: []}
    with modelbook_at(home, None):
        task = Task.init(project_name="bench", task_name="stall-cuda")
        with BestModel("loss", task=task) as best:
            for index in range(runs + 1):  # the first is a warm-up (pinned buffers allocated)
                bump()
                torch.cuda.synchronize()
                start = time.perf_counter()
                torch.save(state, root / "bare-cuda.pt")
                bare = time.perf_counter() - start
                (root / "bare-cuda.pt").unlink()
                os.sync()
                bump()
                torch.cuda.synchronize()
                start = time.perf_counter()
                best.update({"loss": -float(index)}, state, step=index)
                returned = time.perf_counter()
                torch.cuda.synchronize()
                done = time.perf_counter()
                bump()  # the next write to the weights: queued after the copy on the GPU
                if OutputModel.wait_for_uploads(timeout=UPLOAD_TIMEOUT):
                    raise RuntimeError(f"uploads pending after {UPLOAD_TIMEOUT} s")
                os.sync()
                shutil.rmtree(home / "blobs", ignore_errors=True)
                if index:
                    samples[base].append(bare)
                    samples[host].append(returned - start)
                    samples[device].append(done - start)
            peak = best.registrar.writer.peak if best.registrar.writer is not None else 0
        task.close()
    size = f"{total / GIB:g} GiB" if total >= GIB else f"{total // MIB} MiB"
    table = Table(f"CUDA: time in BestModel.update per improvement, {size} on the GPU", "s",
                  base)  # fmt: skip
    table.samples = samples
    table.columns["peak snapshot memory (pinned)"] = {host: _size(peak)}
    table.goals.append(Goal("GPU stall <= 0.3x bare torch.save", device, 0.3))
    return table


if __name__ == "__main__":
    sys.exit(main())
