"""The three framework examples run end to end (each skips when its framework is missing)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from modelbook import Model

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize(
    ("example", "framework", "epochs"),
    [("lightning_example.py", "lightning", 3), ("keras_example.py", "keras", 3),
     ("transformers_example.py", "transformers", 2)],
)  # fmt: skip
def test_example_registers_versions(example, framework, epochs):
    pytest.importorskip(framework)
    model_id = runpy.run_path(str(EXAMPLES / example))["main"](epochs=epochs)
    model = Model(model_id)
    assert 1 <= len(model.versions) <= epochs
    assert model.iteration == model.versions[-1].iteration
    assert model.get_metadata("framework") == framework
