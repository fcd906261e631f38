"""A store at schema version 2 with data in it, and the checks that its migration to
version 3 kept the data and brought the new tables (run on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from modelbook.records import ReportEvent, ScalarEvent
from modelbook.store import schema
from modelbook.store.sql import SqlStore


def make_v2_store(url: str) -> dict[str, Any]:
    """Fill a store, then take it back to what version 2 had: no ``document`` columns, no
    scalar or report tables, ``schema_version`` 2. Returns what was stored."""
    store = SqlStore(url)
    try:
        project = store.get_or_create_project("legacy")
        task = store.create_task(name="old run", project=project.id, tags=["kept"])
        task = store.update_task(task.id, hyperparams={"Args": {"lr": "0.1"}},
                                 model_config="layers: 3", status="completed")  # fmt: skip
        model = store.create_model(name="old model", project=project.id, task=task.id)
        model = store.add_model_version(model.id, uri="file:///old/w.pt", sha256="a" * 64,
                                        size=3, iteration=5)  # fmt: skip
        store.set_task_model(task.id, "output", "best", model.id)
    finally:
        store.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in ("scalar_stats", "scalars", "reports"):
            conn.execute(sa.text(f"DROP TABLE {table}"))
        for table in ("tasks", "projects"):
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN document"))
        conn.execute(sa.delete(schema.schema_version).where(schema.schema_version.c.version > 2))
        assert schema.current_version(conn) == 2
    engine.dispose()
    return {"project": project, "task": task, "model": model}


def check_migrated(url: str, before: dict[str, Any]) -> None:
    """Open the version 2 store: it migrates, keeps its data and takes the new fields."""
    store = SqlStore(url)
    try:
        with store.engine.connect() as conn:
            assert schema.current_version(conn) == schema.SCHEMA_VERSION == 4
        task, model = store.get_task(before["task"].id), store.get_model(before["model"].id)
        assert (task.name, task.tags, task.status) == ("old run", ["kept"], "completed")
        assert task.hyperparams == {"Args": {"lr": "0.1"}} and task.model_config == "layers: 3"
        assert task.document == {} and store.get_project(before["project"].id).document == {}
        assert [e.model for e in task.output_models] == [model.id]
        assert (model.uri, model.version, model.sha256) == ("file:///old/w.pt", 1, "a" * 64)
        assert [v.iteration for v in store.list_model_versions(model.id)] == [5]
        task = store.update_task(task.id, document={"script": {"entry_point": "old.py"}})
        assert task.document == {"script": {"entry_point": "old.py"}}
        store.add_scalars(task.id, [ScalarEvent("loss", "train", 1, 0.5)])
        assert store.scalar_series(task.id) == {"loss": {"train": ([1], [0.5])}}
        plot = ReportEvent("plot", "weights", "w", 1, {"plot_str": "{}"})
        assert store.add_reports(task.id, [plot]) == 1  # the v4 table, made by the migration
        assert [r.body for r in store.reports(task.id, "plot")] == [{"plot_str": "{}"}]
    finally:
        store.close()
