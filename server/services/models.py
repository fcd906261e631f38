"""``models.*``: the model registry, on the store's query semantics.

ClearML fields map onto :class:`~modelbook.records.ModelRecord`; ``design`` travels as
``{"design": "<text>"}``, metadata as ``[{key, value, type}]`` on the way in and
``{key: {key, value, type}}`` on the way out. ``models.get_all``'s ``name`` is a regular
expression; ClearML's anchored escaped literals become exact look-ups.

modelbook's own endpoints (documented in docs/server.md):

* ``models.add_version`` ``{model, uri, sha256, size, iteration, comment, framework,
  is_package, metadata}``: point the model at new weights (and add metadata items) and
  record a version, in one transaction.
* ``models.get_versions`` ``{model}`` → ``{"versions": [...]}``, oldest first.
* ``models.count``: ``models.get_all``'s filters → ``{"count": n}``.
* ``models.prune_versions`` ``{model, keep_last, dry_run}`` → ``{pruned, doomed, kept}``.

``models.add_version`` records the object as the registry's (``owned``, default true: the
client wrote it for the registry) and ``models.delete`` deletes what only that model
referenced (see :mod:`modelbook.server.ownership`).

Replies of ``models.create`` / ``edit`` / ``update`` / ``add_or_update_metadata`` also carry
the whole new document as ``model``, which saves modelbook's client a ``get_by_id``.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from modelbook import validate
from modelbook.errors import ModelNotFoundError, TaskNotFoundError
from modelbook.records import ARCHIVED_TAG, ModelQuery, ModelRecord, metadata_item
from modelbook.server import dialect
from modelbook.server.envelope import (
    FIELDS_CONFLICT,
    INVALID_ID,
    MODEL_IS_READY,
    NOT_SUPPORTED,
    VALIDATION_ERROR,
    ApiError,
)
from modelbook.server.services.call import Call, Handler, name_field, tag_filter, tag_list
from modelbook.server.services.names import name_matcher
from modelbook.server.services.projects import get_project
from modelbook.server.services.tasks import labels_field
from modelbook.server.stored import StoredFile
from modelbook.server.wire import project_fields
from modelbook.wire import model_doc, version_doc

_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_UNSUPPORTED_FILTERS = ("framework", "user", "last_update", "search_text", "_all_", "_any_")
_ORDER_ALIASES = {"last_iteration": "iteration"}
_LONG = 2**63


def _design(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if set(value) <= {"design"}:
            return str(value.get("design") or "")
        return json.dumps(value)
    if value is None:
        return ""
    raise ApiError.of(VALIDATION_ERROR, "design must be an object or a string")


def _metadata(value: Any) -> dict[str, dict[str, str]]:
    """Metadata items from a list of ``{key, value, type}`` or a ``{key: item}`` object."""
    if isinstance(value, dict):
        items = [{"key": k, **v} if isinstance(v, dict) else v for k, v in value.items()]
    elif isinstance(value, list):
        items = value
    else:
        raise ApiError.of(VALIDATION_ERROR, "metadata must be a list of {key, value, type}")
    result: dict[str, dict[str, str]] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise ApiError.of(VALIDATION_ERROR, "every metadata item needs a non-empty key")
        validate.metadata_key(item["key"])  # the Python API's rules
        value_, type_ = item.get("value"), item.get("type")
        result[item["key"]] = metadata_item(
            item["key"], "" if value_ is None else value_, "str" if type_ is None else type_
        )
    return result


def model_fields(call: Call) -> dict[str, Any]:
    """The store fields a ``models.create`` / ``edit`` / ``update`` body sets."""
    fields: dict[str, Any] = {}
    for name in ("name", "comment", "framework", "uri", "parent", "sha256"):
        if name in call.data:
            fields[name] = name_field(call) if name == "name" else call.string(name)
    for name in ("tags", "system_tags", "add_system_tags", "remove_system_tags"):
        value = call.string_list(name) if name.startswith("remove") else tag_list(call, name)
        if value is not None:
            fields[name] = value
    if call.get("task"):
        fields["task"] = call.store.get_task(call.string("task") or "").id
    if "project" in call.data:
        project = call.string("project")
        fields["project"] = get_project(call, project).id if project else None
    if "design" in call.data:
        fields["design"] = _design(call.get("design"))
    if call.get("labels") is not None:
        fields["labels"] = labels_field(call.get("labels"))
    if call.get("ready") is not None:
        fields["ready"] = call.boolean("ready")
    for name in ("iteration", "size"):
        number = call.integer(name)
        if number is not None:
            fields[name] = number
    if call.get("metadata") is not None:
        fields["metadata"] = _metadata(call.get("metadata"))
    return fields


def _model(call: Call) -> ModelRecord:
    return call.store.get_model(call.string("model", required=True) or "")


def create(call: Call) -> dict[str, Any]:
    fields = model_fields(call)
    for name in ("add_system_tags", "remove_system_tags"):
        fields.pop(name, None)
    fields.setdefault("ready", True)  # as on ClearML: born published unless told otherwise
    if dialect.strict(call.context):  # ClearML requires a uri
        call.string("uri", required=True)
    model_id = call.string("id")  # modelbook extension: keep an id (imports, seeding)
    if model_id:
        if not _ID_RE.match(model_id):
            raise ApiError.of(INVALID_ID, f"invalid model id {model_id[:80]!r}")
        with contextlib.suppress(ModelNotFoundError):
            call.store.get_model(model_id)
            raise ApiError.of(FIELDS_CONFLICT, f"a model with id {model_id!r} already exists")
        fields["id"] = model_id
    model = call.store.create_model(**fields)
    return {"id": model.id, "created": True, "model": model_doc(model)}


def get_by_id(call: Call) -> dict[str, Any]:
    return {"model": model_doc(_model(call))}


_METADATA_FILTER = re.compile(r"^metadata\.(.+)\.value$")
#: The most metadata terms one ``models.get_all`` filters by (the Python API's limit too).
MAX_METADATA_FILTERS = validate.MAX_METADATA_FILTERS


def model_query(call: Call) -> ModelQuery:
    """The :class:`ModelQuery` of a ``models.get_all`` body."""
    unsupported = [f for f in _UNSUPPORTED_FILTERS if call.get(f) not in (None, [], "")]
    if unsupported:
        raise ApiError.of(NOT_SUPPORTED, f"models.get_all filters not supported: {unsupported}")
    exact, pattern = name_matcher(call.string("name"))
    tasks = call.string_list("task")
    if tasks is not None and len(tasks) > 1:
        raise ApiError.of(NOT_SUPPORTED, "models.get_all filters by one task at a time")
    metadata = dict(call.dict_field("metadata") or {})
    for key, value in (call.data.items() if isinstance(call.data, dict) else []):
        found = _METADATA_FILTER.match(key)  # ClearML's filter: "metadata.<key>.value": [v]
        if found:
            values = value if isinstance(value, list) else [value]
            if len(values) != 1:
                raise ApiError.of(NOT_SUPPORTED, f"{key}: filter by one value at a time")
            metadata[found[1]] = values[0]
    if len(metadata) > MAX_METADATA_FILTERS:  # each is a subquery; SQLite nests 1 000 at most
        raise ApiError.of(VALIDATION_ERROR, f"field 'metadata' holds {len(metadata)} filters; "
                          f"at most {MAX_METADATA_FILTERS} are accepted")  # fmt: skip
    order_by = []
    for item in call.string_list("order_by") or ["-created"]:
        name = item.lstrip("-")
        order_by.append(("-" if item.startswith("-") else "") + _ORDER_ALIASES.get(name, name))
    offset, limit = call.integer("offset") or 0, call.integer("size")
    page, page_size = call.integer("page"), call.integer("page_size")
    if offset < 0 or (limit or 0) < 0:
        raise ApiError.of(VALIDATION_ERROR, "offset and size must not be negative")
    if page_size is not None:
        if page_size < 0 or (page or 0) < 0:
            raise ApiError.of(VALIDATION_ERROR, "page and page_size must not be negative")
        offset, limit = offset + (page or 0) * page_size, page_size
    if offset >= _LONG:  # the database takes 64-bit offsets
        raise ApiError.of(VALIDATION_ERROR, f"offset + page * page_size is {offset}: it must be "
                          f"below 2**63 (page {page}, page_size {page_size})")  # fmt: skip
    return ModelQuery(
        projects=call.string_list("project"),
        name=exact,
        name_pattern=pattern,
        tags=tag_filter(call, "tags"),
        system_tags=tag_filter(call, "system_tags"),
        ready=call.boolean("ready"),
        uri=call.string_list("uri"),
        task=tasks[0] if tasks else None,
        metadata={str(k): str(v) for k, v in metadata.items()} if metadata else None,
        ids=call.string_list("id"),
        order_by=order_by,
        offset=offset,
        limit=limit,
    )


def get_all(call: Call) -> dict[str, Any]:
    models = call.store.query_models(model_query(call))
    only = call.string_list("only_fields")
    return {"models": [project_fields(model_doc(m), only) for m in models]}


def count(call: Call) -> dict[str, Any]:
    return {"count": call.store.count_models(model_query(call))}


def _stored_weights(call: Call, model_id: str, uri: str | None) -> StoredFile | None:
    """The file this server stored that a ClearML client now points the model at, if new."""
    stored = call.context.get("stored")
    if not uri or stored is None or not call.context.get("clearml_client"):
        return None
    found = stored.lookup_url(uri, call.context.get("host"))
    if found is None:
        return None
    current = call.store.get_model(model_id)
    return None if current.uri == uri and current.sha256 == found.sha256 else found


def edit(call: Call) -> dict[str, Any]:
    """``models.edit`` / ``models.update``.

    When a ClearML client points a model at a file this server's files server stored (the
    last step of the SDK's ``update_weights``), the change is recorded as a new version with
    the file's sha256 and size, as modelbook's own clients do with ``models.add_version``.
    """
    model_id = call.string("model", required=True) or ""
    fields = model_fields(call)
    metadata = fields.pop("metadata", None)
    weights = _stored_weights(call, model_id, fields.get("uri"))
    if weights is not None:
        version_fields = {"uri": fields.pop("uri"), "iteration": fields.pop("iteration", None)}
    if fields:  # raises ModelNotFoundError for an unknown id, like get_model
        model = call.store.update_model(model_id, **fields)
    else:
        model = call.store.get_model(model_id)
    if weights is not None:
        model = call.store.add_model_version(
            model_id, sha256=weights.sha256, size=weights.size, **version_fields
        )
        fields.update({k: v for k, v in version_fields.items() if v is not None})
    if metadata is not None:
        model = call.store.set_model_metadata(
            model.id, metadata, replace=True
        )
    iteration = fields.get("iteration")
    if iteration is not None and model.task:
        with contextlib.suppress(TaskNotFoundError):  # the task may have been deleted
            call.store.update_task(model.task, last_iteration=iteration)
    shown = {k: v for k, v in fields.items() if not k.endswith("_system_tags")}
    return {"updated": 1 if fields or metadata is not None else 0, "fields": shown,
            "model": model_doc(model)}  # fmt: skip


def set_ready(call: Call) -> dict[str, Any]:
    model = _model(call)
    if model.ready:
        raise ApiError.of(MODEL_IS_READY, f"model {model.id} is already published")
    publish_task = call.boolean("publish_task", False)  # checked before anything changes
    force = call.boolean("force_publish_task")
    model = call.store.update_model(model.id, ready=True)
    if model.task and publish_task:
        try:
            task = call.store.get_task(model.task)
            if task.status in ("stopped", "completed") or force:
                call.store.update_task(task.id, status="published")
        except TaskNotFoundError:
            pass
    return {"updated": 1, "model": model_doc(model)}


def _archive(call: Call, ids: list[str], archive: bool) -> list[dict[str, Any]]:
    change = "add_system_tags" if archive else "remove_system_tags"
    for model_id in ids:  # every id is checked before any model changes
        call.store.get_model(model_id)
    done = []
    for model_id in ids:
        call.store.update_model(model_id, **{change: [ARCHIVED_TAG]})
        done.append({"id": model_id, "archived": archive})
    return done


def archive(call: Call) -> dict[str, Any]:
    _archive(call, [_model(call).id], True)
    return {"archived": 1}


def archive_many(call: Call) -> dict[str, Any]:
    ids = call.string_list("ids") or []
    return {"succeeded": _archive(call, ids, True), "failed": []}


def unarchive_many(call: Call) -> dict[str, Any]:
    ids = call.string_list("ids") or []
    return {"succeeded": _archive(call, ids, False), "failed": []}


def delete_own_objects(call: Call, doomed: list[str]) -> list[str]:
    """Delete the doomed objects this server's files server holds; return the others."""
    files = call.context.get("files")
    return files.objects.delete_own(doomed) if files else doomed


#: ClearML's ``model_in_use`` and ``model_creating_task_exists``.
MODEL_IN_USE = (400, 205)
MODEL_CREATING_TASK_EXISTS = (400, 206)


_REFUSAL_CODES = {"published": MODEL_IS_READY, "in_use": MODEL_IN_USE,
                  "task_published": MODEL_CREATING_TASK_EXISTS}


def _check_deletable(call: Call, model: ModelRecord) -> None:
    """``models.delete``'s refusals without ``force``, as the store decides them
    (:meth:`~modelbook.store.extras.ExtraVerbs.deletion_refusal`), in ClearML's codes."""
    refusal = call.store.deletion_refusal(model.id)
    if refusal is not None:
        extra = {"num_tasks": len(call.store.tasks_using_model(model.id))} if (
            refusal.reason == "in_use") else {"task": model.task} if (
            refusal.reason == "task_published") else {}
        raise ApiError.of(_REFUSAL_CODES[refusal.reason], str(refusal), **extra)


def delete(call: Call) -> dict[str, Any]:
    """``models.delete``: also deletes the objects the registry wrote that only this model
    referenced (held here: at once; elsewhere: listed in ``doomed`` for the client), unless
    ``delete_external_artifacts`` is false (then they are kept for good). Without ``force``
    it refuses as :func:`_check_deletable` says; the entries of the tasks that used the
    model go with it."""
    model = _model(call)
    if not call.boolean("force", False):
        _check_deletable(call, model)
    keep = call.boolean("delete_external_artifacts", True) is False
    doomed = call.store.delete_model(model.id, delete_objects=not keep)
    return {"deleted": True, "url": model.uri, "doomed": delete_own_objects(call, doomed)}


def prune_versions(call: Call) -> dict[str, Any]:
    """``models.prune_versions`` (modelbook): ``{model, keep_last, dry_run}``."""
    model = _model(call)
    keep_last = call.integer("keep_last")
    if keep_last is None or keep_last < 0:
        raise ApiError.of(VALIDATION_ERROR, "keep_last must be an integer >= 0")
    dry_run = bool(call.boolean("dry_run", False))
    result = call.store.prune_versions(model.id, keep_last, dry_run=dry_run)
    doomed = result.doomed if dry_run else delete_own_objects(call, result.doomed)
    return {"pruned": result.pruned, "doomed": doomed,
            "kept": {str(k): v for k, v in result.kept.items()}}  # fmt: skip


def add_or_update_metadata(call: Call) -> dict[str, Any]:
    model = _model(call)
    items = _metadata(call.require("metadata"))
    model = call.store.set_model_metadata(
        model.id,
        items,
        replace=bool(call.boolean("replace_metadata", False)),
    )
    return {"updated": 1, "model": model_doc(model)}


def delete_metadata(call: Call) -> dict[str, Any]:
    model = _model(call)
    keys = set(call.string_list("keys") or [])
    kept = {k: v for k, v in model.metadata.items() if k not in keys}
    model = call.store.set_model_metadata(model.id, kept, replace=True)
    return {"updated": 1, "model": model_doc(model)}


def add_version(call: Call) -> dict[str, Any]:
    model = _model(call)
    metadata = _metadata(call.get("metadata")) if call.get("metadata") is not None else None
    model = call.store.add_model_version(
        model.id,
        uri=call.string("uri", required=True) or "",
        sha256=call.string("sha256"),
        size=call.integer("size"),
        iteration=call.integer("iteration"),
        comment=call.string("comment"),
        framework=call.string("framework"),
        is_package=bool(call.boolean("is_package", False)),
        metadata=metadata if metadata else None,
        owned=bool(call.boolean("owned", True)),
    )
    return {"version": model.version, "model": model_doc(model)}


def get_versions(call: Call) -> dict[str, Any]:
    model = _model(call)
    return {"versions": [version_doc(v) for v in call.store.list_model_versions(model.id)]}


ENDPOINTS: dict[str, Handler] = {
    "models.create": create,
    "models.get_by_id": get_by_id,
    "models.get_all": get_all,
    "models.get_all_ex": get_all,
    "models.count": count,
    "models.edit": edit,
    "models.update": edit,
    "models.set_ready": set_ready,
    "models.archive": archive,
    "models.archive_many": archive_many,
    "models.unarchive_many": unarchive_many,
    "models.delete": delete,
    "models.add_or_update_metadata": add_or_update_metadata,
    "models.delete_metadata": delete_metadata,
    "models.add_version": add_version,
    "models.prune_versions": prune_versions,
    "models.get_versions": get_versions,
}
