"""Run by ``test_pytorch_loop.py``, once per rank: a two-process DDP loop on CPU (gloo).

Rank and rendezvous come from the environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``). Each rank reports its own ``val_loss`` (not reduced), so only a decision
taken on rank zero and broadcast keeps the ranks in step. Rank zero saves the weights it
had at each improvement to ``<root>/seen-step<N>.pt``; every rank writes what it saw to
``<root>/rank<N>.json``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from modelbook import OutputModel, Task
from modelbook.integrations.pytorch import BestModel

RANK0 = [math.nan, 3.0, 2.0, 2.0, 1.0]  # improvements at epochs 1, 2 and 4
RANK1 = [1.0, 5.0, 0.5, 9.0, 0.1]  # on its own, rank 1 would pick epochs 0, 2 and 4
STEPS_PER_EPOCH = 4


def main(root: Path) -> None:
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    torch.manual_seed(0)  # the same initial weights on both ranks (DDP checks)
    net = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(rank)  # each rank its own shard of data
    x = torch.randn(STEPS_PER_EPOCH * 8, 4, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    improved: list[bool] = []
    reported: dict[int, dict[str, float]] = {}
    values = RANK0 if rank == 0 else RANK1
    with BestModel("val_loss", project_name="ddp", task_name="loop", model_name="linear") as best:
        for epoch, value in enumerate(values):
            for i in range(0, len(x), 8):
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(net(x[i : i + 8]), y[i : i + 8])
                loss.backward()
                optimizer.step()
            step = (epoch + 1) * STEPS_PER_EPOCH
            metrics = {"val_loss": value, "train_loss": loss.item()}
            flag = best.update(metrics, net, step=step, epoch=epoch)
            improved.append(flag)
            if rank == 0 and flag:
                reported[step] = metrics
                torch.save(net.module.state_dict(), root / f"seen-step{step}.pt")
                assert OutputModel.wait_for_uploads(timeout=30) == []  # exact counts
    state = {
        "rank": rank, "improved": improved, "monitor": best.monitor.state_dict(),
        "registrar": best.registrar.state_dict(), "queued": best.registrar.registered,
        "current_task": Task.current_task() is not None, "reported": reported,
    }  # fmt: skip
    (root / f"rank{rank}.json").write_text(json.dumps(state))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
