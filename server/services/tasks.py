"""``tasks.*``: create, read, edit, status changes and model entries.

ClearML documents are mapped onto :class:`~modelbook.records.TaskRecord` fields:
``output_dest`` is the output destination, ``execution.model_labels`` the labels,
configuration section ``General`` the model design text, ``hyperparams`` are merged
section by section. Fields modelbook does not keep (script, runtime, requirements,
container, artifacts) are accepted and dropped.
"""

from __future__ import annotations

import contextlib
import re
from functools import partial
from typing import Any

from modelbook.errors import ModelNotFoundError, TaskNotFoundError
from modelbook.records import TaskRecord
from modelbook.server import dialect
from modelbook.server.envelope import (
    INVALID_TASK_STATUS,
    VALIDATION_ERROR,
    ApiError,
)
from modelbook.server.services.call import Call, Handler
from modelbook.server.services.names import name_matcher
from modelbook.server.services.projects import get_project, sort_key
from modelbook.server.wire import project_fields
from modelbook.store.tagfilter import parse_tag_filter
from modelbook.wire import MODEL_CONFIG_SECTION, task_doc

_LOCKED = ("published", "closed")


def labels_field(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise ApiError.of(VALIDATION_ERROR, "model_labels must map label names to integers")
    return dict(value)


def _hyperparams(value: Any) -> dict[str, dict[str, str]]:
    """ClearML hyper-parameters, as ``{section: {name: item}}`` or a list of items."""
    items: list[dict[str, Any]] = []
    if isinstance(value, dict):
        for section, params in value.items():
            if not isinstance(params, dict):
                raise ApiError.of(VALIDATION_ERROR, f"hyperparams[{section!r}] must be an object")
            for name, item in params.items():
                item = item if isinstance(item, dict) else {"value": item}
                items.append({**item, "section": section, "name": item.get("name", name)})
    elif isinstance(value, list):
        items = [i for i in value if isinstance(i, dict)]
    else:
        raise ApiError.of(VALIDATION_ERROR, "hyperparams must be an object or a list")
    result: dict[str, dict[str, str]] = {}
    for item in items:
        section, name = item.get("section") or "General", item.get("name")
        if not isinstance(name, str) or not isinstance(section, str):
            raise ApiError.of(VALIDATION_ERROR, "every hyper-parameter needs a name and section")
        value_ = item.get("value")
        result.setdefault(section, {})[name] = "" if value_ is None else str(value_)
    return result


def _model_config(configuration: Any) -> str | None:
    """The ``General`` section's text from a configuration object or list, if present."""
    if isinstance(configuration, dict):
        item = configuration.get(MODEL_CONFIG_SECTION)
        if item is None:
            return None
        return str(item.get("value") or "") if isinstance(item, dict) else str(item)
    if isinstance(configuration, list):
        for item in configuration:
            if isinstance(item, dict) and item.get("name") == MODEL_CONFIG_SECTION:
                value = item.get("value")
                return "" if value is None else str(value)
        return None
    raise ApiError.of(VALIDATION_ERROR, "configuration must be an object or a list")


def task_fields(call: Call) -> dict[str, Any]:
    """The store fields a ``tasks.create`` / ``tasks.edit`` body sets."""
    fields: dict[str, Any] = {}
    for name in ("name", "comment", "type"):
        value = call.string(name)
        if value is not None:
            fields[name] = value
    for name in ("tags", "system_tags"):
        values = call.string_list(name)
        if values is not None:
            fields[name] = values
    if "project" in call.data:
        project = call.string("project")
        fields["project"] = get_project(call, project).id if project else None
    if "output_dest" in call.data:
        fields["output_destination"] = call.string("output_dest") or None
    execution = call.dict_field("execution")
    if execution and "model_labels" in execution:
        fields["labels"] = labels_field(execution["model_labels"] or {})
    if call.get("configuration") is not None:
        config = _model_config(call.get("configuration"))
        if config is not None:
            fields["model_config"] = config
    if call.get("hyperparams"):
        fields["hyperparams"] = _hyperparams(call.get("hyperparams"))
    last_iteration = call.integer("last_iteration")  # modelbook extension
    if last_iteration is not None:
        fields["last_iteration"] = last_iteration
    return fields


def _task(call: Call) -> TaskRecord:
    return call.store.get_task(call.string("task", required=True) or "")


def create(call: Call) -> dict[str, Any]:
    fields = task_fields(call)
    name = call.string("name", required=True) or ""
    task = call.store.create_task(
        name=name,
        project=fields.pop("project", None),
        type=fields.pop("type", None) or "training",
        tags=fields.pop("tags", None),
        comment=fields.pop("comment", ""),
        output_destination=fields.pop("output_destination", None),
        system_tags=fields.pop("system_tags", None),
    )
    fields.pop("name", None)
    if fields:
        task = call.store.update_task(task.id, **fields)
    return {"id": task.id, "task": task_doc(task)}


def get_by_id(call: Call) -> dict[str, Any]:
    return {"task": task_doc(_task(call))}


def _candidates(call: Call) -> list[TaskRecord]:
    """The tasks a ``tasks.get_all`` body selects by id, project, name (ClearML's regular
    expression; an anchored literal is an exact, indexed match) and tags."""
    ids = call.string_list("id")
    if ids is not None:
        found = []
        for task_id in dict.fromkeys(ids):
            try:
                found.append(call.store.get_task(task_id))
            except TaskNotFoundError:
                continue  # an unknown id is simply not listed
        return found
    exact, pattern = name_matcher(call.string("name"))
    projects = call.string_list("project")
    if exact is not None and projects:
        tasks = [t for p in projects for t in call.store.find_tasks(project=p, name=exact)]
    else:
        tasks = call.store.project_tasks(projects)
        if exact is not None:
            tasks = [t for t in tasks if t.name == exact]
        elif pattern is not None:
            matcher = re.compile(pattern)
            tasks = [t for t in tasks if matcher.search(t.name)]
    for name in ("tags", "system_tags"):
        terms = call.get(name)
        if terms:
            wanted = parse_tag_filter(terms if isinstance(terms, list) else [terms])
            tasks = [t for t in tasks if wanted.matches(getattr(t, name))]
    return tasks


def get_all(call: Call) -> dict[str, Any]:
    tasks = _candidates(call)
    statuses = call.string_list("status")
    if statuses:
        tasks = [t for t in tasks if t.status in statuses]
    types = call.string_list("type")
    if types:
        tasks = [t for t in tasks if t.type in types]
    docs = [task_doc(t) for t in tasks]
    for item in reversed(call.string_list("order_by") or []):
        field = item.lstrip("-")
        descending = item.startswith("-")
        docs.sort(key=partial(sort_key, field), reverse=descending)
    page, page_size = call.integer("page"), call.integer("page_size")
    if page is not None and page_size:
        docs = docs[page * page_size : (page + 1) * page_size]
    only = call.string_list("only_fields")
    return {"tasks": [project_fields(d, only) for d in docs]}


def edit(call: Call) -> dict[str, Any]:
    task = _task(call)
    fields = task_fields(call)
    if not call.boolean("force", False) and task.status in _LOCKED:
        raise ApiError.of(INVALID_TASK_STATUS, f"task is {task.status} and cannot be edited")
    if "hyperparams" in fields and dialect.strict(call.context):  # ClearML replaces them all
        fields["drop_hyperparams"] = [(section, None) for section in task.hyperparams]
    if fields:
        task = call.store.update_task(task.id, **fields)
    return {"updated": 1 if fields else 0, "fields": _public(fields), "task": task_doc(task)}


def _public(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k not in ("hyperparams",)}


def _set_status(call: Call, status: str, allowed_from: tuple[str, ...] | None) -> dict[str, Any]:
    task = _task(call)
    if allowed_from is not None and task.status not in allowed_from and not call.boolean("force"):
        raise ApiError.of(
            INVALID_TASK_STATUS,
            f"cannot set status {status!r} on a task in status {task.status!r}",
            task=task.id,
        )
    task = call.store.update_task(task.id, status=status)
    fields = {
        "status": status,
        "status_reason": call.get("status_reason") or "",
        "status_message": call.get("status_message") or "",
    }
    return {"updated": 1, "fields": fields, "task": task_doc(task)}


_ACTIVE = ("created", "queued", "in_progress", "stopped", "failed", "completed")


def started(call: Call) -> dict[str, Any]:
    return {**_set_status(call, "in_progress", _ACTIVE), "started": 1}


def completed(call: Call) -> dict[str, Any]:
    status = "published" if call.boolean("publish") else "completed"
    return _set_status(call, status, _ACTIVE)


def stopped(call: Call) -> dict[str, Any]:
    return _set_status(call, "stopped", _ACTIVE)


def failed(call: Call) -> dict[str, Any]:
    return _set_status(call, "failed", _ACTIVE)


def reset(call: Call) -> dict[str, Any]:
    """Back to ``created``; in strict mode, as on ClearML, the task's output models are deleted
    too unless ``delete_output_models`` is false (their files stay: nothing else is known)."""
    if dialect.strict(call.context) and call.boolean("delete_output_models", True):
        for entry in _task(call).output_models:
            with contextlib.suppress(ModelNotFoundError):
                call.store.delete_model(entry.model, delete_objects=False)
    return _set_status(call, "created", _ACTIVE)


def close(call: Call) -> dict[str, Any]:
    return _set_status(call, "closed", (*_ACTIVE, "published"))


def publish(call: Call) -> dict[str, Any]:
    return _set_status(call, "published", _ACTIVE)


def add_or_update_model(call: Call) -> dict[str, Any]:
    task_id = call.string("task", required=True) or ""
    kind = call.string("type", required=True)
    if kind not in ("input", "output"):
        raise ApiError.of(VALIDATION_ERROR, f"type must be 'input' or 'output', got {kind!r}")
    name = call.string("name", required=True) or ""
    model_id = call.string("model", required=True) or ""
    call.store.get_model(model_id)
    task = call.store.set_task_model(task_id, kind, name, model_id)
    iteration = call.integer("iteration")
    if iteration is not None:
        task = call.store.update_task(task_id, last_iteration=iteration)
    return {"updated": 1, "task": task_doc(task)}


def edit_hyper_params(call: Call) -> dict[str, Any]:
    task = _task(call)
    params = _hyperparams(call.require("hyperparams"))
    call.store.update_task(task.id, hyperparams=params)
    return {"updated": 1}


def get_hyper_params(call: Call) -> dict[str, Any]:
    params = []
    for task_id in call.string_list("tasks") or []:
        task = call.store.get_task(task_id)
        items = [{"section": section, "name": name, "value": value, "type": "", "description": ""}
                 for section, values in task.hyperparams.items()
                 for name, value in values.items()]  # fmt: skip
        params.append({"task": task.id, "hyperparams": items})
    return {"params": params}


def delete_hyper_params(call: Call) -> dict[str, Any]:
    task = _task(call)
    items = call.require("hyperparams")
    if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("section")
                                              for i in items):  # fmt: skip
        raise ApiError.of(VALIDATION_ERROR, "hyperparams must be a list of {section, name}")
    gone = [(str(i["section"]), str(i["name"]) if i.get("name") else None) for i in items]
    before = sum(len(v) for v in task.hyperparams.values())
    after = call.store.update_task(task.id, drop_hyperparams=gone)
    return {"deleted": before - sum(len(v) for v in after.hyperparams.values())}


def edit_configuration(call: Call) -> dict[str, Any]:
    task = _task(call)
    config = _model_config(call.require("configuration"))
    if config is not None:
        call.store.update_task(task.id, model_config=config)
    return {"updated": 1}


def accepted(call: Call) -> dict[str, Any]:
    """Calls whose content modelbook does not keep (requirements, artifacts)."""
    _task(call)
    return {"updated": 1, "fields": {}}


def ping(call: Call) -> dict[str, Any]:
    return {}


ENDPOINTS: dict[str, Handler] = {
    "tasks.create": create,
    "tasks.get_by_id": get_by_id,
    "tasks.get_all": get_all,
    "tasks.get_all_ex": get_all,
    "tasks.edit": edit,
    "tasks.started": started,
    "tasks.completed": completed,
    "tasks.stopped": stopped,
    "tasks.failed": failed,
    "tasks.reset": reset,
    "tasks.close": close,
    "tasks.publish": publish,
    "tasks.ping": ping,
    "tasks.add_or_update_model": add_or_update_model,
    "tasks.edit_hyper_params": edit_hyper_params,
    "tasks.get_hyper_params": get_hyper_params,
    "tasks.delete_hyper_params": delete_hyper_params,
    "tasks.edit_configuration": edit_configuration,
    "tasks.set_requirements": accepted,
    "tasks.add_or_update_artifacts": accepted,
}
