"""Records as ClearML documents, and ``only_fields`` projections of them.

The documents carry what ClearML's SDK reads (section 6 of the protocol notes) with
ISO-8601 dates, lists as lists and ids as strings, so the SDK's strict parsing accepts
them. Model documents also carry modelbook's own fields (``sha256``, ``size``,
``version``, ``iteration``); ClearML clients ignore unknown fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from modelbook.records import ModelRecord, ModelVersionRecord, ProjectRecord, TaskRecord

#: The task configuration section holding the model design (ClearML's default name).
MODEL_CONFIG_SECTION = "General"
USER = "modelbook"
COMPANY = "modelbook"


def iso(value: datetime | None) -> str | None:
    """ISO-8601 with the UTC offset, as ClearML's server writes dates."""
    return value.isoformat() if value is not None else None


def project_doc(p: ProjectRecord) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "basename": p.name.rsplit("/", 1)[-1],
        "description": "",
        "created": iso(p.created),
        "last_update": iso(p.created),
        "tags": [],
        "system_tags": [],
        "default_output_destination": p.default_output_destination,
        "user": USER,
        "company": COMPANY,
    }


def hyperparams_doc(hyperparams: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {
        section: {
            name: {"section": section, "name": name, "value": value, "type": "", "description": ""}
            for name, value in params.items()
        }
        for section, params in hyperparams.items()
    }


def task_doc(t: TaskRecord) -> dict[str, Any]:
    configuration = {}
    if t.model_config:
        configuration[MODEL_CONFIG_SECTION] = {
            "name": MODEL_CONFIG_SECTION,
            "value": t.model_config,
            "type": "",
            "description": "",
        }
    return {
        "id": t.id,
        "name": t.name,
        "type": t.type,
        "status": t.status,
        "status_message": "",
        "status_reason": "",
        "project": t.project,
        "comment": t.comment,
        "tags": list(t.tags),
        "system_tags": list(t.system_tags),
        "created": iso(t.created),
        "last_update": iso(t.last_update),
        "last_change": iso(t.last_update),
        "status_changed": iso(t.last_update),
        "user": USER,
        "company": COMPANY,
        "last_iteration": t.last_iteration,
        "script": {},
        "execution": {"model_labels": dict(t.labels), "artifacts": []},
        "output": {"destination": t.output_destination},
        "models": {
            "input": [{"name": e.name, "model": e.model} for e in t.input_models],
            "output": [{"name": e.name, "model": e.model} for e in t.output_models],
        },
        "hyperparams": hyperparams_doc(t.hyperparams),
        "configuration": configuration,
        "runtime": {},
    }


def model_doc(m: ModelRecord) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "user": USER,
        "company": COMPANY,
        "created": iso(m.created),
        "last_update": iso(m.last_update),
        "task": m.task,
        "parent": m.parent,
        "project": m.project,
        "comment": m.comment,
        "tags": list(m.tags),
        "system_tags": list(m.system_tags),
        "framework": m.framework,
        "design": {"design": m.design},
        "labels": dict(m.labels),
        "uri": m.uri,
        "ready": m.ready,
        "metadata": {k: dict(v) for k, v in m.metadata.items()},
        "last_iteration": m.iteration,
        # modelbook's own fields
        "iteration": m.iteration,
        "sha256": m.sha256,
        "size": m.size,
        "version": m.version,
    }


def version_doc(v: ModelVersionRecord) -> dict[str, Any]:
    return {
        "model": v.model,
        "version": v.version,
        "uri": v.uri,
        "sha256": v.sha256,
        "size": v.size,
        "iteration": v.iteration,
        "created": iso(v.created),
        "comment": v.comment,
        "metadata": {k: dict(item) for k, item in v.metadata.items()},
    }


def project_fields(doc: dict[str, Any], only_fields: list[str] | None) -> dict[str, Any]:
    """Keep only the listed fields (dotted paths reach into objects); ``id`` always stays.

    Example:
        >>> project_fields({"id": "1", "a": {"b": 1, "c": 2}, "d": 3}, ["a.b"])
        {'id': '1', 'a': {'b': 1}}
    """
    if not only_fields:
        return doc
    result: dict[str, Any] = {"id": doc.get("id")}
    for path in only_fields:
        if not isinstance(path, str) or not path:
            continue
        keys = path.split(".")
        source: Any = doc
        for key in keys:
            if not isinstance(source, dict) or key not in source:
                break
            source = source[key]
        else:
            target = result
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = source
    return result
