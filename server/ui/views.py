"""What the model, compare and task pages show, read from the store.

A version's metrics are its metadata snapshot: ``monitor`` / ``monitor_value`` (the metric
the callback watched, and its value when this version was registered), ``epoch``, and
``metrics/<name>`` for every other validation metric of that step (see
``modelbook.integrations._registry.version_metadata``).

Example:
    >>> from modelbook.records import ModelVersionRecord, to_metadata
    >>> from datetime import datetime, timezone
    >>> v = ModelVersionRecord("m", 1, "file:///w.pt", None, 3, 10, datetime.now(timezone.utc),
    ...                        metadata=to_metadata({"monitor": "val_loss", "monitor_value": 0.5}))
    >>> number(meta(v.metadata, "monitor_value"))
    0.5
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from modelbook.errors import InvalidArgumentError, NotFoundError
from modelbook.records import ModelRecord, ModelVersionRecord, TaskRecord
from modelbook.server.ui.plots import MAX_LINE_POINTS
from modelbook.store.objects import best_version
from modelbook.store.scalars import Series
from modelbook.store.sql import SqlStore

#: Versions or models a comparison takes.
COMPARE_MIN, COMPARE_MAX = 2, 4
#: The tasks that used a model shown at most.
MAX_USERS = 100


def meta(metadata: Mapping[str, Mapping[str, str]], key: str) -> str | None:
    """A metadata entry's value (a string), or None."""
    return (metadata.get(key) or {}).get("value")


def number(text: str | None) -> float | None:
    """A metadata value as a finite float, else None."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def monitored(model: ModelRecord) -> tuple[str | None, float | None]:
    """The model's monitored metric and its latest value (from its metadata)."""
    return meta(model.metadata, "monitor"), number(meta(model.metadata, "monitor_value"))


@dataclass(frozen=True)
class ModelView:
    """Everything the model page shows.

    Attributes:
        series: ``{metric: [(version, value)]}``: the monitored metric first, then every
            ``metrics/<name>`` the versions carry, each over the versions that have it.
        producer: the task that made the model (None if none, or deleted).
        users: the tasks that used it as an input model.

    Example:
        >>> store = SqlStore("sqlite://")
        >>> view = model_view(store, store.create_model(name="m", project=None).id)
        >>> view.versions, view.series, view.producer
        ([], {}, None)
    """

    model: ModelRecord
    project: str | None
    versions: list[ModelVersionRecord]
    best: int | None
    monitor: str | None
    series: dict[str, list[tuple[int, float]]]
    producer: TaskRecord | None
    users: list[TaskRecord]
    scalars: Series = field(default_factory=dict)


def model_view(store: SqlStore, model_id: str) -> ModelView:
    """The model page's data.

    Raises:
        ModelNotFoundError: no model has this id.
    """
    model = store.get_model(model_id)
    versions = store.list_model_versions(model_id)
    monitor = meta(model.metadata, "monitor")
    for v in reversed(versions):
        monitor = monitor or meta(v.metadata, "monitor")
    series: dict[str, list[tuple[int, float]]] = {}
    if monitor:
        series[monitor] = [
            (v.version, value) for v in versions
            if (value := number(meta(v.metadata, "monitor_value"))) is not None
        ]  # fmt: skip
    for v in versions:
        for key, item in v.metadata.items():
            name = key[len("metrics/") :]
            value = number(item.get("value"))
            if key.startswith("metrics/") and name != monitor and value is not None:
                series.setdefault(name, []).append((v.version, value))
    scalars = store.scalar_series(model_id=model_id, max_points=MAX_LINE_POINTS)
    users = [t for t in (_task(store, i) for i in store.tasks_using_model(model_id)[:MAX_USERS])
             if t is not None]  # fmt: skip
    project = None
    if model.project:
        with contextlib.suppress(InvalidArgumentError):
            project = store.get_project(model.project).name
    return ModelView(
        model=model, project=project, versions=versions, best=best_version(versions),
        monitor=monitor, series=series, producer=_task(store, model.task), users=users,
        scalars=scalars,
    )  # fmt: skip


def _task(store: SqlStore, task_id: str | None) -> TaskRecord | None:
    if not task_id:
        return None
    try:
        return store.get_task(task_id)
    except NotFoundError:
        return None


@dataclass(frozen=True)
class Comparison:
    """Columns side by side: ``rows`` names each row, ``cells[column][row]`` its text.

    Example:
        >>> c = Comparison(["a", "b"], ["size"], [{"size": "1"}, {"size": "2"}], ["", ""])
        >>> c.differs("size")
        True
    """

    titles: list[str]
    rows: list[str]
    cells: list[dict[str, str]]
    links: list[str]

    def differs(self, row: str) -> bool:
        return len({column.get(row, "") for column in self.cells}) > 1


def versions_before(text: str | None) -> int | None:
    """The model page's ``before=`` (list the versions older than this one), checked.

    Raises:
        InvalidArgumentError: not a whole number >= 2.
    """
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 2:
        raise InvalidArgumentError(
            f"before={text!r} is not accepted: it takes a version number >= 2 (the versions "
            "older than it are listed)"
        )
    return int(text)


def parse_refs(versions: list[str], models: list[str]) -> list[tuple[str, int | None]]:
    """``(model id, version or None)`` of a comparison's ``v=<model id>:<version>`` and
    ``m=<model id>`` parameters.

    Raises:
        InvalidArgumentError: fewer than 2 or more than 4 in all, or a malformed ``v``.

    Example:
        >>> parse_refs(["abc:2", "abc:3"], [])
        [('abc', 2), ('abc', 3)]
    """
    refs: list[tuple[str, int | None]] = []
    for text in versions:
        model_id, _, version = text.rpartition(":")
        if not model_id or not version.isdigit():
            raise InvalidArgumentError(
                f"a version to compare is written <model id>:<version number>, got {text!r}"
            )
        refs.append((model_id, int(version)))
    refs += [(m, None) for m in models if m]
    if not COMPARE_MIN <= len(refs) <= COMPARE_MAX:
        raise InvalidArgumentError(
            f"compare takes {COMPARE_MIN} to {COMPARE_MAX} versions (v=<model id>:<version>) "
            f"or models (m=<model id>), got {len(refs)}"
        )
    return refs


def _size(value: int | None) -> str:
    return "" if value is None else str(value)


def _model_cells(model: ModelRecord, project: str) -> dict[str, str]:
    monitor, value = monitored(model)
    cells = {
        "model": model.name, "project": project, "framework": model.framework or "",
        "tags": ", ".join(model.tags), "published": "yes" if model.ready else "no",
        "archived": "yes" if model.archived else "no", "versions": str(model.version),
        "iteration": _size(model.iteration), "metric": monitor or "",
        "metric value": "" if value is None else repr(value), "size": _size(model.size),
        "sha256": model.sha256 or "", "task": model.task or "",
        "labels": ", ".join(f"{k}={v}" for k, v in sorted(model.labels.items())),
        "design": model.design, "last update": f"{model.last_update:%Y-%m-%d %H:%M:%S}"
        if model.last_update else "",
    }  # fmt: skip
    cells.update({f"metadata: {k}": v.get("value", "") for k, v in model.metadata.items()})
    return cells


def _version_cells(model: ModelRecord, v: ModelVersionRecord) -> dict[str, str]:
    cells = {
        "model": model.name, "version": str(v.version), "iteration": _size(v.iteration),
        "metric": meta(v.metadata, "monitor") or "",
        "metric value": meta(v.metadata, "monitor_value") or "",
        "epoch": meta(v.metadata, "epoch") or "", "size": _size(v.size), "sha256": v.sha256 or "",
        "stored at": f"{v.created:%Y-%m-%d %H:%M:%S}", "pruned": "yes" if v.pruned else "no",
    }  # fmt: skip
    shown = {"monitor", "monitor_value", "epoch"}
    cells.update({f"metadata: {k}": i.get("value", "") for k, i in v.metadata.items()
                  if k not in shown})  # fmt: skip
    return cells


def compare(store: SqlStore, refs: list[tuple[str, int | None]]) -> Comparison:
    """The comparison of versions (``(model, version)``) and models (``(model, None)``).

    Raises:
        ModelNotFoundError: an unknown model; InvalidArgumentError: an unknown version.
    """
    projects = {p.id: p.name for p in store.list_projects()}
    titles, cells, links = [], [], []
    for model_id, version in refs:
        model = store.get_model(model_id)
        links.append(model.id)
        if version is None:
            titles.append(model.name)
            cells.append(_model_cells(model, projects.get(model.project or "", "")))
            continue
        found = [v for v in store.list_model_versions(model_id) if v.version == version]
        if not found:
            raise InvalidArgumentError(
                f"model {model.name!r} ({model.id}) has no version {version}; it has versions "
                f"1 to {model.version}" if model.version else f"model {model.id} has no versions"
            )
        titles.append(f"{model.name} v{version}")
        cells.append(_version_cells(model, found[0]))
    rows: list[str] = []
    for column in cells:
        rows += [r for r in column if r not in rows]
    return Comparison(titles, rows, cells, links)


@dataclass(frozen=True)
class TaskView:
    """Everything the task page shows (``inputs`` / ``outputs``: entry name, model id and
    the model's record, None when it was deleted).

    Example:
        >>> store = SqlStore("sqlite://")
        >>> task = store.create_task(name="train", project=None)
        >>> task_view(store, task.id).inputs
        []
    """

    task: TaskRecord
    project: str | None
    series: dict[str, dict[str, tuple[list[int], list[float]]]]
    inputs: list[tuple[str, str, ModelRecord | None]]
    outputs: list[tuple[str, str, ModelRecord | None]]


def task_view(store: SqlStore, task_id: str) -> TaskView:
    """The task page's data.

    Raises:
        TaskNotFoundError: no task has this id.
    """
    task = store.get_task(task_id)

    def entries(kind: str) -> list[tuple[str, str, ModelRecord | None]]:
        listed = task.input_models if kind == "input" else task.output_models
        found: list[tuple[str, str, ModelRecord | None]] = []
        for entry in listed:
            try:
                found.append((entry.name, entry.model, store.get_model(entry.model)))
            except NotFoundError:
                found.append((entry.name, entry.model, None))
        return found

    project = None
    if task.project:
        with contextlib.suppress(InvalidArgumentError):
            project = store.get_project(task.project).name
    series = store.scalar_series(task_id, max_points=MAX_LINE_POINTS)  # what a line draws
    return TaskView(task, project, series, entries("input"), entries("output"))
