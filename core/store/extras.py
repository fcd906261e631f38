"""Task and project verbs a ClearML server needs beyond the :class:`Backend` ones.

* the *document* of a task or project: the ClearML fields a client writes that modelbook does
  not model itself (a task's script, runtime, container, other configuration sections...; a
  project's description and tags), kept as JSON beside the modelled columns and changed key
  by key (:func:`merge_document`);
* a task's model entries replaced as a whole (ClearML's ``tasks.edit`` of ``models``);
* which tasks use a model as their input, and why a model may not be deleted without force;
* deleting a task, and with it what only it produced (:meth:`ExtraVerbs.delete_task`);
* renaming a project together with its sub-projects.

What these fields mean is the server's business (``modelbook.server``); the store keeps them
and answers for what may be deleted.

Example:
    >>> merge_document({"script": {"binary": "python"}, "runtime": {}}, {"runtime": None})
    {'script': {'binary': 'python'}}
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from modelbook.errors import InvalidArgumentError, ModelInUseError, TaskNotFoundError
from modelbook.records import ModelRecord, ProjectRecord, TaskModelEntry, TaskRecord
from modelbook.store import objects
from modelbook.store import schema as s
from modelbook.store.engine import now

_PROJECT_FIELDS = frozenset({"name", "default_output_destination", "document"})


def merge_document(current: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with each key of ``patch`` set to its value (``None``: removed)."""
    merged = dict(current or {})
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def drop_model(conn: sa.Connection, row: Any) -> list[str]:
    """Delete a model's rows (tags, metadata, versions, task entries, the model) in the open
    transaction; return every URI it referenced, for :mod:`modelbook.store.objects`."""
    mv = s.model_versions
    found = conn.execute(sa.select(mv.c.uri).where(mv.c.model_seq == row.seq))
    uris = [row.uri, *found.scalars()]
    for table in (s.model_tags, s.model_metadata, s.model_versions):
        conn.execute(sa.delete(table).where(table.c.model_seq == row.seq))
    conn.execute(sa.delete(s.task_models).where(s.task_models.c.model == row.id))
    conn.execute(sa.delete(s.models).where(s.models.c.seq == row.seq))
    return uris


@dataclass(frozen=True)
class TaskDeletion:
    """What :meth:`ExtraVerbs.delete_task` did.

    Attributes:
        deleted_models: ids of the output models deleted with the task.
        kept_models: ids of the task's models kept (published, used as input by another task,
            or ``delete_output_models`` false); they no longer name the task.
        model_urls: the weights URIs of the deleted models.
        doomed: URIs of objects the registry wrote that nothing references any more, whose
            bytes are to be deleted.

    Example:
        >>> TaskDeletion(deleted_models=["m1"], model_urls=["file:///w.pt"]).kept_models
        []
    """

    deleted_models: list[str] = field(default_factory=list)
    kept_models: list[str] = field(default_factory=list)
    model_urls: list[str] = field(default_factory=list)
    doomed: list[str] = field(default_factory=list)


class ExtraVerbs:
    """Mixed into :class:`~modelbook.store.sql.SqlStore`; each verb is one transaction.

    Example:
        >>> from modelbook.store.sql import SqlStore
        >>> store = SqlStore("sqlite://")
        >>> task = store.create_task(name="t", project=None)
        >>> task = store.update_task(task.id, document={"script": {"entry_point": "train.py"}})
        >>> task.document
        {'script': {'entry_point': 'train.py'}}
        >>> store.delete_task(task.id).deleted_models
        []
    """

    _write: Callable[[], AbstractContextManager[sa.Connection]]
    _read: Callable[[], AbstractContextManager[sa.Connection]]
    _task_row: Callable[..., Any]
    _task: Callable[[sa.Connection, Any], TaskRecord]
    _project: Callable[[Any], ProjectRecord]
    get_model: Callable[[str], ModelRecord]
    get_task: Callable[[str], TaskRecord]

    def set_task_models(
        self, task_id: str, kind: str, entries: Sequence[TaskModelEntry]
    ) -> TaskRecord:
        """Replace the task's ``input`` or ``output`` model entries by ``entries``, in order."""
        if kind not in ("input", "output"):
            raise InvalidArgumentError(f"task model kind must be 'input' or 'output', got {kind!r}")
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"{kind} model names must be unique, got {names}")
        tm = s.task_models
        with self._write() as conn:
            self._task_row(conn, task_id, lock=True)
            conn.execute(sa.delete(tm).where(tm.c.task == task_id, tm.c.kind == kind))
            last = conn.execute(
                sa.select(sa.func.max(tm.c.position)).where(tm.c.task == task_id)
            ).scalar()
            rows = [{"task": task_id, "kind": kind, "name": e.name, "model": e.model,
                     "position": (last or 0) + i} for i, e in enumerate(entries, 1)]  # fmt: skip
            if rows:
                conn.execute(sa.insert(tm), rows)
            t = s.tasks
            conn.execute(sa.update(t).where(t.c.id == task_id).values(last_update=now()))
            return self._task(conn, self._task_row(conn, task_id))

    def tasks_using_model(self, model_id: str, kind: str = "input") -> list[str]:
        """Ids of the tasks whose ``kind`` model entries name the model."""
        tm = s.task_models
        with self._read() as conn:
            found = conn.execute(
                sa.select(tm.c.task).where(tm.c.model == model_id, tm.c.kind == kind).distinct()
            )
            return sorted(found.scalars())

    def deletion_refusal(self, model_id: str) -> ModelInUseError | None:
        """Why ``models.delete`` without ``force`` refuses this model, if it does: it is
        published (modelbook keeps those read-only), a task uses it as input, or the task
        that created it is published (both as on ClearML)."""
        model = self.get_model(model_id)
        if model.ready:
            return ModelInUseError(f"model {model.id} is published: pass force to delete it",
                                   "published")  # fmt: skip
        users = self.tasks_using_model(model.id, "input")
        if users:
            return ModelInUseError(
                f"model {model.id} is the input of {len(users)} task(s) "
                f"({', '.join(users[:3])}): pass force to delete it", "in_use",
            )  # fmt: skip
        if model.task:
            with contextlib.suppress(TaskNotFoundError):
                if self.get_task(model.task).status == "published":
                    return ModelInUseError(
                        f"model {model.id} was created by task {model.task}, which is "
                        "published: pass force to delete it", "task_published",
                    )  # fmt: skip
        return None

    def delete_task(
        self, task_id: str, *, delete_output_models: bool = True, delete_objects: bool = True
    ) -> TaskDeletion:
        """Delete a task, its model entries and reported scalars, and its output models (the
        models it created or lists as output) unless they are published, used as input by
        another task, or ``delete_output_models`` is false: those are kept and no longer name
        the task. The objects only deleted models referenced are doomed as
        :meth:`delete_model` dooms them (``delete_objects`` false: kept for good).
        """
        tm, m = s.task_models, s.models
        with self._write() as conn:
            self._task_row(conn, task_id, lock=True)
            listed = sa.select(tm.c.model).where(tm.c.task == task_id, tm.c.kind == "output")
            rows = conn.execute(
                sa.select(m).where((m.c.task == task_id) | m.c.id.in_(listed)).order_by(m.c.seq)
            ).all()
            used = set(conn.execute(
                sa.select(tm.c.model).where(tm.c.kind == "input", tm.c.task != task_id)
                .where(tm.c.model.in_([r.id for r in rows]))
            ).scalars())  # fmt: skip
            deleted, kept, urls, uris = [], [], [], []
            for row in rows:
                if not delete_output_models or row.ready or row.id in used:
                    kept.append(row.id)
                    continue
                deleted.append(row.id)
                urls += [row.uri] if row.uri else []
                uris += drop_model(conn, row)
            if kept:
                conn.execute(
                    sa.update(m).where(m.c.id.in_(kept), m.c.task == task_id)
                    .values(task=None, last_update=now())
                )  # fmt: skip
            conn.execute(sa.delete(tm).where(tm.c.task == task_id))
            for table in (s.scalars, s.scalar_stats, s.reports):
                conn.execute(sa.delete(table).where(table.c.task == task_id))
            conn.execute(sa.delete(s.tasks).where(s.tasks.c.id == task_id))
            if delete_objects:
                doomed = objects.doom_unreferenced(conn, uris)
            else:
                objects.disown(conn, uris)
                doomed = []
        return TaskDeletion(deleted, kept, urls, doomed)

    def update_project(self, project_id: str, **fields: Any) -> ProjectRecord:
        """Change a project's ``name`` (its sub-projects ``<name>/...`` follow),
        ``default_output_destination`` or ``document`` (merged key by key, as
        :func:`merge_document`)."""
        unknown = set(fields) - _PROJECT_FIELDS
        if unknown:
            raise InvalidArgumentError(
                f"unknown project fields {sorted(unknown)}; accepted: {sorted(_PROJECT_FIELDS)}"
            )
        p = s.projects
        with self._write() as conn:
            row = conn.execute(
                sa.select(p).where(p.c.id == project_id).with_for_update()
            ).first()
            if row is None:
                raise InvalidArgumentError(f"no project with id {project_id!r}")
            values: dict[str, Any] = {}
            if "document" in fields:
                values["document"] = merge_document(row.document, fields["document"] or {})
            if "default_output_destination" in fields:
                values["default_output_destination"] = fields["default_output_destination"]
            name = fields.get("name")
            if name is not None and name != row.name:
                self._rename_project(conn, row.name, name)
                values["name"] = name
            if values:
                conn.execute(sa.update(p).where(p.c.id == project_id).values(**values))
            return self._project(conn.execute(sa.select(p).where(p.c.id == project_id)).one())

    @staticmethod
    def _rename_project(conn: sa.Connection, old: str, new: str) -> None:
        """Rename the sub-projects of ``old`` under ``new``, refusing a name taken."""
        if not isinstance(new, str) or not new.strip():
            raise InvalidArgumentError(f"project name must be a non-empty string, got {new!r}")
        p = s.projects
        children = conn.execute(
            sa.select(p.c.id, p.c.name).where(p.c.name.startswith(f"{old}/", autoescape=True))
        ).all()
        renamed = {new: None, **{new + c.name[len(old):]: c.id for c in children}}
        taken = conn.execute(
            sa.select(p.c.name).where(p.c.name.in_(list(renamed)))
        ).scalars().all()  # fmt: skip
        if taken:
            raise InvalidArgumentError(f"a project named {taken[0]!r} already exists")
        for name, child in renamed.items():
            if child is not None:
                conn.execute(sa.update(p).where(p.c.id == child).values(name=name))
