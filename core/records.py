"""Plain records exchanged between the user objects (Task, Model) and a backend.

They mirror the ClearML server's task and model documents, restricted to the fields the Model
API reads and writes. A backend returns fresh records; user objects never mutate them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: The system tag that marks an archived model or task (ClearML's ``archived_tag``).
ARCHIVED_TAG = "archived"
#: The system tag that marks a model whose weights are a zip of a directory.
PACKAGE_TAG = "package"

#: Model metadata, one shape from a callback to the database and back:
#: ``{key: {"key": key, "value": str, "type": str}}`` (ClearML's).
Metadata = dict[str, dict[str, str]]


def metadata_item(key: str, value: Any, v_type: str) -> dict[str, str]:
    """One metadata entry; the value and type as strings (floats keep every digit)."""
    return {"key": str(key), "value": str(value), "type": str(v_type)}


def to_metadata(values: Mapping[str, Any] | None) -> Metadata:
    """The one conversion into :data:`Metadata`: from ``{key: value}`` (the type is
    bool, int or float for those, else str) or ``{key: {"value": ..., "type": ...}}``.

    Example:
        >>> to_metadata({"epoch": 3, "val_acc": {"value": "0.91", "type": "float"}})["epoch"]
        {'key': 'epoch', 'value': '3', 'type': 'int'}
    """
    result: Metadata = {}
    for key, value in (values or {}).items():
        if isinstance(value, Mapping):
            result[str(key)] = metadata_item(key, value.get("value"), value.get("type", "str"))
        else:
            kind = {bool: "bool", int: "int", float: "float"}.get(type(value), "str")
            result[str(key)] = metadata_item(key, value, kind)
    return result


TASK_STATUSES = ("created", "in_progress", "stopped", "completed", "failed", "published", "closed")


@dataclass(frozen=True)
class ProjectRecord:
    id: str
    name: str
    created: datetime
    default_output_destination: str | None = None
    #: The ClearML fields modelbook does not model (``description``, ``tags``,
    #: ``system_tags``), as a server stored them; not compared.
    document: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TaskModelEntry:
    """One named entry of a task's ``models.input`` or ``models.output`` list."""

    name: str
    model: str


@dataclass(frozen=True)
class TaskRecord:
    id: str
    name: str
    project: str | None
    type: str = "training"
    status: str = "created"
    comment: str = ""
    tags: list[str] = field(default_factory=list)
    system_tags: list[str] = field(default_factory=list)
    created: datetime | None = None
    last_update: datetime | None = None
    output_destination: str | None = None
    #: ``{section: {name: value}}``, values as strings (ClearML hyper-parameters).
    hyperparams: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The task's label enumeration (ClearML ``execution.model_labels``).
    labels: dict[str, int] = field(default_factory=dict)
    #: The task's model design text (ClearML configuration section "General").
    model_config: str = ""
    last_iteration: int = 0
    input_models: list[TaskModelEntry] = field(default_factory=list)
    output_models: list[TaskModelEntry] = field(default_factory=list)
    #: The ClearML fields a client wrote that modelbook does not model (script, runtime,
    #: container, execution, other configuration sections...), as a server stored them;
    #: not compared.
    document: dict[str, Any] = field(default_factory=dict, compare=False)


#: What a :class:`ReportEvent` holds: a plot (ClearML's ``plot`` event) or text (``log``).
REPORT_KINDS = ("plot", "text")


@dataclass(frozen=True)
class ReportEvent:
    """One reported plot or text: ``body`` is ``{"plot_str": <plotly JSON>}`` for a plot,
    ``{"level": <int>, "msg": <str>}`` for text.

    Example:
        >>> ReportEvent("text", "", "", 0, {"level": 20, "msg": "epoch 1 done"}).kind
        'text'
    """

    kind: str
    metric: str
    variant: str
    iteration: int
    body: dict[str, Any]
    timestamp: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class ScalarEvent:
    """One reported scalar value: ``metric`` (ClearML's title) / ``variant`` (series).

    Attributes:
        metric / variant: names of at most 255 characters.
        iteration: the x value; a value reported again for the same iteration replaces it.
        value: a finite number.
        timestamp: milliseconds since the epoch (the time of storing when None).
        model: the model the value describes, if any.

    Example:
        >>> ScalarEvent("loss", "train", iteration=3, value=0.25).timestamp is None
        True
    """

    metric: str
    variant: str
    iteration: int
    value: float
    timestamp: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class ScalarStats:
    """What one series of a task holds: its last, first, smallest and largest values, each
    with its iteration, and how many values were reported (ClearML's ``last_metrics``).

    Example:
        >>> stats = ScalarStats("loss", "train", count=2, total=1.0, first=0.75, first_iteration=0,
        ...                     min=0.25, min_iteration=1, max=0.75, max_iteration=0, last=0.25,
        ...                     last_iteration=1)
        >>> stats.mean
        0.5
    """

    metric: str
    variant: str
    count: int
    total: float
    first: float
    first_iteration: int
    min: float
    min_iteration: int
    max: float
    max_iteration: int
    last: float
    last_iteration: int
    last_timestamp: int = 0

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


@dataclass(frozen=True)
class ModelRecord:
    id: str
    name: str
    project: str | None = None
    task: str | None = None
    comment: str = ""
    tags: list[str] = field(default_factory=list)
    system_tags: list[str] = field(default_factory=list)
    framework: str | None = None
    design: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    uri: str | None = None
    ready: bool = False
    created: datetime | None = None
    last_update: datetime | None = None
    iteration: int | None = None
    parent: str | None = None
    #: ``{key: {"key": key, "value": str, "type": str}}`` as ClearML returns it.
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    #: sha256 and size of the stored weights, recorded when they were stored.
    sha256: str | None = None
    size: int | None = None
    #: How many times weights were registered for this model.
    version: int = 0

    @property
    def archived(self) -> bool:
        return ARCHIVED_TAG in self.system_tags


@dataclass(frozen=True)
class ModelVersionRecord:
    """One registration of weights for a model: what ``update_weights`` stored."""

    model: str
    version: int
    uri: str
    sha256: str | None
    size: int | None
    iteration: int | None
    created: datetime
    comment: str = ""
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    #: True once retention pruned it: the record stays, its bytes may be gone.
    pruned: bool = False


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Backend.prune_versions` did (or, with ``dry_run``, would do).

    Attributes:
        pruned: version numbers marked pruned.
        doomed: URIs of objects nothing references any more, whose bytes are to be deleted.
        kept: ``{version: why}`` for the older versions that were protected.

    Example:
        >>> PruneResult(pruned=[1, 2], kept={3: "the best version by the monitored metric"}).pruned
        [1, 2]
    """

    pruned: list[int] = field(default_factory=list)
    doomed: list[str] = field(default_factory=list)
    kept: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GcResult:
    """What :meth:`Backend.collect_garbage` found.

    Attributes:
        doomed: URIs of owned objects nothing references, whose bytes are to be deleted.
        partials: temporary files of uploads a crash left behind (removed by the backend
            itself unless ``dry_run``).

    Example:
        >>> GcResult(doomed=["file:///store/blobs/ab/ab12/w.pt"]).partials
        []
    """

    doomed: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelQuery:
    """A query for models, with the ClearML server's ``models.get_all`` semantics.

    Attributes:
        projects: project ids; a model must be in one of them (sub-projects not included).
        name: exact, case-sensitive name.
        name_pattern: a regular expression searched in the name (the server's ``name`` field).
        tags / system_tags: ClearML tag filters (plain list = any-of, ``-x`` excludes,
            ``__$all`` / ``__$any`` / ``__$not`` / ``__$nop`` operators).
        ready: only published (True) or only unpublished (False) models.
        uri: exact uri match (any of the list).
        task: creating task id.
        metadata: ``{key: value}``, exact value matches.
        ids: restrict to these ids.
        order_by: field names, ``-`` prefix for descending; default newest created first.
        offset / limit: paging.
    """

    projects: list[str] | None = None
    name: str | None = None
    name_pattern: str | None = None
    tags: list[Any] | None = None
    system_tags: list[Any] | None = None
    ready: bool | None = None
    uri: list[str] | None = None
    task: str | None = None
    metadata: dict[str, str] | None = None
    ids: list[str] | None = None
    order_by: list[str] = field(default_factory=lambda: ["-created"])
    offset: int = 0
    limit: int | None = None
