"""ClearML documents <-> records: the wire format shared by the HTTP client and the server.

Records travel as the documents ClearML's SDK reads (section 6 of the protocol notes), with
ISO-8601 dates, lists as lists and ids as strings, so the SDK's strict parsing accepts them.
Model documents also carry modelbook's own fields (``sha256``, ``size``, ``version``,
``iteration``); ClearML clients ignore unknown fields.

* records -> documents (:func:`project_doc`, :func:`task_doc`, :func:`model_doc`,
  :func:`version_doc`): what a ``modelbook server`` answers;
* documents -> records (:func:`project_record`, :func:`task_record`, :func:`model_record`,
  :func:`version_record`): what the HTTP backend makes of those answers (or of a ClearML
  server's);
* the item shapes both directions share: hyper-parameters, the model-design configuration
  section, task model entries and model metadata.

Example:
    >>> from datetime import datetime, timezone
    >>> project = ProjectRecord("p1", "team/demo", datetime(2024, 5, 1, tzinfo=timezone.utc))
    >>> doc = project_doc(project)
    >>> doc["basename"], doc["created"]
    ('demo', '2024-05-01T00:00:00+00:00')
    >>> project_record(doc) == project
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from modelbook.records import (
    ModelRecord,
    ModelVersionRecord,
    ProjectRecord,
    ReportEvent,
    ScalarEvent,
    ScalarStats,
    TaskModelEntry,
    TaskRecord,
)

#: The task configuration section holding the model design (ClearML's default name).
MODEL_CONFIG_SECTION = "General"
USER = "modelbook"
COMPANY = "modelbook"


# -- dates ----------------------------------------------------------------------------------
def iso(value: datetime | None) -> str | None:
    """ISO-8601 with the UTC offset, as ClearML's server writes dates."""
    return value.isoformat() if value is not None else None


def _dt(value: Any) -> datetime | None:
    """A document's date (ISO-8601, ``Z`` accepted) as a datetime; None when empty."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# -- item shapes shared by both directions --------------------------------------------------
def hyperparams_doc(
    hyperparams: Mapping[str, Mapping[str, Any]], *, schema_fields: bool = True
) -> dict[str, Any]:
    """Hyper-parameters ``{section: {name: value}}`` as ClearML's ``hyperparams`` field.

    Args:
        hyperparams: the values by section and name, used as given.
        schema_fields: also write the empty ``type`` and ``description`` every item of a
            ClearML document carries; a client's ``tasks.edit`` body sends without them.

    Example:
        >>> hyperparams_doc({"Args": {"lr": "0.1"}}, schema_fields=False)
        {'Args': {'lr': {'section': 'Args', 'name': 'lr', 'value': '0.1'}}}
    """
    extra = {"type": "", "description": ""} if schema_fields else {}
    return {
        section: {
            name: {"section": section, "name": name, "value": value, **extra}
            for name, value in params.items()
        }
        for section, params in hyperparams.items()
    }


def _hyperparam_values(doc: Any) -> dict[str, dict[str, str]]:
    """The values of a ``hyperparams`` field, as strings: :func:`hyperparams_doc` reversed."""
    return {
        section: {name: str((item or {}).get("value") or "") for name, item in params.items()}
        for section, params in (doc or {}).items()
    }


def configuration_doc(model_config: str, *, schema_fields: bool = True) -> dict[str, Any]:
    """The model design text as ClearML's ``configuration`` field (section ``General``).

    Args:
        model_config: the design text.
        schema_fields: as for :func:`hyperparams_doc`.
    """
    item: dict[str, Any] = {"name": MODEL_CONFIG_SECTION, "value": model_config}
    if schema_fields:
        item.update(type="", description="")
    return {MODEL_CONFIG_SECTION: item}


def _model_config_text(configuration: Any) -> str:
    """The design text of a ``configuration`` field: :func:`configuration_doc` reversed."""
    general = (configuration or {}).get(MODEL_CONFIG_SECTION) or {}
    return str(general.get("value") or "")


def entries_doc(entries: Iterable[TaskModelEntry]) -> list[dict[str, str]]:
    """Task model entries as a ``models.input`` / ``models.output`` list."""
    return [{"name": e.name, "model": e.model} for e in entries]


def _entries(items: Any) -> list[TaskModelEntry]:
    """A ``models.input`` / ``models.output`` list as entries: :func:`entries_doc` reversed."""
    return [TaskModelEntry(i["name"], i["model"]) for i in items or [] if isinstance(i, dict)]


def metadata_doc(metadata: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Model metadata ``{key: {"key", "value", "type"}}``, item by item copied.

    Documents and records share this shape, so it serves both directions.
    """
    return {k: dict(v) for k, v in metadata.items()}


def metadata_items(items: Mapping[str, Mapping[str, str]]) -> list[dict[str, str]]:
    """Metadata as the ``[{key, value, type}]`` list that requests send.

    Example:
        >>> metadata_items({"acc": {"key": "acc", "value": "0.9", "type": "float"}})
        [{'key': 'acc', 'value': '0.9', 'type': 'float'}]
    """
    return [{"key": str(k), "value": str(v["value"]), "type": str(v["type"])}
            for k, v in items.items()]  # fmt: skip


# -- records -> documents -------------------------------------------------------------------
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


def task_doc(t: TaskRecord) -> dict[str, Any]:
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
        "models": {"input": entries_doc(t.input_models), "output": entries_doc(t.output_models)},
        "hyperparams": hyperparams_doc(t.hyperparams),
        "configuration": configuration_doc(t.model_config) if t.model_config else {},
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
        "metadata": metadata_doc(m.metadata),
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
        "pruned": v.pruned,
        "metadata": metadata_doc(v.metadata),
    }


# -- documents -> records -------------------------------------------------------------------
def project_record(doc: dict[str, Any]) -> ProjectRecord:
    return ProjectRecord(
        id=doc["id"],
        name=doc.get("name") or "",
        created=_dt(doc.get("created")),  # type: ignore[arg-type]
        default_output_destination=doc.get("default_output_destination"),
    )


def task_record(doc: dict[str, Any]) -> TaskRecord:
    execution = doc.get("execution") or {}
    models = doc.get("models") or {}
    return TaskRecord(
        id=doc["id"],
        name=doc.get("name") or "",
        project=doc.get("project"),
        type=doc.get("type") or "training",
        status=doc.get("status") or "created",
        comment=doc.get("comment") or "",
        tags=list(doc.get("tags") or []),
        system_tags=list(doc.get("system_tags") or []),
        created=_dt(doc.get("created")),
        last_update=_dt(doc.get("last_update")),
        output_destination=(doc.get("output") or {}).get("destination"),
        hyperparams=_hyperparam_values(doc.get("hyperparams")),
        labels=dict(execution.get("model_labels") or {}),
        model_config=_model_config_text(doc.get("configuration")),
        last_iteration=int(doc.get("last_iteration") or 0),
        input_models=_entries(models.get("input")),
        output_models=_entries(models.get("output")),
    )


def model_record(doc: dict[str, Any]) -> ModelRecord:
    design = doc.get("design")
    if isinstance(design, dict):
        design = design.get("design", json.dumps(design) if design else "")
    iteration = doc.get("iteration", doc.get("last_iteration"))
    return ModelRecord(
        id=doc["id"],
        name=doc.get("name") or "",
        project=doc.get("project"),
        task=doc.get("task"),
        comment=doc.get("comment") or "",
        tags=list(doc.get("tags") or []),
        system_tags=list(doc.get("system_tags") or []),
        framework=doc.get("framework"),
        design=str(design or ""),
        labels=dict(doc.get("labels") or {}),
        uri=doc.get("uri"),
        ready=bool(doc.get("ready")),
        created=_dt(doc.get("created")),
        last_update=_dt(doc.get("last_update")),
        iteration=iteration,
        parent=doc.get("parent"),
        metadata=metadata_doc(doc.get("metadata") or {}),
        sha256=doc.get("sha256"),
        size=doc.get("size"),
        version=int(doc.get("version") or 0),
    )


def version_record(doc: dict[str, Any]) -> ModelVersionRecord:
    return ModelVersionRecord(
        model=doc["model"],
        version=int(doc["version"]),
        uri=doc["uri"],
        sha256=doc.get("sha256"),
        size=doc.get("size"),
        iteration=doc.get("iteration"),
        created=_dt(doc.get("created")),  # type: ignore[arg-type]
        comment=doc.get("comment") or "",
        metadata=metadata_doc(doc.get("metadata") or {}),
        pruned=bool(doc.get("pruned")),
    )


# -- reported scalars (ClearML's events) ---------------------------------------------------
#: The event type of a reported scalar.
SCALAR_EVENT = "training_stats_scalar"


def scalar_event_docs(owner: str, events: Sequence[ScalarEvent], model: bool) -> list[dict]:
    """``events.add_batch`` lines: ``owner`` is the task (or, ``model``, the model) id."""
    docs = []
    for e in events:
        doc: dict[str, Any] = {"type": SCALAR_EVENT, "task": owner, "metric": e.metric,
                               "variant": e.variant, "value": e.value, "iter": e.iteration}
        if e.timestamp is not None:
            doc["timestamp"] = e.timestamp
        if model:
            doc["model_event"] = True
        docs.append(doc)  # fmt: skip
    return docs


def scalar_events_of(docs: Iterable[Mapping[str, Any]]) -> list[ScalarEvent]:
    """``events.get_task_events`` scalar events, by metric, variant and iteration."""
    events = [
        ScalarEvent(str(d.get("metric", "")), str(d.get("variant", "")), int(d.get("iter") or 0),
                    float(d.get("value", 0.0)), d.get("timestamp"))
        for d in docs if d.get("type", SCALAR_EVENT) == SCALAR_EVENT
    ]  # fmt: skip
    return sorted(events, key=lambda e: (e.metric, e.variant, e.iteration))


def scalar_stats_of(last_metrics: dict[str, Any]) -> dict[str, dict[str, ScalarStats]]:
    """ClearML's ``last_metrics`` (``{md5: {md5: {metric, variant, value, ...}}}``)."""
    stats: dict[str, dict[str, ScalarStats]] = {}
    for variants in (last_metrics or {}).values():
        for item in (variants or {}).values():
            last = float(item.get("value", 0.0))
            count = int(item.get("count") or 1)
            stats.setdefault(item.get("metric", ""), {})[item.get("variant", "")] = ScalarStats(
                metric=item.get("metric", ""), variant=item.get("variant", ""), count=count,
                total=float(item.get("mean_value", last)) * count,
                first=float(item.get("first_value", last)),
                first_iteration=int(item.get("first_value_iteration") or 0),
                min=float(item.get("min_value", last)),
                min_iteration=int(item.get("min_value_iteration") or 0),
                max=float(item.get("max_value", last)),
                max_iteration=int(item.get("max_value_iteration") or 0),
                last=last, last_iteration=int(item.get("iter") or 0),
            )  # fmt: skip
    return stats


#: ClearML's log levels (``events.add_batch``'s ``level``) and Python's.
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def report_event_docs(owner: str, events: Sequence[ReportEvent], model: bool) -> list[dict]:
    """``events.add_batch`` lines of plots (``plot``) and text (``log``)."""
    docs = []
    for e in events:
        doc: dict[str, Any] = {"task": owner, "iter": e.iteration}
        if e.kind == "plot":
            doc.update(type="plot", metric=e.metric, variant=e.variant,
                       plot_str=str(e.body.get("plot_str", "")))  # fmt: skip
        else:
            level = int(e.body.get("level", 20))
            name = max((n for n, v in _LEVELS.items() if v <= level), key=_LEVELS.__getitem__,
                       default="debug")  # fmt: skip
            doc.update(type="log", level=name, msg=str(e.body.get("msg", "")))
        if e.timestamp is not None:
            doc["timestamp"] = e.timestamp
        if model:
            doc["model_event"] = True
        docs.append(doc)
    return docs


def report_events_of(docs: Iterable[Mapping[str, Any]]) -> list[ReportEvent]:
    """``events.get_task_plots`` / ``get_task_log`` events as :class:`ReportEvent`."""
    found = []
    for d in docs:
        if d.get("type") == "plot":
            found.append(ReportEvent("plot", str(d.get("metric", "")), str(d.get("variant", "")),
                                     int(d.get("iter") or 0), {"plot_str": d.get("plot_str", "")},
                                     d.get("timestamp")))  # fmt: skip
        elif d.get("type") == "log":
            level = _LEVELS.get(str(d.get("level", "info")).lower(), 20)
            found.append(ReportEvent("text", "", "", int(d.get("iter") or 0),
                                     {"level": level, "msg": str(d.get("msg", ""))},
                                     d.get("timestamp")))  # fmt: skip
    return found
