"""A task as ClearML clients read and write it: the modelled record plus its document.

modelbook models a task's name, project, status, labels, hyper-parameter values, model design
(configuration section ``General``) and model entries (:class:`~modelbook.records.TaskRecord`).
Everything else a ClearML client writes is kept in the task's *document* (see
:mod:`modelbook.store.extras`) under these keys, and returned as written:

* ``script``, ``runtime``, ``container``, ``parent``: replaced whole by ``tasks.edit``;
* ``execution``: every field but ``model_labels`` (the labels), artifacts included;
* ``configuration``: every section but ``General``'s value (the model design), and
  ``General``'s ``type`` / ``description``;
* ``hyperparams``: each parameter's ``type`` and ``description`` (its value is modelled).

Reported scalars add ``last_metrics`` (:func:`last_metrics_doc`).

This module turns request fields into store fields (validating them: a malformed field is a
400 naming it) and records into documents.

Example:
    >>> config_items({"train": {"value": "lr = 0.1", "type": "dictionary"}})
    {'train': {'name': 'train', 'value': 'lr = 0.1', 'type': 'dictionary'}}
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from modelbook.records import ScalarStats, TaskRecord
from modelbook.server.envelope import VALIDATION_ERROR, ApiError
from modelbook.wire import MODEL_CONFIG_SECTION, task_doc

#: Document fields a ``tasks.edit`` replaces whole.
WHOLE_FIELDS = ("script", "runtime", "container", "parent")
_SCRIPT_TEXTS = ("binary", "repository", "tag", "branch", "version_num", "entry_point",
                 "working_dir", "diff")  # fmt: skip
_ARTIFACT_MODES = ("input", "output")


def invalid(field: str, expected: str, value: Any) -> ApiError:
    """The 400 for a malformed request field."""
    shown = repr(value)
    shown = shown if len(shown) < 80 else shown[:77] + "..."
    return ApiError.of(VALIDATION_ERROR, f"field {field!r} must be {expected}, got {shown}")


def _text(field: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise invalid(field, "a string", value)
    return value


def _object(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(field, "an object", value)
    return value


def whole_field(name: str, value: Any) -> Any:
    """A checked ``script`` / ``runtime`` / ``container`` / ``parent`` value."""
    if name == "parent":
        return _text(name, value)
    value = _object(name, value)
    if name == "script":
        for key in _SCRIPT_TEXTS:
            _text(f"script.{key}", value.get(key))
        if value.get("requirements") is not None:
            _object("script.requirements", value["requirements"])
    elif name == "container":
        for key, text in value.items():
            _text(f"container.{key}", text)
    return value


# -- configuration ---------------------------------------------------------------------------
def config_items(value: Any, field: str = "configuration") -> dict[str, dict[str, str]]:
    """Configuration items by name, from ClearML's ``{name: item}`` object or ``[item]`` list;
    an item is ``{name, value, type, description}`` (strings) or just its value text."""
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for index, item in enumerate(value):
            name = _object(f"{field}[{index}]", item).get("name")
            if not isinstance(name, str) or not name:
                raise invalid(f"{field}[{index}].name", "a non-empty string", name)
            pairs.append((name, item))
    else:
        raise invalid(field, "an object or a list of {name, value, type, description}", value)
    items: dict[str, dict[str, str]] = {}
    for name, item in pairs:
        where = f"{field}[{name!r}]"
        if isinstance(item, str) or item is None:
            item = {"value": item}
        _object(where, item)
        entry = {"name": name, "value": _text(f"{where}.value", item.get("value")) or ""}
        for key in ("type", "description"):
            text = _text(f"{where}.{key}", item.get(key))
            if text:
                entry[key] = text
        items[name] = entry
    return items


def config_fields(
    items: Mapping[str, Mapping[str, str]], task: TaskRecord | None, replace: bool
) -> dict[str, Any]:
    """Store fields setting configuration ``items`` on ``task`` (None: a new task), merged
    into its sections or (``replace``) in place of them all."""
    stored = {} if replace or task is None else dict(task.document.get("configuration") or {})
    fields: dict[str, Any] = {}
    if replace and task is not None and task.model_config and MODEL_CONFIG_SECTION not in items:
        fields["model_config"] = ""
    for name, item in items.items():
        if name == MODEL_CONFIG_SECTION:
            fields["model_config"] = item["value"]
            meta = {k: v for k, v in item.items() if k in ("type", "description")}
            stored[name] = {"name": name, **meta}
        else:
            stored[name] = dict(item)
    fields["document"] = {"configuration": stored or None}
    return fields


def configuration_doc(task: TaskRecord) -> dict[str, dict[str, str]]:
    """The task's ``configuration``: the model design as ``General``, then the others."""
    result: dict[str, dict[str, str]] = {}
    for name, item in (task.document.get("configuration") or {}).items():
        if name == MODEL_CONFIG_SECTION:
            if task.model_config:
                result[name] = {"type": "", "description": "", **item, "value": task.model_config}
        else:
            result[name] = {"type": "", "description": "", **item}
    if task.model_config and MODEL_CONFIG_SECTION not in result:
        result[MODEL_CONFIG_SECTION] = {"name": MODEL_CONFIG_SECTION, "value": task.model_config,
                                        "type": "", "description": ""}  # fmt: skip
    return result


# -- hyper-parameters ------------------------------------------------------------------------
def hyperparam_items(value: Any, field: str = "hyperparams") -> list[dict[str, str]]:
    """Hyper-parameter items ``{section, name, value, type, description}`` from ClearML's
    ``{section: {name: item}}`` object or a list of items; values become strings."""
    raw: list[tuple[str, dict[str, Any]]] = []
    if isinstance(value, dict):
        for section, params in value.items():
            params = _object(f"{field}[{section!r}]", params)
            for name, item in params.items():
                item = item if isinstance(item, dict) else {"value": item}
                raw.append((f"{field}[{section!r}][{name!r}]",
                            {**item, "section": section, "name": item.get("name", name)}))
    elif isinstance(value, list):
        raw = [(f"{field}[{i}]", _object(f"{field}[{i}]", item)) for i, item in enumerate(value)]
    else:
        raise invalid(field, "an object or a list of {section, name, value}", value)
    items = []
    for where, item in raw:
        group, key = item.get("section") or "General", item.get("name")
        if not isinstance(group, str) or not isinstance(key, str) or not key:
            raise invalid(f"{where}.name", "a non-empty string, with a string section", key)
        value_ = item.get("value")
        entry = {"section": group, "name": key, "value": "" if value_ is None else str(value_)}
        for key in ("type", "description"):
            entry[key] = _text(f"{where}.{key}", item.get(key)) or ""
        items.append(entry)
    return items


def hyperparam_values(items: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """``{section: {name: value}}`` of the items."""
    result: dict[str, dict[str, str]] = {}
    for item in items:
        result.setdefault(item["section"], {})[item["name"]] = item["value"]
    return result


def hyperparam_meta(
    task: TaskRecord | None,
    items: list[dict[str, str]],
    dropped: Sequence[tuple[str, str | None]] = (),
) -> dict[str, Any]:
    """The document patch keeping the items' types and descriptions, after ``dropped``
    (``(section, name)``, ``name`` None: the section) is removed from the task's."""
    stored = (task.document if task else {}).get("hyperparams") or {}
    meta = {section: dict(params) for section, params in stored.items()}
    for section, name in dropped:
        if name is None:
            meta.pop(section, None)
        else:
            meta.get(section, {}).pop(name, None)
    for item in items:
        kept = {k: item[k] for k in ("type", "description") if item.get(k)}
        if kept:
            meta.setdefault(item["section"], {})[item["name"]] = kept
        else:
            meta.get(item["section"], {}).pop(item["name"], None)
    return {"hyperparams": {s: p for s, p in meta.items() if p} or None}


def hyperparams_doc(task: TaskRecord) -> dict[str, dict[str, dict[str, str]]]:
    meta = task.document.get("hyperparams") or {}
    return {
        section: {
            name: {"section": section, "name": name, "value": value, "type": "",
                   "description": "", **(meta.get(section) or {}).get(name, {})}
            for name, value in params.items()
        }
        for section, params in task.hyperparams.items()
    }  # fmt: skip


# -- execution and artifacts -----------------------------------------------------------------
def artifact_items(value: Any, field: str = "artifacts", *, keys_only: bool = False) -> list[dict]:
    """Checked artifacts ``{key, type, mode, uri, ...}`` (``mode`` defaults to ``output``);
    with ``keys_only``, the ``{key, mode}`` that name artifacts to delete."""
    if not isinstance(value, list):
        raise invalid(field, "a list of artifacts {key, type, mode, uri, ...}", value)
    items = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        item = _object(where, item)
        required = ("key",) if keys_only else ("key", "type")
        for name in required:
            if not isinstance(item.get(name), str) or not item[name]:
                raise invalid(f"{where}.{name}", "a non-empty string", item.get(name))
        mode = item.get("mode") or "output"
        if mode not in _ARTIFACT_MODES:
            raise invalid(f"{where}.mode", "'input' or 'output'", mode)
        if not keys_only:
            _text(f"{where}.uri", item.get("uri"))
            for name in ("content_size", "timestamp"):
                number = item.get(name)
                if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                    raise invalid(f"{where}.{name}", "an integer", number)
        items.append({**item, "mode": mode})
    return items


def merged_artifacts(current: list[dict], changes: list[dict]) -> list[dict]:
    """``current`` with each change replacing the artifact of its (key, mode), or added."""
    result = {(a.get("key"), a.get("mode") or "output"): a for a in current}
    for artifact in changes:
        result[(artifact["key"], artifact["mode"])] = artifact
    return list(result.values())


def execution_fields(value: Any, task: TaskRecord | None, replace: bool) -> dict[str, Any]:
    """Store fields of an ``execution`` object: the labels and the document's execution,
    merged key by key into the task's or (``replace``) in place of it."""
    value = _object("execution", value)
    fields: dict[str, Any] = {}
    if value.get("model_labels") is not None:
        labels = value["model_labels"]
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in labels.items()
        ):
            raise invalid("execution.model_labels", "an object of label names to integers", labels)
        fields["labels"] = dict(labels)
    rest = {k: v for k, v in value.items() if k != "model_labels"}
    if "artifacts" in rest:
        rest["artifacts"] = artifact_items(rest["artifacts"] or [], "execution.artifacts")
    current = {} if replace or task is None else dict(task.document.get("execution") or {})
    if rest or replace:
        fields["document"] = {"execution": {**current, **rest} or None}
    return fields


# -- documents -------------------------------------------------------------------------------
def _hash(name: str) -> str:
    """ClearML's key for a metric or variant name in ``last_metrics``."""
    return hashlib.md5(name.encode()).hexdigest()  # a key, not a secret


def last_metrics_doc(stats: Mapping[str, Mapping[str, ScalarStats]]) -> dict[str, Any]:
    """ClearML's ``last_metrics``: ``{md5(metric): {md5(variant): {metric, variant, value,
    min_value, ...}}}``."""
    return {
        _hash(metric): {
            _hash(variant): {
                "metric": metric, "variant": variant, "value": s.last,
                "min_value": s.min, "min_value_iteration": s.min_iteration,
                "max_value": s.max, "max_value_iteration": s.max_iteration,
                "first_value": s.first, "first_value_iteration": s.first_iteration,
                "mean_value": s.mean, "count": s.count,
            }
            for variant, s in variants.items()
        }
        for metric, variants in stats.items()
    }  # fmt: skip


def task_document(
    task: TaskRecord, stats: Mapping[str, Mapping[str, ScalarStats]] | None = None
) -> dict[str, Any]:
    """The ClearML document of a task: :func:`modelbook.wire.task_doc` with the stored
    fields and ``last_metrics``."""
    doc = task_doc(task)
    stored = task.document
    for name in WHOLE_FIELDS:
        if name in stored:
            doc[name] = stored[name]
    doc["execution"] = {"artifacts": [], **(stored.get("execution") or {}),
                        "model_labels": dict(task.labels)}  # fmt: skip
    doc["configuration"] = configuration_doc(task)
    doc["hyperparams"] = hyperparams_doc(task)
    doc["last_metrics"] = last_metrics_doc(stats or {})
    return doc
