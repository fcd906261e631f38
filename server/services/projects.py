"""``projects.*``: look-up by name pattern, create (idempotent), get by id, update.

``projects.update`` renames a project (its sub-projects follow; as on ClearML, a rename
cannot move it elsewhere in the hierarchy: that is ``projects.move``, which modelbook does not
have) and sets its description, tags, system tags and default output destination.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from modelbook.errors import InvalidArgumentError
from modelbook.records import ProjectRecord
from modelbook.server.envelope import INVALID_PROJECT_ID, ApiError
from modelbook.server.services.call import Call, Handler, name_field
from modelbook.server.services.names import name_matcher, name_search
from modelbook.server.wire import project_fields
from modelbook.wire import project_doc


def get_project(call: Call, project_id: str) -> ProjectRecord:
    """A project by id, or 400/401."""
    try:
        return call.store.get_project(project_id)
    except InvalidArgumentError as exc:
        raise ApiError.of(
            INVALID_PROJECT_ID, str(exc), modelbook_error="InvalidArgumentError", id=project_id
        ) from None


def sort_key(field: str, doc: dict[str, Any]) -> Any:
    """``order_by`` key: missing values last, then numbers, strings, and other values (objects,
    lists) by their JSON text, so that any field sorts, whatever its values.

    Example:
        >>> docs = [{"x": {"a": 1}}, {"x": None}, {"x": "b"}, {"x": 2}]
        >>> [d["x"] for d in sorted(docs, key=partial(sort_key, "x"))]
        [2, 'b', {'a': 1}, None]
    """
    value = doc.get(field)
    if value is None:
        return (True, 0, "")
    if isinstance(value, (int, float)):
        return (False, 0, value)
    if isinstance(value, str):
        return (False, 1, value)
    return (False, 2, json.dumps(value, sort_keys=True, default=str))


def get_all(call: Call) -> dict[str, Any]:
    exact, pattern = name_matcher(call.string("name"))
    ids = call.string_list("id")
    projects = call.store.list_projects()
    if exact is not None:
        projects = [p for p in projects if p.name == exact]
    elif pattern is not None:
        matches = name_search(pattern)
        projects = [p for p in projects if matches(p.name)]
    if ids is not None:
        projects = [p for p in projects if p.id in ids]
    docs = [document(p) for p in projects]
    for item in reversed(call.string_list("order_by") or []):
        field = item.lstrip("-")
        docs.sort(key=partial(sort_key, field), reverse=item.startswith("-"))
    page, page_size = call.integer("page"), call.integer("page_size")
    if page is not None and page_size:
        docs = docs[page * page_size : (page + 1) * page_size]
    only = call.string_list("only_fields")
    return {"projects": [project_fields(d, only) for d in docs]}


def create(call: Call) -> dict[str, Any]:
    """Create a project; an existing project of that name is returned, not duplicated."""
    name = name_field(call, required=True) or ""
    project = call.store.get_or_create_project(name)
    return {"id": project.id}


def get_by_id(call: Call) -> dict[str, Any]:
    project = get_project(call, call.string("project", required=True) or "")
    return {"project": document(project)}


def document(project: ProjectRecord) -> dict[str, Any]:
    """The project's ClearML document, with the stored description and tags."""
    doc = project_doc(project)
    doc.update({k: v for k, v in project.document.items() if k in _DOCUMENT_FIELDS})
    return doc


_DOCUMENT_FIELDS = ("description", "tags", "system_tags")
#: ClearML's ``invalid_project_name`` and ``cannot_update_project_location``.
INVALID_PROJECT_NAME = (400, 407)
CANNOT_UPDATE_PROJECT_LOCATION = (400, 408)


def _new_name(call: Call, project: ProjectRecord) -> str | None:
    """The cleaned ``name`` of the body (empty path parts dropped), if any."""
    name = name_field(call)
    if name is None:
        return None
    parts = [part.strip() for part in name.split("/") if part.strip()]
    if not parts:
        raise ApiError.of(INVALID_PROJECT_NAME, f"invalid project name {name!r}", name=name)
    cleaned = "/".join(parts)
    if cleaned.rpartition("/")[0] != project.name.rpartition("/")[0]:
        raise ApiError.of(
            CANNOT_UPDATE_PROJECT_LOCATION,
            f"cannot rename {project.name!r} to {cleaned!r}: a rename keeps the parent "
            "project (ClearML moves projects with projects.move)",
            name=cleaned,
        )
    return cleaned


def update(call: Call) -> dict[str, Any]:
    """``{project, name, description, tags, system_tags, default_output_destination}``."""
    project = get_project(call, call.string("project", required=True) or "")
    fields: dict[str, Any] = {}
    shown: dict[str, Any] = {}
    name = _new_name(call, project)
    if name is not None:
        fields["name"] = shown["name"] = name
    if "default_output_destination" in call.data:
        destination = call.string("default_output_destination") or None
        fields["default_output_destination"] = shown["default_output_destination"] = destination
    stored: dict[str, Any] = {}
    if "description" in call.data:
        stored["description"] = call.string("description") or ""
    for key in ("tags", "system_tags"):
        if key in call.data:
            stored[key] = call.string_list(key) or []
    if stored:
        fields["document"] = stored
        shown.update(stored)
    if fields:
        call.store.update_project(project.id, **fields)
    return {"updated": 1 if fields else 0, "fields": shown}


ENDPOINTS: dict[str, Handler] = {
    "projects.get_all": get_all,
    "projects.get_all_ex": get_all,
    "projects.create": create,
    "projects.get_by_id": get_by_id,
    "projects.update": update,
}
