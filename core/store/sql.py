"""The registry store on SQL: SQLite for the embedded store and the default server,
PostgreSQL for teams. It implements the abstract :class:`~modelbook.backends.base.Backend`
verbs, so the embedded backend and the server share one implementation of every query.

Writes take the database's write lock up front (``BEGIN IMMEDIATE`` on SQLite, row locks on
PostgreSQL) and change only the fields they are given, so several processes sharing one
store never lose each other's updates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from modelbook.backends.base import Backend
from modelbook.errors import (
    InvalidArgumentError,
    ModelNotFoundError,
    ModelPublishedError,
    TaskNotFoundError,
)
from modelbook.records import (
    Metadata,
    ModelQuery,
    ModelRecord,
    ModelVersionRecord,
    ProjectRecord,
    TaskModelEntry,
    TaskRecord,
)
from modelbook.store import objects
from modelbook.store import schema as s
from modelbook.store.engine import make_engine, new_id, now, utc
from modelbook.store.extras import ExtraVerbs, drop_model, merge_document
from modelbook.store.objects import ObjectVerbs
from modelbook.store.query import select_models, where
from modelbook.store.reports import ReportVerbs
from modelbook.store.scalars import ScalarVerbs

_MODEL_FIELDS = {
    "name",
    "project",
    "task",
    "comment",
    "tags",
    "system_tags",
    "framework",
    "design",
    "labels",
    "uri",
    "ready",
    "iteration",
    "parent",
    "sha256",
    "size",
}
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
#: What a published model refuses to change: its weights, design and labels.
_FROZEN_WHEN_PUBLISHED = frozenset({"uri", "sha256", "size", "design", "labels"})


class SqlStore(ObjectVerbs, ScalarVerbs, ReportVerbs, ExtraVerbs, Backend):
    """Projects, tasks and models in a SQL database.

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:////home/me/.modelbook/store.db`` or
            ``postgresql+psycopg://user@127.0.0.1:5432/modelbook``.
        statement_timeout: seconds any one SQL statement may run before it is stopped
            with :class:`~modelbook.errors.StatementTimeoutError` (the server sets it; the
            embedded store has no limit).

    Example:
        >>> store = SqlStore("sqlite://")
        >>> project = store.get_or_create_project("demo")
        >>> store.create_model(name="m", project=project.id).project == project.id
        True
    """

    kind = "sql"

    def __init__(self, url: str, *, statement_timeout: float | None = None) -> None:
        self.url = url
        self.engine = make_engine(url, statement_timeout)
        self._created_since_check = 0
        with self._write() as conn:
            s.migrate(conn)
        self._refresh_statistics()

    def _refresh_statistics(self) -> None:
        """Run ANALYZE on SQLite when the model count has doubled since the last one.

        Without statistics SQLite cannot tell a rare tag from a common one and may walk the
        whole table (PostgreSQL's autovacuum keeps its own statistics).
        """
        if self.engine.dialect.name != "sqlite":
            return
        with self._write() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(s.models)).scalar() or 0
            where = s.settings.c.key == "analyzed_models"
            last = int(conn.execute(sa.select(s.settings.c.value).where(where)).scalar() or 0)
            if count >= 1000 and count > 2 * last:
                conn.exec_driver_sql("ANALYZE")
                conn.execute(sa.delete(s.settings).where(where))
                conn.execute(sa.insert(s.settings).values(key="analyzed_models", value=str(count)))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(modelbook_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

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

    # -- models ---------------------------------------------------------------------------
    def _model_row(self, conn: sa.Connection, model_id: str, lock: bool = False) -> Any:
        query = sa.select(s.models).where(s.models.c.id == model_id)
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise ModelNotFoundError(model_id)
        return row

    def _models(self, conn: sa.Connection, rows: Sequence[Any]) -> list[ModelRecord]:
        if not rows:
            return []
        md = s.model_metadata
        meta: dict[int, dict[str, dict[str, str]]] = {r.seq: {} for r in rows}
        for chunk_start in range(0, len(rows), 500):
            seqs = [r.seq for r in rows[chunk_start : chunk_start + 500]]
            for m in conn.execute(
                sa.select(md).where(md.c.model_seq.in_(seqs)).order_by(md.c.position)
            ):
                meta[m.model_seq][m.key] = {"key": m.key, "value": m.value, "type": m.type}
        return [
            ModelRecord(
                id=r.id,
                name=r.name,
                project=r.project,
                task=r.task,
                comment=r.comment,
                tags=list(r.tags),
                system_tags=list(r.system_tags),
                framework=r.framework,
                design=r.design,
                labels=dict(r.labels),
                uri=r.uri,
                ready=bool(r.ready),
                created=utc(r.created),
                last_update=utc(r.last_update),
                iteration=r.iteration,
                parent=r.parent,
                metadata=meta[r.seq],
                sha256=r.sha256,
                size=r.size,
                version=r.version,
            )
            for r in rows
        ]

    @staticmethod
    def _check_tags(name: str, tags: Any) -> list[str]:
        if tags is None:
            return []
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise InvalidArgumentError(
                f"{name} must be a list of strings, got {tags!r}"
                + (f"; did you mean [{tags!r}]?" if isinstance(tags, str) else "")
            )
        return list(dict.fromkeys(tags))

    @staticmethod
    def _write_tags(conn: sa.Connection, seq: int, kind: str, tags: list[str]) -> None:
        mt = s.model_tags
        conn.execute(sa.delete(mt).where(mt.c.model_seq == seq, mt.c.kind == kind))
        if tags:
            conn.execute(sa.insert(mt), [{"model_seq": seq, "kind": kind, "tag": t} for t in tags])

    def create_model(self, **fields: Any) -> ModelRecord:
        unknown = set(fields) - _MODEL_FIELDS - {"metadata", "id"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown model fields {sorted(unknown)}; accepted: {sorted(_MODEL_FIELDS)}"
            )
        metadata = fields.pop("metadata", None) or {}
        tags = self._check_tags("tags", fields.pop("tags", None))
        system_tags = self._check_tags("system_tags", fields.pop("system_tags", None))
        model_id, stamp = fields.pop("id", None) or new_id(), now()
        values = {
            "comment": "",
            "design": "",
            "labels": {},
            "ready": False,
            "version": 0,
            **fields,
            "id": model_id,
            "tags": tags,
            "system_tags": system_tags,
            "created": stamp,
            "last_update": stamp,
        }
        if not values.get("name"):
            values["name"] = f"Anonymous model {stamp:%Y-%m-%d %H:%M:%S}"
        with self._write() as conn:
            if values.get("uri"):  # weights registered from elsewhere: recorded, never ours
                objects.reference(conn, values["uri"], values.get("sha256"), values.get("size"),
                                  owned=False)  # fmt: skip
            inserted = conn.execute(sa.insert(s.models).values(**values)).inserted_primary_key
            seq = inserted[0] if inserted is not None else self._model_row(conn, model_id).seq
            self._write_tags(conn, seq, "u", tags)
            self._write_tags(conn, seq, "s", system_tags)
            if metadata:
                self._write_metadata(conn, seq, metadata, replace=True)
            record = self._models(conn, [self._model_row(conn, model_id)])[0]
        self._created_since_check += 1
        if self._created_since_check >= 1000:
            self._created_since_check = 0
            self._refresh_statistics()
        return record

    def get_model(self, model_id: str) -> ModelRecord:
        with self._read() as conn:
            return self._models(conn, [self._model_row(conn, model_id)])[0]

    def update_model(self, model_id: str, **fields: Any) -> ModelRecord:
        add_system = self._check_tags("add_system_tags", fields.pop("add_system_tags", None))
        remove_system = set(fields.pop("remove_system_tags", None) or [])
        unknown = set(fields) - _MODEL_FIELDS
        if unknown:
            raise InvalidArgumentError(
                f"unknown model fields {sorted(unknown)}; accepted: {sorted(_MODEL_FIELDS)}"
            )
        with self._write() as conn:
            row = self._model_row(conn, model_id, lock=True)
            frozen = sorted(_FROZEN_WHEN_PUBLISHED & set(fields))
            if fields.get("ready") is False:
                frozen.append("ready (a published model cannot be unpublished)")
            if row.ready and frozen:
                raise ModelPublishedError(model_id, row.name, f"change {', '.join(frozen)}")
            if fields.get("uri") and fields["uri"] != row.uri:
                objects.reference(conn, fields["uri"], fields.get("sha256"), fields.get("size"),
                                  owned=False)  # fmt: skip
            values = dict(fields, last_update=now())
            if "tags" in fields:
                values["tags"] = self._check_tags("tags", fields["tags"])
                self._write_tags(conn, row.seq, "u", values["tags"])
            if add_system or remove_system or "system_tags" in fields:
                base = self._check_tags("system_tags", fields.get("system_tags", row.system_tags))
                merged = [t for t in base if t not in remove_system]
                merged += [t for t in add_system if t not in merged]
                values["system_tags"] = merged
                self._write_tags(conn, row.seq, "s", merged)
            conn.execute(sa.update(s.models).where(s.models.c.seq == row.seq).values(**values))
            return self._models(conn, [self._model_row(conn, model_id)])[0]

    def add_model_version(
        self,
        model_id: str,
        *,
        uri: str,
        sha256: str | None,
        size: int | None,
        iteration: int | None,
        comment: str | None = None,
        framework: str | None = None,
        is_package: bool = False,
        metadata: Metadata | None = None,
        owned: bool = True,
    ) -> ModelRecord:
        with self._write() as conn:
            row = self._model_row(conn, model_id, lock=True)
            if row.ready:
                raise ModelPublishedError(model_id, row.name, "update the weights")
            objects.reference(conn, uri, sha256, size, owned)
            if metadata:
                self._write_metadata(conn, row.seq, metadata, replace=False)
            version, stamp = row.version + 1, now()
            values: dict[str, Any] = {
                "uri": uri,
                "sha256": sha256,
                "size": size,
                "version": version,
                "last_update": stamp,
            }
            if iteration is not None:
                values["iteration"] = iteration
            if comment is not None:
                values["comment"] = comment
            if framework is not None:
                values["framework"] = framework
            if is_package and "package" not in row.system_tags:
                values["system_tags"] = [*row.system_tags, "package"]
                self._write_tags(conn, row.seq, "s", values["system_tags"])
            conn.execute(sa.update(s.models).where(s.models.c.seq == row.seq).values(**values))
            snapshot = self._models(conn, [row])[0].metadata
            conn.execute(
                sa.insert(s.model_versions).values(
                    model_seq=row.seq,
                    version=version,
                    uri=uri,
                    sha256=sha256,
                    size=size,
                    iteration=iteration,
                    created=stamp,
                    comment=comment or "",
                    metadata=snapshot,
                )
            )
            if iteration is not None and row.task:
                t = s.tasks
                conn.execute(
                    sa.update(t)
                    .where(t.c.id == row.task, t.c.last_iteration < iteration)
                    .values(last_iteration=iteration)
                )
            return self._models(conn, [self._model_row(conn, model_id)])[0]

    def list_model_versions(self, model_id: str) -> list[ModelVersionRecord]:
        with self._read() as conn:
            return self._versions(conn, self._model_row(conn, model_id))

    @staticmethod
    def _versions(conn: sa.Connection, row: Any) -> list[ModelVersionRecord]:
        mv = s.model_versions
        rows = conn.execute(
            sa.select(mv).where(mv.c.model_seq == row.seq).order_by(mv.c.version)
        ).all()
        return [
            ModelVersionRecord(
                model=row.id, version=v.version, uri=v.uri, sha256=v.sha256, size=v.size,
                iteration=v.iteration, created=utc(v.created), comment=v.comment,
                metadata=dict(v.metadata), pruned=bool(v.pruned),
            )
            for v in rows
        ]  # fmt: skip

    def delete_model(
        self, model_id: str, delete_objects: bool = True, force: bool = True
    ) -> list[str]:
        refusal = None if force else self.deletion_refusal(model_id)
        if refusal is not None:
            raise refusal
        with self._write() as conn:
            uris = drop_model(conn, self._model_row(conn, model_id, lock=True))
            if not delete_objects:
                objects.disown(conn, uris)
                return []
            return objects.doom_unreferenced(conn, uris)

    @staticmethod
    def _write_metadata(
        conn: sa.Connection, seq: int, items: dict[str, Any], replace: bool
    ) -> None:
        md = s.model_metadata
        if replace:
            conn.execute(sa.delete(md).where(md.c.model_seq == seq))
        last = conn.execute(
            sa.select(sa.func.max(md.c.position)).where(md.c.model_seq == seq)
        ).scalar()
        position = last or 0
        for key, item in items.items():
            value, v_type = item["value"], item["type"]
            key_match = (md.c.model_seq == seq) & (md.c.key == str(key))
            updated = conn.execute(
                sa.update(md).where(key_match).values(value=str(value), type=str(v_type))
            ).rowcount
            if not updated:
                position += 1
                conn.execute(
                    sa.insert(md).values(
                        model_seq=seq,
                        key=str(key),
                        value=str(value),
                        type=str(v_type),
                        position=position,
                    )
                )

    def set_model_metadata(
        self, model_id: str, items: Metadata, replace: bool = False
    ) -> ModelRecord:
        with self._write() as conn:
            row = self._model_row(conn, model_id, lock=True)
            self._write_metadata(conn, row.seq, items, replace)
            conn.execute(
                sa.update(s.models).where(s.models.c.seq == row.seq).values(last_update=now())
            )
            return self._models(conn, [self._model_row(conn, model_id)])[0]

    # -- queries (compiled by modelbook.store.query) -------------------------------------
    def query_models(self, query: ModelQuery) -> list[ModelRecord]:
        stmt = select_models(query)
        if query.offset:
            stmt = stmt.offset(query.offset)
        if query.limit is not None:
            stmt = stmt.limit(query.limit)
        with self._read() as conn:
            return self._models(conn, conn.execute(stmt).all())

    def count_models(self, query: ModelQuery) -> int:
        stmt = sa.select(sa.func.count()).select_from(s.models).where(*where(query))
        with self._read() as conn:
            return conn.execute(stmt).scalar() or 0

    # -- settings and storage -------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(
                sa.select(s.settings.c.value).where(s.settings.c.key == key)
            ).scalar()

    def set_setting(self, key: str, value: str) -> None:
        with self._write() as conn:
            where = s.settings.c.key == key
            if not conn.execute(sa.update(s.settings).where(where).values(value=value)).rowcount:
                conn.execute(sa.insert(s.settings).values(key=key, value=value))

    def default_destination(self) -> str:
        raise InvalidArgumentError(
            "this store has no default weights destination; pass upload_uri= or output_uri="
        )
