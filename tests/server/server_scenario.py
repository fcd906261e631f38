"""One scenario of Backend verbs, run on every backend to compare what they return."""

from __future__ import annotations

import dataclasses
from typing import Any

from modelbook.backends.base import Backend
from modelbook.records import ModelQuery, to_metadata


def scenario(b: Backend) -> dict[str, Any]:
    """The same verbs on any backend; returns what they gave, ids and dates dropped."""
    project = b.get_or_create_project("parity")
    assert b.get_or_create_project("parity").id == project.id
    task = b.create_task(name="train", project=project.id, tags=["t1"], comment="c")
    task = b.update_task(
        task.id,
        status="in_progress",
        labels={"cat": 1},
        model_config="layers: 3",
        hyperparams={"Args": {"lr": 0.1, "epochs": "3"}},
        last_iteration=5,
        output_destination="http://dest",
    )
    task = b.update_task(task.id, hyperparams={"Args": {"lr": "0.2"}}, last_iteration=2)
    model = b.create_model(
        name="m1", project=project.id, task=task.id, tags=["demo"], framework="PyTorch",
        labels={"cat": 1}, design="d", metadata=to_metadata({"acc": 0.9}),
    )  # fmt: skip
    b.create_model(name="m2", project=project.id, tags=["demo", "TF"])
    b.create_model(name="m3", project=project.id, tags=["other"], system_tags=["archived"])
    b.set_task_model(task.id, "output", "best", model.id)
    model = b.add_model_version(
        model.id, uri="http://files/m1.pt", sha256="a" * 64, size=3, iteration=7, comment="v1"
    )
    model = b.add_model_version(
        model.id, uri="http://files/m1b.pt", sha256="b" * 64, size=4, iteration=9,
        framework="PyTorch", is_package=True, metadata=to_metadata({"stage": "b"}),
    )  # fmt: skip
    model = b.set_model_metadata(model.id, to_metadata({"loss": 0.1}))
    model = b.update_model(model.id, ready=True, add_system_tags=["x"])
    model = b.update_model(model.id, remove_system_tags=["x"], comment="final")
    q = ModelQuery(projects=[project.id])

    def names(**changes) -> list[str]:
        return [m.name for m in b.query_models(dataclasses.replace(q, **changes))]

    results = {
        "project": (project.name,),
        "task": b.get_task(task.id),
        "found_tasks": len(b.find_tasks(project=project.id, name="train")),
        "model": b.get_model(model.id),
        "versions": b.list_model_versions(model.id),
        "demo_not_tf": names(tags=["demo", "-TF"]),
        "not_archived": names(system_tags=["-archived"]),
        "by_name": names(name="m2"),
        "by_pattern": names(name_pattern="^m[12]"),
        "ready": names(ready=True),
        "by_meta": names(metadata={"loss": "0.1"}),
        "paged": names(offset=1, limit=1),
        "paged_odd": names(offset=1, limit=2),
        "ordered": names(order_by=["name"]),
        "count": b.count_models(q),
        "count_tags": b.count_models(dataclasses.replace(q, tags=["demo"], limit=1)),
        "by_uri": [m.name for m in b.query_models(ModelQuery(uri=["http://files/m1b.pt"]))],
        "by_task": [m.name for m in b.query_models(ModelQuery(task=task.id))],
    }  # fmt: skip
    b.delete_model(model.id)
    results["after_delete"] = b.get_task(task.id).output_models
    return results


def comparable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        drop = {"id", "created", "last_update", "project", "task", "model"}
        return {k: comparable(v) for k, v in dataclasses.asdict(value).items() if k not in drop}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in ("created", "model")}
    return value
