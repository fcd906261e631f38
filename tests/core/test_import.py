"""``import modelbook`` is light: no ML framework, no database layer, no HTTP stack."""

from __future__ import annotations

import json
import subprocess
import sys

import modelbook


def test_import_pulls_in_nothing_heavy() -> None:
    code = (
        "import json, sys; import modelbook; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = set(json.loads(out.stdout))
    heavy = {"torch", "keras", "lightning", "transformers", "sqlalchemy", "requests", "numpy"}
    assert not loaded & heavy, loaded & heavy


def test_public_surface() -> None:
    assert modelbook.__all__ == [
        "Framework",
        "InputModel",
        "Model",
        "ModelbookError",
        "OutputModel",
        "Task",
        "__version__",
        "configure",
    ]
