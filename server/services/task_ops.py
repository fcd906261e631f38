"""``tasks.clone`` and ``tasks.delete``, with the ClearML server's semantics.

* ``tasks.clone`` makes a new ``created`` task from another: name, comment, project, tags,
  system tags (without ``development`` and ``archived``), type, script, container, output
  destination, execution (without output artifacts or queue), configuration,
  hyper-parameters, labels and input models, each replaceable by a ``new_task_*`` field or
  ``execution_overrides``; its parent is the source (or the source's parent). Output models,
  reported scalars and runtime are not copied.
* ``tasks.delete`` refuses, unless ``force``, a task that is not ``created`` (nor archived)
  and a task with published output models. It deletes the task's reported scalars and,
  unless ``delete_output_models`` is false, its draft output models that no other task uses
  as input; a published model is never deleted. Bytes go only as ``models.delete`` lets them
  (those the registry wrote that nothing references any more); artifact files are never
  deleted (``return_file_urls`` lists them for the client).
"""

from __future__ import annotations

import contextlib
from typing import Any

from modelbook.errors import ModelNotFoundError
from modelbook.records import ARCHIVED_TAG, ModelQuery, TaskModelEntry, TaskRecord
from modelbook.server import taskdoc
from modelbook.server.envelope import ApiError
from modelbook.server.services.call import Call, Handler
from modelbook.server.services.models import delete_own_objects
from modelbook.server.services.projects import get_project

#: ClearML's ``task_cannot_be_deleted``.
TASK_CANNOT_BE_DELETED = (400, 123)
_DELETED_PREFIX = "__DELETED__"
_INPUT_MODEL_NAME = "Input Model"
_CLEANED_SYSTEM_TAGS = ("development", ARCHIVED_TAG)


def _configuration(call: Call, source: TaskRecord) -> dict[str, Any]:
    given = call.get("new_task_configuration")
    if given is None:
        stored = source.document.get("configuration")
        return {"model_config": source.model_config, "document": {"configuration": stored}}
    items = taskdoc.config_items(given, "new_task_configuration")
    return taskdoc.config_fields(items, None, replace=True)


def _hyperparams(call: Call, source: TaskRecord) -> dict[str, Any]:
    given = call.get("new_task_hyperparams")
    if given is None:
        meta = source.document.get("hyperparams")
        return {"hyperparams": source.hyperparams, "document": {"hyperparams": meta}}
    items = taskdoc.hyperparam_items(given, "new_task_hyperparams")
    return {"hyperparams": taskdoc.hyperparam_values(items),
            "document": taskdoc.hyperparam_meta(None, items)}  # fmt: skip


def _execution(call: Call, source: TaskRecord, document: dict[str, Any]) -> dict[str, Any]:
    """The clone's execution document and labels, with ``execution_overrides`` applied."""
    execution = dict(source.document.get("execution") or {})
    fields: dict[str, Any] = {"labels": dict(source.labels)}
    overrides = dict(call.dict_field("execution_overrides") or {})
    model = overrides.pop("model", None)
    if model is not None and not isinstance(model, str):
        raise taskdoc.invalid("execution_overrides.model", "a model id", model)
    fields["input_model"] = model
    docker_cmd = overrides.pop("docker_cmd", None)
    if docker_cmd and call.get("new_task_container") is None:
        image, _, arguments = str(docker_cmd).partition(" ")
        document["container"] = {"image": image, "arguments": arguments}
    for legacy in ("parameters", "configuration"):
        overrides.pop(legacy, None)
    if overrides:
        changed = taskdoc.execution_fields(overrides, None, replace=True)
        fields.update({k: v for k, v in changed.items() if k == "labels"})
        execution.update((changed.get("document") or {}).get("execution") or {})
    execution["artifacts"] = [a for a in execution.get("artifacts") or []
                              if (a.get("mode") or "output") != "output"]  # fmt: skip
    execution.pop("queue", None)
    document["execution"] = execution
    return fields


def _input_models(call: Call, source: TaskRecord, model: str | None) -> list[TaskModelEntry]:
    given = call.get("new_task_input_models")
    if given is None:
        if model:
            return [TaskModelEntry(_INPUT_MODEL_NAME, model)]
        return list(source.input_models)
    if not isinstance(given, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("model"), str)
        for e in given
    ):
        raise taskdoc.invalid("new_task_input_models", "a list of {name, model}", given)
    return [TaskModelEntry(e["name"], e["model"]) for e in given]


def clone(call: Call) -> dict[str, Any]:
    source = call.store.get_task(call.string("task", required=True) or "")
    reply: dict[str, Any] = {}
    project = source.project
    new_project = None  # created once the whole request is checked: a 400 changes nothing
    if call.string("new_task_project"):
        project = get_project(call, call.string("new_task_project") or "").id
    else:
        new_project = call.string("new_project_name")
    parent = source.document.get("parent")
    parent = call.string("new_task_parent") or (
        parent if parent and not parent.startswith(_DELETED_PREFIX) else source.id
    )
    document: dict[str, Any] = {
        "script": source.document.get("script"), "parent": parent,
        "container": source.document.get("container"),
    }  # fmt: skip
    container = call.get("new_task_container")
    if container is not None:
        document["container"] = taskdoc.whole_field("container", container)
    fields = _execution(call, source, document)
    model = fields.pop("input_model", None)
    inputs = _input_models(call, source, model)
    for entry in inputs:
        call.store.get_model(entry.model)
    for part in (_configuration(call, source), _hyperparams(call, source)):
        document.update(part.pop("document"))
        fields.update(part)
    system_tags = call.string_list("new_task_system_tags") or [
        t for t in source.system_tags if t not in _CLEANED_SYSTEM_TAGS
    ]
    name = call.string("new_task_name") or source.name
    tags = call.string_list("new_task_tags") or list(source.tags)
    comment = call.string("new_task_comment") or source.comment
    if new_project:
        found = call.store.get_or_create_project(new_project)
        project, reply["new_project"] = found.id, {"id": found.id, "name": found.name}
    task = call.store.create_task(
        name=name, project=project, type=source.type, tags=tags, comment=comment,
        output_destination=source.output_destination, system_tags=system_tags,
    )  # fmt: skip
    fields["document"] = {k: v for k, v in document.items() if v is not None}
    call.store.update_task(task.id, **fields)
    if inputs:
        call.store.set_task_models(task.id, "input", inputs)
    return {"id": task.id, **reply}


def _check_deletable(call: Call, task: TaskRecord) -> None:
    """ClearML's refusals of ``tasks.delete`` without ``force``."""
    if task.status != "created" and ARCHIVED_TAG not in task.system_tags:
        raise ApiError.of(
            TASK_CANNOT_BE_DELETED,
            f"task {task.id} is {task.status}: pass force to delete it (only a created or "
            "archived task is deleted without force)",
            task=task.id,
        )
    outputs = {m.id: m for m in call.store.query_models(ModelQuery(task=task.id))}
    for entry in task.output_models:
        with contextlib.suppress(ModelNotFoundError):
            outputs.setdefault(entry.model, call.store.get_model(entry.model))
    published = sorted(m.id for m in outputs.values() if m.ready)
    if published:
        raise ApiError.of(
            TASK_CANNOT_BE_DELETED,
            f"task {task.id} has published output models {published}: pass force to delete "
            "the task (published models are kept)",
            task=task.id,
        )


def delete(call: Call) -> dict[str, Any]:
    task = call.store.get_task(call.string("task", required=True) or "")
    if not call.boolean("force", False):
        _check_deletable(call, task)
    artifacts = (task.document.get("execution") or {}).get("artifacts") or []
    return_urls = call.boolean("return_file_urls", False)  # checked before anything changes
    deletion = call.store.delete_task(
        task.id,
        delete_output_models=bool(call.boolean("delete_output_models", True)),
        delete_objects=call.boolean("delete_external_artifacts", True) is not False,
    )
    reply: dict[str, Any] = {
        "deleted": True, "updated_children": 0, "updated_models": len(deletion.kept_models),
        "events": {}, "doomed": delete_own_objects(call, deletion.doomed),
    }  # fmt: skip
    if return_urls:
        reply["urls"] = {
            "model_urls": deletion.model_urls, "event_urls": [],
            "artifact_urls": [a["uri"] for a in artifacts
                              if a.get("uri") and (a.get("mode") or "output") == "output"],
        }  # fmt: skip
    return reply


ENDPOINTS: dict[str, Handler] = {
    "tasks.clone": clone,
    "tasks.delete": delete,
}
