"""Background saving: an improvement is copied into memory, then written and registered by the
writer's thread; what is registered is byte for byte what a synchronous save would have written.

The writer's thread is held at a :class:`Gate` before each snapshot, so the order of events is
fixed, not left to timing: training changes the weights in place after the callback returned
and *before* the copy is written; improvements pile up behind a slow writer.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from scripted import every_version_reads_back, only_model  # noqa: E402

import modelbook  # noqa: E402
from modelbook import Model, OutputModel, config, uploads  # noqa: E402  # noqa: E402
from modelbook.errors import InvalidArgumentError  # noqa: E402
from modelbook.integrations._background import SnapshotMemoryWarning  # noqa: E402
from modelbook.integrations._torch_snapshot import TorchStager  # noqa: E402
from modelbook.integrations.pytorch import BestModel  # noqa: E402

WAIT = 30.0


class Gate:
    """Holds the registrar's writer thread before each snapshot until :meth:`let_through`."""

    def __init__(self, registrar: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.registrar, self.open, self.entered = registrar, threading.Event(), threading.Event()
        deliver = registrar._deliver

        def gated(slot: Any) -> None:
            self.entered.set()
            assert self.open.wait(WAIT), "the test never opened the gate"
            deliver(slot)
            stored()  # before the next is written: the upload queue would coalesce them

        monkeypatch.setattr(registrar, "_deliver", gated)  # the writer is built at first save

    def let_through(self) -> None:
        """Let what waits be written and stored (so no version is coalesced away by the
        upload queue); hold the next snapshot again."""
        self.open.set()
        assert OutputModel.wait_for_uploads(timeout=WAIT) == []  # the writers first
        self.open.clear()


def stored() -> None:
    """Wait until the upload queue stored what was queued: a newer version queued before an
    older one was stored would supersede it (latest wins), and the tests count versions."""
    assert uploads.queue_for(config.get_backend(), config.home()).wait(WAIT) == []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def saved(obj: Any, path: Path) -> str:
    """The sha256 of ``torch.save(obj, path)`` (the archive inside is named after the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return sha256(path.read_bytes())


def registered(model_id: str) -> dict[int, str]:
    """{iteration: sha256} of every version of the model."""
    return {v.iteration: v.sha256 for v in Model(model_id).versions}


def full_state(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "note": ["x", 1]}


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One optimizer step: the weights and the optimizer state change in place."""
    optimizer.zero_grad()
    net(torch.randn(8, 16)).pow(2).mean().backward()
    optimizer.step()


def test_a_staged_state_saves_to_the_bytes_of_the_state_then(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 4))
    net[1].weight = torch.nn.Parameter(net[0].weight.t())  # tied: a view of one storage
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    state = {**full_state(net, optimizer), "p": torch.nn.Parameter(torch.ones(2)), "n": 3}
    stager = TorchStager.of(state)
    assert stager is not None
    assert len(stager.storages) == len(stager.tensors) - 1  # the tied weight is one storage
    expected = saved(state, tmp_path / "sync" / "model.pt")
    buffers, write = stager.stage(None)
    assert buffers.nbytes == stager.nbytes
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # training goes on before the copy is written
    (tmp_path / "background").mkdir()
    write(tmp_path / "background" / "model.pt")
    assert sha256((tmp_path / "background" / "model.pt").read_bytes()) == expected
    # the next snapshot reuses the same buffers (same shapes), and is exact too
    again = TorchStager.of(state)
    reused, write = again.stage(buffers)
    assert [b.data_ptr() for b in reused.storages] == [b.data_ptr() for b in buffers.storages]
    write(tmp_path / "background" / "model.pt")
    now = saved(state, tmp_path / "model.pt")
    assert sha256((tmp_path / "background" / "model.pt").read_bytes()) == now != expected
    # what a copy cannot reproduce exactly is saved on the training thread
    assert TorchStager.of({"sparse": torch.eye(3).to_sparse()}) is None


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=8),
    workers=st.integers(2, 4),
    threshold=st.integers(1, 20000),
)
def test_the_copy_split_over_threads_is_exact(sizes, workers, threshold):
    """Big snapshots are copied by several threads, storages cut into equal shares at any
    byte: whatever the cut, every byte lands where one memmove would have put it."""
    import modelbook.integrations._torch_snapshot as snapshot

    generator = torch.Generator().manual_seed(len(sizes))
    state = {f"t{i}": torch.randint(0, 255, (n,), dtype=torch.uint8, generator=generator)
             for i, n in enumerate(sizes)}  # fmt: skip
    state["view"] = state["t0"][: sizes[0] // 2]  # shares t0's storage
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot, "PARALLEL_FROM", threshold)
        patch.setattr(snapshot.os, "sched_getaffinity", lambda pid: set(range(workers)))
        stager = TorchStager.of(state)
        stager.stage(None)
    for name, tensor in state.items():
        assert torch.equal(stager.staged[name], tensor), name
    assert stager.staged["view"].untyped_storage()._cdata == (
        stager.staged["t0"].untyped_storage()._cdata
    )


def test_registered_bytes_are_the_state_at_the_improvement_not_later(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = torch.nn.Linear(16, 16)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    train_step(net, optimizer)
    expected: dict[int, str] = {}
    with BestModel("val_loss", project_name="background", task_name="exact") as best:
        gate = Gate(best.registrar, monkeypatch)
        for step, loss in enumerate([3.0, 2.0, 2.5, 1.0], start=1):
            state = full_state(net, optimizer)
            sync = saved(state, tmp_path / str(step) / f"model-step{step}.pt")
            if best.update({"val_loss": loss}, state, step=step):
                expected[step] = sync
            train_step(net, optimizer)  # right after the callback returned, before the write
            gate.let_through()
        assert best.registrar.writer is not None and best.registrar.writer.peak > 0
    assert registered(best.model_id) == expected and list(expected) == [1, 2, 4]
    every_version_reads_back(Model(best.model_id))


def test_latest_wins_behind_a_slow_writer_with_two_sets_of_buffers(tmp_path, monkeypatch):
    states = {step: {"w": torch.full((1024,), float(step))} for step in range(1, 5)}
    with BestModel("val_loss", project_name="background", task_name="latest") as best:
        gate = Gate(best.registrar, monkeypatch)
        for step, state in states.items():
            assert best.update({"val_loss": 10.0 - step}, state, step=step)
            if step == 1:
                assert gate.entered.wait(WAIT)  # step 1 is being written (held at the gate)
        writer = best.registrar.writer
        # step 2 waited, then 3 replaced it, then 4 replaced 3, in the same buffers
        assert (writer.replaced, writer.held, writer.peak) == (2, 2 * 4096, 2 * 4096)
        gate.open.set()
    expected = {s: saved(states[s], tmp_path / f"model-step{s}.pt") for s in (1, 4)}
    assert registered(best.model_id) == expected
    assert best.registrar.writer.held == 0  # buffers freed at the end


def test_past_the_memory_cap_the_training_thread_saves_with_one_warning(tmp_path, monkeypatch):
    states = {step: {"w": torch.full((1024,), float(step))} for step in range(1, 4)}
    best = BestModel("val_loss", project_name="background", task_name="cap", snapshot_memory=6000)
    with warnings.catch_warnings(record=True) as caught, best:
        warnings.simplefilter("always")
        gate = Gate(best.registrar, monkeypatch)
        for step, state in states.items():  # 4 KiB each: one fits the cap, two do not
            best.update({"val_loss": 10.0 - step}, state, step=step)
            if step == 1:
                assert gate.entered.wait(WAIT)
            else:
                stored()  # before the next is queued
        assert best.registrar.writer.peak == 4096
        gate.open.set()  # step 1 is written last: older than step 3, it is dropped
    memory = [w for w in caught if issubclass(w.category, SnapshotMemoryWarning)]
    assert len(memory) == 1 and "MODELBOOK_SNAPSHOT_MEMORY" in str(memory[0].message)
    expected = {s: saved(states[s], tmp_path / f"model-step{s}.pt") for s in (2, 3)}
    assert registered(best.model_id) == expected and Model(best.model_id).iteration == 3


def test_snapshot_memory_is_checked_and_zero_saves_synchronously(monkeypatch):
    for bad in (-1, 1.5, True, "1GiB"):
        with pytest.raises(InvalidArgumentError, match="snapshot_memory must be"):
            BestModel("val_loss", snapshot_memory=bad)
    monkeypatch.setenv("MODELBOOK_SNAPSHOT_MEMORY", "lots")
    with pytest.raises(InvalidArgumentError, match="MODELBOOK_SNAPSHOT_MEMORY must be"):
        BestModel("val_loss")
    monkeypatch.setenv("MODELBOOK_SNAPSHOT_MEMORY", "0")
    with BestModel("val_loss", project_name="background", task_name="sync") as best:
        assert best.registrar.snapshot_memory == 0
        assert best.update({"val_loss": 1.0}, {"w": torch.ones(4)}, step=1)
    assert best.registrar.writer is None and Model(best.model_id).iteration == 1


CRASH = """
import os, signal, torch
from modelbook import OutputModel
from modelbook.integrations.pytorch import BestModel
best = BestModel("val_loss", project_name="background", task_name="crash").start()
for step in (1, 2, 3):
    state = {"w": torch.full((4096,), float(step))}
    best.update({"val_loss": 10.0 - step}, state, step=step)
    if step < 3:
        assert OutputModel.wait_for_uploads(timeout=60) == []
    else:  # right after the improvement: snapshot in memory, maybe not written yet
        state["w"].add_(100.0)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_crash_after_an_improvement_loses_at_most_that_snapshot(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == -9, done.stderr[-3000:]
    modelbook.configure()  # the same home, reopened: what the spool holds resumes
    assert OutputModel.wait_for_uploads(timeout=60) == []
    model = only_model("background")
    versions = registered(model.id)
    expected = {s: saved({"w": torch.full((4096,), float(s))}, tmp_path / f"model-step{s}.pt")
                for s in (1, 2, 3)}  # fmt: skip
    assert {1, 2} <= set(versions) <= {1, 2, 3}
    assert versions == {s: expected[s] for s in versions}
    every_version_reads_back(model)


@pytest.mark.parametrize("weights_only", [True, False], ids=["weights", "checkpoint"])
def test_lightning_registers_what_it_would_have_saved_at_that_step(
    weights_only, tmp_path, monkeypatch
):
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    from modelbook.integrations.lightning import ModelbookCallback

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(16, 16)

        def training_step(self, batch, _):
            return self.net(batch[0]).pow(2).mean()

        def validation_step(self, batch, _):
            self.log("val_loss", 1.0 / (self.current_epoch + 1))  # improves every epoch

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    class Expect(pl.Callback):
        """After ModelbookCallback: the synchronous save of this step, then in-place
        changes to the weights and the optimizer state, then the writer may write."""

        def __init__(self) -> None:
            self.expected: dict[int, str] = {}

        def on_validation_end(self, trainer, module):
            step = trainer.global_step
            path = tmp_path / "sync" / (f"model-step{step}.pt" if weights_only else "x.ckpt")
            if weights_only:
                self.expected[step] = saved(module.state_dict(), path)
            else:
                trainer.save_checkpoint(path)  # as Lightning itself writes it
                self.expected[step] = sha256(path.read_bytes())
            with torch.no_grad():
                for tensor in [*module.parameters(), *trainer.optimizers[0].state[
                        module.net.weight].values()]:  # fmt: skip
                    tensor.add_(1.0)
            gate.let_through()

    torch.manual_seed(0)
    callback = ModelbookCallback(project_name="background", task_name="lightning",
                                 save_weights_only=weights_only)  # fmt: skip
    gate = Gate(callback.registrar, monkeypatch)
    expect = Expect()
    data = DataLoader(TensorDataset(torch.randn(16, 16)), batch_size=8)
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
        default_root_dir=str(tmp_path), callbacks=[callback, expect],
    )  # fmt: skip
    trainer.fit(Net(), data, data)
    assert callback.registrar.writer.peak > 0  # written in the background
    assert registered(callback.registrar.model_id) == expect.expected
    assert list(expect.expected) == [2, 4, 6]


def test_transformers_folder_is_what_save_pretrained_writes_at_that_step(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from test_transformers import Tokens, arguments, scripted, tiny_bert

    from modelbook.integrations.transformers import ModelbookCallback

    class Expect(transformers.TrainerCallback):
        """After ModelbookCallback: ``save_pretrained`` of this step, then in-place changes
        to the weights, then the writer may write."""

        def __init__(self) -> None:
            self.expected: dict[int, Path] = {}

        def on_evaluate(self, args, state, control, model=None, **kwargs):
            folder = tmp_path / "sync" / str(state.global_step)
            model.save_pretrained(folder)
            self.expected[state.global_step] = folder
            with torch.no_grad():
                for tensor in model.parameters():
                    tensor.add_(1.0)
            gate.let_through()

    callback = ModelbookCallback(
        monitor="score", mode="max", project_name="background", task_name="transformers"
    )
    gate = Gate(callback.registrar, monkeypatch)
    expect = Expect()
    trainer = transformers.Trainer(
        model=tiny_bert(), args=arguments(tmp_path / "out", epochs=2),
        train_dataset=Tokens(32, 1), eval_dataset=Tokens(16, 2),
        compute_metrics=scripted([0.1, 0.2]), callbacks=[callback, expect],
    )  # fmt: skip
    trainer.train()
    assert callback.registrar.writer.peak > 0
    model = Model(callback.registrar.model_id)
    assert [v.iteration for v in model.versions] == list(expect.expected)
    for version in model.versions:
        folder = Path(model.get_local_copy(version=version.version, raise_on_error=True))
        sync = expect.expected[version.iteration]
        names = sorted(p.name for p in sync.iterdir())
        assert sorted(p.name for p in folder.iterdir()) == names and "model.safetensors" in names
        for name in names:
            assert (folder / name).read_bytes() == (sync / name).read_bytes(), name


def test_keras_weights_are_what_save_weights_writes_at_that_step(tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")
    np = pytest.importorskip("numpy")
    if keras.backend.backend() not in ("torch", "jax"):
        pytest.skip(f"background saving needs the torch or jax backend, not {keras.backend}")
    from modelbook.integrations.keras import ModelbookCallback

    class Expect(keras.callbacks.Callback):
        """After ModelbookCallback: ``save_weights`` of this step (when it registered one),
        then in-place changes to the weights, then the writer may write."""

        def __init__(self) -> None:
            super().__init__()
            self.expected: dict[int, str] = {}
            self.seen = 0

        def on_epoch_end(self, epoch, logs=None):
            if callback.registrar._seq == self.seen:
                return  # not an improvement
            self.seen = callback.registrar._seq
            path = tmp_path / f"sync{epoch}.weights.h5"
            self.model.save_weights(str(path))
            self.expected[int(self.model.optimizer.iterations)] = sha256(path.read_bytes())
            for variable in self.model.weights:
                variable.assign(variable + 1.0)
            gate.let_through()
            for variable in self.model.weights:  # so that the loss goes on improving
                variable.assign(variable - 1.0)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss="mse")
    callback = ModelbookCallback("loss", project_name="background", task_name="keras")
    gate = Gate(callback.registrar, monkeypatch)
    expect = Expect()
    x = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    model.fit(x, x[:, :1], epochs=4, verbose=0, callbacks=[callback, expect])
    # the first improvement is saved here (and a clone checked); the later in the background
    assert callback.registrar.writer is not None and callback.registrar.writer.peak > 0
    assert registered(callback.registrar.model_id) == expect.expected
    assert len(expect.expected) >= 2
