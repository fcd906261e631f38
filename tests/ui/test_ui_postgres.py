"""The models page's queries on PostgreSQL 15: keyset paging over every order (row-value
comparisons, ``coalesce``), the case-insensitive name filter and tags (about 1 s on the
session's cluster; skipped without PostgreSQL's binaries or psycopg)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest
from ui_seed import expected_order, paging_models

from modelbook.server.testing import postgres_bin_dir
from modelbook.server.ui.queries import SORTS, ModelFilter, models_page
from modelbook.store.sql import SqlStore

pytestmark = [
    pytest.mark.embedded_only,
    pytest.mark.skipif(
        importlib.util.find_spec("psycopg") is None or postgres_bin_dir() is None,
        reason="needs PostgreSQL's server binaries and psycopg (pip install 'modelbook[postgres]')",
    ),
]


@pytest.fixture
def store(postgres_database: str) -> Iterator[SqlStore]:
    opened = SqlStore(postgres_database)
    try:
        yield opened
    finally:
        opened.close()


def test_keyset_paging_and_filters_on_postgresql(store: SqlStore) -> None:
    made = paging_models(store)
    made[3] = store.update_model(made[3].id, tags=["keep"])  # a newer last update, too
    for sort in SORTS:
        chosen = ModelFilter.from_params({"project": "paging", "size": "5", "sort": sort})
        seen: list[str] = []
        while True:
            page = models_page(store, chosen)
            seen += [m.id for m in page.models]
            assert page.total == len(made)
            if page.next_after is None:
                break
            chosen = ModelFilter.from_params({"project": "paging", "size": "5", "sort": sort,
                                              "after": page.next_after})  # fmt: skip
        assert seen == expected_order(made, sort), sort
    named = models_page(store, ModelFilter.from_params({"project": "paging", "name": "N1"}))
    assert {m.name for m in named.models} == {"n1"} and len(named.models) == 6
    tagged = models_page(store, ModelFilter.from_params({"tags": "keep"}))
    assert [m.id for m in tagged.models] == [made[3].id]
    untagged = models_page(store, ModelFilter.from_params({"project": "paging", "tags": "-keep"}))
    assert untagged.total == len(made) - 1
