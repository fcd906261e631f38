"""Property tests of object ownership: random sequences of registrations, prunes, removals,
publishes and imports across three models never lose bytes something references, never
touch the user's files, and leave nothing the registry wrote behind once it is unreferenced.

A Hypothesis state machine keeps a model of what the registry should hold (which models
exist, the bytes of each version, which versions are pruned, which models are published)
and after every step checks the store against it:

(a) every unpruned version (and the current weights) of every model reads back through
    ``get_local_copy`` with the bytes the test wrote and its recorded sha256;
(b) every user file (registered with ``register_uri`` or ``import_model``) still exists with
    its original bytes, and so do the objects ``Model.remove(delete_weights_file=False)``
    kept;
(c) a published model refuses ``update_weights`` and ``prune_versions``
    (:class:`ModelPublishedError`), checked at once after each publish and whenever a step
    tries either on a published model;
(d) after ``retention.collect(pending_grace=0)`` no owned ``objects`` row is unreferenced,
    none is doomed, and no file is left under the destination that no row names;
(e) every owned object that is referenced has its file on disk, with its sha256.

Both placements run: the embedded store's content-addressed blob folder (identical bytes
and file name share one object across models and versions) and a task ``output_uri``
folder (ClearML's layout: every upload its own object). Bytes and file names come from
small pools so that sharing and name reuse happen often.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import modelbook
from modelbook import InputModel, Model, OutputModel, Task, config, retention
from modelbook.errors import ModelPublishedError, StorageError
from modelbook.storage.local import to_path, to_uri
from modelbook.store import schema

# which bytes modelbook deletes: none on a ClearML server (docs/compatibility.md), so
# --clearml-mode leaves this out
pytestmark = pytest.mark.embedded_only

#: Weights bytes: few, so that models and versions share them.
POOL = [b"alpha-weights " * 5, b"beta-weights " * 7, b"gamma-weights " * 3]
#: File names: few, so that names repeat (the content layout names objects by both).
NAMES = ["model.pt", "weights.bin"]
#: The user's own files (folder, name, bytes): registered or imported, never to be touched.
#: Their names and bytes overlap the pools on purpose.
USER_FILES = [
    ("a", "model.pt", POOL[0]),
    ("b", "weights.bin", POOL[1]),
    ("c", "user.pt", b"u" * 40),
]
SLOTS = 3

#: ~0.25 s an example on one core. The blob folder gets more: only there do models and
#: versions share objects (the folder layout gives every upload its own).
SETTINGS = settings(
    max_examples=30,
    stateful_step_count=15,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it is slow
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

CONTENT_SETTINGS = settings(SETTINGS, max_examples=80)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Version:
    data: bytes
    name: str
    uri: str
    sha256: str | None  # None for a registered (not stored) file
    pruned: bool = False


@dataclass
class Expected:
    kind: str  # "output" (a slot's OutputModel) or "imported"
    uri: str | None = None  # current weights
    data: bytes | None = None
    versions: list[Version] = field(default_factory=list)
    published: bool = False
    slot: int | None = None

    def referenced(self) -> set[str]:
        uris = {v.uri for v in self.versions if not v.pruned}
        return uris | ({self.uri} if self.uri else set())


class OwnershipMachine(RuleBasedStateMachine):
    """Three output models of one task, plus imported models, on a fresh home."""

    output_folder = False  # a subclass gives the task a folder output_uri

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="modelbook-ownership-"))
        self.src = self.root / "src"
        self.user: dict[int, tuple[Path, bytes]] = {}  # index -> (path, bytes)
        for i, (folder, name, data) in enumerate(USER_FILES):
            path = self.root / "user" / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.user[i] = (path, data)
        if Task._current is not None:
            Task._current.close()
        modelbook.configure(home=self.root / "home")
        self.dest = self.root / "out" if self.output_folder else self.root / "home" / "blobs"
        self.task = Task.init(
            project_name="ownership",
            task_name="properties",
            output_uri=str(self.dest) if self.output_folder else None,
        )
        self.handles: dict[int, OutputModel] = {}  # slot -> its current OutputModel
        self.models: dict[str, Expected] = {}  # id -> expected state, in creation order
        self.kept: dict[str, bytes] = {}  # objects remove(delete_weights_file=False) kept
        self.counter = 0

    def teardown(self) -> None:
        try:
            self.task.close()
        finally:
            modelbook.configure()
            shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------
    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _handle(self, slot: int) -> OutputModel:
        if slot not in self.handles:
            self.handles[slot] = OutputModel(task=self.task, name=f"m{slot}")
        return self.handles[slot]

    def _slot_model(self, slot: int) -> Expected | None:
        handle = self.handles.get(slot)
        return self.models.get(handle.id) if handle is not None and handle.id else None

    def _pick(self, index: int) -> tuple[str, Expected]:
        ids = list(self.models)
        model_id = ids[index % len(ids)]
        return model_id, self.models[model_id]

    def _register_version(
        self, slot: int, data: bytes, name: str, sha: str | None, returned: str
    ) -> None:
        handle = self.handles[slot]
        model_id = handle.id
        assert model_id is not None
        expected = self.models.get(model_id)
        if expected is None:
            expected = self.models[model_id] = Expected(kind="output", slot=slot)
        versions = Model(model_id).versions
        assert len(versions) == len(expected.versions) + 1
        new = versions[-1]
        assert new.uri == returned, (new.uri, returned)
        assert new.sha256 == sha, (new.sha256, sha)
        expected.versions.append(Version(data, name, new.uri, sha))
        expected.uri, expected.data = new.uri, data

    def _upload(self, slot: int, data: bytes, name: str) -> None:
        step = self._next()
        path = self.src / str(step) / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        handle = self._handle(slot)
        current = self._slot_model(slot)

        def call() -> str:
            return handle.update_weights(
                str(path), iteration=step, async_enable=False, metadata={"step": step}
            )

        if current is not None and current.published:
            with pytest.raises(ModelPublishedError):
                call()
            return
        returned = call()
        self._register_version(slot, data, name, _sha(data), returned)

    # -- rules -----------------------------------------------------------------------------
    @rule(slot=st.integers(0, SLOTS - 1), blob=st.integers(0, len(POOL) - 1),
          name=st.integers(0, len(NAMES) - 1))  # fmt: skip
    def update_weights(self, slot: int, blob: int, name: int) -> None:
        self._upload(slot, POOL[blob], NAMES[name])

    @precondition(lambda self: any(v.sha256 for m in self.models.values() for v in m.versions))
    @rule(slot=st.integers(0, SLOTS - 1), which=st.integers(0, 9))
    def update_weights_shared(self, slot: int, which: int) -> None:
        """The bytes and file name of a version some model stored: one object, shared."""
        stored = [v for m in self.models.values() for v in m.versions if v.sha256]
        version = stored[which % len(stored)]
        self._upload(slot, version.data, version.name)

    @rule(slot=st.integers(0, SLOTS - 1), user=st.integers(0, len(USER_FILES) - 1))
    def register_uri(self, slot: int, user: int) -> None:
        path, data = self.user[user]
        handle = self._handle(slot)
        current = self._slot_model(slot)

        def call() -> str:
            return handle.update_weights(
                register_uri=str(path), iteration=self._next(), async_enable=False
            )

        if current is not None and current.published:
            with pytest.raises(ModelPublishedError):
                call()
            return
        returned = call()
        assert returned == to_uri(path)
        self._register_version(slot, data, path.name, None, returned)

    @precondition(lambda self: sum(m.kind == "imported" for m in self.models.values()) < 2)
    @rule(user=st.integers(0, len(USER_FILES) - 1))
    def import_model(self, user: int) -> None:
        path, data = self.user[user]
        url = to_uri(path)
        imported = InputModel.import_model(weights_url=str(path))
        same = [i for i, m in self.models.items() if m.uri == url]
        if same:  # ClearML's rule: the model already registered with this URL
            assert imported.id in same
            return
        assert imported.id not in self.models
        assert imported.url == url
        self.models[imported.id] = Expected(kind="imported", uri=url, data=data)

    @precondition(lambda self: self.models)
    @rule(which=st.integers(0, 5), keep_last=st.integers(0, 2))
    def prune(self, which: int, keep_last: int) -> None:
        model_id, expected = self._pick(which)
        if expected.published:
            with pytest.raises(ModelPublishedError):
                Model(model_id).prune_versions(keep_last=keep_last)
            return
        live = [v for v in expected.versions if not v.pruned]
        older = live[: max(len(live) - keep_last, 0)]
        prunable = [v for v in older if v.uri != expected.uri]
        report = Model(model_id).prune_versions(keep_last=keep_last)
        numbers = [n for n, v in enumerate(expected.versions, 1) if any(v is p for p in prunable)]
        assert report.pruned == numbers, (report.pruned, numbers)
        assert not report.failed, report.failed
        for v in prunable:
            v.pruned = True

    @precondition(lambda self: self.models)
    @rule(which=st.integers(0, 5), delete=st.booleans())
    def remove(self, which: int, delete: bool) -> None:
        model_id, expected = self._pick(which)
        assert Model.remove(model_id, delete_weights_file=delete, force=True, raise_on_errors=True)
        del self.models[model_id]
        slot = expected.slot
        if slot is not None and slot in self.handles and self.handles[slot].id == model_id:
            del self.handles[slot]  # the slot starts a new model next time
        if not delete:  # kept for good, even bytes other models share and later let go
            others = set().union(*(m.referenced() for m in self.models.values()))
            users = {to_uri(p) for p, _ in self.user.values()}
            for v in expected.versions:  # a pruned version's bytes exist only while shared
                if (not v.pruned or v.uri in others) and v.uri not in users:
                    self.kept[v.uri] = v.data

    @precondition(lambda self: self.models)
    @rule(which=st.integers(0, 5))
    def publish(self, which: int) -> None:
        model_id, expected = self._pick(which)
        Model(model_id).publish()
        expected.published = True
        # (c) at once: no new weights, no pruning
        with pytest.raises(ModelPublishedError):
            Model(model_id).prune_versions(keep_last=0)
        if expected.slot is not None and expected.slot in self.handles:
            path = self.src / f"published-{self._next()}" / NAMES[0]
            path.parent.mkdir(parents=True)
            path.write_bytes(POOL[0])
            with pytest.raises(ModelPublishedError):
                self.handles[expected.slot].update_weights(
                    str(path), iteration=self.counter, async_enable=False
                )
            with pytest.raises(ModelPublishedError):
                self.handles[expected.slot].update_weights(
                    register_uri=str(self.user[0][0]), async_enable=False
                )

    # -- the properties --------------------------------------------------------------------
    @invariant()
    def models_read_back(self) -> None:  # (a), and (c)'s published flag
        engine = config.get_backend().engine
        with engine.connect() as conn:
            stored = set(conn.execute(sa.select(schema.models.c.id)).scalars())
        assert stored == set(self.models), (stored, set(self.models))
        for model_id, expected in self.models.items():
            model = Model(model_id)
            assert model.published == expected.published
            assert model.url == expected.uri, (model.url, expected.uri)
            if expected.data is not None:
                path = model.get_local_copy(raise_on_error=True)
                assert path is not None and Path(path).read_bytes() == expected.data
            versions = model.versions
            assert [(v.uri, v.sha256, v.pruned) for v in versions] == [
                (v.uri, v.sha256, v.pruned) for v in expected.versions
            ]
            for number, want in enumerate(expected.versions, start=1):
                if want.pruned:
                    with pytest.raises(StorageError):
                        model.get_local_copy(version=number, raise_on_error=True)
                    continue
                path = model.get_local_copy(version=number, raise_on_error=True)
                assert path is not None
                data = Path(path).read_bytes()
                assert data == want.data, f"model {model_id} version {number}"
                if want.sha256 is not None:
                    assert _sha(data) == want.sha256

    @invariant()
    def user_files_untouched(self) -> None:  # (b)
        for path, data in self.user.values():
            assert path.is_file(), f"user file {path} was deleted"
            assert path.read_bytes() == data, f"user file {path} was changed"
        for uri, data in self.kept.items():
            path = to_path(uri)
            assert path.is_file(), f"{uri} was kept (delete_weights_file=False) but is gone"
            assert path.read_bytes() == data

    @invariant()
    def nothing_owned_is_left_unreferenced(self) -> None:  # (d), (e)
        retention.collect(pending_grace=0)
        o, m, mv = schema.objects, schema.models, schema.model_versions
        with config.get_backend().engine.connect() as conn:
            rows = conn.execute(sa.select(o.c.uri, o.c.sha256, o.c.owned, o.c.state)).all()
            referenced = set(conn.execute(sa.select(m.c.uri).where(m.c.uri.isnot(None))).scalars())
            referenced |= set(
                conn.execute(sa.select(mv.c.uri).where(mv.c.pruned.is_(False))).scalars()
            )
        for uri, sha, owned, state in rows:
            assert state != "doomed", f"{uri} is still doomed after gc"
            if not owned:
                continue
            assert uri in referenced, f"owned {uri} ({state}) is referenced by nothing after gc"
            path = to_path(uri)
            assert path.is_file(), f"owned, referenced {uri} has no file"
            assert sha is None or _sha(path.read_bytes()) == sha, f"{uri} holds other bytes"
        known = {to_path(uri) for uri, *_ in rows}
        if self.dest.is_dir():
            stray = [p for p in self.dest.rglob("*") if p.is_file() and p not in known]
            assert not stray, f"files no object row names (leaked): {stray}"


class OwnershipFolderMachine(OwnershipMachine):
    """The same, with the task's ``output_uri`` a folder (ClearML's layout)."""

    output_folder = True


def test_ownership_content_store() -> None:
    run_state_machine_as_test(OwnershipMachine, settings=CONTENT_SETTINGS)


def test_ownership_output_folder() -> None:
    run_state_machine_as_test(OwnershipFolderMachine, settings=SETTINGS)


def test_kept_object_does_not_block_the_same_bytes(tmp_path: Path) -> None:
    """The state machine's first finding, pinned: an object kept by
    ``remove(delete_weights_file=False)`` must not refuse the same bytes registered again
    under the same file name in the content-addressed store (it raised StorageError
    "refusing to write ... an object the registry did not write is stored there")."""
    modelbook.configure(home=tmp_path / "home")
    task = Task.init(project_name="ownership", task_name="kept")
    try:
        path = tmp_path / "src" / NAMES[0]
        path.parent.mkdir()
        path.write_bytes(POOL[0])
        first = OutputModel(task=task, name="first")
        kept = first.update_weights(str(path), iteration=1, async_enable=False)
        assert Model.remove(first.id, delete_weights_file=False, raise_on_errors=True)
        second = OutputModel(task=task, name="second")
        second.update_weights(str(path), iteration=2, async_enable=False)
        copy = Model(second.id).get_local_copy(version=1, raise_on_error=True)
        assert copy is not None and Path(copy).read_bytes() == POOL[0]
        assert to_path(kept).read_bytes() == POOL[0]
    finally:
        task.close()
