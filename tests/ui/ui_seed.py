"""A small registry for the UI tests, written through modelbook's own client (the embedded
store, or a live server over HTTP): what a training run and a fine-tuning run leave."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import modelbook
from modelbook import InputModel, OutputModel, Task

#: (val_loss, val_acc) of each version of the main model.
STEPS = [(0.9, 0.5), (0.6, 0.7), (0.5, 0.8), (0.41, 0.85)]
XSS = "<script>alert(1)</script>"


@dataclass
class Seeded:
    """What :func:`seed` made (ids, and each version's sha256 of the main model)."""

    model: str = ""
    train_task: str = ""
    finetune_task: str = ""
    other: str = ""
    archived: str = ""
    sha256: dict[int, str] = field(default_factory=dict)


def seed(home: Path, server: Any = None) -> Seeded:
    """Fill the registry: project ``vision`` with ``resnet18`` (4 versions, tags ``best`` and
    ``cv``, made by task ``train``, used by ``finetune``), an archived ``legacy`` model;
    project ``edge`` with ``mobilenet`` (tag ``old``) and a model named :data:`XSS`."""
    keys = ("api_host", "files_host", "access_key", "secret_key")
    remote = {} if server is None else dict(zip(keys, server[:4], strict=True))
    modelbook.configure(home=home, **remote)
    found = Seeded()
    scratch = Path(tempfile.mkdtemp(prefix="modelbook-ui-seed-"))
    try:
        task = Task.init(project_name="vision", task_name="train")
        task.connect({"lr": 0.01, "batch_size": 32})
        model = OutputModel(task=task, name="resnet18", framework="PyTorch")
        model.tags = ["best", "cv"]
        for step, (loss, acc) in enumerate(STEPS):
            weights = scratch / f"w{step}.pt"
            weights.write_bytes(bytes([step + 1]) * (2000 + step))
            found.sha256[step + 1] = hashlib.sha256(weights.read_bytes()).hexdigest()
            model.update_weights(str(weights), iteration=100 * step, async_enable=False,
                                 auto_delete_file=False, metadata={
                "monitor": "val_loss", "monitor_mode": "min", "monitor_value": loss,
                "epoch": step, "metrics/val_loss": loss, "metrics/val_acc": acc,
            })  # fmt: skip
            task.get_logger().report_scalar("loss", "train", value=1 / (step + 1), iteration=step)
        legacy = OutputModel(task=task, name="legacy", framework="PyTorch")
        legacy.update_weights(str(weights), async_enable=False, auto_delete_file=False)
        legacy.archive()
        task.close()
        found.model, found.train_task, found.archived = model.id, task.id, legacy.id
        tune = Task.init(project_name="vision", task_name="finetune")
        tune.connect(InputModel(model_id=model.id))
        tune.close()
        found.finetune_task = tune.id
        edge = Task.init(project_name="edge", task_name="distill")
        for name, tags in (("mobilenet", ["old"]), (XSS, [])):
            other = OutputModel(task=edge, name=name, framework="Keras")
            other.tags = tags
            other.update_weights(str(weights), async_enable=False, auto_delete_file=False)
            found.other = found.other or other.id
        edge.close()
    finally:
        modelbook.configure()
        Task._current = None
    return found


def paging_models(store: Any) -> list[Any]:
    """23 models in project ``paging`` whose names and iterations repeat (some iterations
    missing) and whose version counts differ: ties for every order. Returns their records,
    in creation order."""
    project = store.get_or_create_project("paging").id
    made = []
    for i in range(23):
        record = store.create_model(name=f"n{i % 4}", project=project,
                                    iteration=None if i % 5 == 0 else i % 7)  # fmt: skip
        for _ in range(i % 3):
            record = store.add_model_version(record.id, uri=f"file:///nowhere/{i}", sha256=None,
                                             size=1, iteration=i % 7, owned=False)  # fmt: skip
        made.append(store.get_model(record.id))
    return made


def expected_order(made: list[Any], sort: str) -> list[str]:
    """The ids of ``made`` (in creation order) as the models page orders them: by the sort
    key, ties by creation, both in the sort's direction; a missing iteration counts as -1."""
    position = {m.id: i for i, m in enumerate(made)}
    keys = {
        "created": lambda m: position[m.id], "name": lambda m: m.name,
        "last_update": lambda m: m.last_update, "versions": lambda m: m.version,
        "iteration": lambda m: -1 if m.iteration is None else m.iteration,
    }  # fmt: skip
    key = keys[sort.lstrip("-")]
    ordered = sorted(made, key=lambda m: (key(m), position[m.id]), reverse=sort.startswith("-"))
    return [m.id for m in ordered]
