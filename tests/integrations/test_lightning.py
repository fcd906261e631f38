"""Lightning: tiny real trainings on CPU register exactly the improvements they see.

They train with the package ``MODELBOOK_TEST_LIGHTNING`` names: "lightning" (the default when
it is installed) or "pytorch_lightning"; ``test_lightning_packages.py`` runs this file once per
package with the other one hidden (``MODELBOOK_TEST_HIDE``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest


def _default_package() -> str:
    try:
        import lightning.pytorch  # noqa: F401
    except ImportError:
        return "pytorch_lightning"
    return "lightning"


# read at import: the root conftest clears MODELBOOK_* from the environment of each test
PACKAGE = os.environ.get("MODELBOOK_TEST_LIGHTNING") or _default_package()
HIDDEN = os.environ.get("MODELBOOK_TEST_HIDE", "")
torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch" if PACKAGE == "lightning" else "pytorch_lightning")
VERSION = importlib.import_module(PACKAGE).__version__

from scripted import every_version_reads_back, improvements, only_model  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import modelbook  # noqa: E402
from modelbook import Model, OutputModel, Task  # noqa: E402
from modelbook.errors import InvalidArgumentError  # noqa: E402
from modelbook.integrations._registry import RegistryWarning  # noqa: E402
from modelbook.integrations.lightning import ModelbookCallback  # noqa: E402
from modelbook.integrations.monitor import MetricNotFoundError, MonitorWarning  # noqa: E402
from modelbook.storage.local import to_path  # noqa: E402

PROBE = torch.linspace(-1, 1, 12).reshape(3, 4)


class Regressor(pl.LightningModule):
    """y = x @ w; logs ``val_loss`` (or a scripted value per epoch, to steer decisions)."""

    def __init__(self, lr: float = 0.05, script: list[float] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        script = self.hparams.script
        self.log("val_loss", script[self.current_epoch] if script else loss)
        self.log("val_mae", torch.nn.functional.l1_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class Recorder(pl.Callback):
    """What the framework reported at each validation of fit, and the model's outputs then."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        with torch.no_grad():
            out = pl_module(PROBE).clone()
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.seen.append({"step": trainer.global_step, "epoch": trainer.current_epoch,
                          "metrics": metrics, "out": out})  # fmt: skip


class Drain(pl.Callback):
    """Listed after ModelbookCallback: waits for each queued version to be stored, so no
    improvement is coalesced away by the upload queue and counts are exact."""

    def on_validation_end(self, trainer, pl_module) -> None:
        assert OutputModel.wait_for_uploads(timeout=30) == []


def loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return DataLoader(TensorDataset(x, y), batch_size=16), DataLoader(
        TensorDataset(x, y), batch_size=32
    )


def trainer(tmp_path: Path, callbacks: list, epochs: int, **kwargs) -> pl.Trainer:
    options = {"logger": False, "enable_checkpointing": False, **kwargs}
    return pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, callbacks=callbacks,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        **options,
    )  # fmt: skip



def val_losses(recorder: Recorder) -> list[float]:
    return [seen["metrics"]["val_loss"] for seen in recorder.seen]



def meta(version) -> dict[str, str]:
    return {k: v["value"] for k, v in version.metadata.items()}


def test_trains_with_the_chosen_package():
    from modelbook.integrations.lightning import _PACKAGES

    names = [package.name for package in _PACKAGES]
    assert PACKAGE in names and issubclass(ModelbookCallback, pl.Callback)
    if HIDDEN:  # test_lightning_packages.py: the callback sees only the package chosen
        with pytest.raises(ImportError):
            importlib.import_module(HIDDEN)
        assert names == [PACKAGE] and ModelbookCallback.framework == PACKAGE


def test_registers_each_improvement_with_metadata_and_loadable_weights(tmp_path, registry):
    recorder = Recorder()
    callback = ModelbookCallback(
        project_name="lit", task_name="train", model_name="regressor", tags=["demo"],
        labels={"y": 0},
    )  # fmt: skip
    trainer(tmp_path, [recorder, callback, Drain()], epochs=4).fit(Regressor(), *loaders())

    model = only_model("lit")
    task = Task.current_task()
    assert (model.name, model.tags, model.labels, model.framework) == (
        "regressor",
        ["demo"],
        {"y": 0},
        "PyTorch",
    )
    assert task.models["output"]["regressor"].id == model.id
    assert task.get_parameters()["hparams/lr"] == "0.05"

    wanted = [
        recorder.seen[i] for i in improvements([s["metrics"]["val_loss"] for s in recorder.seen])
    ]
    assert len(wanted) >= 2
    assert [v.iteration for v in model.versions] == [s["step"] for s in wanted]
    every_version_reads_back(model)
    curve = task.get_reported_scalars()["val_loss"]["val_loss"]  # every evaluation's value
    assert curve == {"x": [s["step"] for s in recorder.seen],
                     "y": [s["metrics"]["val_loss"] for s in recorder.seen]}  # fmt: skip
    for version, seen in zip(model.versions, wanted, strict=True):
        m = meta(version)
        assert float(m["monitor_value"]) == seen["metrics"]["val_loss"]
        assert (m["monitor"], m["monitor_mode"]) == ("val_loss", "min")
        assert {k: float(v) for k, v in m.items() if k.startswith("metrics/")} == {
            f"metrics/{k}": v for k, v in seen["metrics"].items()
        }
        assert (int(m["epoch"]), int(m["global_step"])) == (seen["epoch"], seen["step"])
        assert (m["framework"], m["framework_version"]) == (PACKAGE, VERSION)
        assert m["modelbook_version"] == modelbook.__version__

    fresh = Regressor()
    fresh.load_state_dict(torch.load(Model(model.id).get_local_copy(), weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(PROBE), wanted[-1]["out"])

    clone = pickle.loads(pickle.dumps(callback))  # what DDP spawn does
    assert clone.registrar._task is None and clone.registrar._model is None
    assert clone.state_dict() == callback.state_dict()
    assert callback.state_dict()["model_id"] == model.id


def test_full_checkpoint_lives_with_model_checkpoint_and_early_stopping(tmp_path):
    EarlyStopping, ModelCheckpoint = pl.callbacks.EarlyStopping, pl.callbacks.ModelCheckpoint
    recorder = Recorder()
    own = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", mode="min")
    callback = ModelbookCallback(project_name="lit", task_name="full", save_weights_only=False)
    stop = EarlyStopping(monitor="val_loss", mode="min", patience=1)
    trainer(
        tmp_path, [own, callback, Drain(), stop, recorder], epochs=3, enable_checkpointing=True
    ).fit(Regressor(), *loaders())
    model = only_model("lit")
    assert len(model.versions) == len(
        improvements([s["metrics"]["val_loss"] for s in recorder.seen])
    )
    path = Model(model.id).get_local_copy()
    assert path.endswith(".ckpt") and meta(model.versions[-1])["save_weights_only"] == "False"
    restored = Regressor.load_from_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(restored(PROBE), recorder.seen[-1]["out"])
    assert "optimizer_states" in torch.load(path, weights_only=False)
    assert Path(own.best_model_path).is_file()  # Lightning's own checkpointing still works


def test_scripted_values_nan_inf_ties_and_keep_last(tmp_path):
    script = [math.nan, 3.0, 2.0, 2.0, math.inf, 1.0, 0.5]
    callback = ModelbookCallback(project_name="lit", task_name="script", keep_last=1,
                                 publish_on_end=True)  # fmt: skip
    with pytest.warns(MonitorWarning, match="never the best"):
        trainer(tmp_path, [callback, Drain()], epochs=len(script)).fit(
            Regressor(script=script), *loaders()
        )
    model = only_model("lit")
    assert model.published
    values = [float(meta(v)["monitor_value"]) for v in model.versions]
    assert values == [3.0, 2.0, 1.0, 0.5]
    assert [v.pruned for v in model.versions] == [True, True, False, False]  # the best and
    if model.versions[0].uri.startswith("file:"):  # one older kept; on a ClearML server the
        present = [to_path(v.uri).exists() for v in model.versions]  # bytes stay (marks only)
        assert present == [False, False, True, True]


def test_a_slow_upload_queue_keeps_the_newest_best(tmp_path):
    script = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # six improvements, no Drain: the queue may
    callback = ModelbookCallback(project_name="lit", task_name="fast")  # coalesce them
    trainer(tmp_path, [callback], epochs=len(script)).fit(Regressor(script=script), *loaders())
    model = only_model("lit")
    values = [float(meta(v)["monitor_value"]) for v in model.versions]
    assert values and values[-1] == 1.0 and values == sorted(values, reverse=True)
    assert set(values) <= set(script) and model.iteration == 24
    # every improvement was queued, or replaced by a newer one while the background writer
    # was busy (latest wins there too; a loaded machine makes that happen)
    writer = callback.registrar.writer
    replaced = writer.replaced if writer is not None else 0
    assert callback.registrar.registered + replaced == len(script)


def test_a_crashed_run_keeps_its_versions_but_publishes_nothing(tmp_path):
    class Crash(Regressor):
        def on_train_epoch_start(self):
            if self.current_epoch == 2:
                raise RuntimeError("out of memory, say")

    callback = ModelbookCallback(project_name="lit", task_name="crash", publish_on_end=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer(tmp_path, [callback, Drain()], epochs=4).fit(
            Crash(script=[2.0, 1.0, 0.5, 0.2]), *loaders()
        )
    model = only_model("lit")
    assert [float(meta(v)["monitor_value"]) for v in model.versions] == [2.0, 1.0]
    assert not model.published


def test_missing_metric_warns_once_and_fails_at_the_end(tmp_path):
    callback = ModelbookCallback("val_acc", "max", project_name="lit", task_name="missing")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(MetricNotFoundError, match="'val_loss'"):
            trainer(tmp_path, [callback], epochs=2).fit(Regressor(), *loaders())
    missing = [w for w in caught if issubclass(w.category, MonitorWarning)]
    assert len(missing) == 1 and "'val_loss'" in str(missing[0].message)
    assert Model.query_models(project_name="lit") == []


def test_mode_is_required_unless_val_loss():
    with pytest.raises(InvalidArgumentError, match="mode is required"):
        ModelbookCallback("val_acc", project_name="lit")
    with pytest.raises(InvalidArgumentError, match="keep_last"):
        ModelbookCallback(keep_last=-1, project_name="lit")
    assert ModelbookCallback(project_name="lit").monitor.mode == "min"


def test_resume_continues_the_model_and_never_registers_worse(tmp_path):
    ModelCheckpoint = pl.callbacks.ModelCheckpoint

    def run(script, epochs, ckpt_path=None):
        keep = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, filename="{epoch}")
        callback = ModelbookCallback(project_name="lit", task_name="resume")
        trainer(tmp_path, [keep, callback, Drain()], epochs=epochs, enable_checkpointing=True).fit(
            Regressor(script=script), *loaders(), ckpt_path=ckpt_path
        )
        return callback

    first = run([3.0, 2.0, 1.0], epochs=3)
    task_id = Task.current_task().id
    Task.current_task().close()  # as if the process had ended
    # resume from the end of epoch 0: the checkpoint says best=3, the registry says best=1
    second = run([3.0, 1.5, 0.5, 1.2], epochs=4, ckpt_path=tmp_path / "ckpts" / "epoch=0.ckpt")

    model = only_model("lit")
    assert second.state_dict()["model_id"] == first.state_dict()["model_id"] == model.id
    assert model.task == task_id
    assert [float(meta(v)["monitor_value"]) for v in model.versions] == [3.0, 2.0, 1.0, 0.5]
    assert [v.iteration for v in model.versions] == [4, 8, 12, 12]  # epoch 2 of the second run


def test_registry_failure_never_stops_training(tmp_path):
    dest = tmp_path / "dest"
    callback = ModelbookCallback(project_name="lit", task_name="down", upload_uri=str(dest))
    dest.rmdir()
    dest.write_text("not a folder: every upload fails")
    script = [3.0, 2.0, 1.0]

    class Repair(pl.Callback):  # the storage comes back before training ends
        def on_train_end(self, trainer, pl_module):
            dest.unlink()
            dest.mkdir()

    with pytest.warns(RegistryWarning, match="could not register the model at step 4"):
        # Drain: each improvement is written (and fails) before the next epoch, whatever the
        # background threads' share of the CPU
        trainer(tmp_path, [Repair(), callback, Drain()], epochs=3).fit(
            Regressor(script=script), *loaders()
        )
    assert callback.registry_failures  # reported, and training finished
    model = only_model("lit")
    assert len(model.versions) == 1  # the pending best, registered once storage was back
    assert model.versions[0].iteration == 12 and model.url.startswith(dest.as_uri())


def test_failure_report_keeps_the_unregistered_best(tmp_path):
    dest = tmp_path / "dest"
    callback = ModelbookCallback(project_name="lit", task_name="down", upload_uri=str(dest))
    dest.rmdir()
    dest.write_text("not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, [callback], epochs=2).fit(Regressor(), *loaders())
    report = [str(w.message) for w in caught if issubclass(w.category, RegistryWarning)][-1]
    assert "NOT registered" in report
    kept = Path(report.split("kept at ")[1].rstrip("."))
    assert kept.is_file()
    assert set(torch.load(kept, weights_only=True)) == {"net.weight", "net.bias"}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ddp_spawn_two_processes_register_once_per_improvement(tmp_path):
    script = Path(__file__).with_name("lightning_ddp_run.py")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MODELBOOK_TEST_LIGHTNING": PACKAGE,
           "MODELBOOK_TEST_HIDE": HIDDEN}  # fmt: skip
    # its own session, so a hang kills the spawned workers too, not only the launcher
    run = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "root")], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        _, stderr = run.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail("the two-process run did not finish in 200 s (ranks out of step?)")
    assert run.returncode == 0, stderr[-3000:]
    model = only_model("ddp")
    # rank 0 logs 3, 2, 2.5, 1 (rank 1 logs other values): three improvements, one model
    assert [float(meta(v)["monitor_value"]) for v in model.versions] == [3.0, 2.0, 1.0]
    assert [v.iteration for v in model.versions] == [2, 4, 8]  # 2 steps per epoch per rank
    ranks = [json.loads((tmp_path / "root" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] and ranks[0]["best"] == 1.0
    assert len(Task.get_task(project_name="ddp", task_name="spawn").models["output"]) == 1
    state = torch.load(Model(model.id).get_local_copy(), weights_only=True)
    assert set(state) == {"net.weight", "net.bias"}


# not on PostgreSQL again: the callback's logic, not the store's SQL
pytestmark = pytest.mark.sql_agnostic
