"""Fixtures of the web UI tests: the screenshot folder.

Screenshots go to ``$MODELBOOK_TEST_ARTIFACTS`` (default ``tests/artifacts/ui/``, ignored by
git); CI keeps them as artifacts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the UI needs: pip install 'modelbook[server]'")

# Read once: the suite's autouse fixture clears every MODELBOOK_* variable for each test.
_ARTIFACTS_ENV = os.environ.get("MODELBOOK_TEST_ARTIFACTS")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The screenshot folder."""
    default = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
    folder = Path(_ARTIFACTS_ENV or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
