#!/usr/bin/env bash
# Install modelbook with every extra into ./.venv (torch pinned to the CPU build) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# The web UI's browser tests drive Debian's headless Chromium (tests/ui): installed alongside
# the Python packages when missing and this machine can (root with apt-get); skipped otherwise.
browser_install=""
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/tmp/modelbook-apt.log 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
    >>/tmp/modelbook-apt.log 2>&1) &
  browser_install=$!
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
if [ -n "$browser_install" ]; then
  wait "$browser_install" || echo "chromium could not be installed (see /tmp/modelbook-apt.log);" \
    "the browser tests will be skipped"
fi
.venv/bin/python -m ruff check .
.venv/bin/python scripts/typecheck.py  # mypy, configured in pyproject.toml [tool.mypy]
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# Everything, on both cores (pytest-xdist); then once more against the strict-ClearML harness
# (tests/conftest.py): the core suite's, the callbacks' and the examples' tests that pick no
# backend (the others ran their "clearml" case in the first pass).
.venv/bin/python -m pytest -n 2 --dist worksteal
.venv/bin/python -m pytest -n 2 --dist worksteal --clearml-mode tests/core tests/integrations
