"""Quickstart: a tiny real PyTorch training that registers its best model in the embedded store.

Runs on CPU in a few seconds with synthetic data; nothing is downloaded. Each time the
validation loss improves, the weights become a new version of one OutputModel.

    python examples/quickstart.py        # then: modelbook models ls
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from modelbook import Model, OutputModel, Task


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 8, generator=generator)
    y = (x[:, :4].sum(dim=1) > 0).long()  # a learnable rule
    return x, y


def main(epochs: int = 8) -> str:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    (x_train, y_train), (x_val, y_val) = make_data(512, gen), make_data(128, gen)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()

    task = Task.init(project_name="examples", task_name="quickstart")
    task.connect({"lr": 1e-2, "epochs": epochs, "hidden": 32})
    output_model = OutputModel(task=task, name="quickstart-mlp", framework="PyTorch")
    output_model.update_labels({"negative": 0, "positive": 1})

    best = float("inf")
    workdir = Path(tempfile.mkdtemp(prefix="modelbook-quickstart-"))
    for epoch in range(epochs):
        net.train()
        for i in range(0, len(x_train), 64):
            optimizer.zero_grad()
            loss_fn(net(x_train[i : i + 64]), y_train[i : i + 64]).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val_loss = loss_fn(net(x_val), y_val).item()
            val_acc = (net(x_val).argmax(dim=1) == y_val).float().mean().item()
        print(f"epoch {epoch}: val_loss={val_loss:.4f} val_acc={val_acc:.3f}")
        if val_loss < best:  # the validation metric improved: register a new version
            best = val_loss
            path = workdir / "model.pt"
            torch.save(net.state_dict(), path)
            output_model.set_metadata("val_loss", f"{val_loss:.6f}", "float")
            output_model.set_metadata("val_acc", f"{val_acc:.6f}", "float")
            output_model.update_weights(weights_filename=str(path), iteration=epoch)

    task.close()
    model = Model(output_model.id)
    print(f"registered {len(model.versions)} versions of model {model.id} ({model.name})")
    print(f"best val_loss {model.get_metadata('val_loss')} at iteration {model.iteration}")
    restored = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    restored.load_state_dict(torch.load(model.get_local_copy(), weights_only=True))
    print(f"weights reloaded from {model.get_local_copy()}")
    return model.id


if __name__ == "__main__":
    main()
