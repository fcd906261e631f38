"""``Task.get_task``'s filters (tags, archived, ``task_filter``) over the tasks of one name.

Example:
    >>> from modelbook.records import TaskRecord
    >>> tasks = [TaskRecord(id="b", name="t", project=None, tags=["debug"]),
    ...          TaskRecord(id="a", name="t", project=None, tags=["best"])]
    >>> [t.id for t in filter_tasks(tasks, ["-debug"], True, None)]
    ['a']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelbook.errors import InvalidArgumentError
from modelbook.records import ARCHIVED_TAG, TaskRecord

#: ``task_filter`` keys :func:`filter_tasks` understands.
TASK_FILTER_KEYS = ("status", "type", "tags", "system_tags", "order_by")


def filter_tasks(
    tasks: list[TaskRecord],
    tags: Sequence[str] | None,
    allow_archived: bool,
    task_filter: Mapping[str, Any] | None,
) -> list[TaskRecord]:
    """The tasks (newest first) that ``Task.get_task``'s filters accept, in its order."""
    from modelbook.store.tagfilter import parse_tag_filter

    if task_filter is not None and not isinstance(task_filter, Mapping):
        raise InvalidArgumentError(
            f"task_filter must be a dict such as {{'status': ['completed']}}, got "
            f"{type(task_filter).__name__} {task_filter!r:.80}"
        )
    wanted = dict(task_filter or {})
    unknown = sorted(set(wanted) - set(TASK_FILTER_KEYS))
    if unknown:
        raise InvalidArgumentError(
            f"unknown task_filter keys {unknown}; accepted: {', '.join(TASK_FILTER_KEYS)}"
        )
    user = parse_tag_filter([*(wanted.get("tags") or []), *(tags or [])])
    system = parse_tag_filter(list(wanted.get("system_tags") or []))
    found = [
        t for t in tasks
        if user.matches(t.tags) and system.matches(t.system_tags)
        and (allow_archived or ARCHIVED_TAG not in t.system_tags)
        and all(not wanted.get(k) or getattr(t, k) in [str(v) for v in wanted[k]]
                for k in ("status", "type"))
    ]  # fmt: skip
    for key in reversed(list(wanted.get("order_by") or [])):
        field = str(key).lstrip("-+")
        if field not in ("created", "last_update", "name", "last_iteration"):
            raise InvalidArgumentError(
                f"task_filter order_by {key!r}: accepted fields are created, last_update, "
                "name, last_iteration (prefix '-' for descending)"
            )
        found.sort(key=lambda t: (getattr(t, field) is None, getattr(t, field) or 0),
                   reverse=str(key).startswith("-"))  # fmt: skip
    return found
