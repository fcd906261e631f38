"""A Hypothesis state machine over the Python API, mixing valid calls with bad arguments
(issue 13).

Each step calls the public API as a careless user would: ``Task.init`` / ``close``,
``OutputModel(...)`` with names, tags, labels, designs, comments and frameworks,
``update_weights`` with real small files or ``register_uri``, ``update_labels`` /
``update_design``, metadata, tags, names, comments, publish, archive, ``prune_versions``,
``Model.remove``, ``Model(model_id)``, ``InputModel(...)``, ``Model.query_models`` with
filters and ``InputModel.import_model``. Every argument comes from a pool that pairs a value
with whether the public rules accept it, so the machine knows what each call must do.

After every step:

(a) each call succeeded (every argument acceptable, the model allowed it) or raised the
    typed :class:`~modelbook.errors.ModelbookError` subclass it should, never a
    ``TypeError``, ``KeyError`` or database error from deep inside, and a refused call
    changed nothing (no model created, no task entry, labels or design changed);
(b) the store is sound: SQLite ``PRAGMA integrity_check`` is ok; the current weights and
    every unpruned version point at an existing, complete file whose sha256 and size match
    the recorded ones; registered user files are untouched; a published model's weights,
    design, labels and versions never change;
(c) the store holds exactly the models the machine's own model of the state expects, with
    their names, tags, labels, designs, metadata, weights, versions, published and archived
    flags; queries return exactly the models that match, newest first.

The argument pools and the machine's model of the state are in ``api_machine_support.py``.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_machine_support import (
    COUNTS,
    DESIGNS,
    FILE_NAMES,
    ITERATIONS,
    KEEP,
    LABELS,
    META_KEYS,
    META_VALUES,
    NAMES,
    PROJECTS,
    QUERY_TAGS,
    TAG_FILTERS,
    TAGS,
    TARGETS,
    UPLOAD_METADATA,
    V_TYPES,
    WEIGHTS,
    Expected,
    Handle,
    TaskState,
    _design,
    _refusal,
    pool,
)
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine as Machine
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test

import modelbook
from modelbook import InputModel, Model, OutputModel, Task, config, errors
from modelbook.errors import InvalidArgumentError as Invalid
from modelbook.records import ModelQuery
from modelbook.storage.local import to_path, to_uri
from modelbook.store import schema

# the embedded store's integrity (SQLite, its blob folder) is the subject
pytestmark = pytest.mark.embedded_only

#: 300 sequences of up to 8 steps: ~35-55 s on one shared core.
SETTINGS = settings(
    max_examples=300,
    stateful_step_count=8,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it is slow
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class ApiMachine(Machine):
    """An empty store per sequence, a task and an output model to start with."""

    #: The store (set by the test): one database whose tables are emptied between
    #: sequences, as opening a fresh one costs more than a whole sequence.
    home: Path

    def __init__(self) -> None:
        super().__init__()
        if Task._current is not None:
            Task._current.close()
        if config.home() != self.home:
            modelbook.configure(home=self.home)
        with config.get_backend().engine.begin() as conn:
            for table in schema.metadata.sorted_tables:
                if table.name not in ("schema_version", "settings"):
                    conn.execute(table.delete())
        shutil.rmtree(self.home / "blobs", ignore_errors=True)
        self.root = Path(tempfile.mkdtemp(prefix="sequence-", dir=self.home.parent))
        self.user_files: dict[str, bytes] = {}
        for i, data in enumerate(WEIGHTS):
            path = self.root / "user" / f"user{i}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.user_files[str(path)] = data
        self.models: dict[str, Expected] = {}
        self.counter = 0
        self.projects = {PROJECTS[0]}  # the projects the store holds
        task = Task.init(project_name=PROJECTS[0], task_name="machine")
        self.task: TaskState | None = TaskState(task, PROJECTS[0])
        self.handles = [Handle(OutputModel(task=task, name="first"), self.task, "first", [],
                               None, None)]  # fmt: skip

    def teardown(self) -> None:
        try:
            if self.task is not None:
                self.task.task.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------
    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def call(self, ok: bool, fn: Callable[[], Any], refused: Any = Invalid) -> Any:
        """Run ``fn``: it must succeed when ``ok``, else raise ``refused`` (a errors.ModelbookError
        subclass, or a tuple of them) with a message; anything else fails the test."""
        try:
            result = fn()
        except errors.ModelbookError as exc:
            if ok:
                raise AssertionError(f"an accepted call raised {exc!r}") from exc
            if not isinstance(exc, refused):
                raise AssertionError(f"expected {refused}, got {exc!r}") from exc
            assert str(exc), "an error without a message"
            return exc
        except Exception as exc:
            raise AssertionError(
                f"an untyped {type(exc).__name__} escaped the public API: {exc!r:.300}"
            ) from exc
        if not ok:
            raise AssertionError(f"a call to refuse succeeded, returning {result!r:.200}")
        return result

    def _pick(self, which: int) -> tuple[str, Expected]:
        model_id = list(self.models)[which % len(self.models)]
        return model_id, self.models[model_id]

    def _created(self, handle: Handle) -> Expected:
        """The handle's model, created by the call just made if it was not yet."""
        if handle.id is None:
            handle.id = handle.model.id
            assert handle.id is not None and handle.id not in self.models
            owner = handle.owner
            self.models[handle.id] = Expected(
                seq=self._next(), name=handle.name, project=owner.project,
                tags=list(dict.fromkeys(handle.tags)),
                labels=dict(handle.labels if handle.labels is not None else owner.labels),
                design=handle.design if handle.design is not None else owner.design,
            )  # fmt: skip
        return self.models[handle.id]

    def _live_handle(self, which: int, unpublished_first: bool = False) -> Handle:
        live = [h for h in self.handles if h.id is None or h.id in self.models]
        if unpublished_first and which < 8:  # mostly one that can still change
            live = [h for h in live if h.id is None or not self.models[h.id].published] or live
        return live[which % len(live)]

    def _has_handles(self) -> bool:
        return any(h.id is None or h.id in self.models for h in self.handles)

    def _target(self, which: int, via_handle: bool) -> tuple[Any, Expected | None, Handle | None]:
        """A handle's OutputModel (maybe not created yet) or a ``Model`` by id."""
        if self._has_handles() and (via_handle or not self.models):
            handle = self._live_handle(which)
            return handle.model, self.models.get(handle.id) if handle.id else None, handle
        model_id, expected = self._pick(which)
        return Model(model_id), expected, None

    def _touched(self, expected: Expected | None, handle: Handle | None) -> Expected:
        """The model a successful write went to (a handle's is created by it)."""
        found = self._created(handle) if handle is not None else expected
        assert found is not None
        return found

    # -- tasks -----------------------------------------------------------------------------
    @rule(project=pool([*((p, True) for p in PROJECTS), (5, False), ("", False)]),
          name=pool(NAMES[:7]), tags=pool(TAGS),
          task_type=pool([("training", True), ("testing", True), ("bogus", False)]))  # fmt: skip
    def init_task(self, project: tuple, name: tuple, tags: tuple, task_type: tuple) -> None:
        def init() -> Task:
            return Task.init(project_name=project[0], task_name=name[0], tags=tags[0],
                             task_type=task_type[0])  # fmt: skip

        if self.task is not None:  # Task.init returns the open task, whatever it is given
            assert self.call(True, init) is self.task.task
            return
        ok = project[1] and name[1] and tags[1] and task_type[1]
        task = self.call(ok, init)
        if ok:
            assert task.project_name == project[0] and task.name == name[0]
            self.task = TaskState(task, project[0])
            self.projects.add(project[0])

    @precondition(lambda self: self.task is not None)
    @rule()
    def close_task(self) -> None:
        assert self.task is not None
        self.task.task.close()
        assert Task.get_task(task_id=self.task.task.id).status == "completed"
        self.task.closed, self.task = True, None

    # -- output models ---------------------------------------------------------------------
    @rule(name=pool(NAMES), tags=pool(TAGS), labels=pool(LABELS), design=pool(DESIGNS),
          comment=pool([(None, True), ("notes", True), (5, False), ("a\x00", False)]),
          framework=pool([(None, True), ("PyTorch", True), (5, False),
                          ("f" * 200, False)]))  # fmt: skip
    def new_output_model(self, name: tuple, tags: tuple, labels: tuple, design: tuple,
                         comment: tuple, framework: tuple) -> None:  # fmt: skip
        ok = all(x[-1] for x in (name, tags, labels, comment, framework, design))
        model = self.call(ok and self.task is not None, lambda: OutputModel(  # no task: refused
            name=name[0], tags=tags[0], label_enumeration=labels[0], config_text=design[0],
            config_dict=design[1], comment=comment[0], framework=framework[0],
        ))  # fmt: skip
        if ok and self.task is not None:
            assert model.id is None  # nothing written yet
            self.handles.append(Handle(model, self.task, name[0], list(tags[0] or []),
                                       labels[0], _design(design[0], design[1])))  # fmt: skip

    # one argument: Hypothesis tries rules of fewer arguments first, and this one matters most
    @precondition(lambda self: self._has_handles())
    @rule(upload=st.fixed_dictionaries({
        "which": st.integers(0, 9), "data": st.integers(0, len(WEIGHTS) - 1),
        "file_name": st.sampled_from(FILE_NAMES),
        "source": st.sampled_from(["file"] * 10 + ["register"] * 4 + [
            "missing", "both", "neither", "int", "too long", "bad uri"]),
        "iteration": pool(ITERATIONS, 16), "target_name": pool(TARGETS, 16),
        "metadata": pool(UPLOAD_METADATA, 16),
    }))  # fmt: skip
    def update_weights(self, upload: dict[str, Any]) -> None:
        source, iteration, target, metadata = (
            upload[k] for k in ("source", "iteration", "target_name", "metadata"))  # fmt: skip
        handle = self._live_handle(upload["which"], unpublished_first=True)
        data = WEIGHTS[upload["data"]]
        path = self.root / "src" / str(self._next()) / upload["file_name"]
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        user = next(iter(self.user_files))
        kwargs: dict[str, Any] = {
            "file": {"weights_filename": str(path), "target_filename": target[0]},
            "register": {"register_uri": user},
            "missing": {"weights_filename": str(path.parent / "missing.pt")},
            "both": {"weights_filename": str(path), "register_uri": user},
            "neither": {}, "int": {"weights_filename": 123},
            "too long": {"weights_filename": "a" * 5000},
            "bad uri": {"register_uri": "s3://bucket/a\x00b.pt"},
        }[source]  # fmt: skip
        args_ok = iteration[1] and metadata[1] and (source != "file" or target[1])
        current = self.models.get(handle.id) if handle.id else None
        published = current is not None and current.published
        source_ok = source in ("file", "register")
        # a closed task still takes output models, whether created before its first weights
        # (by metadata, a name) or after (Task.connect's docstring)
        ok = args_ok and source_ok and not published
        refused: Any = Invalid
        if source in ("both", "neither"):  # said before anything else
            refused = errors.WeightsArgumentError
        elif published:
            refused = _refusal(args_ok and source_ok, True)
        elif args_ok and source == "missing":
            refused = errors.WeightsFileNotFoundError
        returned = self.call(ok, lambda: handle.model.update_weights(
            **kwargs, iteration=iteration[0], metadata=metadata[0], async_enable=False
        ), refused)  # fmt: skip
        if not ok:
            return
        expected = self._created(handle)
        if not handle.connected:  # its task takes its design and labels if it has none
            owner, handle.connected = handle.owner, True
            named = (target[0] or upload["file_name"]) if source == "file" else user
            handle.entry, handle.connected_at = Path(named).stem, self._next()
            owner.design, owner.labels = owner.design or expected.design, owner.labels or dict(
                expected.labels)  # fmt: skip
        assert source == "file" or returned == to_uri(user)
        expected.uri = returned
        expected.sha256 = hashlib.sha256(data).hexdigest() if source == "file" else None
        expected.versions += 1
        for key, value in (metadata[0] or {}).items():
            shaped = value if isinstance(value, dict) else {"value": value, "type": {
                bool: "bool", int: "int", float: "float"}.get(type(value), "str")}  # fmt: skip
            expected.metadata[key] = {"key": key, "value": str(shaped["value"]),
                                      "type": shaped.get("type", "str")}  # fmt: skip

    @precondition(lambda self: self._has_handles())
    @rule(which=st.integers(0, 9), labels=pool(LABELS[1:]), design=pool(DESIGNS[1:]))
    def update_labels_and_design(self, which: int, labels: tuple, design: tuple) -> None:
        handle = self._live_handle(which, unpublished_first=True)
        current = self.models.get(handle.id) if handle.id else None
        published = current is not None and current.published
        self.call(labels[1] and not published, lambda: handle.model.update_labels(labels[0]),
                  _refusal(labels[1], published))  # fmt: skip
        if labels[1] and not published:
            handle.owner.labels = dict(labels[0])
            if current is None:
                handle.labels = dict(labels[0])
            else:
                current.labels = dict(labels[0])
        self.call(design[2] and not published, lambda: handle.model.update_design(
            config_text=design[0], config_dict=design[1]),
            _refusal(design[2], published))  # fmt: skip
        if design[2] and not published:
            text = _design(design[0], design[1]) or ""
            handle.owner.design = handle.owner.design or text  # set once, by the first
            if current is None:
                handle.design = text
            else:
                current.design = text
        task = config.get_backend().get_task(handle.owner.task.id)  # refused: task unchanged
        assert (task.labels, task.model_config) == (handle.owner.labels, handle.owner.design)

    # -- any model: properties, metadata, lifecycle ----------------------------------------
    @precondition(lambda self: self.models or self._has_handles())
    @rule(which=st.integers(0, 9), via_handle=st.booleans(), key=pool(META_KEYS),
          value=pool(META_VALUES), v_type=st.sampled_from(V_TYPES))  # fmt: skip
    def set_metadata(self, which: int, via_handle: bool, key: tuple, value: tuple,
                     v_type: Any) -> None:  # fmt: skip
        model, expected, handle = self._target(which, via_handle)
        ok = key[1] and value[1]
        done = self.call(ok, lambda: model.set_metadata(key[0], value[0], v_type))
        if ok:
            assert done is True
            kind = v_type if v_type in ("float", "int", "str") else "None"
            self._touched(expected, handle).metadata[key[0]] = {
                "key": key[0], "value": str(value[0]), "type": kind}  # fmt: skip

    @precondition(lambda self: self.models or self._has_handles())
    @rule(which=st.integers(0, 9), via_handle=st.booleans(), key=pool(META_KEYS))
    def get_metadata(self, which: int, via_handle: bool, key: tuple) -> None:
        model, expected, _ = self._target(which, via_handle)
        model.reload()  # a handle reads a snapshot until reloaded (documented)
        got = self.call(key[1], lambda: model.get_metadata(key[0]))
        if key[1]:
            item = expected.metadata.get(key[0]) if expected is not None else None
            assert got == (item["value"] if item else None)

    @precondition(lambda self: self.models or self._has_handles())
    @rule(which=st.integers(0, 9), via_handle=st.booleans(), replace=st.booleans(),
          items=pool([({"k1": {"value": 1, "type": "int"}}, True), ({"k2": {"value": "v"}}, True),
                      ({}, True), ({"k1": 1}, False), (5, False), ([("k1", 1)], False),
                      ({"k1": {"value": math.inf}}, False),
                      ({"k1": {"value": 1, "type": 5}}, False)]))  # fmt: skip
    def set_all_metadata(self, which: int, via_handle: bool, replace: bool, items: tuple) -> None:
        model, expected, handle = self._target(which, via_handle)
        self.call(items[1], lambda: model.set_all_metadata(items[0], replace=replace))
        if items[1]:
            expected = self._touched(expected, handle)
            new = {k: {"key": k, "value": str(v["value"]), "type": str(v.get("type"))}
                   for k, v in items[0].items()}  # fmt: skip
            expected.metadata = new if replace else {**expected.metadata, **new}

    @precondition(lambda self: self.models or self._has_handles())
    @rule(which=st.integers(0, 9), via_handle=st.booleans(), tags=pool(TAGS), name=pool(NAMES),
          comment=pool([("c", True), (None, True), ([1], False), ("a\x00", False)]))  # fmt: skip
    def set_properties(self, which: int, via_handle: bool, tags: tuple, name: tuple,
                       comment: tuple) -> None:  # fmt: skip
        model, expected, handle = self._target(which, via_handle)
        self.call(tags[1], lambda: setattr(model, "tags", tags[0]))
        if tags[1]:
            expected = self._touched(expected, handle)
            expected.tags = list(dict.fromkeys(tags[0] or []))
        self.call(name[1], lambda: setattr(model, "name", name[0]))
        if name[1]:
            expected = self._touched(expected, handle)
            expected.name = name[0]
        self.call(comment[1], lambda: setattr(model, "comment", comment[0]))
        if comment[1]:
            self._touched(expected, handle)

    @precondition(lambda self: self.models or self._has_handles())
    @rule(which=st.integers(0, 9), via_handle=st.booleans())
    def publish(self, which: int, via_handle: bool) -> None:
        model, expected, handle = self._target(which, via_handle)
        self.call(True, model.publish)
        expected = self._touched(expected, handle)
        if not expected.published:
            expected.published, expected.frozen = True, expected.weights()

    @precondition(lambda self: self.models)
    @rule(which=st.integers(0, 9), archive=st.booleans())
    def archive(self, which: int, archive: bool) -> None:
        model_id, expected = self._pick(which)
        self.call(True, Model(model_id).archive if archive else Model(model_id).unarchive)
        expected.archived = archive

    @precondition(lambda self: self.models or self._has_handles())
    @rule(which=st.integers(0, 9), via_handle=st.booleans(), keep=pool(KEEP))
    def prune_versions(self, which: int, via_handle: bool, keep: tuple) -> None:
        model, expected, handle = self._target(which, via_handle)
        published = expected is not None and expected.published
        report = self.call(keep[1] and not published, lambda: model.prune_versions(
            keep_last=keep[0]), _refusal(keep[1], published))  # fmt: skip
        if keep[1] and not published:
            assert not report.failed, report.failed
            self._touched(expected, handle)  # pruning names the model: it is created

    @precondition(lambda self: self.models)
    @rule(which=st.integers(0, 9), force=st.booleans(), delete=st.booleans())
    def remove(self, which: int, force: bool, delete: bool) -> None:
        model_id, expected = self._pick(which)
        ok = force or not expected.published
        self.call(ok, lambda: Model.remove(model_id, delete_weights_file=delete, force=force,
                                           raise_on_errors=True),
                  errors.ModelInUseError)  # fmt: skip
        if ok:
            del self.models[model_id]

    # -- queries and imports ---------------------------------------------------------------
    @rule(project=pool([(None, True), ("proj", True), ("missing", True), (5, False), ([], False)]),
          name=pool([(None, True), ("m1", True), ("", True), ("nope", True), (5, False),
                     ("a\x00", False)]),
          tags=pool(QUERY_TAGS), published=st.booleans(), archived=st.booleans(),
          limit=pool(COUNTS),
          metadata=pool([(None, True), ({"k1": "x"}, True), ({"k1": 3}, True), (5, False),
                         ({"": 1}, False), ({"k1": math.nan}, False),
                         ([("k1", "x")], False)]))  # fmt: skip
    def query_models(self, project: tuple, name: tuple, tags: tuple, published: bool,
                     archived: bool, limit: tuple, metadata: tuple) -> None:  # fmt: skip
        args_ok = project[1] and name[1] and tags[1] and limit[1] and metadata[1]
        missing = isinstance(project[0], str) and project[0] not in self.projects
        refused: Any = Invalid
        if missing:  # looked up first
            refused = (Invalid, errors.ProjectNotFoundError)[1 if args_ok else 0 :]
        found = self.call(args_ok and not missing, lambda: Model.query_models(
            project_name=project[0], model_name=name[0], tags=tags[0], only_published=published,
            include_archived=archived, max_results=limit[0], metadata=metadata[0],
        ), refused)  # fmt: skip
        if not args_ok or missing:
            return
        tag_filter = TAG_FILTERS[tuple(tags[0]) if tags[0] else None]
        wanted = sorted((e.seq, i) for i, e in self.models.items() if (
            tag_filter(e.tags) and (project[0] is None or e.project == project[0])
            and (not name[0] or e.name == name[0]) and (e.published or not published)
            and (archived or not e.archived)
            and all(e.metadata.get(k, {}).get("value") == str(v)
                    for k, v in (metadata[0] or {}).items())))  # fmt: skip
        newest_first = [i for _, i in reversed(wanted)]
        assert [m.id for m in found] == newest_first[: limit[0]]

    @rule(url=pool([("user", True), ("https", True), ("x" * 3000, False), (5, False),
                    ("", False), ("https://e.com/a\x00", False)]),
          name=pool(NAMES), tags=pool(TAGS), labels=pool(LABELS), design=pool(DESIGNS),
          project=pool([(None, True), ("other", True), (5, False)]),
          index=st.integers(0, len(WEIGHTS) - 1))  # fmt: skip
    def import_model(self, url: Any, name: tuple, tags: tuple, labels: tuple, design: tuple,
                     project: tuple, index: int) -> None:  # fmt: skip
        named = {"user": list(self.user_files)[index], "https": f"https://e.com/w{index}.pt"}
        weights_url = named.get(url[0], url[0])
        ok = all(x[-1] for x in (url, name, tags, labels, design, project))
        imported = self.call(ok, lambda: InputModel.import_model(
            weights_url=weights_url, name=name[0], tags=tags[0], label_enumeration=labels[0],
            config_text=design[0], config_dict=design[1], project=project[0],
        ))  # fmt: skip
        if not ok:
            return
        self.projects |= {project[0]} if project[0] else set()
        uri = weights_url if weights_url.startswith("https:") else to_uri(weights_url)
        same = sorted((e.seq, i) for i, e in self.models.items()
                      if e.uri == uri and not e.archived)  # fmt: skip
        if same:  # ClearML's rule: the newest model registered with this URL
            assert imported.id == same[-1][1]
            return
        assert imported.id not in self.models
        task = self.task.task if self.task else None
        self.models[imported.id] = Expected(
            seq=self._next(), project=project[0] or (self.task.project if self.task else None),
            name=name[0] or (f"Imported by {task.name}" if task else None),
            tags=list(dict.fromkeys(tags[0] or [])), labels=dict(labels[0] or {}),
            design=_design(design[0], design[1]) or "", uri=uri,
        )  # fmt: skip

    @rule(which=st.integers(0, 9), by=st.sampled_from(["id", "name", "bad name", "bad id"]),
          bad_id=st.sampled_from([5, "", None, "nope", "x" * 5000, "a\x00"]))  # fmt: skip
    def find_model(self, which: int, by: str, bad_id: Any) -> None:
        """``Model(id)`` / ``InputModel(...)`` of a model, or of one that cannot exist."""
        if by == "bad id" or not self.models:
            named = isinstance(bad_id, str) and bad_id
            self.call(False, lambda: Model(bad_id).name,
                      errors.NotFoundError if named else Invalid)  # fmt: skip
            self.call(False, lambda: Model.remove(bad_id, raise_on_errors=True),
                      errors.ModelNotFoundError if named else Invalid)  # fmt: skip
            assert Model.remove(bad_id) is False
            return
        model_id, expected = self._pick(which)
        if by == "id":
            found = self.call(True, lambda: InputModel(model_id=model_id))
            assert expected.name is None or found.name == expected.name
        elif by == "bad name":
            self.call(False, lambda: InputModel(name=5))  # type: ignore[arg-type]
        elif expected.name is not None:
            same = sorted((e.seq, i) for i, e in self.models.items()
                          if e.name == expected.name and not e.archived)  # fmt: skip
            found = self.call(bool(same), lambda: InputModel(name=expected.name),
                              errors.NotFoundError)  # fmt: skip
            assert not same or found.id == same[-1][1]

    # -- the invariant ---------------------------------------------------------------------
    @invariant()
    def store_is_sound_and_as_expected(self) -> None:
        backend = config.get_backend()
        m, mv, o, tm = schema.models, schema.model_versions, schema.objects, schema.task_models
        with backend.engine.connect() as conn:  # (b)
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            weights = conn.execute(sa.select(m.c.uri, m.c.sha256, m.c.size)
                                   .where(m.c.uri.isnot(None))).all()  # fmt: skip
            weights += conn.execute(sa.select(mv.c.uri, mv.c.sha256, mv.c.size)
                                    .where(mv.c.pruned.is_(False))).all()  # fmt: skip
            owned = dict(conn.execute(sa.select(o.c.uri, o.c.sha256).where(o.c.owned)).all())
            entries = set(conn.execute(sa.select(tm.c.model)
                                       .where(tm.c.kind == "output")).scalars())  # fmt: skip
        for uri, sha, size in weights:
            if uri.startswith("https:"):
                continue
            data = to_path(uri).read_bytes()  # the file exists, or this raises
            if sha is None:  # registered from elsewhere: the user's file, untouched
                assert self.user_files[str(to_path(uri))] == data
                continue
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (sha, size), f"{uri} changed"
            assert owned.get(uri) == sha, f"{uri} is not an owned object with its sha256"
        stored = {r.id: r for r in backend.query_models(ModelQuery())}
        assert set(stored) == set(self.models), (set(stored), set(self.models))  # (c)
        for model_id, want in self.models.items():
            got = stored[model_id]
            assert want.name is None or got.name == want.name, (got.name, want.name)
            assert (got.tags, got.labels, got.design) == (want.tags, want.labels, want.design)
            assert got.metadata == want.metadata, (got.metadata, want.metadata)
            assert (got.uri, got.sha256, got.version) == (want.uri, want.sha256, want.versions)
            assert (got.ready, got.archived) == (want.published, want.archived)
            if want.frozen is not None:
                now = (got.uri, got.sha256, got.design, got.labels, got.version)
                assert now == want.frozen, f"published model {model_id} changed"
        for handle in self.handles:  # (a): refused calls created and connected nothing
            assert handle.id is not None or handle.model.id is None, "a refused call created it"
        holders: dict[tuple[int, str], Handle] = {}  # (task, entry name): the last connected
        for handle in sorted(self.handles, key=lambda h: h.connected_at):
            if handle.connected:
                holders[id(handle.owner), handle.entry] = handle
        assert entries == {h.id for h in holders.values() if h.id in self.models}


def test_api_state_machine(tmp_path: Path) -> None:
    ApiMachine.home = tmp_path / "home"
    run_state_machine_as_test(ApiMachine, settings=SETTINGS)
