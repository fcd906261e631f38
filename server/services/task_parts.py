"""``tasks.*`` on parts of a task's document: configuration sections, artifacts, requirements.

What they store is described in :mod:`modelbook.server.taskdoc`. As ``tasks.edit`` does,
they refuse a published or closed task unless ``force`` is given.
"""

from __future__ import annotations

from typing import Any

from modelbook.records import TaskRecord
from modelbook.server import taskdoc
from modelbook.server.envelope import INVALID_TASK_STATUS, ApiError
from modelbook.server.services.call import Call, Handler
from modelbook.wire import MODEL_CONFIG_SECTION

_LOCKED = ("published", "closed")


def _task(call: Call, *, writing: bool = True) -> TaskRecord:
    task = call.store.get_task(call.string("task", required=True) or "")
    if writing and task.status in _LOCKED and not call.boolean("force", False):
        raise ApiError.of(
            INVALID_TASK_STATUS, f"task is {task.status}: pass force to change it", task=task.id
        )
    return task


def _tasks(call: Call) -> list[TaskRecord]:
    return [call.store.get_task(t) for t in call.string_list("tasks") or []]


def get_configurations(call: Call) -> dict[str, Any]:
    """``{tasks, names}`` → each task's sections (those named, or all), by name."""
    names = call.string_list("names")
    result = []
    for task in _tasks(call):
        sections = taskdoc.configuration_doc(task)
        items = [sections[n] for n in sorted(sections) if not names or n in names]
        result.append({"task": task.id, "configuration": items})
    return {"configurations": result}


def get_configuration_names(call: Call) -> dict[str, Any]:
    """``{tasks, skip_empty}`` → each task's section names (without empty ones, by default)."""
    skip_empty = call.boolean("skip_empty", True)
    result = []
    for task in _tasks(call):
        sections = taskdoc.configuration_doc(task)
        names = sorted(n for n, item in sections.items() if item.get("value") or not skip_empty)
        result.append({"task": task.id, "names": names})
    return {"configurations": result}


def delete_configuration(call: Call) -> dict[str, Any]:
    """``{task, configuration: [names]}`` → how many sections were deleted."""
    task = _task(call)
    names = call.string_list("configuration")
    if not names:
        raise taskdoc.invalid("configuration", "a non-empty list of section names", names)
    stored = dict(task.document.get("configuration") or {})
    present = set(taskdoc.configuration_doc(task))
    fields: dict[str, Any] = {}
    for name in set(names):
        stored.pop(name, None)
        if name == MODEL_CONFIG_SECTION:
            fields["model_config"] = ""
    fields["document"] = {"configuration": stored or None}
    call.store.update_task(task.id, **fields)
    return {"deleted": len(present & set(names))}


def set_requirements(call: Call) -> dict[str, Any]:
    """``{task, requirements}``: the script's requirements (``{pip, conda, ...}``)."""
    task = _task(call)
    requirements = call.dict_field("requirements")
    if requirements is None:
        raise taskdoc.invalid("requirements", "an object such as {'pip': '...'}", None)
    script = {**(task.document.get("script") or {}), "requirements": requirements}
    call.store.update_task(task.id, document={"script": script})
    return {"updated": 1, "fields": {"script.requirements": requirements}}


def _artifacts(task: TaskRecord) -> list[dict[str, Any]]:
    return list((task.document.get("execution") or {}).get("artifacts") or [])


def _store_artifacts(call: Call, task: TaskRecord, artifacts: list[dict[str, Any]]) -> None:
    execution = {**(task.document.get("execution") or {}), "artifacts": artifacts}
    call.store.update_task(task.id, document={"execution": execution})


def add_or_update_artifacts(call: Call) -> dict[str, Any]:
    """``{task, artifacts}``: each replaces the artifact of its key and mode, or is added."""
    task = _task(call)
    changes = taskdoc.artifact_items(call.require("artifacts"))
    _store_artifacts(call, task, taskdoc.merged_artifacts(_artifacts(task), changes))
    return {"updated": len(changes)}


def delete_artifacts(call: Call) -> dict[str, Any]:
    """``{task, artifacts: [{key, mode}]}``: the artifacts are forgotten (their files are
    not deleted: the client deletes what it wrote)."""
    task = _task(call)
    gone = {(a["key"], a["mode"]) for a in taskdoc.artifact_items(call.require("artifacts"),
                                                                  keys_only=True)}  # fmt: skip
    current = _artifacts(task)
    kept = [a for a in current if (a.get("key"), a.get("mode") or "output") not in gone]
    if len(kept) != len(current):
        _store_artifacts(call, task, kept)
    return {"deleted": len(current) - len(kept)}


ENDPOINTS: dict[str, Handler] = {
    "tasks.get_configurations": get_configurations,
    "tasks.get_configuration_names": get_configuration_names,
    "tasks.delete_configuration": delete_configuration,
    "tasks.set_requirements": set_requirements,
    "tasks.add_or_update_artifacts": add_or_update_artifacts,
    "tasks.delete_artifacts": delete_artifacts,
}
