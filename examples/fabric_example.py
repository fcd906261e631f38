"""Lightning Fabric: register the best model from a Fabric training loop.

A tiny classifier on synthetic data; runs on CPU in seconds and downloads nothing. Fabric
sets up the model, optimizer and data; ``BestModel`` registers each improvement of
``val_loss`` as a new version of one OutputModel. With ``devices=N`` (or a multi-node launch)
the same code runs on every rank: rank zero decides and registers, the others follow.

    python examples/fabric_example.py        # then: modelbook models ls
"""

from __future__ import annotations

import torch
from lightning.fabric import Fabric
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from modelbook import Model
from modelbook.integrations.pytorch import BestModel


def make_data(n: int, generator: torch.Generator) -> DataLoader:
    x = torch.randn(n, 8, generator=generator)
    y = (x[:, :4].sum(dim=1) > 0).long()  # a learnable rule
    return DataLoader(TensorDataset(x, y), batch_size=64)


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))


def main(epochs: int = 5) -> str:
    fabric = Fabric(accelerator="cpu", devices=1)
    fabric.launch()
    fabric.seed_everything(0, verbose=False)
    gen = torch.Generator().manual_seed(0)
    train, val = fabric.setup_dataloaders(make_data(512, gen), make_data(128, gen))
    net = make_net()
    model, optimizer = fabric.setup(net, torch.optim.Adam(net.parameters(), lr=1e-2))
    loss_fn = nn.CrossEntropyLoss()

    step = 0
    with BestModel("val_loss", project_name="examples", task_name="fabric",
                   model_name="fabric-mlp", hparams={"lr": 1e-2}) as best:  # fmt: skip
        for epoch in range(epochs):
            model.train()
            for x, y in train:
                optimizer.zero_grad()
                fabric.backward(loss_fn(model(x), y))
                optimizer.step()
                step += 1
            model.eval()
            total, correct, count = 0.0, 0, 0
            with torch.no_grad():
                for x, y in val:
                    logits = model(x)
                    total += loss_fn(logits, y).item() * len(y)
                    correct += int((logits.argmax(dim=1) == y).sum())
                    count += len(y)
            metrics = {"val_loss": total / count, "val_acc": correct / count}
            best.update(metrics, model, step=step, epoch=epoch)  # saves the unwrapped weights
            fabric.print(f"epoch {epoch}: {metrics}")

    registered = Model(best.model_id)  # type: ignore[arg-type]
    fabric.print(f"{len(registered.versions)} versions of {registered.name} ({registered.id})")
    restored = make_net()
    restored.load_state_dict(torch.load(registered.get_local_copy(), weights_only=True))
    return registered.id


if __name__ == "__main__":
    main()
