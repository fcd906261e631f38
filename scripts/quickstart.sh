#!/usr/bin/env bash
# Install modelbook with Lightning into ./.venv (torch pinned to the CPU build), run a tiny real
# Lightning training whose ModelbookCallback registers each improvement in the embedded store
# (~/.modelbook, or $MODELBOOK_HOME), then list the registered models.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[lightning]'
.venv/bin/python examples/lightning_example.py
.venv/bin/modelbook models ls -n 5
