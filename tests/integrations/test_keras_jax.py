"""Keras 3 on JAX: ``test_keras.py`` again, in a subprocess with ``KERAS_BACKEND=jax``.

Keras picks its backend once, at its first import, and this process runs it on torch (see
``conftest.py``, which only sets a default): another backend needs another interpreter.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

if importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None:
    pytest.skip("needs keras and jax: pip install 'modelbook[keras]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
# Imports Keras first, so the backend the tests will run on is the one checked here.
RUN = """
import sys
import keras
import pytest
print("keras backend:", keras.backend.backend(), flush=True)
assert keras.backend.backend() == "jax", keras.backend.backend()
sys.exit(pytest.main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.embedded_only  # the Keras backend, not the registry
def test_keras_suite_passes_on_the_jax_backend(tmp_path):
    report = tmp_path / "report.xml"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    # the embedded registry only: the HTTP variants test the registry, not the Keras backend
    args = ["tests/integrations/test_keras.py", "-q", "-p", "no:cacheprovider",
            "-k", "not http", f"--junitxml={report}"]  # fmt: skip
    try:
        run = subprocess.run(
            [sys.executable, "-c", RUN, *args], cwd=ROOT, env=env, text=True,
            capture_output=True, timeout=240,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the Keras suite on JAX did not finish in {exc.timeout} s")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "keras backend: jax" in run.stdout
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= 6 and counts["failures"] == counts["errors"] == 0, counts
    assert counts["skipped"] == 0, output[-4000:]  # a skipped module would pass vacuously
