"""``events.*``: reported scalars, plots and console logs are kept and read back; vectors
and debug images are only counted.

* ``events.add_batch`` / ``events.add`` store ``training_stats_scalar`` events (of tasks, or
  with ``model_event`` of models) through the store's scalar verbs
  (:mod:`modelbook.store.scalars`). An event of an unknown task, or of a published one without
  ``allow_locked``, is an error counted in ``errors_info`` (as on ClearML; a batch where
  nothing was added is refused with 400/131); a malformed field is a 400 naming it.
  ``plot`` and ``log`` events are kept as the store's reports (:mod:`modelbook.store.reports`);
  vectors and debug images are counted as added and not kept.
* ``events.scalar_metrics_iter_histogram``: ``{metric: {variant: {name, x, y}}}``; a series
  longer than ``samples`` (default 2000, at most 6000) is averaged over equal x intervals,
  as ClearML's server does.
* ``events.get_task_events``: the stored scalar events, paged by ``scroll_id`` (no other
  event type is kept: those pages are empty).
* ``events.get_task_plots`` (``scroll_id`` paging, ``iters``: the newest that many
  iterations) and ``events.get_task_log`` (``batch_size``, ``order``).
* ``events.get_task_latest_scalar_values``, ``events.delete_for_task``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from modelbook.errors import NotFoundError
from modelbook.records import ReportEvent, ScalarEvent
from modelbook.server.envelope import VALIDATION_ERROR, ApiError
from modelbook.server.services.call import Call, Handler
from modelbook.server.taskdoc import invalid
from modelbook.store.scalars import MAX_NAME

SCALAR = "training_stats_scalar"
EVENT_TYPES = frozenset({SCALAR, "training_stats_vector", "training_debug_image", "plot", "log"})
#: The iteration ClearML reports single values at (not part of any series).
SINGLE_VALUE_ITERATION = -(2**31)
#: ClearML's ``events_not_added`` and ``invalid_scroll_id``.
EVENTS_NOT_ADDED = (400, 131)
INVALID_SCROLL_ID = (400, 1104)
_LONG = 2**63
_SCROLL_RE = re.compile(r"^mb-(\d{1,12})$")
_LOCKED = ("published",)
#: ClearML's log levels (``events.add_batch``'s ``level``) as Python's.
LOG_LEVELS = {"notset": 0, "debug": 10, "verbose": 10, "info": 20, "warn": 30, "warning": 30,
              "error": 40, "fatal": 50, "critical": 50}  # fmt: skip


def _events(call: Call) -> list[Any]:
    if isinstance(call.data, list):
        return call.data
    if call.endpoint == "events.add":
        return [call.data]
    requests = call.get("requests")
    if requests is not None and not isinstance(requests, list):
        raise invalid("requests", "a list of events", requests)
    return requests or []


def _integer(where: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -_LONG <= value < _LONG:
        raise invalid(where, "a 64-bit integer", value)
    return value


def _common(index: int, event: dict[str, Any]) -> tuple[str, str, bool, int, int | None]:
    """(where, owner id, model event?, iteration, timestamp) of any event."""
    where = f"events[{index}]"
    model_event = bool(event.get("model_event"))
    owner = event.get("model") if model_event and event.get("model") else event.get("task")
    if not isinstance(owner, str) or not owner:
        raise invalid(f"{where}.task", "a task id (a model id with model_event)", owner)
    iteration = _integer(f"{where}.iter", event.get("iter") or 0)
    stamp = event.get("timestamp", event.get("ts"))
    timestamp = None if stamp is None else _integer(f"{where}.timestamp", stamp)
    return where, owner, model_event, iteration, timestamp


def _names(where: str, event: dict[str, Any]) -> dict[str, str]:
    """The event's ``metric`` and ``variant``, checked."""
    names = {}
    for name in ("metric", "variant"):
        text = event.get(name) or ""
        if not isinstance(text, str) or len(text) > MAX_NAME:
            raise invalid(f"{where}.{name}", f"a string of at most {MAX_NAME} characters", text)
        names[name] = text
    return names


def _scalar(index: int, event: dict[str, Any]) -> tuple[str, bool, ScalarEvent]:
    """(owner id, model event?, the event) of a ``training_stats_scalar`` event."""
    where, owner, model_event, iteration, timestamp = _common(index, event)
    names = _names(where, event)
    value = event.get("value", event.get("values"))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(f"{where}.value", "a finite number", value)
    return owner, model_event, ScalarEvent(names["metric"], names["variant"], iteration,
                                           float(value), timestamp)  # fmt: skip


def _writable(call: Call, owner: str, model_event: bool, allow_locked: bool) -> bool:
    """Whether events may be added to the task (or model): it exists and is not locked."""
    try:
        if model_event:
            return allow_locked or not call.store.get_model(owner).ready
        return allow_locked or call.store.get_task(owner).status not in _LOCKED
    except NotFoundError:
        return False


def _report(index: int, event: dict[str, Any]) -> tuple[str, bool, ReportEvent]:
    """(owner id, model event?, the report) of a ``plot`` or ``log`` event."""
    where, owner, model_event, iteration, timestamp = _common(index, event)
    if event.get("type") == "plot":
        names = _names(where, event)
        plot = event.get("plot_str")
        if not isinstance(plot, str):
            raise invalid(f"{where}.plot_str", "the plot as a JSON string", plot)
        body = {"plot_str": plot}
        report = ReportEvent("plot", names["metric"], names["variant"], iteration, body, timestamp)
        return owner, model_event, report
    level, msg = event.get("level") or "info", event.get("msg")
    if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
        raise invalid(f"{where}.level", f"one of {sorted(LOG_LEVELS)}", level)
    if not isinstance(msg, str):
        raise invalid(f"{where}.msg", "a string", msg)
    line: dict[str, Any] = {"level": LOG_LEVELS[level.lower()], "msg": msg}
    return owner, model_event, ReportEvent("text", "", "", iteration, line, timestamp)


def add_batch(call: Call) -> dict[str, Any]:
    """Store the batch's scalars, plots and console logs; count the others."""
    added, errors = 0, {}  # type: int, dict[str, int]
    batches: dict[tuple[str, bool], list[ScalarEvent]] = {}
    reports: dict[tuple[str, bool], list[ReportEvent]] = {}
    locks: dict[tuple[str, bool], bool] = {}
    for index, event in enumerate(_events(call)):
        if not isinstance(event, dict):
            raise invalid(f"events[{index}]", "an event object", event)
        kind = str(event.get("type") or "").replace(" ", "_")
        if kind in ("plot", "log"):
            owner, model_event, report = _report(index, event)
            reports.setdefault((owner, model_event), []).append(report)
            locks[(owner, model_event)] = bool(event.get("allow_locked"))
            continue
        if kind != SCALAR:
            if kind and kind not in EVENT_TYPES:
                message = f"Invalid event type {kind}"
                errors[message] = errors.get(message, 0) + 1
            else:
                added += 1  # counted, not kept
            continue
        owner, model_event, scalar = _scalar(index, event)
        batches.setdefault((owner, model_event), []).append(scalar)
        locks[(owner, model_event)] = bool(event.get("allow_locked"))
    for (owner, model_event), scalars in batches.items():
        if not _writable(call, owner, model_event, locks[(owner, model_event)]):
            message = f"Invalid {'model' if model_event else 'task'} id {owner}"
            errors[message] = errors.get(message, 0) + len(scalars)
        elif model_event:
            added += call.store.add_model_scalars(owner, scalars)
        else:
            added += call.store.add_scalars(owner, scalars)
    for (owner, model_event), found in reports.items():
        if not _writable(call, owner, model_event, locks[(owner, model_event)]):
            message = f"Invalid {'model' if model_event else 'task'} id {owner}"
            errors[message] = errors.get(message, 0) + len(found)
        elif model_event:
            added += call.store.add_reports(None, found, model_id=owner)
        else:
            added += call.store.add_reports(owner, found)
    if errors and not added:
        raise ApiError.of(EVENTS_NOT_ADDED, f"events not added: {errors}", errors=errors)
    return {"added": added, "errors": sum(errors.values()), "errors_info": errors}


def _owner_events(call: Call) -> tuple[str, list[ScalarEvent]]:
    """The ``task`` of the body (a model with ``model_events``) and its scalar events."""
    owner = call.string("task", required=True) or ""
    if call.boolean("model_events", False):
        call.store.get_model(owner)
        return owner, call.store.scalar_events(model_id=owner)
    call.store.get_task(owner)
    return owner, call.store.scalar_events(owner)


def _wanted(call: Call) -> dict[str, set[str] | None] | None:
    """The ``metrics`` filter ``[{metric, variants}]`` as ``{metric: variants or None}``."""
    metrics = call.get("metrics")
    if not metrics:
        return None
    if not isinstance(metrics, list) or not all(
        isinstance(m, dict) and isinstance(m.get("metric"), str)
        and isinstance(m.get("variants") or [], list)
        and all(isinstance(v, str) for v in m.get("variants") or [])
        for m in metrics
    ):  # fmt: skip
        raise invalid("metrics", "a list of {metric, variants: [names]}", metrics)
    return {m["metric"]: set(m["variants"]) if m.get("variants") else None for m in metrics}


def _selected(events: list[ScalarEvent], wanted: dict[str, set[str] | None] | None) -> list:
    if wanted is None:
        return events
    return [e for e in events if e.metric in wanted
            and (wanted[e.metric] is None or e.variant in (wanted[e.metric] or ()))]  # fmt: skip


def _iso(stamp_ms: int) -> str:
    moment = datetime.fromtimestamp(stamp_ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _histogram(points: list[tuple[int, float]], samples: int) -> tuple[list[int], list[float]]:
    """Points ``(x, y)`` sorted by x; more than ``samples`` are averaged per interval of x
    (bucket ``floor(x / interval) * interval``), as an Elasticsearch histogram does."""
    if len(points) < samples:
        return [x for x, _ in points], [y for _, y in points]
    interval = max(1, math.ceil((points[-1][0] - points[0][0] + 1) / samples))
    buckets: dict[int, list[float]] = {}
    for x, y in points:
        buckets.setdefault(x // interval * interval, []).append(y)
    return list(buckets), [sum(ys) / len(ys) for ys in buckets.values()]


def scalar_metrics_iter_histogram(call: Call) -> dict[str, Any]:
    _, events = _owner_events(call)
    samples = call.integer("samples")
    if samples is not None and not 1 <= samples <= 6000:
        raise invalid("samples", "an integer from 1 to 6000", samples)
    key = call.string("key") or "iter"
    if key not in ("iter", "timestamp", "iso_time"):
        raise invalid("key", "'iter', 'timestamp' or 'iso_time'", key)
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for e in _selected(events, _wanted(call)):
        if e.iteration <= SINGLE_VALUE_ITERATION:
            continue
        x = e.iteration if key == "iter" else e.timestamp or 0
        series.setdefault(e.metric, {}).setdefault(e.variant, []).append((x, e.value))
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for metric, variants in series.items():
        for variant, points in variants.items():
            xs, ys = _histogram(sorted(points), samples or 2000)
            shown: list[Any] = [_iso(x) for x in xs] if key == "iso_time" else xs
            result.setdefault(metric, {})[variant] = {"name": variant, "x": shown, "y": ys}
    return result


def _scroll_offset(call: Call) -> int:
    """Where the page of ``scroll_id`` (``mb-<offset>``) starts."""
    scroll_id = call.string("scroll_id")
    if not scroll_id:
        return 0
    found = _SCROLL_RE.match(scroll_id)
    if not found:
        raise ApiError.of(INVALID_SCROLL_ID, f"invalid scroll id {scroll_id[:80]!r}")
    return int(found[1])


def get_task_events(call: Call) -> dict[str, Any]:
    """Scalar events, ordered by iteration (``order`` asc or desc), ``batch_size`` a page."""
    owner, events = _owner_events(call)
    model_event = bool(call.boolean("model_events", False))
    kind = call.string("event_type")
    if kind not in (None, "", SCALAR):
        if kind not in EVENT_TYPES:
            raise invalid("event_type", f"one of {sorted(EVENT_TYPES)}", kind)
        events = []  # not kept
    events = _selected(events, _wanted(call))
    events.sort(key=lambda e: (e.iteration, e.timestamp or 0, e.metric, e.variant),
                reverse=call.string("order") == "desc")  # fmt: skip
    offset = _scroll_offset(call)
    size = call.integer("batch_size") or 500
    if size < 1:
        raise invalid("batch_size", "a positive integer", size)
    page = events[offset : offset + size]
    docs = [{"timestamp": e.timestamp, "type": SCALAR, "task": owner, "iter": e.iteration,
             "metric": e.metric, "variant": e.variant, "value": e.value,
             "model_event": model_event} for e in page]  # fmt: skip
    return {"events": docs, "returned": len(docs), "total": len(events),
            "scroll_id": f"mb-{offset + len(docs)}"}  # fmt: skip


def get_task_latest_scalar_values(call: Call) -> dict[str, Any]:
    task = call.store.get_task(call.string("task", required=True) or "")
    stats = call.store.last_scalars(task.id)
    metrics = [{"name": metric, "variants": [{"name": v, "last_value": s.last}
                                             for v, s in variants.items()]}
               for metric, variants in stats.items()]  # fmt: skip
    stamps = [s.last_timestamp for variants in stats.values() for s in variants.values()]
    return {"metrics": metrics, "last_iter": task.last_iteration, "name": task.name,
            "status": task.status, "last_timestamp": max(stamps, default=0)}  # fmt: skip


def get_task_plots(call: Call) -> dict[str, Any]:
    """``{plots: [plot events], returned, total, scroll_id}`` of a task (or with
    ``model_events`` a model), oldest first; ``iters``: only the newest that many iterations."""
    owner = call.string("task", required=True) or ""
    if call.boolean("model_events", False):
        call.store.get_model(owner)
        found = call.store.reports(None, "plot", model_id=owner)
    else:
        call.store.get_task(owner)
        found = call.store.reports(owner, "plot")
    iters = call.integer("iters")
    if iters is not None and iters > 0:
        newest = sorted({r.iteration for r in found})[-iters:]
        found = [r for r in found if r.iteration in newest]
    offset = _scroll_offset(call)
    page = found[offset : offset + 500]
    plots = [{"type": "plot", "task": owner, "iter": r.iteration, "metric": r.metric,
              "variant": r.variant, "plot_str": r.body.get("plot_str", ""),
              "timestamp": r.timestamp} for r in page]  # fmt: skip
    return {"plots": plots, "returned": len(plots), "total": len(found),
            "scroll_id": f"mb-{offset + len(plots)}"}  # fmt: skip


def get_task_log(call: Call) -> dict[str, Any]:
    """``{events: [log events], returned, total}``: ``batch_size`` lines of a task's console
    log, the newest (``navigate_earlier``, the default) or the oldest, in ``order`` (default:
    newest first when navigating earlier, else oldest first)."""
    task = call.store.get_task(call.string("task", required=True) or "")
    found = call.store.reports(task.id, "text")
    size = call.integer("batch_size") or 500
    if size < 1:
        raise invalid("batch_size", "a positive integer", size)
    order = call.string("order")
    if order not in (None, "asc", "desc"):
        raise invalid("order", "'asc' or 'desc'", order)
    earlier = call.boolean("navigate_earlier", True)
    names = {v: k for k, v in LOG_LEVELS.items()}
    page = found[-size:] if earlier else found[:size]
    if (order or ("desc" if earlier else "asc")) == "desc":
        page = page[::-1]
    events = [{"type": "log", "task": task.id, "iter": r.iteration, "timestamp": r.timestamp,
               "level": names.get(int(r.body.get("level", 20)), "info"),
               "msg": r.body.get("msg", "")} for r in page]  # fmt: skip
    return {"events": events, "returned": len(events), "total": len(found)}


def delete_for_task(call: Call) -> dict[str, Any]:
    task = call.store.get_task(call.string("task", required=True) or "")
    if task.status in _LOCKED and not call.boolean("allow_locked", False):
        raise ApiError.of(VALIDATION_ERROR, f"task {task.id} is published: pass allow_locked")
    deleted = call.store.delete_scalars(task.id) + call.store.delete_reports(task.id)
    return {"deleted": deleted > 0}


ENDPOINTS: dict[str, Handler] = {
    "events.add_batch": add_batch,
    "events.add": add_batch,
    "events.scalar_metrics_iter_histogram": scalar_metrics_iter_histogram,
    "events.get_task_events": get_task_events,
    "events.get_task_latest_scalar_values": get_task_latest_scalar_values,
    "events.get_task_plots": get_task_plots,
    "events.get_task_log": get_task_log,
    "events.delete_for_task": delete_for_task,
}
