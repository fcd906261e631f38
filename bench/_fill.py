"""Fill registries with many models in bulk, for the query and server benchmarks.

* modelbook: rows inserted straight into ``modelbook.store.schema`` tables through a
  ``SqlStore`` connection (as ``tests/core/test_store_scale.py`` does), then the store's own
  statistics refresh (ANALYZE);
* MLflow: rows inserted with SQLAlchemy Core into the tables of MLflow's own ORM models, in a
  database whose schema MLflow's ``SqlAlchemyStore`` created (all migrations run).

Both get the same shape: model ``i`` is named ``m<i>`` and carries 3 of 50 tags ``t0``..``t49``
(seeded, so both stores hold the same tags); in modelbook every tenth model is archived.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

PROJECT = "scale"
TAGS = [f"t{i}" for i in range(50)]
BATCH = 20_000


def tag_sets(n: int, seed: int = 0) -> Iterator[list[str]]:
    """The tags of models 0..n-1."""
    rng = random.Random(seed)
    for _ in range(n):
        yield rng.sample(TAGS, 3)


def fill_modelbook(url: str, n: int) -> str:
    """Add ``n`` models to the modelbook store at ``url`` (project ``scale``); its id."""
    import sqlalchemy as sa

    from modelbook.store import schema as s
    from modelbook.store.sql import SqlStore, new_id, now

    store = SqlStore(url)
    try:
        project = store.get_or_create_project(PROJECT).id
        stamp = now()
        tags = tag_sets(n)
        for first in range(0, n, BATCH):
            rows = [
                {
                    "id": new_id(),
                    "name": f"m{i}",
                    "project": project,
                    "tags": next(tags),
                    "system_tags": ["archived"] if i % 10 == 0 else [],
                    "labels": {},
                    "created": stamp,
                    "last_update": stamp,
                }
                for i in range(first, min(n, first + BATCH))
            ]
            with store._write() as conn:
                conn.execute(sa.insert(s.models), rows)
                names = [r["id"] for r in rows]
                found = conn.execute(
                    sa.select(s.models.c.seq, s.models.c.tags, s.models.c.system_tags).where(
                        s.models.c.id.in_(names)
                    )
                )
                tag_rows = [
                    {"model_seq": seq, "kind": kind, "tag": tag}
                    for seq, user, system in found
                    for kind, values in (("u", user), ("s", system))
                    for tag in values
                ]
                conn.execute(sa.insert(s.model_tags), tag_rows)
        store._refresh_statistics()
        return project
    finally:
        store.close()


def fill_mlflow(db_uri: str, n: int, versions_per_model: int = 10) -> None:
    """Add ``n`` model versions (``n / versions_per_model`` registered models), each version
    and each registered model with 3 tags ``t<k> = "1"``, to the MLflow registry database
    ``db_uri`` (``sqlite:///...``)."""
    import sqlalchemy as sa
    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlModelVersionTag,
        SqlRegisteredModel,
        SqlRegisteredModelTag,
    )
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(db_uri)  # creates the schema (all of MLflow's migrations)
    millis = int(time.time() * 1000)
    tags = tag_sets(n)
    models = -(-n // versions_per_model)
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(SqlRegisteredModel.__table__),
            [
                {
                    "name": f"m{k}",
                    "creation_time": millis,
                    "last_updated_time": millis,
                    "description": "",
                }
                for k in range(models)
            ],
        )
        conn.execute(
            sa.insert(SqlRegisteredModelTag.__table__),
            [
                {"name": f"m{k}", "key": t, "value": "1"}
                for k, chosen in enumerate(tag_sets(models, seed=1))
                for t in chosen
            ],
        )
        for first in range(0, n, BATCH):
            versions, version_tags = [], []
            for i in range(first, min(n, first + BATCH)):
                name, version = f"m{i // versions_per_model}", i % versions_per_model + 1
                versions.append(
                    {
                        "name": name,
                        "version": version,
                        "creation_time": millis + i,
                        "last_updated_time": millis + i,
                        "description": "",
                        "current_stage": "None",
                        "source": f"models:/m{i}",
                        "status": "READY",
                    }
                )
                version_tags += [
                    {"name": name, "version": version, "key": t, "value": "1"} for t in next(tags)
                ]
            conn.execute(sa.insert(SqlModelVersion.__table__), versions)
            conn.execute(sa.insert(SqlModelVersionTag.__table__), version_tags)
    store.engine.dispose()
