"""ClearML SDK flows, run by tests/server/test_server_clearml_sdk.py in a subprocess.

Usage: ``python clearml_flows.py <flow> [args...]``. The unmodified ``clearml`` SDK is
configured by environment variables only; each flow prints one ``FLOW_RESULT {json}`` line.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

QUIET = {"auto_connect_frameworks": False, "auto_resource_monitoring": False}


def out(**result: object) -> None:
    print("FLOW_RESULT " + json.dumps(result), flush=True)


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def init_close() -> None:
    from clearml import Task

    task = Task.init(project_name="examples", task_name="t", **QUIET)
    task_id = task.id
    status_while_running = task.get_status()
    task.close()
    out(task=task_id, status_while_running=status_while_running)


def output_model(weights: str) -> None:
    from clearml import OutputModel, Task

    task = Task.init(project_name="examples", task_name="train", output_uri=True, **QUIET)
    model = OutputModel(task=task, framework="PyTorch")
    model.update_labels({"cat": 1, "dog": 2})
    returned = model.update_weights(weights, iteration=3)
    model.wait_for_uploads()
    task.close()
    out(task=task.id, model=model.id, returned=returned, url=model.url)


def input_model(model_id: str) -> None:
    from clearml import InputModel, Task

    task = Task.init(project_name="examples", task_name="consume", **QUIET)
    model = InputModel(model_id=model_id)
    task.connect(model)
    local = model.get_local_copy()
    labels = task.get_labels_enumeration()
    result = {
        "task": task.id,
        "name": model.name,
        "labels": labels,
        "sha256": sha256(local) if local else None,
        "local": local,
    }
    task.close()
    out(**result)


def import_model(url: str) -> None:
    from clearml import InputModel

    first = InputModel.import_model(
        name="imported", weights_url=url, label_enumeration={"a": 1}, framework="PyTorch"
    )
    second = InputModel.import_model(name="ignored", weights_url=url)
    out(first=first.id, second=second.id, name=first.name, labels=first.labels, url=first.url)


def query() -> None:
    from clearml import Model

    models = Model.query_models(
        project_name="examples", tags=["demo", "-TF"], include_archived=True, max_results=5
    )
    out(ids=[m.id for m in models], names=[m.name for m in models])


def get_tasks() -> None:
    from clearml import Task

    by_project = Task.get_tasks(project_name="listing")
    by_pattern = Task.get_tasks(project_name="listing", task_name="run-1")  # a regex: run-1, run-10
    by_tags = Task.get_tasks(project_name="listing", tags=["keep", "-drop"])
    out(project=sorted(t.name for t in by_project), pattern=sorted(t.name for t in by_pattern),
        tags=sorted(t.name for t in by_tags))


def parameters() -> None:
    from clearml import Task

    task = Task.init(project_name="params", task_name="edit", **QUIET)
    task.set_parameters({"Args/lr": 0.1, "Args/wd": 0.01})
    task.set_user_properties(owner="me")
    task.delete_parameter("Args/wd")
    params, props = task.get_parameters(), task.get_user_properties(value_only=True)
    task.close()
    out(task=task.id, params=params, props=props)


def records(work: str, weights: str) -> None:
    """A task that writes what ClearML keeps beside the models: configurations, typed
    parameters, artifacts, scalars (and an output model, which a clone must not copy)."""
    from clearml import OutputModel, Task

    task = Task.init(project_name="records", task_name="write", output_uri=True, **QUIET)
    task.add_tags(["keep"])
    task.connect_configuration({"lr": 0.1, "layers": [64, 32]}, name="train")
    task.connect_configuration({"path": "/data", "shuffle": True}, name="data")
    notes = Path(work) / "notes.txt"
    notes.write_text("free text\nline 2\n")
    task.connect_configuration(notes, name="notes")
    task.set_model_config(config_text="layers: 3")
    task.connect({"lr": 0.25, "epochs": 3, "arch": "resnet"}, name="Args")
    task.upload_artifact("stats", artifact_object={"a": 1, "b": [2, 3]})
    blob = Path(work) / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    task.upload_artifact("blob", artifact_object=blob)
    logger = task.get_logger()
    for i, value in enumerate([0.9, 0.4, 0.6, 0.2]):
        logger.report_scalar("loss", "train", value, iteration=i)
        logger.report_scalar("loss", "val", value + 1, iteration=i)
    logger.report_histogram("weights", "layer1", values=[3, 1, 2], iteration=3)
    logger.report_text("training done")
    model = OutputModel(task=task, name="best", framework="PyTorch")
    model.update_weights(weights, iteration=3)
    task.flush(wait_for_uploads=True)
    task.close()
    out(task=task.id, model=model.id)


def read_back(task_id: str) -> None:
    """In a new process: what ``records`` wrote, then a clone of its task read back."""
    from clearml import Task

    task = Task.get_task(task_id=task_id)
    found = {
        "train": task.get_configuration_object_as_dict("train"),
        "data": task.get_configuration_object_as_dict("data"),
        "notes": task.get_configuration_object("notes"),
        "design": task.get_model_config_text(),
        "params": task.get_parameters(cast=True),
        "stats": task.artifacts["stats"].get(),
        "blob": Path(task.artifacts["blob"].get_local_copy()).read_bytes().hex(),
        "scalars": task.get_reported_scalars(),
        "last": task.get_last_scalar_metrics(),
        "plots": [{k: p[k] for k in ("metric", "variant", "iter", "plot_str")}
                  for p in task.get_reported_plots()],
        "console": task.get_reported_console_output(number_of_reports=10),
        "entry_point": task.data.script.entry_point,
        "requirements": bool(task.data.script.requirements.get("pip")),
        "runtime": task.data.runtime,
        "status": task.get_status(),
    }
    copy = Task.get_task(task_id=Task.clone(source_task=task, name="cloned").id)
    found["clone"] = {
        "id": copy.id, "name": copy.name, "status": copy.get_status(), "project": copy.project,
        "tags": copy.get_tags(), "system_tags": copy.get_system_tags(), "comment": copy.comment,
        "parent": copy.parent, "train": copy.get_configuration_object_as_dict("train"),
        "design": copy.get_model_config_text(), "params": copy.get_parameters(cast=True),
        "entry_point": copy.data.script.entry_point, "artifacts": sorted(copy.artifacts),
        "output_models": [m.id for m in copy.models["output"]],
        "scalars": copy.get_reported_scalars(),
    }  # fmt: skip
    out(**found, project=task.project, comment=task.comment)


def remove_models(weights: str, of_published_task: str) -> None:
    """``Model.remove`` with and without ``force``: a draft model, one a task uses as its
    input, a published one, and (made by the test) one whose task is published."""
    from clearml import InputModel, Model, OutputModel, Task
    from clearml.backend_api.session.client import APIClient

    task = Task.init(project_name="remove", task_name="models", output_uri=True, **QUIET)
    draft = OutputModel(task=task, name="draft", framework="PyTorch")
    draft.update_weights(weights, iteration=1)
    published = OutputModel(task=task, name="published", framework="PyTorch")
    published.update_weights(register_uri="https://127.0.0.1:39443/published.pth")
    published.publish()
    used = InputModel.import_model(name="used", weights_url="https://127.0.0.1:39443/used.pth")
    task.connect(used)
    draft.wait_for_uploads()
    ids = {"draft": draft.id, "published": published.id, "used": used.id,
           "of_published_task": of_published_task}  # fmt: skip

    def existing() -> list[str]:
        found = APIClient().models.get_all(id=list(ids.values()), only_fields=["id"])
        return sorted(name for name, id_ in ids.items() if id_ in {m.id for m in found})

    removed = {name: Model.remove(id_, delete_weights_file=False) for name, id_ in ids.items()}
    refused = existing()
    forced = {name: Model.remove(ids[name], delete_weights_file=False, force=True)
              for name in refused}  # fmt: skip
    inputs = [m.id for m in Task.get_task(task_id=task.id).models["input"]]
    task.close()
    out(task=task.id, ids=ids, url=draft.url, removed=removed, refused=refused, forced=forced,
        left=existing(), inputs=inputs)


if __name__ == "__main__":
    flows = {
        "init_close": init_close,
        "output_model": output_model,
        "input_model": input_model,
        "import_model": import_model,
        "query": query,
        "get_tasks": get_tasks,
        "parameters": parameters,
        "records": records,
        "read_back": read_back,
        "remove_models": remove_models,
    }
    flows[sys.argv[1]](*sys.argv[2:])
