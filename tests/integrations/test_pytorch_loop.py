"""Plain PyTorch loops: tiny real trainings on CPU register exactly the improvements they see."""

from __future__ import annotations

import json
import math
import os
import runpy
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from scripted import improvements, only_model  # noqa: E402

import modelbook  # noqa: E402
from modelbook import Model, OutputModel, Task  # noqa: E402
from modelbook.errors import InvalidArgumentError  # noqa: E402
from modelbook.integrations.monitor import MetricNotFoundError, MonitorWarning  # noqa: E402
from modelbook.integrations.pytorch import BestModel  # noqa: E402

PROBE = torch.linspace(-1, 1, 12).reshape(3, 4)
EXAMPLES = Path(__file__).parents[2] / "examples"
STEPS_PER_EPOCH = 4


class Loop:
    """A tiny real regression trained on CPU; ``epoch()`` trains one epoch and reports metrics."""

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.net = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(STEPS_PER_EPOCH * 8, 4, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.step = 0

    def epoch(self) -> dict[str, object]:
        for i in range(0, len(self.x), 8):
            self.optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(self.net(self.x[i : i + 8]), self.y[i : i + 8])
            loss.backward()
            self.optimizer.step()
            self.step += 1
        with torch.no_grad():
            mae = torch.nn.functional.l1_loss(self.net(self.x), self.y)
        return {"train_loss": loss.item(), "val_mae": mae}  # a 0-d tensor is a metric too


def drain() -> None:
    """Wait until each queued version is stored, so no improvement is coalesced away by the
    upload queue and counts are exact."""
    assert OutputModel.wait_for_uploads(timeout=30) == []




def meta(version) -> dict[str, str]:
    return {k: v["value"] for k, v in version.metadata.items()}


def values_of(model: Model) -> list[float]:
    return [float(meta(v)["monitor_value"]) for v in model.versions]


def test_each_improvement_is_one_version_with_its_metrics_and_exact_weights(registry):
    script = [math.nan, 3.0, 3.0, 2.0, 2.5, 2.0, 1.0]  # NaN first, a tie, a worse, a tie
    loop, seen, flags = Loop(), [], []
    best = BestModel(
        "val_loss", project_name="loop", task_name="train", model_name="regressor",
        tags=["demo"], labels={"y": 0}, hparams={"lr": 0.05, "epochs": len(script)},
    )  # fmt: skip
    with pytest.warns(MonitorWarning, match="never the best"), best:
        for epoch, value in enumerate(script):
            metrics = {"val_loss": value, **loop.epoch()}
            flags.append(best.update(metrics, loop.net, step=loop.step, epoch=epoch))
            if flags[-1]:
                state = {k: v.clone() for k, v in loop.net.state_dict().items()}
                seen.append({"step": loop.step, "epoch": epoch, "state": state,
                             "metrics": {k: float(v) for k, v in metrics.items()}})  # fmt: skip
                drain()

    wanted = improvements(script)
    assert [i for i, flag in enumerate(flags) if flag] == wanted == [1, 3, 6]
    model = only_model("loop")
    assert (model.name, model.tags, model.labels, model.framework) == (
        "regressor", ["demo"], {"y": 0}, "PyTorch",
    )  # fmt: skip
    task = Task.get_task(task_id=best.task_id)
    assert task.models["output"]["regressor"].id == model.id
    assert task.get_parameters()["General/lr"] == "0.05"
    assert best.model_id == best.state_dict()["model_id"] == model.id and best.best == 1.0

    assert [v.iteration for v in model.versions] == [s["step"] for s in seen]
    for version, expected in zip(model.versions, seen, strict=True):
        m = meta(version)
        assert float(m["monitor_value"]) == expected["metrics"]["val_loss"]
        assert (m["monitor"], m["monitor_mode"], m["min_delta"]) == ("val_loss", "min", "0.0")
        assert {k: float(v) for k, v in m.items() if k.startswith("metrics/")} == {
            f"metrics/{k}": v for k, v in expected["metrics"].items()
        }
        assert (int(m["epoch"]), int(m["global_step"])) == (expected["epoch"], expected["step"])
        assert (m["framework"], m["framework_version"]) == ("pytorch", torch.__version__)
        assert (m["modelbook_version"], m["save_weights_only"]) == (modelbook.__version__, "True")
        # every version holds the weights of its step, bit for bit
        path = Model(model.id).get_local_copy(version=version.version, raise_on_error=True)
        fresh = torch.nn.Linear(4, 1)
        fresh.load_state_dict(torch.load(path, weights_only=True))
        for key, tensor in fresh.state_dict().items():
            assert torch.equal(tensor, expected["state"][key])
    # the current weights are the best ones: a fresh model computes what the loop's did then
    best_net, fresh = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    best_net.load_state_dict(seen[-1]["state"])
    fresh.load_state_dict(torch.load(Model(model.id).get_local_copy(), weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(PROBE), best_net(PROBE))


def test_min_delta_max_mode_and_what_is_saved(tmp_path):
    loop = Loop()
    wrapped = torch.nn.DataParallel(loop.net)  # its keys carry "module."; the bare module's
    with BestModel("val_acc", "max", 0.1, project_name="loop", task_name="max") as best:
        flags = [best.update({"val_acc": acc}, wrapped, step=i) for i, acc in
                 enumerate([0.5, 0.55, 0.6000001, 0.7, 0.7])]  # fmt: skip
        drain()
        checkpoint = {"model": loop.net.state_dict(), "optimizer": loop.optimizer.state_dict()}
        assert best.update({"val_acc": 0.9}, checkpoint, step=9)  # a mapping is saved as is
    assert flags == [True, False, True, False, False]
    model = Model(best.model_id)
    assert values_of(model) == [0.5, 0.6000001, 0.9]
    first = torch.load(Model(model.id).get_local_copy(version=model.versions[0].version),
                       weights_only=True)  # fmt: skip
    assert set(first) == {"weight", "bias"}
    assert set(torch.load(Model(model.id).get_local_copy(), weights_only=True)) == {
        "model", "optimizer",
    }  # fmt: skip

    whole = BestModel("loss", model_name="whole", save_weights_only=False)  # the same task
    with whole:
        assert whole.update({"loss": 1.0}, loop.net, step=1)
    model = Model(whole.model_id)
    restored = torch.load(model.get_local_copy(), weights_only=False)
    assert isinstance(restored, torch.nn.Linear) and model.get_metadata("save_weights_only") == (
        "False"
    )
    with torch.no_grad():
        assert torch.equal(restored(PROBE), loop.net(PROBE))


def test_resume_from_state_dict_continues_the_model_and_never_registers_worse():
    def run(script, state=None):
        loop, flags, states = Loop(), [], []
        best = BestModel("val_loss", project_name="loop", task_name="resume")
        if state is not None:
            best.load_state_dict(state)
        with best:
            for epoch, value in enumerate(script):
                flags.append(best.update({"val_loss": value, **loop.epoch()}, loop.net,
                                         step=loop.step, epoch=epoch))  # fmt: skip
                drain()
                states.append(json.loads(json.dumps(best.state_dict())))  # as a checkpoint would
        return best, flags, states

    first, flags, states = run([3.0, 2.0, 1.0])
    assert flags == [True, True, True] and states[0]["best"] == 3.0
    task_id = first.task_id
    Task.current_task().close()  # as if the process had ended
    # resume from the end of epoch 0: the state says best=3, the registry says best=1
    second, flags, _ = run([1.5, 0.5, 1.2], state=states[0])
    assert flags == [False, True, False]
    model = only_model("loop")
    assert second.model_id == first.model_id == model.id and model.task == task_id
    assert second.task_id == task_id
    assert values_of(model) == [3.0, 2.0, 1.0, 0.5]

    late = BestModel("val_loss", project_name="loop", task_name="resume")
    with pytest.raises(InvalidArgumentError, match="before the run starts"), late:
        late.load_state_dict(states[0])
    assert values_of(only_model("loop")) == [3.0, 2.0, 1.0, 0.5]


def test_a_state_for_another_monitor_is_ignored():
    best = BestModel("val_acc", "max", project_name="loop", task_name="other")
    best.load_state_dict({"monitor": "val_loss", "mode": "min", "best": 0.1, "model_id": "x"})
    assert best.best is None and best.state_dict()["model_id"] is None


def test_missing_metric_warns_once_listing_the_keys_and_fails_at_the_end():
    loop = Loop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        best = BestModel("val_acc", "max", project_name="loop", task_name="missing")
        with pytest.raises(MetricNotFoundError, match="'train_loss'"), best:
            for _ in range(3):
                assert not best.update(loop.epoch(), loop.net, step=loop.step)
    missing = [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)]
    assert len(missing) == 1
    assert "'train_loss', 'val_mae'" in missing[0] and "'val_acc'" in missing[0]
    assert Model.query_models(project_name="loop") == []


def test_an_exception_keeps_the_versions_but_publishes_nothing():
    loop = Loop()
    best = BestModel("val_loss", project_name="loop", task_name="crash", publish_on_end=True)
    with pytest.raises(RuntimeError, match="out of memory"), best:
        for value in (2.0, 1.0):
            best.update({"val_loss": value}, loop.net, step=loop.step)
            drain()
        raise RuntimeError("out of memory, say")
    model = only_model("loop")
    assert values_of(model) == [2.0, 1.0] and not model.published


def test_without_a_with_block_update_starts_and_close_ends():
    loop = Loop()
    best = BestModel("val_loss", project_name="loop", task_name="plain", publish_on_end=True)
    for value in (2.0, 1.0, 1.5):
        best.update({"val_loss": value}, loop.net, step=loop.step)
        drain()
    best.close()
    best.close()  # idempotent
    model = only_model("loop")
    assert values_of(model) == [2.0, 1.0] and model.published


def test_bad_arguments_are_clear_errors():
    with pytest.raises(InvalidArgumentError, match="mode is required"):
        BestModel("val_acc", project_name="loop")
    with pytest.raises(InvalidArgumentError, match=r"unknown argument\(s\) \['projet_name'\]"):
        BestModel("val_loss", projet_name="typo")  # type: ignore[call-arg]
    with pytest.raises(InvalidArgumentError, match="hparams must be a mapping"):
        BestModel("val_loss", hparams=[("lr", 1)])  # type: ignore[arg-type]
    best = BestModel("val_loss", project_name="loop", task_name="bad")
    with pytest.raises(InvalidArgumentError, match=r"needs a torch\.nn\.Module or a state"), best:
        best.update({"val_loss": 1.0}, [1, 2, 3], step=0)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_processes_with_gloo_register_once_per_improvement(tmp_path):
    script = Path(__file__).with_name("pytorch_ddp_run.py")
    root = tmp_path / "root"
    root.mkdir()
    base = {**os.environ, "PYTHONWARNINGS": "ignore", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}  # fmt: skip
    rank1_home = tmp_path / "rank1-home"  # rank 1 must create nothing, anywhere
    envs = [{**base, "RANK": "0"}, {**base, "RANK": "1", "MODELBOOK_HOME": str(rank1_home)}]
    logs = [tmp_path / f"rank{rank}.log" for rank in (0, 1)]  # files: no pipe can fill up
    runs = []
    try:
        for env, log in zip(envs, logs, strict=True):
            with log.open("w") as out:  # its own session: a hang is killed with its children
                runs.append(
                    subprocess.Popen(
                        [sys.executable, str(script), str(root)],
                        env=env,
                        stdout=out,
                        stderr=out,
                        start_new_session=True,
                    )
                )
        for run in runs:
            run.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the two-process run did not finish in 120 s (ranks out of step?)")
    finally:
        for run in runs:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait(timeout=30)
    errors = [log.read_text()[-3000:] for log in logs]
    assert [run.returncode for run in runs] == [0, 0], errors

    ranks = [json.loads((root / f"rank{r}.json").read_text()) for r in (0, 1)]
    # rank 0 reports NaN, 3, 2, 2, 1 (rank 1 other values): improvements at epochs 1, 2, 4
    assert ranks[0]["improved"] == ranks[1]["improved"] == [False, True, True, False, True]
    assert ranks[0]["monitor"] == ranks[1]["monitor"] and ranks[0]["monitor"]["best"] == 1.0
    assert ranks[1]["queued"] == 0 and not ranks[1]["current_task"]
    assert ranks[1]["registrar"] == {"task_id": None, "model_id": None}
    assert not rank1_home.exists()
    model = only_model("ddp")
    assert ranks[0]["registrar"]["model_id"] == model.id and ranks[0]["queued"] == 3
    assert values_of(model) == [3.0, 2.0, 1.0]
    assert [v.iteration for v in model.versions] == [8, 12, 20]
    assert len(Task.get_task(project_name="ddp", task_name="loop").models["output"]) == 1
    for version in model.versions:
        m = meta(version)
        reported = ranks[0]["reported"][str(version.iteration)]
        assert {k: float(v) for k, v in m.items() if k.startswith("metrics/")} == {
            f"metrics/{k}": v for k, v in reported.items()
        }
        assert m["world_size"] == "2"
        stored = torch.load(Model(model.id).get_local_copy(version=version.version),
                            weights_only=True)  # fmt: skip
        seen = torch.load(root / f"seen-step{version.iteration}.pt", weights_only=True)
        assert set(stored) == {"weight", "bias"}  # unwrapped from DDP
        assert all(torch.equal(stored[k], seen[k]) for k in seen)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("example", "needs"), [("pytorch_loop_example.py", "torch"), ("fabric_example.py", "lightning")]
)
def test_examples_register_versions(example, needs):
    pytest.importorskip(needs)
    model_id = runpy.run_path(str(EXAMPLES / example))["main"](epochs=3)
    model = Model(model_id)
    assert 1 <= len(model.versions) <= 3
    assert model.iteration == model.versions[-1].iteration
    assert model.get_metadata("framework") == "pytorch"


# not on PostgreSQL again: the helper's logic, not the store's SQL
pytestmark = pytest.mark.sql_agnostic
