"""The benchmarks in ``bench/`` cannot rot: each runs end to end at tiny sizes (``--quick``)
and prints its tables, and the shared helpers compute medians, ratios and goals right.

No time is asserted (the machine is shared and noisy); the benchmarks themselves report
medians and ratios measured in one run. Peers (clearml, mlflow) are measured only when
installed; the test environment does not install them (they come with ``modelbook[bench]``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from _common import Goal, Table, percentile  # noqa: E402

#: Each benchmark script and the modules its modelbook cases need.
SCRIPTS = {
    "import_time.py": [],
    "training_overhead.py": ["torch", "lightning"],
    "stall.py": ["torch", "lightning"],
    "transfer.py": [],
    "query_scale.py": [],
    "server_throughput.py": ["starlette", "uvicorn"],
    "offline_start.py": ["torch", "lightning", "starlette", "uvicorn"],
    "reporting.py": [],
    "ui_page.py": ["starlette"],
}
TIMEOUT = 240


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_benchmark_runs_quick(script: str, tmp_path: Path) -> None:
    lacking = [m for m in SCRIPTS[script] if importlib.util.find_spec(m) is None]
    if lacking:
        pytest.skip(f"{script} needs {', '.join(lacking)}")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    tables = [line for line in done.stdout.splitlines() if line.startswith("| case |")]
    assert tables, done.stdout
    assert "- machine:" in done.stdout and "- command:" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.lower().startswith("| modelbook")]
    assert any("not measured" not in row for row in rows), done.stdout  # a modelbook case ran


def test_peers_can_be_skipped(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "import_time.py"), "--quick", "--runs", "1", "--no-peers"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| mlflow | skipped (--no-peers) |" in done.stdout


def test_table_medians_ratios_and_goals() -> None:
    table = Table("t", "ms", "base", scale=1000)
    table.samples = {"base": [0.010, 0.030, 0.020], "ours": [0.021, 0.022, 0.023]}
    table.notes["peer"] = "not installed"
    assert table.median("base") == pytest.approx(20.0)
    assert table.ratio("ours") == pytest.approx(1.1)
    assert "met" in table.check(Goal("ours <= 1.2x", "ours", 1.2))
    assert "missed** by 0.10" in table.check(Goal("ours <= 1.0x", "ours", 1.0))
    assert "+2.0 ms" in table.check(Goal("within 5 ms", "ours", 5, "diff<="))
    assert "missed" in table.check(Goal("at least 2x", "ours", 2.0, "ratio>="))
    assert "not measured" in table.check(Goal("peer", "peer", 1.0))
    text = table.render()
    assert "| peer | not installed |" in text and "| ours | 22.0 | 1.10 | 3 |" in text


def test_percentile() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 95) == pytest.approx(1.95)
    assert percentile([5.0], 99) == 5.0
