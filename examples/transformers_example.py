"""transformers: register the best model in modelbook while ``Trainer`` trains.

A tiny BERT built from a config (nothing is downloaded) learns a synthetic rule on CPU in
seconds. The callback follows the Trainer's own ``metric_for_best_model`` and
``greater_is_better``; each improvement registers the ``save_pretrained`` folder
(safetensors + config, labels from ``id2label``) as a new version of one OutputModel.

    python examples/transformers_example.py     # then: modelbook models ls
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from modelbook import Model, Task
from modelbook.integrations.transformers import ModelbookCallback


class Tokens(torch.utils.data.Dataset):
    """Random token ids; the label says whether the first token is in the upper half."""

    def __init__(self, n: int, seed: int) -> None:
        self.ids = torch.randint(0, 64, (n, 12), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": (self.ids[i, 0] >= 32).long()}


def accuracy(prediction) -> dict[str, float]:
    predicted = np.argmax(prediction.predictions, axis=-1)
    return {"accuracy": float((predicted == prediction.label_ids).mean())}


def main(epochs: int = 4) -> str:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=16,
        id2label={0: "low", 1: "high"}, label2id={"low": 0, "high": 1},
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="modelbook-hf-") as scratch:  # Trainer's output_dir
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=epochs,
            eval_strategy="epoch", save_strategy="no", logging_strategy="no", learning_rate=5e-3,
            per_device_train_batch_size=32, metric_for_best_model="accuracy",
            greater_is_better=True, report_to="none", use_cpu=True, disable_tqdm=True, seed=0,
        )  # fmt: skip

        task = Task.init(project_name="examples", task_name="transformers")
        callback = ModelbookCallback(task=task, model_name="tiny-bert")  # eval_accuracy, max
        trainer = Trainer(
            model=BertForSequenceClassification(config), args=args, train_dataset=Tokens(256, 0),
            eval_dataset=Tokens(64, 1), compute_metrics=accuracy, callbacks=[callback],
        )  # fmt: skip
        trainer.train()
        task.close()

    model = Model(callback.registrar.model_id)
    best = model.versions[-1]
    print(f"{len(model.versions)} versions of {model.name} ({model.id}); labels {model.labels}")
    print(f"best eval_accuracy {best.metadata['monitor_value']['value']} at step {best.iteration}")
    restored = BertForSequenceClassification.from_pretrained(model.get_local_copy())
    print(f"reloaded: {restored.num_parameters()} parameters")
    return model.id


if __name__ == "__main__":
    main()
