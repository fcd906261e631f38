"""``projects.*``: look-up by name pattern, create (idempotent), get by id."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from modelbook.errors import InvalidArgumentError
from modelbook.records import ProjectRecord
from modelbook.server.envelope import INVALID_PROJECT_ID, ApiError
from modelbook.server.services.call import Call, Handler
from modelbook.server.services.names import name_matcher
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
    """``order_by`` key: missing values last, the rest by value."""
    value = doc.get(field)
    return (value is None, value if value is not None else "")


def get_all(call: Call) -> dict[str, Any]:
    exact, pattern = name_matcher(call.string("name"))
    ids = call.string_list("id")
    projects = call.store.list_projects()
    if exact is not None:
        projects = [p for p in projects if p.name == exact]
    elif pattern is not None:
        regex = re.compile(pattern)
        projects = [p for p in projects if regex.search(p.name)]
    if ids is not None:
        projects = [p for p in projects if p.id in ids]
    docs = [project_doc(p) for p in projects]
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
    name = call.string("name", required=True) or ""
    project = call.store.get_or_create_project(name)
    return {"id": project.id}


def get_by_id(call: Call) -> dict[str, Any]:
    project = get_project(call, call.string("project", required=True) or "")
    return {"project": project_doc(project)}


ENDPOINTS: dict[str, Handler] = {
    "projects.get_all": get_all,
    "projects.get_all_ex": get_all,
    "projects.create": create,
    "projects.get_by_id": get_by_id,
}
