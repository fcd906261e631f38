"""Lightning comes as two packages, ``lightning`` and ``pytorch_lightning``: the callback works
with either on its own, and with both installed one class fits a Trainer of each.

``test_lightning.py`` trains with one package; here it runs again in a subprocess per package
with the other one hidden (a ``sitecustomize`` on ``PYTHONPATH`` makes importing it fail in
that process and every process it starts, ddp workers included).
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

PACKAGES = {"lightning": "lightning.pytorch", "pytorch_lightning": "pytorch_lightning"}
OTHER = {"lightning": "pytorch_lightning", "pytorch_lightning": "lightning"}
ROOT = Path(__file__).resolve().parents[2]

# Imported by every Python started with this folder on PYTHONPATH: the package named by
# MODELBOOK_TEST_HIDE looks uninstalled (ModuleNotFoundError, as find_spec users expect).
HIDER = """
import os
import sys

_HIDDEN = os.environ.get("MODELBOOK_TEST_HIDE", "")


class _Hide:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == _HIDDEN or name.startswith(_HIDDEN + "."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the tests)", name=name)
        return None


if _HIDDEN:
    sys.meta_path.insert(0, _Hide())
"""


def installed(package: str) -> bool:
    try:
        importlib.import_module(PACKAGES[package])
    except ImportError:
        return False
    return True


def hiding(tmp_path: Path, package: str) -> dict[str, str]:
    """The environment of a process that sees ``package`` and not the other one."""
    folder = tmp_path / "hide"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(HIDER)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "MODELBOOK_TEST_HIDE": OTHER[package],
            "MODELBOOK_TEST_LIGHTNING": package}  # fmt: skip


def run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    # its own session, so a hang kills the ddp workers too
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{command} did not finish in {timeout} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out)


def needs_both() -> None:
    missing = [p for p in PACKAGES if not installed(p)]
    if missing:  # with one package, test_lightning.py already runs against it alone
        pytest.skip(f"needs both Lightning packages; missing {missing}")


@pytest.mark.slow
@pytest.mark.embedded_only  # the package choice, not the registry
@pytest.mark.timeout(420)
@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_lightning_suite_passes_with_only(package, tmp_path):
    needs_both()
    suite = Path(__file__).with_name("test_lightning.py")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)]
    done = run(command, hiding(tmp_path, package), timeout=360)
    assert done.returncode == 0, done.stdout[-6000:]
    summary = done.stdout.strip().splitlines()[-1]
    # not skipped as a whole; its test_trains_with_the_chosen_package checks the hiding
    assert re.search(r"\d+ passed", summary), summary


def test_one_callback_class_fits_a_trainer_of_each_package(tmp_path):
    needs_both()
    from modelbook import Model, OutputModel
    from modelbook.integrations.lightning import ModelbookCallback

    versions = {}
    for package, module in PACKAGES.items():
        pl = importlib.import_module(module)
        assert issubclass(ModelbookCallback, pl.Callback)

        class Net(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.net = torch.nn.Linear(2, 1)

            def training_step(self, batch, _):
                return self.net(batch[0]).pow(2).mean()

            def validation_step(self, batch, _):
                self.log("val_loss", 3.0 - self.current_epoch)

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.01)

        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2)))
        callback = ModelbookCallback(project_name="both", task_name=package, model_name=package)
        trainer = pl.Trainer(
            max_epochs=2, accelerator="cpu", devices=1, callbacks=[callback], logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            default_root_dir=tmp_path / package,
        )  # fmt: skip
        trainer.fit(Net(), data, data)
        assert OutputModel.wait_for_uploads(timeout=30) == []
        (model,) = Model.query_models(project_name="both", model_name=package)
        versions[package] = [
            (v.iteration, {k: m["value"] for k, m in v.metadata.items() if "framework" in k})
            for v in model.versions
        ]
        assert callback.framework == package

    for package, seen in versions.items():
        version = importlib.import_module(package).__version__
        expected = {"framework": package, "framework_version": version}
        assert seen[-1] == (8, expected), seen


def test_without_either_package_the_error_names_both_extras(monkeypatch):
    for name in (*PACKAGES, *PACKAGES.values()):
        monkeypatch.setitem(sys.modules, name, None)  # "not installed"
    monkeypatch.delitem(sys.modules, "modelbook.integrations.lightning", raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module("modelbook.integrations.lightning")
    assert str(info.value) == (
        "modelbook.integrations.lightning needs Lightning: pip install 'modelbook[lightning]' "
        "(or 'modelbook[pytorch-lightning]')"
    )
