#!/usr/bin/env bash
# Install modelbook with every extra into ./.venv (torch pinned to the CPU build) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
.venv/bin/python -m ruff check .
.venv/bin/python scripts/typecheck.py  # mypy, configured in pyproject.toml [tool.mypy]
.venv/bin/python -m pytest "$@"
# Without arguments, once more against the strict-ClearML harness (tests/conftest.py): the
# core suite's, the callbacks' and the examples' tests that pick no backend (the others ran
# their "clearml" case above).
if [ "$#" -eq 0 ]; then
  .venv/bin/python -m pytest --clearml-mode tests/core tests/integrations
fi
