"""No request holds a core for long: every SQL statement of the server has a time budget
(``modelbook server --request-timeout``; issue 13).

Matching is linear with RE2, but linear can still be slow: ``a[ab]{100}c`` defeats RE2's
DFA (and PostgreSQL's), so over 1 000-character names it costs about 2-6 ms a name, seconds
for a thousand models. With the budget the request is stopped at it and answered 400
with a message naming the budget, while the server goes on answering other calls.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

import modelbook
from modelbook.config import get_backend
from modelbook.errors import ConfigurationError, InvalidArgumentError, StatementTimeoutError
from modelbook.records import ModelQuery
from modelbook.server.settings import ServerSettings, normalize_db_url
from modelbook.server.testing import LiveServer, envelope_data, live_server, postgres_bin_dir
from modelbook.store import schema as s
from modelbook.store.engine import make_engine, now
from modelbook.store.sql import SqlStore

ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
SLOW_PATTERN = "a[ab]{100}c"  # no name has a "c": every name is read to its end
NAMES, NAME_LENGTH = 1500, 1000  # about 4 s (PostgreSQL) to 9 s (SQLite) without a budget
BUDGET = 0.5
TIMEOUT = 60

HAVE_POSTGRES = postgres_bin_dir() is not None
postgres_only = pytest.mark.skipif(not HAVE_POSTGRES, reason="PostgreSQL binaries not found")


@pytest.fixture
def postgres_db(postgres_database: str) -> str:
    """An empty database in the session's PostgreSQL cluster."""
    return postgres_database


# -- the engine ---------------------------------------------------------------------------
def _stopped_after(conn: sa.Connection, sql: str) -> float:
    """Seconds until ``sql`` was stopped by the budget (fails if it was not)."""
    start = time.monotonic()
    with pytest.raises(StatementTimeoutError, match=r"time budget of 0\.2 s"):
        conn.exec_driver_sql(sql).fetchall()
    return time.monotonic() - start


def test_sqlite_statement_past_the_budget_is_stopped_and_nothing_else(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}", statement_timeout=0.2)
    try:
        with engine.connect() as conn:
            assert _stopped_after(conn, ENDLESS) >= 0.2  # a deadline, never early
            conn.rollback()
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1  # the connection still works
        with engine.connect() as conn:
            conn.execution_options(modelbook_write=True)
            with pytest.raises(StatementTimeoutError), conn.begin():
                conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
                conn.exec_driver_sql(ENDLESS).fetchall()
        with engine.connect() as conn:  # the stopped transaction left nothing behind
            assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar() == 0
        with engine.connect() as conn, conn.begin():  # per statement: quick ones add up
            for _ in range(4):
                conn.exec_driver_sql("SELECT 1").scalar()
                time.sleep(0.1)
    finally:
        engine.dispose()


def test_the_embedded_store_has_no_budget(tmp_path: Path) -> None:
    modelbook.configure(home=tmp_path / "home")
    embedded = get_backend()
    budgeted = SqlStore(f"sqlite:///{tmp_path / 's.db'}", statement_timeout=5)
    try:
        assert isinstance(embedded, SqlStore)
        with embedded.engine.connect() as plain, budgeted.engine.connect() as server:
            assert "modelbook_deadline" not in plain.connection.info
            assert "modelbook_deadline" in server.connection.info
    finally:
        budgeted.close()
        modelbook.configure()


@postgres_only
def test_postgres_statement_past_the_budget_is_stopped(postgres_db: str) -> None:
    engine = make_engine(postgres_db, statement_timeout=0.2)
    try:
        with engine.connect() as conn:
            assert _stopped_after(conn, "SELECT pg_sleep(30)") >= 0.2
            conn.rollback()
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "200ms"
    finally:
        engine.dispose()


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "30"])
def test_a_budget_that_is_not_a_positive_number_is_refused(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="positive number of seconds"):
        make_engine("sqlite://", statement_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="request timeout must be a number of seconds"):
        ServerSettings(db_url="sqlite://", files_root=Path("/f"), request_timeout=bad)  # type: ignore[arg-type]


# -- the server ---------------------------------------------------------------------------
def _fill(db_url: str) -> str:
    """``NAMES`` models with long random a/b names, in one transaction; their project id."""
    rng, as_ab = random.Random(13), str.maketrans("01", "ab")
    store = SqlStore(normalize_db_url(db_url))
    try:
        project = store.get_or_create_project("budget").id
        stamp = now()
        rows = [
            {"id": uuid.uuid4().hex,
             "name": format(rng.getrandbits(NAME_LENGTH), f"0{NAME_LENGTH}b").translate(as_ab),
             "project": project, "comment": "", "tags": [], "system_tags": [], "design": "",
             "labels": {}, "ready": False, "created": stamp, "last_update": stamp, "version": 0}
            for _ in range(NAMES)
        ]  # fmt: skip
        with store._write() as conn:
            conn.execute(sa.insert(s.models), rows)
    finally:
        store.close()
    return project


def _login(server: LiveServer) -> str:
    credentials = (server.access_key, server.secret_key)
    response = requests.get(f"{server.api_host}/auth.login", auth=credentials, timeout=TIMEOUT)
    return envelope_data(response)["token"]


def _check_budget_holds(server: LiveServer, project: str) -> None:
    headers = {"Authorization": f"Bearer {_login(server)}"}

    def call(endpoint: str, body: dict) -> requests.Response:
        url = f"{server.api_host}/v2.23/{endpoint}"
        return requests.post(url, json=body, headers=headers, timeout=TIMEOUT)

    cheap = {"project": [project], "size": 1, "only_fields": ["id"]}
    (one,) = envelope_data(call("models.get_all", cheap))["models"]
    slow: dict[str, object] = {}

    def expensive() -> None:
        slow["start"] = time.monotonic()
        slow["response"] = call(
            "models.get_all", {"project": [project], "name": SLOW_PATTERN, "only_fields": ["id"]}
        )
        slow["end"] = time.monotonic()

    thread = threading.Thread(target=expensive)
    thread.start()
    answered: list[float] = []  # when each cheap call came back while the slow one ran
    while thread.is_alive():
        assert envelope_data(call("models.get_by_id", {"model": one["id"]}))["model"]["id"]
        answered.append(time.monotonic())
    thread.join(timeout=TIMEOUT)

    response = slow["response"]
    assert isinstance(response, requests.Response)
    meta = response.json()["meta"]
    assert response.status_code == 400, meta  # stopped, not a 500, not an answer after seconds
    assert f"time budget of {BUDGET:g} s" in meta["result_msg"]
    assert "--request-timeout" in meta["result_msg"]
    assert meta["error_data"]["budget_s"] == BUDGET
    start, end = slow["start"], slow["end"]
    assert isinstance(start, float) and isinstance(end, float)
    assert end - start >= BUDGET
    during = [t for t in answered if start < t < end]
    assert len(during) >= 2, (len(answered), end - start)  # the server kept answering
    assert envelope_data(call("models.get_all", cheap))["models"] == [one]
    assert "Traceback" not in server.log()


def test_sqlite_server_stops_a_request_at_its_budget(tmp_path: Path) -> None:
    with live_server(tmp_path, extra_args=["--request-timeout", str(BUDGET)]) as server:
        _check_budget_holds(server, _fill(server.db_url))
        _check_client_is_told(server)


def _check_client_is_told(server: LiveServer) -> None:
    """modelbook's own client raises the same StatementTimeoutError the store raised."""
    modelbook.configure(home=str(Path(server.files_root).parent / "client"),
                        api_host=server.api_host, files_host=server.files_host,
                        access_key=server.access_key, secret_key=server.secret_key)  # fmt: skip
    try:
        backend = get_backend()
        project = backend.get_or_create_project("budget").id
        query = ModelQuery(projects=[project], name_pattern=SLOW_PATTERN)
        with pytest.raises(StatementTimeoutError, match=r"time budget of 0\.5 s") as stopped:
            backend.query_models(query)
        assert stopped.value.budget == BUDGET
    finally:
        modelbook.configure()


@postgres_only
def test_postgres_server_stops_a_request_at_its_budget(tmp_path: Path, postgres_db: str) -> None:
    with live_server(
        tmp_path, db_url=postgres_db, extra_args=["--request-timeout", str(BUDGET)]
    ) as server:
        _check_budget_holds(server, _fill(server.db_url))
