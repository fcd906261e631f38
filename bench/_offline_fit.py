"""One tiny Lightning fit for the offline-start benchmark, in its own process (the Task
singleton and the backend settings are process-wide).

modelbook is configured from the environment (``MODELBOOK_HOME``, ``MODELBOOK_API_HOST``,
``MODELBOOK_OFFLINE``...). A 2-layer net learns a synthetic regression on the CPU; each epoch
sleeps ``EPOCH_SECONDS`` (the same for every case) and the validation losses are scripted,
so ``val_loss`` improves at epochs 0, 1, 3, 5 and 7. Prints one JSON line: the seconds of
``trainer.fit`` alone, the task and model ids the callback saw, and its failures.

Usage: ``python bench/_offline_fit.py ROOT EPOCHS EPOCH_SECONDS [--no-callback]``
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

VAL_LOSS = [3.0, 2.0, 2.5, 1.0, 1.5, 0.5, 0.7, 0.4, 0.45, 0.3]


def main(root: Path, epochs: int, epoch_seconds: float, callback: bool) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Net(pl.LightningModule):
        def __init__(self, lr: float = 0.01, width: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()  # the callback registers them
            self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 1))

        def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def on_train_epoch_end(self) -> None:
            time.sleep(epoch_seconds)  # a longer epoch, the same in every case

        def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
            self.log("val_loss", VAL_LOSS[self.current_epoch % len(VAL_LOSS)])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])

    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    callbacks: list[Any] = []
    if callback:
        from modelbook.integrations.lightning import ModelbookCallback

        callbacks.append(ModelbookCallback(project_name="bench", task_name="fit", keep_last=1))
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
        callbacks=callbacks,
    )
    model = Net()
    started = time.perf_counter()
    trainer.fit(model, data, data)
    seconds = time.perf_counter() - started
    registrar = callbacks[0].registrar if callbacks else None
    return {
        "fit_seconds": seconds,
        "task_id": registrar.task_id if registrar else None,
        "model_id": registrar.model_id if registrar else None,
        "failures": list(callbacks[0].registry_failures) if callbacks else [],
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    found = main(Path(args[0]), int(args[1]), float(args[2]), "--no-callback" not in args[3:])
    print(json.dumps(found), flush=True)
