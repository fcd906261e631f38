"""Run by ``test_transformers_ddp.py`` under ``torch.distributed.run``: two CPU processes (gloo)
train a tiny BERT with ``Trainer`` and ``ModelbookCallback``.

Each rank's ``compute_metrics`` returns its own scripted ``score`` (``metric_for_best_model``),
so only a decision taken on rank zero and broadcast keeps the ranks in step. Every rank
writes its callback's state to ``<root>/rank<N>.json`` at the end.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from modelbook import OutputModel, Task
from modelbook.integrations.transformers import ModelbookCallback

RANK0 = [3.0, 2.0, 2.5, 1.0]  # improvements at epochs 1, 2, 4 (lower is better)
RANK1 = [1.0, 5.0, 0.5, 9.0]  # on its own, rank 1 would pick epochs 1 and 3
PROBE = torch.arange(24).reshape(3, 8) % 32


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 32, (n, 8), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": (self.ids[i, 0] > 15).long()}


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    return BertForSequenceClassification(config)


class Drain(TrainerCallback):
    """After ModelbookCallback: each version is stored before the next epoch (exact counts)."""

    def on_evaluate(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            assert OutputModel.wait_for_uploads(timeout=30) == []


class Probe(TrainerCallback):
    """The score this rank saw and its model's logits on PROBE, at each evaluation."""

    def __init__(self) -> None:
        self.scores: list[float] = []
        self.logits: list[list] = []

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        self.scores.append(metrics["eval_score"])
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.logits.append(model(input_ids=PROBE).logits.tolist())
        model.train(was_training)


def main(root: Path) -> None:
    rank = int(os.environ["RANK"])
    scores = iter(RANK0 if rank == 0 else RANK1)
    args = TrainingArguments(
        output_dir=str(root / "out"), report_to="none", use_cpu=True, ddp_backend="gloo",
        num_train_epochs=len(RANK0), per_device_train_batch_size=8,
        per_device_eval_batch_size=8, eval_strategy="epoch", save_strategy="no",
        metric_for_best_model="score", greater_is_better=False, logging_strategy="no",
        learning_rate=1e-2, seed=0, disable_tqdm=True,
    )  # fmt: skip
    callback = ModelbookCallback(project_name="hf-ddp", task_name="torchrun")
    probe = Probe()
    trainer = Trainer(
        model=tiny_bert(), args=args, train_dataset=Tokens(32, 1), eval_dataset=Tokens(16, 2),
        compute_metrics=lambda _: {"score": next(scores)}, callbacks=[callback, Drain(), probe],
    )  # fmt: skip
    assert dist.is_initialized() and dist.get_world_size() == 2  # really two processes
    trainer.train()
    current = Task.current_task()
    (root / f"rank{rank}.json").write_text(json.dumps({
        "monitor": callback.monitor.state_dict(),
        "registrar": callback.registrar.state_dict(),
        "task": current.id if current is not None else None,
        "global_step": trainer.state.global_step,
        "scores": probe.scores,
        "logits": probe.logits,
    }))  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
