"""The store and the server on a real, throwaway PostgreSQL cluster (skipped without one)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from migration_scenario import check_migrated, make_v2_store
from server_scenario import comparable, scenario

from modelbook.backends.http import HttpBackend
from modelbook.records import to_metadata
from modelbook.server.testing import live_server, postgres_bin_dir, temporary_postgres
from modelbook.store.sql import SqlStore

pytestmark = pytest.mark.skipif(
    postgres_bin_dir() is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not found"
)
pytest.importorskip("psycopg", reason="needs: pip install 'modelbook[postgres]'")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with temporary_postgres() as url:
        yield url


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[str]:
    """An empty database in the module's cluster, one per test."""
    import sqlalchemy as sa

    name = f"t{threading.get_ident() % 10**6}_{id(object()) % 10**6}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _sqlite_results(tmp_path: Path) -> dict:
    store = SqlStore(f"sqlite:///{tmp_path / 'reference.db'}")
    try:
        return scenario(store)
    finally:
        store.close()


def test_store_on_postgres_gives_what_sqlite_gives(fresh_postgres, tmp_path) -> None:
    store = SqlStore(fresh_postgres)
    try:
        on_postgres = scenario(store)
    finally:
        store.close()
    reference = _sqlite_results(tmp_path)
    for key in reference:
        assert comparable(on_postgres[key]) == comparable(reference[key]), key


def test_v2_store_on_postgres_migrates_keeping_its_data(fresh_postgres) -> None:
    check_migrated(fresh_postgres, make_v2_store(fresh_postgres))


def test_server_on_postgres(fresh_postgres, tmp_path) -> None:
    with live_server(tmp_path / "srv", db_url=fresh_postgres, workers=2) as server:
        backend = HttpBackend(
            api_host=server.api_host,
            files_host=server.files_host,
            access_key=server.access_key,
            secret_key=server.secret_key,
        )
        try:
            over_http = scenario(backend)
            reference = _sqlite_results(tmp_path)
            for key in reference:
                assert comparable(over_http[key]) == comparable(reference[key]), key

            # two workers, four writers, one model: no metadata update is lost
            project = backend.get_or_create_project("concurrent")
            model = backend.create_model(name="shared", project=project.id)
            errors: list[BaseException] = []

            def writer(n: int) -> None:
                try:
                    for i in range(10):
                        backend.set_model_metadata(model.id, to_metadata({f"w{n}-{i}": i}))
                        backend.update_model(model.id, add_system_tags=[f"s{n}"])
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert not errors, errors
            final = backend.get_model(model.id)
            assert len(final.metadata) == 40
            assert sorted(final.system_tags) == ["s0", "s1", "s2", "s3"]
        finally:
            backend.close()
