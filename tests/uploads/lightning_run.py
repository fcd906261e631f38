"""Run by the offline tests: a tiny Lightning fit that registers its best model.

``python lightning_run.py ROOT [EPOCH_SECONDS]``; modelbook is configured from the
environment (``MODELBOOK_HOME``, ``MODELBOOK_API_HOST``, ``MODELBOOK_OFFLINE``...). The
validation losses are scripted, so the improvements are known: epochs 0, 1, 3 and 5. Prints
one JSON line: the fit's seconds, the task and model ids the callback saw, its failures.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from modelbook.integrations.lightning import ModelbookCallback

VAL_LOSS = [3.0, 2.0, 2.5, 1.0, 1.5, 0.5]
IMPROVEMENTS = [0, 1, 3, 5]


class Net(pl.LightningModule):
    def __init__(self, lr: float = 0.01, width: int = 8, epoch_seconds: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 1))

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def on_train_epoch_end(self) -> None:
        time.sleep(self.hparams.epoch_seconds)  # a longer epoch, the same for every run

    def validation_step(self, batch, _):
        self.log("val_loss", VAL_LOSS[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def main(root: Path, epoch_seconds: float) -> None:
    warnings.filterwarnings("ignore")
    x = torch.randn(64, 4)
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    project = os.environ.get("MODELBOOK_TEST_PROJECT", "offline")
    callback = ModelbookCallback(project_name=project, task_name="fit", keep_last=1)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=len(VAL_LOSS), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
        callbacks=[callback],
    )  # fmt: skip
    started = time.perf_counter()
    trainer.fit(Net(epoch_seconds=epoch_seconds), data, data)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "fit_seconds": seconds, "task_id": callback.registrar.task_id,
        "model_id": callback.registrar.model_id, "failures": callback.registry_failures,
    }))  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
