"""Integration tests: each file skips itself when its framework is missing.

The root ``conftest.py`` gives every test its own ``MODELBOOK_HOME`` (inherited by
subprocesses) and resets the current task.
"""

from __future__ import annotations

import os

# Keras reads its backend once, at import: the tests run it on torch.
os.environ.setdefault("KERAS_BACKEND", "torch")
