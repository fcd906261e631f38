"""Project and task verbs of the SQL store, mixed into
:class:`~modelbook.store.sql.SqlStore`; each verb is one transaction.

Example:
    >>> from modelbook.store.sql import SqlStore
    >>> store = SqlStore("sqlite://")
    >>> project = store.get_or_create_project("demo")
    >>> task = store.create_task(name="train", project=project.id)
    >>> store.update_task(task.id, hyperparams={"Args": {"lr": 0.1}}).hyperparams
    {'Args': {'lr': '0.1'}}
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from modelbook.errors import InvalidArgumentError, TaskNotFoundError
from modelbook.records import ProjectRecord, TaskModelEntry, TaskRecord
from modelbook.store import schema as s
from modelbook.store.engine import new_id, now, utc
from modelbook.store.extras import merge_document

_TASK_FIELDS = {
    "name",
    "project",
    "type",
    "comment",
    "tags",
    "system_tags",
    "status",
    "output_destination",
    "labels",
    "model_config",
}


class TaskVerbs:
    """Projects and tasks: found or created by name, read, and changed field by field.

    Example:
        >>> from modelbook.store.sql import SqlStore
        >>> store = SqlStore("sqlite://")
        >>> task = store.create_task(name="t", project=None)
        >>> store.set_task_model(task.id, "output", "best", "m1").output_models[0].model
        'm1'
    """

    _write: Callable[[], AbstractContextManager[sa.Connection]]
    _read: Callable[[], AbstractContextManager[sa.Connection]]
    _check_tags: Callable[[str, Any], list[str]]

    # -- projects -------------------------------------------------------------------------
    @staticmethod
    def _project(row: Any) -> ProjectRecord:
        return ProjectRecord(
            id=row.id,
            name=row.name,
            created=utc(row.created),
            default_output_destination=row.default_output_destination,
            document=dict(row.document or {}),
        )

    def find_project(self, name: str) -> ProjectRecord | None:
        with self._read() as conn:
            row = conn.execute(sa.select(s.projects).where(s.projects.c.name == name)).first()
        return self._project(row) if row else None

    def get_or_create_project(self, name: str) -> ProjectRecord:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"project name must be a non-empty string, got {name!r}")
        with self._write() as conn:
            row = conn.execute(sa.select(s.projects).where(s.projects.c.name == name)).first()
            if row is None:
                conn.execute(sa.insert(s.projects).values(id=new_id(), name=name, created=now()))
                row = conn.execute(sa.select(s.projects).where(s.projects.c.name == name)).one()
        return self._project(row)

    def get_project(self, project_id: str) -> ProjectRecord:
        with self._read() as conn:
            row = conn.execute(sa.select(s.projects).where(s.projects.c.id == project_id)).first()
        if row is None:
            raise InvalidArgumentError(f"no project with id {project_id!r}")
        return self._project(row)

    def list_projects(self) -> list[ProjectRecord]:
        with self._read() as conn:
            rows = conn.execute(sa.select(s.projects).order_by(s.projects.c.name)).all()
        return [self._project(r) for r in rows]

    # -- tasks ----------------------------------------------------------------------------
    def _task(self, conn: sa.Connection, row: Any) -> TaskRecord:
        tm = s.task_models
        entries = conn.execute(
            sa.select(tm.c.kind, tm.c.name, tm.c.model)
            .where(tm.c.task == row.id)
            .order_by(tm.c.position)
        ).all()
        return TaskRecord(
            id=row.id,
            name=row.name,
            project=row.project,
            type=row.type,
            status=row.status,
            comment=row.comment,
            tags=list(row.tags),
            system_tags=list(row.system_tags),
            created=utc(row.created),
            last_update=utc(row.last_update),
            output_destination=row.output_destination,
            hyperparams=dict(row.hyperparams),
            labels=dict(row.labels),
            model_config=row.model_config,
            last_iteration=row.last_iteration,
            input_models=[TaskModelEntry(e.name, e.model) for e in entries if e.kind == "input"],
            output_models=[TaskModelEntry(e.name, e.model) for e in entries if e.kind == "output"],
            document=dict(row.document or {}),
        )

    def _task_row(self, conn: sa.Connection, task_id: str, lock: bool = False) -> Any:
        query = sa.select(s.tasks).where(s.tasks.c.id == task_id)
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise TaskNotFoundError(f"with id {task_id!r}")
        return row

    def create_task(
        self,
        *,
        name: str,
        project: str | None,
        type: str = "training",
        tags: list[str] | None = None,
        comment: str = "",
        output_destination: str | None = None,
        system_tags: list[str] | None = None,
    ) -> TaskRecord:
        system_tags = self._check_tags("system_tags", system_tags)
        task_id, stamp = new_id(), now()
        with self._write() as conn:
            conn.execute(
                sa.insert(s.tasks).values(
                    id=task_id,
                    name=name,
                    project=project,
                    type=type,
                    status="created",
                    comment=comment or "",
                    tags=list(tags or []),
                    system_tags=system_tags,
                    created=stamp,
                    last_update=stamp,
                    output_destination=output_destination,
                    hyperparams={},
                    labels={},
                    model_config="",
                    last_iteration=0,
                )
            )
            return self._task(conn, self._task_row(conn, task_id))

    def get_task(self, task_id: str) -> TaskRecord:
        with self._read() as conn:
            return self._task(conn, self._task_row(conn, task_id))

    def find_tasks(self, *, project: str | None, name: str) -> list[TaskRecord]:
        t = s.tasks
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t)
                .where(t.c.project == project, t.c.name == name)
                .order_by(t.c.seq.desc())
            ).all()
            return [self._task(conn, r) for r in rows]

    def project_tasks(self, projects: list[str] | None) -> list[TaskRecord]:
        """Every task of these projects (of all, for None), newest created first (the server's
        ``tasks.get_all`` filters them further)."""
        t = s.tasks
        query = sa.select(t).order_by(t.c.seq.desc())
        if projects is not None:
            query = query.where(t.c.project.in_(projects))
        with self._read() as conn:
            return [self._task(conn, r) for r in conn.execute(query).all()]

    def update_task(self, task_id: str, **fields: Any) -> TaskRecord:
        """See :meth:`Backend.update_task`; the store also takes ``drop_hyperparams``, a list of
        ``(section, name)`` to remove (``name`` None: the whole section), applied first, and
        ``document`` (:func:`~modelbook.store.extras.merge_document`)."""
        hyperparams = fields.pop("hyperparams", None)
        document = fields.pop("document", None)
        dropped = fields.pop("drop_hyperparams", None) or []
        last_iteration = fields.pop("last_iteration", None)
        unknown = set(fields) - _TASK_FIELDS
        if unknown:
            raise InvalidArgumentError(
                f"unknown task fields {sorted(unknown)}; accepted: {sorted(_TASK_FIELDS)}"
            )
        with self._write() as conn:
            row = self._task_row(conn, task_id, lock=True)
            values = dict(fields, last_update=now())
            if hyperparams or dropped:
                merged = {k: dict(v) for k, v in row.hyperparams.items()}
                for section, name in dropped:
                    if name is None:
                        merged.pop(section, None)
                    else:
                        merged.get(section, {}).pop(name, None)
                for section, params in (hyperparams or {}).items():
                    merged.setdefault(section, {}).update({k: str(v) for k, v in params.items()})
                values["hyperparams"] = {k: v for k, v in merged.items() if v}
            if last_iteration is not None:
                values["last_iteration"] = max(row.last_iteration, int(last_iteration))
            if document:
                values["document"] = merge_document(row.document, document)
            conn.execute(sa.update(s.tasks).where(s.tasks.c.id == task_id).values(**values))
            return self._task(conn, self._task_row(conn, task_id))

    def set_task_model(self, task_id: str, kind: str, name: str, model_id: str) -> TaskRecord:
        if kind not in ("input", "output"):
            raise InvalidArgumentError(f"task model kind must be 'input' or 'output', got {kind!r}")
        tm = s.task_models
        with self._write() as conn:
            self._task_row(conn, task_id, lock=True)
            key = (tm.c.task == task_id) & (tm.c.kind == kind) & (tm.c.name == name)
            position = conn.execute(sa.select(tm.c.position).where(key)).scalar()
            if position is None:
                last = conn.execute(
                    sa.select(sa.func.max(tm.c.position)).where(tm.c.task == task_id)
                ).scalar()
                position = (last or 0) + 1
                conn.execute(
                    sa.insert(tm).values(
                        task=task_id, kind=kind, name=name, model=model_id, position=position
                    )
                )
            else:
                conn.execute(sa.update(tm).where(key).values(model=model_id))
            conn.execute(
                sa.update(s.tasks).where(s.tasks.c.id == task_id).values(last_update=now())
            )
            return self._task(conn, self._task_row(conn, task_id))
