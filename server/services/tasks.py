"""``tasks.*``: create, read, edit, status changes, hyper-parameters and model entries.

ClearML documents are mapped onto :class:`~modelbook.records.TaskRecord` fields:
``output_dest`` is the output destination, ``execution.model_labels`` the labels,
configuration section ``General`` the model design text, ``hyperparams`` the parameter
values, ``models`` the model entries. Every other field a ClearML client writes (script and
requirements, runtime, container, parent, the rest of ``execution`` with the artifacts, the
other configuration sections, parameter types and descriptions) is kept in the task's
document and returned as written (:mod:`modelbook.server.taskdoc`); ``last_metrics`` comes
from the reported scalars. ``tasks.edit`` merges ``execution``, ``configuration`` and
``hyperparams`` into the task's; in strict mode it replaces them, as ClearML does.

The configuration sections, artifacts and requirements have their own endpoints in
:mod:`~modelbook.server.services.task_parts`; clone and delete in
:mod:`~modelbook.server.services.task_ops`.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

from modelbook.errors import ModelNotFoundError, TaskNotFoundError
from modelbook.records import TaskModelEntry, TaskRecord
from modelbook.server import dialect, taskdoc
from modelbook.server.envelope import (
    INVALID_TASK_STATUS,
    VALIDATION_ERROR,
    ApiError,
)
from modelbook.server.services.call import Call, Handler, name_field, tag_list
from modelbook.server.services.names import name_matcher, name_search
from modelbook.server.services.projects import get_project, sort_key
from modelbook.server.wire import project_fields
from modelbook.store.tagfilter import parse_tag_filter

_LOCKED = ("published", "closed")


def labels_field(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise ApiError.of(VALIDATION_ERROR, "model_labels must map label names to integers")
    return dict(value)


def task_fields(call: Call, task: TaskRecord | None = None) -> dict[str, Any]:
    """The store fields a ``tasks.create`` / ``tasks.edit`` body sets on ``task`` (None: a
    new one), the document's included (:mod:`modelbook.server.taskdoc`). In strict mode, as
    on ClearML, ``execution``, ``configuration`` and ``hyperparams`` replace the task's;
    modelbook merges them (section by section, key by key)."""
    strict = dialect.strict(call.context)
    fields: dict[str, Any] = {}
    for name in ("name", "comment", "type"):
        value = name_field(call) if name == "name" else call.string(name)
        if value is not None:
            fields[name] = value
    for name in ("tags", "system_tags"):
        values = tag_list(call, name)
        if values is not None:
            fields[name] = values
    if "project" in call.data:
        project = call.string("project")
        fields["project"] = get_project(call, project).id if project else None
    if "output_dest" in call.data:
        fields["output_destination"] = call.string("output_dest") or None
    document: dict[str, Any] = {}
    for name in taskdoc.WHOLE_FIELDS:
        if name in call.data:
            value = call.get(name)
            document[name] = None if value is None else taskdoc.whole_field(name, value)
    if call.get("execution") is not None:
        execution = taskdoc.execution_fields(call.get("execution"), task, replace=strict)
        document.update(execution.pop("document", {}))
        fields.update(execution)
    if call.get("configuration") is not None:
        sections = taskdoc.config_items(call.get("configuration"))
        config = taskdoc.config_fields(sections, task, replace=strict)
        document.update(config.pop("document"))
        fields.update(config)
    if call.get("hyperparams") is not None and (strict or call.get("hyperparams")):
        items = taskdoc.hyperparam_items(call.get("hyperparams"))
        fields["hyperparams"] = taskdoc.hyperparam_values(items)
        if strict and task is not None:  # ClearML replaces them all
            fields["drop_hyperparams"] = [(section, None) for section in task.hyperparams]
        document.update(taskdoc.hyperparam_meta(None if strict else task, items))
    last_iteration = call.integer("last_iteration")  # modelbook extension
    if last_iteration is not None:
        fields["last_iteration"] = last_iteration
    if document:
        fields["document"] = document
    return fields


def model_entries(call: Call) -> dict[str, list[TaskModelEntry]]:
    """The ``models`` of a ``tasks.create`` / ``tasks.edit`` body: entries by kind, each
    list replacing the task's (the models must exist)."""
    models = call.dict_field("models") or {}
    result: dict[str, list[TaskModelEntry]] = {}
    for kind in ("input", "output"):
        if models.get(kind) is None:
            continue
        entries = models[kind]
        if not isinstance(entries, list):
            raise taskdoc.invalid(f"models.{kind}", "a list of {name, model}", entries)
        result[kind] = []
        for index, entry in enumerate(entries):
            where = f"models.{kind}[{index}]"
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) and entry[k] for k in ("name", "model")
            ):
                raise taskdoc.invalid(where, "an object {name, model} of non-empty strings", entry)
            call.store.get_model(entry["model"])
            result[kind].append(TaskModelEntry(entry["name"], entry["model"]))
        names = [e.name for e in result[kind]]
        if len(set(names)) != len(names):
            raise taskdoc.invalid(f"models.{kind}", "entries with unique names", names)
    return result


def document(call: Call, task: TaskRecord) -> dict[str, Any]:
    """The task's ClearML document, ``last_metrics`` included."""
    return taskdoc.task_document(task, call.store.last_scalars(task.id))


def _task(call: Call) -> TaskRecord:
    return call.store.get_task(call.string("task", required=True) or "")


def create(call: Call) -> dict[str, Any]:
    fields = task_fields(call)
    models = model_entries(call)
    name = name_field(call, required=True) or ""
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
    for kind, entries in models.items():
        task = call.store.set_task_models(task.id, kind, entries)
    return {"id": task.id, "task": document(call, task)}


def get_by_id(call: Call) -> dict[str, Any]:
    return {"task": document(call, _task(call))}


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
            matches = name_search(pattern)
            tasks = [t for t in tasks if matches(t.name)]
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
    docs = [taskdoc.task_document(t) for t in tasks]
    for item in reversed(call.string_list("order_by") or []):
        field = item.lstrip("-")
        descending = item.startswith("-")
        docs.sort(key=partial(sort_key, field), reverse=descending)
    page, page_size = call.integer("page"), call.integer("page_size")
    if page is not None and page_size:
        docs = docs[page * page_size : (page + 1) * page_size]
    only = call.string_list("only_fields")
    if not only or any(f.split(".")[0] == "last_metrics" for f in only):
        stats = call.store.last_scalars_of([d["id"] for d in docs])
        for doc in docs:
            doc["last_metrics"] = taskdoc.last_metrics_doc(stats.get(doc["id"], {}))
    return {"tasks": [project_fields(d, only) for d in docs]}


def edit(call: Call) -> dict[str, Any]:
    task = _task(call)
    if not call.boolean("force", False) and task.status in _LOCKED:
        raise ApiError.of(INVALID_TASK_STATUS, f"task is {task.status} and cannot be edited")
    fields = task_fields(call, task)
    models = model_entries(call)
    if fields:
        task = call.store.update_task(task.id, **fields)
    for kind, entries in models.items():
        task = call.store.set_task_models(task.id, kind, entries)
    changed = bool(fields or models)
    return {"updated": int(changed), "fields": _public(fields), "task": document(call, task)}


def _public(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items()
            if k not in ("hyperparams", "drop_hyperparams", "document")}  # fmt: skip


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
    return {"updated": 1, "fields": fields, "task": document(call, task)}


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
    """Back to ``created``. For a ClearML client (or in strict mode), as on ClearML, the
    task's reported scalars, runtime, queue and output artifacts go too; in strict mode its
    output models are deleted unless ``delete_output_models`` is false (their files stay:
    nothing else is known). modelbook's own clients change only the status."""
    strict = dialect.strict(call.context)
    if strict and call.boolean("delete_output_models", True):
        for entry in _task(call).output_models:
            with contextlib.suppress(ModelNotFoundError):
                call.store.delete_model(entry.model, delete_objects=False)
    reply = _set_status(call, "created", _ACTIVE)
    if strict or call.context.get("clearml_client"):
        task = _task(call)
        call.store.delete_scalars(task.id)
        call.store.delete_reports(task.id)
        execution = dict(task.document.get("execution") or {})
        execution.pop("queue", None)
        execution["artifacts"] = [a for a in execution.get("artifacts") or []
                                  if a.get("mode") == "input"]  # fmt: skip
        task = call.store.update_task(task.id, document={"runtime": None, "execution": execution})
        reply["task"] = document(call, task)
    return reply


def close(call: Call) -> dict[str, Any]:
    return _set_status(call, "closed", (*_ACTIVE, "published"))


def publish(call: Call) -> dict[str, Any]:
    return _set_status(call, "published", _ACTIVE)


def add_or_update_model(call: Call) -> dict[str, Any]:
    task_id = call.string("task", required=True) or ""
    kind = call.string("type", required=True)
    if kind not in ("input", "output"):
        raise ApiError.of(VALIDATION_ERROR, f"type must be 'input' or 'output', got {kind!r}")
    name = name_field(call, required=True) or ""
    model_id = call.string("model", required=True) or ""
    iteration = call.integer("iteration")
    call.store.get_model(model_id)
    task = call.store.set_task_model(task_id, kind, name, model_id)
    if iteration is not None:
        task = call.store.update_task(task_id, last_iteration=iteration)
    return {"updated": 1, "task": document(call, task)}


_REPLACE_HYPERPARAMS = ("none", "section", "all")


def edit_hyper_params(call: Call) -> dict[str, Any]:
    """Merge hyper-parameters, or with ``replace_hyperparams`` ``section`` / ``all`` replace
    the sections given / all of them; types and descriptions are kept."""
    task = _task(call)
    items = taskdoc.hyperparam_items(call.require("hyperparams"))
    replace = call.string("replace_hyperparams") or "none"
    if replace not in _REPLACE_HYPERPARAMS:
        expected = f"one of {list(_REPLACE_HYPERPARAMS)}"
        raise taskdoc.invalid("replace_hyperparams", expected, replace)
    sections = task.hyperparams if replace == "all" else {i["section"] for i in items}
    dropped: list[tuple[str, str | None]] = []
    if replace != "none":
        dropped = [(section, None) for section in sections]
    meta = taskdoc.hyperparam_meta(None if replace == "all" else task, items, dropped)
    call.store.update_task(task.id, hyperparams=taskdoc.hyperparam_values(items),
                           drop_hyperparams=dropped, document=meta)  # fmt: skip
    return {"updated": 1}


def get_hyper_params(call: Call) -> dict[str, Any]:
    params = []
    for task_id in call.string_list("tasks") or []:
        doc = taskdoc.hyperparams_doc(call.store.get_task(task_id))
        items = [item for section in doc.values() for item in section.values()]
        params.append({"task": task_id, "hyperparams": items})
    return {"params": params}


def delete_hyper_params(call: Call) -> dict[str, Any]:
    task = _task(call)
    items = call.require("hyperparams")
    if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("section")
                                              for i in items):  # fmt: skip
        raise ApiError.of(VALIDATION_ERROR, "hyperparams must be a list of {section, name}")
    gone = [(str(i["section"]), str(i["name"]) if i.get("name") else None) for i in items]
    before = sum(len(v) for v in task.hyperparams.values())
    meta = taskdoc.hyperparam_meta(task, [], gone)
    after = call.store.update_task(task.id, drop_hyperparams=gone, document=meta)
    return {"deleted": before - sum(len(v) for v in after.hyperparams.values())}


def edit_configuration(call: Call) -> dict[str, Any]:
    """Set configuration sections, merged into the task's or, with
    ``replace_configuration``, in place of them all."""
    task = _task(call)
    items = taskdoc.config_items(call.require("configuration"))
    replace = bool(call.boolean("replace_configuration", False))
    call.store.update_task(task.id, **taskdoc.config_fields(items, task, replace))
    return {"updated": 1}


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
}
