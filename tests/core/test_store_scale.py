"""At 100 000 models the common queries use an index, never a full table walk, and a
newest-first tag query stops at its limit instead of collecting every model with the tag.

Timing is a benchmark's job (bench/); these tests assert the query plans and the number of
SQLite VM steps a query takes, which do not depend on the machine, over a store filled with
100 000 models in bulk.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelbook.backends.embedded import EmbeddedBackend
from modelbook.records import ModelQuery
from modelbook.store import schema as s
from modelbook.store.query import driving_tag, order, select_models, where
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
    plan = _plan(store, select_models(query).limit(5))  # what SqlStore.query_models runs
    assert "SCAN models" not in plan, plan
    found = store.query_models(query)
    assert 1 <= len(found) <= 5
    assert all("archived" not in m.system_tags for m in found)


def _plan(store: EmbeddedBackend, stmt: sa.Select) -> str:
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store._read() as conn:
        return " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


def _vm_steps(store: EmbeddedBackend, stmt: sa.Select) -> tuple[int, list[int]]:
    """The SQLite VM instructions ``stmt`` executes (a progress handler called on each, on a
    connection of its own), and the model seqs it returns."""
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn = sqlite3.connect(str(store.engine.url.database))
    try:
        conn.set_progress_handler(count, 1)
        seqs = [row[0] for row in conn.execute(sql)]
    finally:
        conn.close()
    return steps, seqs


DRIVEN = ["common tag", "tag and exclusion", "all of two tags", "rare tag"]


@pytest.mark.parametrize("kind", DRIVEN)
def test_newest_first_tag_query_stops_at_the_limit(
    big_store: tuple[EmbeddedBackend, str], kind: str
) -> None:
    """The tag index is walked backwards from the newest model and the walk stops after 5
    matches: no list of every tagged model (LIST SUBQUERY), no sort (TEMP B-TREE), fewer VM
    steps than there are models with the tag; the same models as the plain IN-list form."""
    store, project = big_store
    query = ModelQuery(projects=[project], system_tags=["-archived"], **QUERIES[kind])
    driven = select_models(query)
    plan = _plan(store, driven.limit(5))
    assert "SEARCH driver USING COVERING INDEX ix_model_tags_tag" in plan, plan
    assert "LIST SUBQUERY" not in plan and "TEMP B-TREE" not in plan, plan
    plain = sa.select(s.models).where(*where(query)).order_by(*order(query.order_by))
    steps, newest = _vm_steps(store, driven.limit(5))
    plain_steps, plain_newest = _vm_steps(store, plain.limit(5))
    assert newest == plain_newest and 1 <= len(newest) <= 5
    assert _vm_steps(store, driven)[1] == _vm_steps(store, plain)[1]  # every match, in order
    driver = driving_tag(query)
    assert driver is not None
    mt = s.model_tags.c
    with store._read() as conn:
        tagged = conn.execute(
            sa.select(sa.func.count()).where(mt.kind == driver[0], mt.tag == driver[1])
        ).scalar_one()
    if tagged > 1000:  # a common tag: the walk must end long before the last tagged model
        assert steps < tagged < plain_steps, (steps, tagged, plain_steps)
