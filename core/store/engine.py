"""Database engines for the store: SQLite tuned for several processes, or PostgreSQL.

A server gives every SQL statement a time budget (``statement_timeout``): PostgreSQL's own
``statement_timeout`` setting, or on SQLite a progress handler that stops a statement once it
has run past its deadline. A statement stopped so raises
:class:`~modelbook.errors.StatementTimeoutError`. The embedded store sets no budget.

Example:
    >>> engine = make_engine("sqlite://", statement_timeout=0.05)
    >>> endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
    >>> with engine.connect() as conn:
    ...     try:
    ...         conn.exec_driver_sql(endless + "SELECT count(*) FROM n").scalar()
    ...     except StatementTimeoutError as stopped:
    ...         print(stopped.budget)
    0.05
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timezone
from typing import Any, overload

import sqlalchemy as sa

from modelbook.errors import InvalidArgumentError, StatementTimeoutError
from modelbook.store.patterns import register_sqlite_regexp

#: SQLite runs the budget check every this many virtual-machine steps (about 10-100 µs of
#: work): cheap, and fine-grained enough to stop within a few milliseconds of the deadline.
PROGRESS_STEPS = 1000
_DEADLINE = "modelbook_deadline"


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """The value with UTC as its zone when the database returned it without one."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def make_engine(url: str, statement_timeout: float | None = None) -> sa.Engine:
    """An engine for ``url``; with ``statement_timeout`` (seconds) no statement runs longer.

    Raises:
        InvalidArgumentError: ``statement_timeout`` is not a positive number of seconds.
    """
    if statement_timeout is not None:
        _check_budget(statement_timeout)
    if not url.startswith("sqlite"):
        engine = sa.create_engine(url, pool_pre_ping=True, future=True)
        if statement_timeout is not None and engine.dialect.name == "postgresql":
            _limit_postgres(engine, statement_timeout)
        return engine
    engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=60000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        register_sqlite_regexp(dbapi_conn)  # client patterns: linear time (patterns.py)

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("modelbook_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    if statement_timeout is not None:
        _limit_sqlite(engine, statement_timeout)
    return engine


def _check_budget(seconds: float) -> None:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise InvalidArgumentError(
            f"statement_timeout={seconds!r} is not accepted; give a positive number of seconds"
        )


class _Deadline:
    """The running statement's deadline on one SQLite connection (its progress handler)."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.expired = False

    def start(self, budget: float) -> None:
        self.at, self.expired = time.monotonic() + budget, False

    def stop(self) -> None:
        self.at = None

    def __call__(self) -> int:
        """SQLite's progress handler: non-zero stops the statement ("interrupted")."""
        if self.at is not None and time.monotonic() > self.at:
            self.expired = True
            return 1
        return 0


def _limit_sqlite(engine: sa.Engine, budget: float) -> None:
    """Stop any statement that runs ``budget`` seconds past its start.

    The deadline is set when a statement starts (fetching its rows counts as its run) and
    lifted for COMMIT and ROLLBACK, which are never stopped halfway.
    """

    @sa.event.listens_for(engine, "connect")
    def _install(dbapi_conn: Any, record: Any) -> None:
        deadline = record.info[_DEADLINE] = _Deadline()
        dbapi_conn.set_progress_handler(deadline, PROGRESS_STEPS)

    def deadline_of(conn: sa.Connection) -> _Deadline | None:
        return conn.connection.info.get(_DEADLINE)  # the pool record's, kept across checkouts

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _start(conn: sa.Connection, *_args: Any) -> None:
        deadline = deadline_of(conn)
        if deadline is not None:
            deadline.start(budget)

    @sa.event.listens_for(engine, "commit")
    @sa.event.listens_for(engine, "rollback")
    def _lift(conn: sa.Connection) -> None:
        deadline = deadline_of(conn)
        if deadline is not None:
            deadline.stop()

    @sa.event.listens_for(engine, "checkin")
    def _lift_on_return(_dbapi_conn: Any, record: Any) -> None:
        deadline = record.info.get(_DEADLINE)
        if deadline is not None:
            deadline.stop()

    @sa.event.listens_for(engine, "handle_error")
    def _translate(context: sa.engine.ExceptionContext) -> None:
        conn = context.connection
        deadline = deadline_of(conn) if conn is not None and not conn.invalidated else None
        if deadline is not None and deadline.expired:
            deadline.expired = False
            raise StatementTimeoutError(budget) from context.original_exception


def _limit_postgres(engine: sa.Engine, budget: float) -> None:
    """PostgreSQL's ``statement_timeout`` on every connection of ``engine``."""
    milliseconds = max(1, round(budget * 1000))

    @sa.event.listens_for(engine, "connect")
    def _install(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True  # a SET inside a transaction ends with it
        with dbapi_conn.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {milliseconds}")
        dbapi_conn.autocommit = autocommit

    @sa.event.listens_for(engine, "handle_error")
    def _translate(context: sa.engine.ExceptionContext) -> None:
        original = context.original_exception
        if getattr(original, "sqlstate", None) == "57014" and "statement timeout" in str(original):
            raise StatementTimeoutError(budget) from original
