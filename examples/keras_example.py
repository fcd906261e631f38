"""Keras 3: register the best model in modelbook while ``fit`` runs (any backend).

A tiny classifier on synthetic data; runs on CPU in seconds and downloads nothing. Each time
``val_loss`` improves, the whole model (``.keras``) becomes a new version of one OutputModel,
and only the best and the two versions before it keep their files (``keep_last=2``).

    python examples/keras_example.py            # then: modelbook models ls
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # the backend modelbook[keras] installs

import keras
import numpy as np

from modelbook import Model, Task
from modelbook.integrations.keras import ModelbookCallback


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, 8)).astype("float32")
    return x, (x[:, :4].sum(axis=1) > 0).astype("int32")  # a learnable rule


def main(epochs: int = 6) -> str:
    keras.utils.set_random_seed(0)
    x, y = make_data(640, np.random.default_rng(0))
    net = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2),
    ])  # fmt: skip
    net.compile(
        optimizer=keras.optimizers.Adam(1e-2),  # its config is recorded on the task
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    task = Task.init(project_name="examples", task_name="keras")
    callback = ModelbookCallback(  # monitor defaults to val_loss, lower is better
        task=task, model_name="keras-mlp", labels={"negative": 0, "positive": 1},
        save_weights_only=False, keep_last=2,
    )  # fmt: skip
    net.fit(x, y, validation_split=0.2, epochs=epochs, batch_size=64, verbose=0,
            callbacks=[callback])  # fmt: skip
    task.close()

    model = Model(callback.state_dict()["model_id"])
    best = model.versions[-1]
    print(f"{len(model.versions)} versions of {model.name} ({model.id})")
    print(f"best val_loss {best.metadata['monitor_value']['value']} at step {best.iteration}")
    restored = keras.models.load_model(model.get_local_copy())
    print(f"reloaded: {restored.count_params()} parameters")
    return model.id


if __name__ == "__main__":
    main()
