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


if __name__ == "__main__":
    flows = {
        "init_close": init_close,
        "output_model": output_model,
        "input_model": input_model,
        "import_model": import_model,
        "query": query,
        "get_tasks": get_tasks,
        "parameters": parameters,
    }
    flows[sys.argv[1]](*sys.argv[2:])
