"""The quickstart example runs end to end (it is the README's main job)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from modelbook import Model

torch = pytest.importorskip("torch")
EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart.py"


def test_quickstart_registers_every_improvement(registry: str) -> None:
    model_id = runpy.run_path(str(EXAMPLE))["main"](epochs=4)
    model = Model(model_id)
    assert len(model.versions) >= 2
    assert model.iteration == model.versions[-1].iteration
    assert model.labels == {"negative": 0, "positive": 1}


# not on PostgreSQL again: the example runs; the store's SQL is tested elsewhere
pytestmark = pytest.mark.sql_agnostic
