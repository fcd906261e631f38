"""Run by ``test_lightning.py``: a two-process ``ddp_spawn`` fit on CPU (gloo).

Each rank logs its own ``val_loss`` (no ``sync_dist``), so only a decision taken on rank zero
and broadcast keeps the ranks in step. Every rank writes its monitor state to
``<root>/rank<N>.json`` at the end. It trains with the package ``MODELBOOK_TEST_LIGHTNING``
names ("lightning", the default, or "pytorch_lightning").
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from modelbook import OutputModel, Task
from modelbook.integrations.lightning import ModelbookCallback

# the package test_lightning.py trains with (it passes MODELBOOK_TEST_LIGHTNING on)
PACKAGE = os.environ.get("MODELBOOK_TEST_LIGHTNING", "lightning")
pl = importlib.import_module("lightning.pytorch" if PACKAGE == "lightning" else PACKAGE)

RANK0 = [3.0, 2.0, 2.5, 1.0]  # improvements at epochs 0, 1, 3
RANK1 = [1.0, 5.0, 0.5, 9.0]  # on its own, rank 1 would pick epochs 0 and 2


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, _):
        values = RANK0 if self.global_rank == 0 else RANK1
        self.log("val_loss", values[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Drain(pl.Callback):
    """After ModelbookCallback: each version is stored before the next epoch (exact counts)."""

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            OutputModel.wait_for_uploads(timeout=30)


class DumpState(pl.Callback):
    def __init__(self, root: Path) -> None:
        self.root = root

    def on_train_end(self, trainer, pl_module) -> None:
        ours = next(c for c in trainer.callbacks if isinstance(c, ModelbookCallback))
        path = self.root / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(ours.monitor.state_dict()))


def main(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    task = Task.init(project_name="ddp", task_name="spawn")  # current here; workers get its id
    x = torch.randn(64, 4)
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=len(RANK0),
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=root,
        callbacks=[ModelbookCallback(), Drain(), DumpState(root)],
    )  # fmt: skip
    trainer.fit(Net(), data, data)
    task.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
