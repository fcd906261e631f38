#!/usr/bin/env bash
# Install modelbook with Lightning into ./.venv (torch pinned to the CPU build) and run a tiny
# real training that registers its best models in the embedded store, then list them.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[lightning]'
.venv/bin/python examples/quickstart.py
