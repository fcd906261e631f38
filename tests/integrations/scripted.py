"""What the integration tests expect of a scripted run: which steps improve, and one model."""

from __future__ import annotations

import math
from pathlib import Path

from modelbook import Model


def improvements(values: list[float], mode: str = "min") -> list[int]:
    """Indices of the values that beat every earlier finite one (the plain rule)."""
    best, found = None, []
    for i, v in enumerate(values):
        if math.isfinite(v) and (best is None or (v < best if mode == "min" else v > best)):
            best = v
            found.append(i)
    return found


def only_model(project: str) -> Model:
    """The one model of ``project`` (fails listing them if there are more)."""
    models = Model.query_models(project_name=project)
    assert len(models) == 1, [m.name for m in models]
    return models[0]


def every_version_reads_back(model: Model) -> None:
    """Each registered version downloads, checked against the sha256 recorded with it (a
    mismatch raises ``BlobCorruptedError``), on every backend, ClearML mode included."""
    for version in model.versions:
        assert version.sha256, version
        path = model.get_local_copy(version=version.version, raise_on_error=True)
        assert path and Path(path).exists(), version
