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
)
from modelbook.records import (
    Metadata,
    ModelQuery,
    ModelRecord,
    ModelVersionRecord,
)
from modelbook.store import objects
from modelbook.store import schema as s
from modelbook.store.engine import make_engine, new_id, now, utc
from modelbook.store.extras import ExtraVerbs, drop_model
from modelbook.store.objects import ObjectVerbs
from modelbook.store.query import select_models, where
from modelbook.store.reports import ReportVerbs
from modelbook.store.scalars import ScalarVerbs
from modelbook.store.tasks import TaskVerbs

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
#: What a published model refuses to change: its weights, design and labels.
_FROZEN_WHEN_PUBLISHED = frozenset({"uri", "sha256", "size", "design", "labels"})


class SqlStore(TaskVerbs, ObjectVerbs, ScalarVerbs, ReportVerbs, ExtraVerbs, Backend):
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
