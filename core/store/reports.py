"""Reported plots and text: kept as ClearML keeps them, one row per event.

A plot is ClearML's ``plot`` event: its figure as plotly JSON text (``plot_str``), under a
title (``metric``), a series (``variant``) and an iteration; text is a ``log`` event (its
level and message). Both belong to a task, or (``task`` NULL) to a model. Scalars have their
own tables (:mod:`modelbook.store.scalars`).

Example:
    >>> from modelbook.store.sql import SqlStore
    >>> store = SqlStore("sqlite://")
    >>> task = store.create_task(name="train", project=None)
    >>> store.add_reports(task.id, [ReportEvent("plot", "weights", "layer1", 3,
    ...                                         {"plot_str": '{"data": []}'})])
    1
    >>> [(r.metric, r.iteration, r.body) for r in store.reports(task.id, "plot")]
    [('weights', 3, {'plot_str': '{"data": []}'})]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from modelbook.errors import InvalidArgumentError
from modelbook.records import REPORT_KINDS, ReportEvent
from modelbook.store import schema as s

#: The longest metric or variant name stored (as for scalars).
MAX_NAME = 255
#: The largest body kept (a plot's JSON, a message), in characters.
MAX_BODY = 4 * 1024 * 1024
_LONG = 2**63


def check_report(event: Any, index: int = 0) -> ReportEvent:
    """``event`` if it is a valid :class:`ReportEvent`, else an error naming the field."""
    where = f"report {index}"
    if not isinstance(event, ReportEvent):
        raise InvalidArgumentError(f"{where}: must be a ReportEvent, got {type(event).__name__}")
    if event.kind not in REPORT_KINDS:
        raise InvalidArgumentError(
            f"{where}: kind must be one of {REPORT_KINDS}, got {event.kind!r}"
        )
    for name in ("metric", "variant"):
        text = getattr(event, name)
        if not isinstance(text, str) or len(text) > MAX_NAME:
            raise InvalidArgumentError(
                f"{where}: {name} must be a string of at most {MAX_NAME} characters, got {text!r}"
            )
    number = event.iteration
    if isinstance(number, bool) or not isinstance(number, int) or not -_LONG <= number < _LONG:
        raise InvalidArgumentError(f"{where}: iteration must be a 64-bit integer, got {number!r}")
    if not isinstance(event.body, dict):
        raise InvalidArgumentError(f"{where}: body must be an object, got {event.body!r}")
    return event


class ReportVerbs:
    """Mixed into :class:`~modelbook.store.sql.SqlStore`; each verb is one transaction.

    Example:
        >>> from modelbook.store.sql import SqlStore
        >>> store = SqlStore("sqlite://")
        >>> task = store.create_task(name="t", project=None)
        >>> store.add_reports(task.id, [ReportEvent("text", "", "", 0, {"level": 20, "msg": "hi"})])
        1
        >>> store.delete_reports(task.id)
        1
    """

    _write: Callable[[], AbstractContextManager[sa.Connection]]
    _read: Callable[[], AbstractContextManager[sa.Connection]]

    def add_reports(
        self, task_id: str | None, events: Sequence[ReportEvent], *, model_id: str | None = None
    ) -> int:
        """Keep a task's (or, ``task_id`` None, a model's) plots and text; returns how many."""
        if (task_id is None) == (model_id is None):
            raise InvalidArgumentError("pass either a task id or model_id=, not both or neither")
        stamp = int(time.time() * 1000)
        rows = []
        for index, event in enumerate(events):
            check_report(event, index)
            body = json.dumps(event.body, allow_nan=False)
            if len(body) > MAX_BODY:
                raise InvalidArgumentError(
                    f"report {index}: its body is {len(body)} characters; at most {MAX_BODY}"
                )
            timestamp = stamp if event.timestamp is None else event.timestamp
            rows.append({"task": task_id, "model": model_id, "kind": event.kind,
                         "metric": event.metric, "variant": event.variant,
                         "iteration": event.iteration, "body": body, "timestamp": timestamp})
        if rows:
            with self._write() as conn:
                conn.execute(sa.insert(s.reports), rows)
        return len(rows)

    def reports(
        self, task_id: str | None, kind: str, *, model_id: str | None = None
    ) -> list[ReportEvent]:
        """A task's (or a model's) reports of ``kind``, in the order they were kept."""
        r = s.reports
        owner = (r.c.task == task_id) if task_id is not None else (
            (r.c.model == model_id) & r.c.task.is_(None)
        )
        query = sa.select(r).where(owner, r.c.kind == kind).order_by(r.c.seq)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            ReportEvent(row.kind, row.metric, row.variant, row.iteration, json.loads(row.body),
                        row.timestamp, row.model)
            for row in rows
        ]

    def delete_reports(self, task_id: str) -> int:
        """Forget a task's plots and text (a reset or deleted task)."""
        with self._write() as conn:
            return conn.execute(sa.delete(s.reports).where(s.reports.c.task == task_id)).rowcount
