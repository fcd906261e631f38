"""Keras 3: tiny real ``fit`` runs register exactly the improvements they see.

Runs on whatever backend Keras picked at its import: torch by default (conftest), and JAX
through ``test_keras_jax.py``, which runs this file again with ``KERAS_BACKEND=jax``.
"""

from __future__ import annotations

import math
import warnings

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from scripted import every_version_reads_back, improvements, only_model  # noqa: E402

from modelbook import Model, OutputModel, Task  # noqa: E402
from modelbook.errors import InvalidArgumentError  # noqa: E402
from modelbook.integrations.keras import ModelbookCallback  # noqa: E402
from modelbook.integrations.monitor import MetricNotFoundError, MonitorWarning  # noqa: E402

BACKEND = keras.backend.backend()  # conftest sets KERAS_BACKEND before the first import
if BACKEND not in ("torch", "jax"):
    pytest.skip(f"the Keras tests run on torch or jax, not {BACKEND}", allow_module_level=True)

RNG = np.random.default_rng(0)
X = RNG.random((64, 4), dtype=np.float32)
Y = X @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype=np.float32)
PROBE = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)


def build() -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((4,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(1)]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


class Recorder(keras.callbacks.Callback):
    """The logs Keras reported at each epoch end, and the model's outputs then."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict] = []

    def on_epoch_end(self, epoch, logs=None) -> None:
        out = self.model.predict(PROBE, verbose=0)
        self.seen.append({"epoch": epoch, "logs": dict(logs), "out": out})


class Drain(keras.callbacks.Callback):
    """Listed after ModelbookCallback: waits for each queued version to be stored, so no
    improvement is coalesced away by the upload queue and counts are exact."""

    def on_epoch_end(self, epoch, logs=None) -> None:
        assert OutputModel.wait_for_uploads(timeout=30) == []


class Script(keras.callbacks.Callback):
    """Overwrites ``val_loss`` in the epoch logs (listed first, so later callbacks see it)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs["val_loss"] = self.values[epoch]


def fit(model, callbacks, epochs, **kwargs):
    return model.fit(X, Y, validation_split=0.25, epochs=epochs, batch_size=16, verbose=0,
                     callbacks=callbacks, **kwargs)  # fmt: skip



def val_losses(recorder: Recorder) -> list[float]:
    return [seen["logs"]["val_loss"] for seen in recorder.seen]



def meta(version) -> dict[str, str]:
    return {k: v["value"] for k, v in version.metadata.items()}


def test_registers_each_improvement_with_metadata_and_loadable_weights(registry):
    recorder = Recorder()
    callback = ModelbookCallback(project_name="keras", task_name="fit", labels={"y": 0})
    model = build()
    fit(model, [recorder, callback, Drain()], epochs=4)

    registered = only_model("keras")
    wanted = [recorder.seen[i] for i in improvements(val_losses(recorder))]
    assert len(registered.versions) == len(wanted) >= 2
    every_version_reads_back(registered)
    assert (registered.framework, registered.labels) == ("Keras", {"y": 0})
    curve = Task.get_task(task_id=registered.task).get_reported_scalars()["val_loss"]
    assert curve["val_loss"]["y"] == pytest.approx(val_losses(recorder))  # each epoch's
    steps_per_epoch = 3  # 48 training samples, batches of 16
    for version, seen in zip(registered.versions, wanted, strict=True):
        m = meta(version)
        assert version.iteration == int(m["global_step"]) == steps_per_epoch * (seen["epoch"] + 1)
        assert float(m["monitor_value"]) == seen["logs"]["val_loss"]
        assert {k: float(v) for k, v in m.items() if k.startswith("metrics/")} == {
            f"metrics/{k}": v for k, v in seen["logs"].items()
        }
        assert int(m["epoch"]) == seen["epoch"]
        assert (m["framework"], m["keras_backend"]) == ("keras", BACKEND)
    params = Task.current_task().get_parameters()
    assert float(params["optimizer/learning_rate"]) == pytest.approx(0.01)

    fresh = build()
    fresh.load_weights(Model(registered.id).get_local_copy())
    np.testing.assert_array_equal(fresh.predict(PROBE, verbose=0), wanted[-1]["out"])


def test_full_model_loads_with_load_model(tmp_path):
    recorder = Recorder()
    callback = ModelbookCallback(project_name="keras", task_name="full", save_weights_only=False)
    early = keras.callbacks.EarlyStopping(patience=1, restore_best_weights=True)
    fit(build(), [recorder, callback, early], epochs=3)
    registered = only_model("keras")
    path = Model(registered.id).get_local_copy()
    assert path.endswith(".keras")
    best = recorder.seen[improvements(val_losses(recorder))[-1]]
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(PROBE, verbose=0), best["out"])


def test_epochs_without_validation_are_skipped_not_saved():
    callback = ModelbookCallback(project_name="keras", task_name="freq")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(build(), [callback], epochs=4, validation_freq=2)
    missing = [w for w in caught if issubclass(w.category, MonitorWarning)]
    assert len(missing) == 1 and "'loss', 'mae'" in str(missing[0].message)
    registered = only_model("keras")
    epochs = {int(meta(v)["epoch"]) for v in registered.versions}
    assert epochs and epochs <= {1, 3}  # validated epochs only


def test_nan_first_value_does_not_block_later_bests():
    callback = ModelbookCallback(project_name="keras", task_name="nan")
    with pytest.warns(MonitorWarning, match="never the best"):
        fit(build(), [Script([math.nan, 2.0, 2.0, 1.0]), callback, Drain()], epochs=4)
    values = [float(meta(v)["monitor_value"]) for v in only_model("keras").versions]
    assert values == [2.0, 1.0]


def test_never_reported_metric_fails_at_the_end():
    callback = ModelbookCallback("val_accuracy", "max", project_name="keras", task_name="none")
    with pytest.warns(MonitorWarning), pytest.raises(MetricNotFoundError, match="'val_loss'"):
        fit(build(), [callback], epochs=1)
    with pytest.raises(InvalidArgumentError, match="mode is required"):
        ModelbookCallback("val_accuracy", project_name="keras")


def test_resume_on_the_same_task_continues_the_model():
    first = ModelbookCallback(project_name="keras", task_name="resume")
    model = build()
    fit(model, [Script([3.0, 2.0, 1.0]), first, Drain()], epochs=3)
    task_id = Task.current_task().id
    Task.current_task().close()  # as if the process had ended

    # a new process: the same task, a fresh callback; the registry holds best = 1.0
    second = ModelbookCallback(task=Task.get_task(task_id=task_id))
    fit(model, [Script([0, 0, 0, 1.5, 0.5, 0.7]), second, Drain()], epochs=6, initial_epoch=3)
    registered = only_model("keras")
    assert [float(meta(v)["monitor_value"]) for v in registered.versions] == [3.0, 2.0, 1.0, 0.5]
    assert second.state_dict()["model_id"] == first.state_dict()["model_id"] == registered.id

    # the callback's own state can be carried by hand too (same monitor and mode)
    third = ModelbookCallback(project_name="keras", task_name="other")
    third.load_state_dict(second.state_dict())
    assert third.monitor.best == 0.5 and third.registrar.task_id == task_id


# not on PostgreSQL again: the callback's logic, not the store's SQL
pytestmark = pytest.mark.sql_agnostic
