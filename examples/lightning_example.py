"""Lightning: register the best model in modelbook while training.

A tiny classifier on synthetic data; runs on CPU in seconds and downloads nothing. Each time
``val_acc`` improves, the weights become a new version of one OutputModel; the best is
published when training ends.

    python examples/lightning_example.py        # then: modelbook models ls
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from modelbook import Model, Task
from modelbook.integrations.lightning import ModelbookCallback


class Classifier(pl.LightningModule):
    def __init__(self, hidden: int = 32, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()  # recorded on the task, section "hparams"
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def make_data(n: int, generator: torch.Generator) -> DataLoader:
    x = torch.randn(n, 8, generator=generator)
    y = (x[:, :4].sum(dim=1) > 0).long()  # a learnable rule
    return DataLoader(TensorDataset(x, y), batch_size=64)


def main(epochs: int = 5) -> str:
    pl.seed_everything(0, verbose=False)
    gen = torch.Generator().manual_seed(0)
    train, val = make_data(512, gen), make_data(128, gen)

    task = Task.init(project_name="examples", task_name="lightning")
    callback = ModelbookCallback(
        monitor="val_acc", mode="max", task=task, model_name="lightning-mlp",
        labels={"negative": 0, "positive": 1}, publish_on_end=True,
    )  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", callbacks=[callback], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Classifier(), train, val)
    task.close()

    model = Model(callback.state_dict()["model_id"])
    best = model.versions[-1]
    print(f"{len(model.versions)} versions of {model.name} ({model.id})")
    print(f"published: {model.published}")
    print(f"best val_acc {best.metadata['monitor_value']['value']} at step {best.iteration}")
    restored = Classifier()
    restored.load_state_dict(torch.load(model.get_local_copy(), weights_only=True))
    return model.id


if __name__ == "__main__":
    main()
