"""Plain PyTorch: register the best model from your own training loop.

A tiny classifier on synthetic data; runs on CPU in seconds and downloads nothing. After each
epoch the loop reports its validation metrics to ``BestModel``; each time ``val_acc``
improves, the weights become a new version of one OutputModel. The helper's state goes into
the loop's own checkpoint, so a resumed run continues the same model and never registers a
worse one.

    python examples/pytorch_loop_example.py        # then: modelbook models ls
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from modelbook import Model
from modelbook.integrations.pytorch import BestModel


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 8, generator=generator)
    y = (x[:, :4].sum(dim=1) > 0).long()  # a learnable rule
    return x, y


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))


def main(epochs: int = 5) -> str:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    (x_train, y_train), (x_val, y_val) = make_data(512, gen), make_data(128, gen)
    net, hparams = make_net(), {"lr": 1e-2, "epochs": epochs, "batch_size": 64}
    optimizer = torch.optim.Adam(net.parameters(), lr=hparams["lr"])
    loss_fn = nn.CrossEntropyLoss()
    checkpoint = Path(tempfile.mkdtemp(prefix="modelbook-loop-")) / "last.pt"

    best = BestModel(
        "val_acc", mode="max", project_name="examples", task_name="pytorch-loop",
        model_name="loop-mlp", labels={"negative": 0, "positive": 1}, publish_on_end=True,
        hparams=hparams,
    )  # fmt: skip
    # to resume: best.load_state_dict(torch.load(checkpoint)["best_model"]) before the block
    step = 0
    with best:  # on exit: waits for the uploads, then publishes the best version
        for epoch in range(epochs):
            net.train()
            for i in range(0, len(x_train), 64):
                optimizer.zero_grad()
                loss_fn(net(x_train[i : i + 64]), y_train[i : i + 64]).backward()
                optimizer.step()
                step += 1
            net.eval()
            with torch.no_grad():
                logits = net(x_val)
            metrics = {
                "val_loss": loss_fn(logits, y_val).item(),
                "val_acc": (logits.argmax(dim=1) == y_val).float().mean().item(),
            }
            improved = best.update(metrics, net, step=step, epoch=epoch)
            print(f"epoch {epoch}: {metrics}{'  <- new best' if improved else ''}")
            torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                        "best_model": best.state_dict()}, checkpoint)  # fmt: skip

    model = Model(best.model_id)  # type: ignore[arg-type]
    print(f"{len(model.versions)} versions of {model.name} ({model.id}); published: "
          f"{model.published}")  # fmt: skip
    print(f"best val_acc {model.get_metadata('monitor_value')} at step {model.iteration}")
    restored = make_net()
    restored.load_state_dict(torch.load(model.get_local_copy(), weights_only=True))
    return model.id


if __name__ == "__main__":
    main()
