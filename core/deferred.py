"""Registry calls that wait for the registry: local ids, and the calls replayed in order.

A task or model created while the registry cannot be reached (or in offline mode) gets a
*local id* at once (``local-<32 hex>``, what ``task.id`` / ``output_model.id`` return until
the registry assigned its own). The calls that concern it (create, hyper-parameters, labels,
metadata, connecting models, status) become ``call`` jobs in the spool
(:mod:`modelbook.storage.spool`), in the *chain* of their task, next to the weights jobs;
the upload worker (:mod:`modelbook.uploads`) replays each chain in queue order when the
registry answers, and records which registry id each local id became, in the home, so
``Model(local_id)`` and ``Task.get_task(local_id)`` keep working afterwards.

Exactly once: every task and model modelbook creates carries the system tag
``modelbook:<local id>``. A creation looks for that tag first, so one whose answer was lost
(a connection cut after the server committed, a process killed before it wrote the id down)
is found, not made twice. The other calls set values, so running one again changes nothing.

Each call is a function of the backend, a resolver of local ids and the JSON ``args`` the job
holds; creations return the record they made or found.

Example:
    >>> local = new_local_id()
    >>> is_local(local), is_local("4a1e9f"), key_tag(local) == "modelbook:" + local
    (True, False, True)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from modelbook.backends.base import Backend
from modelbook.errors import InvalidArgumentError
from modelbook.records import ModelQuery, ModelRecord, ReportEvent, ScalarEvent, TaskRecord

LOCAL_PREFIX = "local-"
TAG_PREFIX = "modelbook:"

Resolve = Callable[[str], str]


def new_local_id() -> str:
    """A fresh local id: ``local-`` and 32 hex digits."""
    return f"{LOCAL_PREFIX}{uuid.uuid4().hex}"


def is_local(value: object) -> bool:
    """Whether ``value`` is a local id (one the registry has not assigned)."""
    return isinstance(value, str) and value.startswith(LOCAL_PREFIX)


def key_tag(local_id: str) -> str:
    """The system tag that finds the record created for ``local_id``."""
    return f"{TAG_PREFIX}{local_id}"


# -- the calls ------------------------------------------------------------------------------
def create_task(backend: Backend, resolve: Resolve, args: dict[str, Any]) -> TaskRecord:
    """Find the task tagged with ``args["key"]`` or create it (project by name)."""
    project = backend.get_or_create_project(args["project_name"])
    tag = key_tag(args["key"])
    for found in backend.find_tasks(project=project.id, name=args["name"]):
        if tag in found.system_tags:
            return found
    return backend.create_task(
        name=args["name"], project=project.id, type=args.get("type") or "training",
        tags=list(args.get("tags") or []), output_destination=args.get("output_destination"),
        system_tags=[tag],
    )  # fmt: skip


def update_task(backend: Backend, resolve: Resolve, args: dict[str, Any]) -> TaskRecord:
    return backend.update_task(resolve(args["task"]), **args["fields"])


def connect_model(backend: Backend, resolve: Resolve, args: dict[str, Any]) -> TaskRecord:
    """Add a model to a task's ``kind`` ("input" / "output") entries under ``entry``; the
    task takes the model's design and labels if it has none (as in ClearML)."""
    task_id = resolve(args["task"])
    record = backend.set_task_model(task_id, args["kind"], args["entry"], resolve(args["model"]))
    copy: dict[str, Any] = {}
    if args.get("design") and not record.model_config:
        copy["model_config"] = args["design"]
    if args.get("labels") and not record.labels:
        copy["labels"] = args["labels"]
    return backend.update_task(task_id, **copy) if copy else record


def create_model(backend: Backend, resolve: Resolve, args: dict[str, Any]) -> ModelRecord:
    """Find the model tagged with ``args["key"]`` or create it from ``args["fields"]``, then
    connect it to its task as the output ``args["entry"]`` (when one is given)."""
    task_id = resolve(args["task"])
    tag = key_tag(args["key"])
    found = backend.query_models(ModelQuery(task=task_id, system_tags=[tag]))
    if found:
        record = found[0]
    else:
        fields = dict(args["fields"], task=task_id, system_tags=[tag])
        if is_local(args["task"]):  # the comment names the task: by the id it now has
            fields["comment"] = str(fields.get("comment") or "").replace(args["task"], task_id)
        if not fields.get("project"):
            fields["project"] = backend.get_task(task_id).project
        if fields.get("parent"):
            fields["parent"] = resolve(fields["parent"])
        record = backend.create_model(**fields)
    if args.get("entry"):  # else its first weights name its entry
        connect_model(backend, resolve, {
            "task": task_id, "kind": "output", "entry": args["entry"], "model": record.id,
            "design": record.design, "labels": record.labels,
        })  # fmt: skip
    return record


def update_model(backend: Backend, resolve: Resolve, args: dict[str, Any]) -> ModelRecord:
    return backend.update_model(resolve(args["model"]), **args["fields"])


def set_model_metadata(backend: Backend, resolve: Resolve, args: dict[str, Any]) -> ModelRecord:
    return backend.set_model_metadata(
        resolve(args["model"]), args["items"], replace=bool(args.get("replace"))
    )


def add_scalars(backend: Backend, resolve: Resolve, args: dict[str, Any]) -> int:
    """Reported values (``[metric, variant, iteration, value, timestamp]`` each) of
    ``args["task"]``, or of ``args["model"]``."""
    events = [ScalarEvent(m, v, int(i), float(x), t) for m, v, i, x, t in args["events"]]
    if args.get("model"):
        return backend.add_model_scalars(resolve(args["model"]), events)
    return backend.add_scalars(resolve(args["task"]), events)


def add_reports(backend: Backend, resolve: Resolve, args: dict[str, Any]) -> int:
    """Reported plots and text (``[kind, metric, variant, iteration, body, timestamp]``
    each) of ``args["task"]``, or of ``args["model"]``."""
    events = [ReportEvent(k, m, v, int(i), b, t) for k, m, v, i, b, t in args["events"]]
    if args.get("model"):
        return backend.add_reports(None, events, model_id=resolve(args["model"]))
    return backend.add_reports(resolve(args["task"]), events)


CALLS: dict[str, Callable[[Backend, Resolve, dict[str, Any]], Any]] = {
    "create_task": create_task,
    "update_task": update_task,
    "connect_model": connect_model,
    "create_model": create_model,
    "update_model": update_model,
    "set_model_metadata": set_model_metadata,
    "add_scalars": add_scalars,
    "add_reports": add_reports,
}


def run(backend: Backend, resolve: Resolve, op: str, args: dict[str, Any]) -> Any:
    """Make the call ``op`` with ``args``; returns its record."""
    call = CALLS.get(op)
    if call is None:
        raise InvalidArgumentError(f"unknown deferred call {op!r}; known: {sorted(CALLS)}")
    return call(backend, resolve, args)


def describe(op: str, args: dict[str, Any]) -> str:
    """One line for ``modelbook uploads``: what the call does, to what."""
    target = args.get("key") or args.get("model") or args.get("task") or ""
    what = {
        "create_task": f"create task {args.get('project_name')!r} / {args.get('name')!r}",
        "create_model": f"create model {args.get('fields', {}).get('name')!r}",
        "update_task": f"set {', '.join(sorted(args.get('fields') or {}))} of task",
        "update_model": f"set {', '.join(sorted(args.get('fields') or {}))} of model",
        "set_model_metadata": f"set metadata {', '.join(sorted(args.get('items') or {}))}",
        "connect_model": f"connect model as {args.get('kind')} {args.get('entry')!r}",
        "add_scalars": f"add {len(args.get('events') or [])} reported values",
        "add_reports": f"add {len(args.get('events') or [])} reported plots / texts",
    }.get(op, op)
    return f"{what} ({target})" if target else what
