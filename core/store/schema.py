"""The registry's tables (SQLAlchemy Core) and the migrations that build them.

One schema serves SQLite (the embedded store and the default server) and PostgreSQL. Each
migration is a function taking a connection; ``migrate`` runs the ones a database has not
seen yet, inside one transaction, and records the version reached.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import sqlalchemy as sa

metadata = sa.MetaData()

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(1024), nullable=False, unique=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("default_output_destination", sa.Text),
    #: ClearML fields modelbook does not model (description, tags); NULL reads as {} (v3).
    sa.Column("document", sa.JSON),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(1024), nullable=False),
    sa.Column("project", sa.String(64), index=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("system_tags", sa.JSON, nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_update", sa.DateTime(timezone=True), nullable=False),
    sa.Column("output_destination", sa.Text),
    sa.Column("hyperparams", sa.JSON, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("model_config", sa.Text, nullable=False, default=""),
    sa.Column("last_iteration", sa.Integer, nullable=False, default=0),
    #: The ClearML fields a client writes that modelbook does not model (script, runtime,
    #: container, execution but its labels, configuration sections but the model design,
    #: hyper-parameter types and descriptions, parent); NULL reads as {} (v3).
    sa.Column("document", sa.JSON),
    sa.Index("ix_tasks_project_name", "project", "name"),
)

task_models = sa.Table(
    "task_models",
    metadata,
    sa.Column("task", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("name", sa.String(1024), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(1024), nullable=False, index=True),
    sa.Column("project", sa.String(64)),
    sa.Column("task", sa.String(64), index=True),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("system_tags", sa.JSON, nullable=False),
    sa.Column("framework", sa.String(128)),
    sa.Column("design", sa.Text, nullable=False, default=""),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("uri", sa.Text),
    sa.Column("ready", sa.Boolean, nullable=False, default=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_update", sa.DateTime(timezone=True), nullable=False),
    sa.Column("iteration", sa.Integer),
    sa.Column("parent", sa.String(64)),
    sa.Column("sha256", sa.String(64)),
    sa.Column("size", sa.BigInteger),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Index("ix_models_project_seq", "project", "seq"),
    sa.Index("ix_models_project_name_seq", "project", "name", "seq"),
    sa.Index("ix_models_uri", "uri"),
)

#: One row per (model, tag); kind "u" = user tag, "s" = system tag. Queries filter on it.
model_tags = sa.Table(
    "model_tags",
    metadata,
    sa.Column("model_seq", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(1), primary_key=True),
    sa.Column("tag", sa.String(1024), primary_key=True),
    sa.Index("ix_model_tags_tag", "kind", "tag", "model_seq"),
)

model_metadata = sa.Table(
    "model_metadata",
    metadata,
    sa.Column("model_seq", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(1024), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Index("ix_model_metadata_kv", "key", "value"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("model_seq", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("size", sa.BigInteger),
    sa.Column("iteration", sa.Integer),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("pruned", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_model_versions_uri", "uri"),
)

#: Every stored object the registry knows of: what it holds, whether the registry wrote it
#: (``owned``: only those are ever deleted) and where it is in its life (:data:`OBJECT_STATES`).
objects = sa.Table(
    "objects",
    metadata,
    sa.Column("uri", sa.String(4096), primary_key=True),
    sa.Column("sha256", sa.String(64)),
    sa.Column("size", sa.BigInteger),
    sa.Column("owned", sa.Boolean, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_objects_state_updated", "state", "updated"),
)
#: ``pending``: being written, not referenced yet; ``live``: stored completely (referenced, or
#: kept until gc finds it unreferenced); ``doomed``: unreferenced, its bytes are being deleted.
OBJECT_STATES = ("pending", "live", "doomed")

#: Reported scalar values, one row per (task or model, metric, variant, iteration): a
#: value reported again for the same iteration replaces the first. ``task`` is NULL for the
#: values a ClearML client reports on a model; ``model`` optionally names the model a task's
#: value describes. ``timestamp``: milliseconds since the epoch.
scalars = sa.Table(
    "scalars",
    metadata,
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
        autoincrement=True,
    ),
    sa.Column("task", sa.String(64)),
    sa.Column("model", sa.String(64)),
    sa.Column("metric", sa.String(255), nullable=False),
    sa.Column("variant", sa.String(255), nullable=False),
    sa.Column("iteration", sa.BigInteger, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Index("ix_scalars_task_series", "task", "metric", "variant", "iteration"),
    sa.Index("ix_scalars_model_series", "model", "metric", "variant", "iteration"),
)

#: Reported plots and text (``modelbook.store.reports``): of a task, or (task NULL) a model.
reports = sa.Table(
    "reports",
    metadata,
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
        autoincrement=True,
    ),
    sa.Column("task", sa.String(64)),
    sa.Column("model", sa.String(64)),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(255), nullable=False),
    sa.Column("variant", sa.String(255), nullable=False),
    sa.Column("iteration", sa.BigInteger, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_reports_task_kind", "task", "kind"),
    sa.Index("ix_reports_model_kind", "model", "kind"),
)

#: Per task and series, what ClearML's ``last_metrics`` shows, kept up to date as values
#: arrive (as ClearML's server does: a value reported again counts again, and min / max
#: never forget a replaced value).
scalar_stats = sa.Table(
    "scalar_stats",
    metadata,
    sa.Column("task", sa.String(64), primary_key=True),
    sa.Column("metric", sa.String(255), primary_key=True),
    sa.Column("variant", sa.String(255), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("total", sa.Float, nullable=False),
    sa.Column("first_value", sa.Float, nullable=False),
    sa.Column("first_iteration", sa.BigInteger, nullable=False),
    sa.Column("min_value", sa.Float, nullable=False),
    sa.Column("min_iteration", sa.BigInteger, nullable=False),
    sa.Column("max_value", sa.Float, nullable=False),
    sa.Column("max_iteration", sa.BigInteger, nullable=False),
    sa.Column("last_value", sa.Float, nullable=False),
    sa.Column("last_iteration", sa.BigInteger, nullable=False),
    sa.Column("last_timestamp", sa.BigInteger, nullable=False),
)

#: Key-value settings of one store (e.g. the server's signing key); never secrets in clear.
settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
)


def _v1_initial(conn: sa.Connection) -> None:
    """A new database: every table as this version defines it (later migrations see that
    and skip what is already there)."""
    metadata.create_all(conn)


def _v2_ownership(conn: sa.Connection) -> None:
    """Object ownership: the ``objects`` table, pruned versions, versions found by URI.

    Every object already referenced is recorded as *not* owned: nothing written before
    ownership was tracked is ever deleted by modelbook.
    """
    if sa.inspect(conn).has_table("objects"):
        return  # created by _v1_initial on a new database
    conn.execute(
        sa.text("ALTER TABLE model_versions ADD COLUMN pruned BOOLEAN NOT NULL DEFAULT FALSE")
    )
    sa.Index("ix_model_versions_uri", model_versions.c.uri).create(conn)
    objects.create(conn)
    known = sa.union(
        sa.select(model_versions.c.uri, model_versions.c.sha256, model_versions.c.size),
        sa.select(models.c.uri, models.c.sha256, models.c.size).where(models.c.uri.isnot(None)),
    ).subquery()
    rows = conn.execute(
        sa.select(known.c.uri, sa.func.max(known.c.sha256), sa.func.max(known.c.size))
        .group_by(known.c.uri)
    ).all()
    stamp = datetime.now(timezone.utc)
    if rows:
        conn.execute(sa.insert(objects), [
            {"uri": uri, "sha256": sha, "size": size, "owned": False, "state": "live",
             "created": stamp, "updated": stamp}
            for uri, sha, size in rows
        ])  # fmt: skip


def _v3_documents_and_scalars(conn: sa.Connection) -> None:
    """ClearML documents and reported scalars: ``tasks.document`` and ``projects.document``
    (NULL on existing rows, read as empty), the ``scalars`` and ``scalar_stats`` tables."""
    if sa.inspect(conn).has_table("scalars"):
        return  # created by _v1_initial on a new database
    json_type = sa.JSON().compile(dialect=conn.dialect)
    for table in ("tasks", "projects"):
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN document {json_type}"))
    scalars.create(conn)
    scalar_stats.create(conn)


def _v4_reports(conn: sa.Connection) -> None:
    """Reported plots and text: the ``reports`` table."""
    if not sa.inspect(conn).has_table("reports"):
        reports.create(conn)


#: The migrations, in order; index + 1 is the version each one brings the schema to.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [
    _v1_initial, _v2_ownership, _v3_documents_and_scalars, _v4_reports,
]  # fmt: skip
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0


def migrate(conn: sa.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` and return the version found before."""
    found = current_version(conn)
    if found > SCHEMA_VERSION:
        from modelbook.errors import ConfigurationError

        raise ConfigurationError(
            f"this store has schema version {found}, newer than this modelbook "
            f"(which knows up to {SCHEMA_VERSION}); upgrade modelbook: pip install -U modelbook"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version - 1](conn)
        conn.execute(sa.insert(schema_version).values(version=version))
    return found
