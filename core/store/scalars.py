"""Reported scalar values: added in batches, read back as series and as their last values.

A series is (task, metric, variant); within it a value reported again for an iteration
replaces the earlier one. Each batch also brings the task's statistics per series up to date
(``scalar_stats``: count, first, min, max, last, each with its iteration; ClearML's
``last_metrics``), as ClearML's server does as events arrive: a value reported again counts
again, and min / max do not forget a value that was replaced. The task's ``last_iteration``
is raised to the largest iteration reported, except by ClearML's resource-monitoring series
(:data:`NO_ITERATION_METRICS`), whose x values are not training iterations.

Values a ClearML client reports on a *model* (not a task) are kept apart (``task`` NULL,
``model`` set) and have no statistics.

Example:
    >>> from modelbook.store.sql import SqlStore
    >>> store = SqlStore("sqlite://")
    >>> task = store.create_task(name="train", project=None)
    >>> store.add_scalars(task.id, [ScalarEvent("loss", "train", i, v)
    ...                             for i, v in enumerate([0.9, 0.4, 0.6])])
    3
    >>> store.scalar_series(task.id)
    {'loss': {'train': ([0, 1, 2], [0.9, 0.4, 0.6])}}
    >>> stats = store.last_scalars(task.id)["loss"]["train"]
    >>> stats.last, stats.min, stats.min_iteration, stats.max
    (0.6, 0.4, 1, 0.9)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from modelbook.errors import InvalidArgumentError
from modelbook.records import ScalarEvent, ScalarStats
from modelbook.store import schema as s
from modelbook.store.engine import now

#: The longest metric or variant name stored.
MAX_NAME = 255
#: ClearML's resource monitoring: its x values are seconds, not iterations.
NO_ITERATION_METRICS = (":monitor:machine", ":monitor:gpu")
_LONG = 2**63

#: ``{metric: {variant: (iterations, values)}}``, iterations ascending.
Series = dict[str, dict[str, tuple[list[int], list[float]]]]
#: ``{metric: {variant: stats}}``.
LastScalars = dict[str, dict[str, ScalarStats]]


def check_event(event: Any, index: int = 0) -> ScalarEvent:
    """``event`` if it is a valid :class:`ScalarEvent`, else :class:`InvalidArgumentError`
    naming the event (its position in the batch) and the field."""
    where = f"scalar event {index}"
    if not isinstance(event, ScalarEvent):
        raise InvalidArgumentError(f"{where}: must be a ScalarEvent, got {type(event).__name__}")
    for name in ("metric", "variant"):
        text = getattr(event, name)
        if not isinstance(text, str) or len(text) > MAX_NAME:
            raise InvalidArgumentError(
                f"{where}: {name} must be a string of at most {MAX_NAME} characters, got {text!r}"
            )
    for name in ("iteration", "timestamp"):
        number = getattr(event, name)
        if number is None and name == "timestamp":
            continue
        if isinstance(number, bool) or not isinstance(number, int) or not -_LONG <= number < _LONG:
            raise InvalidArgumentError(f"{where}: {name} must be a 64-bit integer, got {number!r}")
    value = event.value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgumentError(f"{where}: value must be a finite number, got {value!r}")
    if event.model is not None and not isinstance(event.model, str):
        raise InvalidArgumentError(f"{where}: model must be a model id, got {event.model!r}")
    return event


def _rows(events: Sequence[ScalarEvent], task: str | None, model: str | None) -> list[dict]:
    """Insertable rows, one per (metric, variant, iteration): the last reported wins."""
    stamp = int(time.time() * 1000)
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    for index, event in enumerate(events):
        check_event(event, index)
        rows[(event.metric, event.variant, event.iteration)] = {
            "task": task, "model": event.model if task is not None else model,
            "metric": event.metric, "variant": event.variant, "iteration": event.iteration,
            "value": float(event.value),
            "timestamp": stamp if event.timestamp is None else event.timestamp,
        }  # fmt: skip
    return list(rows.values())


def _owned_by(task_id: str | None, model_id: str | None) -> sa.ColumnElement[bool]:
    """The values of a task, or (``task_id`` None) a model's own.

    Raises:
        InvalidArgumentError: both ids or neither given.
    """
    if (task_id is None) == (model_id is None):
        raise InvalidArgumentError("pass either a task id or model_id=, not both or neither")
    sc = s.scalars
    if task_id is not None:
        return sc.c.task == task_id
    return (sc.c.model == model_id) & sc.c.task.is_(None)


def _replace_points(conn: sa.Connection, owner: sa.ColumnElement[bool], rows: list[dict]) -> None:
    """Delete the stored points the rows replace, then insert the rows."""
    sc = s.scalars
    by_series: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        by_series.setdefault((row["metric"], row["variant"]), []).append(row["iteration"])
    for (metric, variant), iterations in by_series.items():
        for start in range(0, len(iterations), 500):
            conn.execute(sa.delete(sc).where(
                owner, sc.c.metric == metric, sc.c.variant == variant,
                sc.c.iteration.in_(iterations[start : start + 500]),
            ))  # fmt: skip
    conn.execute(sa.insert(sc), rows)


def _stats(row: Any) -> ScalarStats:
    return ScalarStats(
        metric=row.metric, variant=row.variant, count=row.count, total=row.total,
        first=row.first_value, first_iteration=row.first_iteration,
        min=row.min_value, min_iteration=row.min_iteration,
        max=row.max_value, max_iteration=row.max_iteration,
        last=row.last_value, last_iteration=row.last_iteration, last_timestamp=row.last_timestamp,
    )  # fmt: skip


def _updated(old: ScalarStats | None, row: dict[str, Any]) -> ScalarStats:
    """``old`` with one more value (ClearML's rules: the last is the one with the largest
    (iteration, timestamp); the first the one with the smallest iteration)."""
    value, iteration, stamp = row["value"], row["iteration"], row["timestamp"]
    if old is None:
        return ScalarStats(row["metric"], row["variant"], 1, value, value, iteration, value,
                           iteration, value, iteration, value, iteration, stamp)  # fmt: skip
    last = (iteration, stamp) >= (old.last_iteration, old.last_timestamp)
    return ScalarStats(
        metric=old.metric, variant=old.variant, count=old.count + 1, total=old.total + value,
        first=value if iteration < old.first_iteration else old.first,
        first_iteration=min(iteration, old.first_iteration),
        min=value if value < old.min else old.min,
        min_iteration=iteration if value < old.min else old.min_iteration,
        max=value if value > old.max else old.max,
        max_iteration=iteration if value > old.max else old.max_iteration,
        last=value if last else old.last,
        last_iteration=iteration if last else old.last_iteration,
        last_timestamp=stamp if last else old.last_timestamp,
    )  # fmt: skip


def _stats_values(task_id: str, stats: ScalarStats) -> dict[str, Any]:
    return {
        "task": task_id, "metric": stats.metric, "variant": stats.variant, "count": stats.count,
        "total": stats.total, "first_value": stats.first, "first_iteration": stats.first_iteration,
        "min_value": stats.min, "min_iteration": stats.min_iteration, "max_value": stats.max,
        "max_iteration": stats.max_iteration, "last_value": stats.last,
        "last_iteration": stats.last_iteration, "last_timestamp": stats.last_timestamp,
    }  # fmt: skip


def _update_stats(conn: sa.Connection, task_id: str, events: Iterable[dict[str, Any]]) -> None:
    st = s.scalar_stats
    found = conn.execute(sa.select(st).where(st.c.task == task_id)).all()
    before = {(r.metric, r.variant): _stats(r) for r in found}
    after = dict(before)
    for row in events:
        key = (row["metric"], row["variant"])
        after[key] = _updated(after.get(key), row)
    for key, stats in after.items():
        if key not in before:
            conn.execute(sa.insert(st).values(**_stats_values(task_id, stats)))
        elif stats != before[key]:
            match = (st.c.task == task_id) & (st.c.metric == key[0]) & (st.c.variant == key[1])
            conn.execute(sa.update(st).where(match).values(**_stats_values(task_id, stats)))


class ScalarVerbs:
    """The store's scalar verbs, each one transaction; mixed into
    :class:`~modelbook.store.sql.SqlStore`.

    Example:
        >>> from modelbook.store.sql import SqlStore
        >>> store = SqlStore("sqlite://")
        >>> task = store.create_task(name="train", project=None)
        >>> store.add_scalars(task.id, [ScalarEvent("acc", "val", 1, 0.5)])
        1
        >>> store.last_scalars(task.id)["acc"]["val"].last, store.get_task(task.id).last_iteration
        (0.5, 1)
    """

    _write: Callable[[], AbstractContextManager[sa.Connection]]
    _read: Callable[[], AbstractContextManager[sa.Connection]]
    _task_row: Callable[..., Any]
    _model_row: Callable[..., Any]

    def add_scalars(self, task_id: str, events: Sequence[ScalarEvent]) -> int:
        """Store a task's reported values (see the module docstring); return how many.

        Raises:
            TaskNotFoundError: no such task.
            InvalidArgumentError: an event is malformed (nothing is stored).
        """
        rows = _rows(events, task_id, None)
        with self._write() as conn:
            task = self._task_row(conn, task_id, lock=True)
            if not rows:
                return 0
            _replace_points(conn, _owned_by(task_id, None), rows)
            _update_stats(conn, task_id, rows)
            iterations = [r["iteration"] for r in rows if r["metric"] not in NO_ITERATION_METRICS]
            values: dict[str, Any] = {"last_update": now()}
            if iterations and max(iterations) > task.last_iteration:
                values["last_iteration"] = max(iterations)
            conn.execute(sa.update(s.tasks).where(s.tasks.c.id == task_id).values(**values))
        return len(events)

    def add_model_scalars(self, model_id: str, events: Sequence[ScalarEvent]) -> int:
        """Store values reported on a model itself (no task); return how many.

        Raises:
            ModelNotFoundError: no such model.
            InvalidArgumentError: an event is malformed (nothing is stored).
        """
        rows = _rows(events, None, model_id)
        with self._write() as conn:
            self._model_row(conn, model_id, lock=True)
            if rows:
                _replace_points(conn, _owned_by(None, model_id), rows)
        return len(events)

    def scalar_events(
        self, task_id: str | None = None, *, model_id: str | None = None
    ) -> list[ScalarEvent]:
        """A task's values (or, with ``model_id`` alone, a model's own), ordered by metric,
        variant and iteration."""
        sc = s.scalars
        query = (
            sa.select(sc).where(_owned_by(task_id, model_id))
            .order_by(sc.c.metric, sc.c.variant, sc.c.iteration)
        )  # fmt: skip
        with self._read() as conn:
            return [
                ScalarEvent(r.metric, r.variant, r.iteration, r.value, r.timestamp, r.model)
                for r in conn.execute(query)
            ]

    def scalar_series(
        self, task_id: str | None = None, *, model_id: str | None = None,
        max_points: int | None = None,
    ) -> Series:  # fmt: skip
        """``{metric: {variant: (iterations, values)}}`` of a task (or, with ``model_id``
        alone, a model's own values), iterations ascending.

        With ``max_points``, a longer series keeps every k-th point (k = its length /
        ``max_points``, rounded up) and its last one: at most ``max_points + 1`` points, for a
        plot. The rows stream by in index order and only those kept become Python lists (a
        window function in SQLite was slower than this).
        """
        if max_points is not None and (
            not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 1
        ):
            raise InvalidArgumentError(f"max_points must be an int >= 1, got {max_points!r}")
        sc = s.scalars
        mine, series_of = _owned_by(task_id, model_id), (sc.c.metric, sc.c.variant)
        series: Series = {}
        with self._read() as conn:
            counts: dict[tuple[str, str], int] = {}
            if max_points is not None:
                grouped = sa.select(*series_of, sa.func.count()).where(mine).group_by(*series_of)
                counts = {(m, v): n for m, v, n in conn.execute(grouped)}
            rows = conn.execute(
                sa.select(*series_of, sc.c.iteration, sc.c.value).where(mine)
                .order_by(*series_of, sc.c.iteration)
            )  # fmt: skip
            key: tuple[str, str] | None = None
            index = step = last = 0
            for metric, variant, iteration, value in rows:
                if (metric, variant) != key:
                    key, index = (metric, variant), 0
                    xs, ys = series.setdefault(metric, {}).setdefault(variant, ([], []))
                    total = counts.get(key, 0)
                    step, last = max(1, -(-total // (max_points or total or 1))), total - 1
                if index % step == 0 or index == last:
                    xs.append(iteration)
                    ys.append(value)
                index += 1
        return series

    def last_scalars(self, task_id: str) -> LastScalars:
        """``{metric: {variant: stats}}`` of a task (empty when it reported nothing)."""
        return self.last_scalars_of([task_id]).get(task_id, {})

    def last_scalars_of(self, task_ids: Sequence[str]) -> dict[str, LastScalars]:
        """:meth:`last_scalars` of several tasks at once, by task id (tasks that reported
        nothing are absent)."""
        st, found = s.scalar_stats, {}  # type: tuple[sa.Table, dict[str, LastScalars]]
        ids = list(dict.fromkeys(task_ids))
        with self._read() as conn:
            for start in range(0, len(ids), 500):
                query = (
                    sa.select(st).where(st.c.task.in_(ids[start : start + 500]))
                    .order_by(st.c.task, st.c.metric, st.c.variant)
                )  # fmt: skip
                for row in conn.execute(query):
                    found.setdefault(row.task, {}).setdefault(row.metric, {})[row.variant] = (
                        _stats(row)
                    )
        return found

    def delete_scalars(self, task_id: str | None = None, *, model_id: str | None = None) -> int:
        """Forget a task's values and statistics (or a model's own values); return how many
        values were deleted."""
        owner, st = _owned_by(task_id, model_id), s.scalar_stats
        with self._write() as conn:
            if task_id is not None:
                self._task_row(conn, task_id, lock=True)
                conn.execute(sa.delete(st).where(st.c.task == task_id))
            return conn.execute(sa.delete(s.scalars).where(owner)).rowcount or 0
