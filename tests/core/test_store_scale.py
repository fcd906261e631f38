"""At 100 000 models the common queries use an index, never a full table walk.

Timing is a benchmark's job (bench/); this test asserts the query plans, which do not
depend on the machine, over a store filled with 100 000 models in bulk.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelbook.backends.embedded import EmbeddedBackend
from modelbook.records import ModelQuery
from modelbook.store import schema as s
from modelbook.store.query import order, where
from modelbook.store.sql import new_id, now

pytestmark = pytest.mark.embedded_only  # the embedded store's query plans
N = 100_000


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[EmbeddedBackend, str]:
    store = EmbeddedBackend(Path(tmp_path_factory.mktemp("scale")))
    project = store.get_or_create_project("scale").id
    rng, tags, stamp = random.Random(0), [f"t{i}" for i in range(50)], now()
    rows = [
        {
            "id": new_id(),
            "name": f"m{i}",
            "project": project,
            "tags": rng.sample(tags, 3),
            "system_tags": ["archived"] if i % 10 == 0 else [],
            "labels": {},
            "created": stamp,
            "last_update": stamp,
        }
        for i in range(N)
    ]
    with store._write() as conn:
        conn.execute(sa.insert(s.models), rows)
        tag_rows = [
            {"model_seq": seq, "kind": kind, "tag": tag}
            for seq, user, system in conn.execute(
                sa.select(s.models.c.seq, s.models.c.tags, s.models.c.system_tags)
            )
            for kind, values in (("u", user), ("s", system))
            for tag in values
        ]
        conn.execute(sa.insert(s.model_tags), tag_rows)
        conn.execute(sa.insert(s.model_tags).values(model_seq=7, kind="u", tag="rare"))
    store._refresh_statistics()
    return store, project


QUERIES = {
    "common tag": {"tags": ["t1"]},
    "tag and exclusion": {"tags": ["t1", "-t2"]},
    "all of two tags": {"tags": ["__$all", "t1", "t2"]},
    "rare tag": {"tags": ["rare"]},
    "exact name": {"name": "m501"},
}


@pytest.mark.parametrize("kind", list(QUERIES))
def test_queries_use_indexes(big_store: tuple[EmbeddedBackend, str], kind: str) -> None:
    store, project = big_store
    query = ModelQuery(projects=[project], system_tags=["-archived"], limit=5, **QUERIES[kind])
    stmt = (
        sa.select(s.models)
        .where(*where(query))
        .order_by(*order(query.order_by))
        .limit(5)
    )
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store._read() as conn:
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "SCAN models" not in plan, plan
    found = store.query_models(query)
    assert 1 <= len(found) <= 5
    assert all("archived" not in m.system_tags for m in found)
