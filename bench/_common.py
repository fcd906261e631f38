"""What every benchmark shares: options, round-robin timing, medians, tables with a ratio
column, goals, the machine's description, peers that may be missing, and servers that are
always stopped.

Each benchmark measures every case of its table in the same run, interleaved (run 1 of each
case, then run 2 of each, ...) after a warm-up of each, so that a machine that gets slower or
faster halfway affects every case alike; it reports medians and ratios to a baseline case,
never a number from another run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from modelbook.server.testing import free_port, stop_process_group

MIB = 1024 * 1024
GIB = 1024 * MIB
#: How to install the peers the benchmarks compare against.
PEERS_HINT = "pip install -c constraints.txt 'modelbook[bench]'"


# -- options --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """The command line every benchmark takes.

    Attributes:
        quick: tiny sizes and few runs (the test suite's smoke run).
        runs: measured runs of each case (after the warm-up).
        warmup: unmeasured runs of each case first.
        peers: measure the peers (clearml, mlflow) when they are installed.
    """

    quick: bool
    runs: int
    warmup: int
    peers: bool


def options(
    description: str, argv: Sequence[str] | None = None, *, runs: int = 5, quick_runs: int = 2
) -> Options:
    """Parse the common options (``--quick``, ``--runs``, ``--warmup``, ``--no-peers``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few runs (smoke test)")
    parser.add_argument("--runs", type=int, help=f"measured runs per case (default {runs})")
    parser.add_argument("--warmup", type=int, help="warm-up runs per case (default 1)")
    parser.add_argument("--no-peers", action="store_true", help="skip clearml and mlflow")
    args = parser.parse_args(argv)
    chosen = args.runs if args.runs is not None else (quick_runs if args.quick else runs)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    if chosen < 1 or warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    return Options(quick=args.quick, runs=chosen, warmup=warmup, peers=not args.no_peers)


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(modules: Sequence[str]) -> list[str]:
    """The modules of ``modules`` that are not installed."""
    return [m for m in modules if not installed(m)]


# -- timing ---------------------------------------------------------------------------------
#: A case: runs once and returns the value it measured itself, or None to be wall-timed.
Case = Callable[[], "float | None"]


def run_case(case: Case) -> float:
    """Run ``case`` once; its own measurement, or else its wall time in seconds."""
    start = time.perf_counter()
    value = case()
    return time.perf_counter() - start if value is None else float(value)


def measure(
    cases: Mapping[str, Case], runs: int, warmup: int, *, log: bool = True
) -> dict[str, list[float]]:
    """Warm every case up, then run them round-robin ``runs`` times; the samples per case."""
    for name, case in cases.items():
        for _ in range(warmup):
            run_case(case)
            _log(log, f"warm-up {name}")
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for index in range(runs):
        for name, case in cases.items():
            samples[name].append(run_case(case))
            _log(log, f"run {index + 1}/{runs} {name}: {samples[name][-1]:.4g}")
    return samples


def _log(enabled: bool, message: str) -> None:
    if enabled:
        print(f"  .. {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- tables ---------------------------------------------------------------------------------
@dataclass
class Goal:
    """A target a table's row should meet.

    Attributes:
        text: the goal as the issue states it.
        row: the row checked.
        limit: the bound; None shows the value only (for a peer, say).
        kind: ``ratio<=`` / ``ratio>=`` (median over the baseline's), ``diff<=`` (median
            minus the baseline's, in the table's unit) or ``value<=`` (the median itself).
        other: compare with this row instead of the baseline (ratios only).
    """

    text: str
    row: str
    limit: float | None
    kind: str = "ratio<="
    other: str | None = None


@dataclass
class Table:
    """Medians per case, with a ratio to the baseline case.

    Attributes:
        title: what the table measures.
        unit: the unit shown (after ``scale``), e.g. ``ms`` or ``MB/s``.
        baseline: the row the ratios divide by.
        scale: samples are multiplied by it for display (1000: seconds to ms).
        samples: the measurements per row, in the order rows are shown.
        notes: rows that were not measured, with the reason.
        columns: more columns: name -> row -> text.
        goals: targets checked under the table.
        ratios: whether to show the ratio column.
    """

    title: str
    unit: str
    baseline: str
    scale: float = 1.0
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)
    ratios: bool = True

    def median(self, row: str) -> float | None:
        values = self.samples.get(row)
        return statistics.median(values) * self.scale if values else None

    def ratio(self, row: str, other: str | None = None) -> float | None:
        base, value = self.median(other or self.baseline), self.median(row)
        if base is None or value is None or base == 0:
            return None
        return value / base

    def render(self) -> str:
        """The table in Markdown, followed by its goals and whether each is met."""
        extra = list(self.columns)
        ratio_head = [f"ratio to {self.baseline}"] if self.ratios else []
        head = ["case", f"median ({self.unit})", *ratio_head, "runs", *extra]
        lines = [f"### {self.title}", "", _row(head), _row(["---"] * len(head))]
        for name in [*self.samples, *[n for n in self.notes if n not in self.samples]]:
            median, ratio = self.median(name), self.ratio(name)
            more = [self.columns[c].get(name, "") for c in extra]
            if median is None:
                cells = [
                    name,
                    self.notes.get(name, "not measured"),
                    *(["—"] * len(ratio_head)),
                    "0",
                    *more,
                ]
            else:
                shown = [f"{ratio:.2f}" if ratio is not None else "—"] if self.ratios else []
                cells = [name, _fmt(median), *shown, str(len(self.samples[name])), *more]
            lines.append(_row(cells))
        if self.goals:
            lines.append("")
            lines += [self.check(goal) for goal in self.goals]
        return "\n".join(lines) + "\n"

    def check(self, goal: Goal) -> str:
        """One line: the goal, the value reached, and met / missed by how much."""
        if goal.kind == "diff<=":
            value, base = self.median(goal.row), self.median(goal.other or self.baseline)
            reached = None if value is None or base is None else value - base
            shown = f"{reached:+.1f} {self.unit}" if reached is not None else ""
        elif goal.kind == "value<=":
            reached = self.median(goal.row)
            shown = f"{_fmt(reached)} {self.unit}" if reached is not None else ""
        else:
            reached = self.ratio(goal.row, goal.other)
            shown = f"{reached:.2f}x" if reached is not None else ""
        if reached is None:
            return f"- goal: {goal.text} — not measured"
        if goal.limit is None:
            return f"- {goal.text}: {shown}"
        if goal.kind == "ratio>=":
            met, by = reached >= goal.limit, goal.limit - reached
        else:
            met, by = reached <= goal.limit, reached - goal.limit
        verdict = "**met**" if met else f"**missed** by {_fmt(by)}"
        return f"- goal: {goal.text}: {shown} — {verdict}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _fmt(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if magnitude >= 0.1 else f"{value:.3g}"


# -- reporting ------------------------------------------------------------------------------
def machine() -> str:
    """The machine in one line: CPU, cores, memory, OS, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def versions(*modules: str) -> str:
    """``name version`` of each installed distribution among ``modules``."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in modules:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def header(title: str, opts: Options, packages: Sequence[str] = ()) -> str:
    """The lines above a benchmark's tables: what, the command, when, where, with what."""
    command = "python " + " ".join(shlex.quote(a) for a in [_script_path(), *sys.argv[1:]])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {title}",
        "",
        f"- command: `{command}`",
        f"- run: {stamp}; {opts.runs} measured runs per case after {opts.warmup} warm-up, "
        "cases interleaved; medians",
        f"- machine: {machine()}",
        f"- versions: {versions('modelbook', *packages)}",
    ]
    return "\n".join(lines) + "\n"


def _script_path() -> str:
    path = Path(sys.argv[0]).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def report(head: str, tables: Sequence[Table], notes: Sequence[str] = ()) -> None:
    """Print the header, the tables and notes (Markdown, ready for docs/benchmarks.md)."""
    parts = [head, *[t.render() for t in tables]]
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes) + "\n")
    print("\n".join(parts), flush=True)


# -- memory ---------------------------------------------------------------------------------
def rss_bytes() -> int:
    """This process's resident set size now."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil  # not Linux: psutil, from the bench extra

        return int(psutil.Process().memory_info().rss)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid`` (Linux ``/proc``), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpus: set[int]) -> int:
    """Pin every thread of process ``pid`` and of its child processes to ``cpus`` (Linux;
    threads started later inherit their creator's CPUs). Returns how many were pinned."""
    pinned = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
            pinned += 1
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            continue
        children = task / "children"
        for child in children.read_text().split() if children.exists() else []:
            pinned += pin(int(child), cpus)
    return pinned


class PeakRss:
    """Samples this process's RSS every few ms while the block runs.

    Example:
        >>> with PeakRss() as peak:
        ...     data = bytearray(8 * MIB)
        >>> peak.growth >= 0
        True
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        """Bytes the peak rose above the RSS at the start."""
        return self.peak - self.start


# -- modelbook ------------------------------------------------------------------------------
@contextmanager
def modelbook_at(home: Path, server: Sequence[str] | None = None) -> Iterator[None]:
    """modelbook configured for the embedded store in ``home``, or for ``server`` (a
    ``LiveServer``: api host, files host, access key, secret key) with ``home`` as its spool
    and cache; reset when the block ends."""
    import modelbook

    keys = ("api_host", "files_host", "access_key", "secret_key")
    settings = {} if server is None else dict(zip(keys, server[:4], strict=True))
    modelbook.configure(home=home, **settings)
    try:
        yield
    finally:
        modelbook.configure()


# -- processes and servers ------------------------------------------------------------------
@contextmanager
def serving(
    command: Sequence[str], ready: Callable[[], bool], log_path: Path, timeout: float = 60.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in its own process group until the block ends (always stopped).

    ``ready`` is polled until it returns True, for at most ``timeout`` seconds.

    Raises:
        RuntimeError: the process exited or was not ready in time (its log in the message).
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if proc.poll() is not None else f"not ready after {timeout:.0f} s"
                raise RuntimeError(
                    f"{command[0]} did not start ({why}); its log:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.2)
        yield proc
    finally:
        stop_process_group(proc)


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness check: ``GET url`` answers 200."""

    def check() -> bool:
        import requests

        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    return check


@contextmanager
def mlflow_server(root: Path, workers: int = 1, timeout: float = 120.0) -> Iterator[str]:
    """An MLflow tracking server on 127.0.0.1 over ``root/mlflow.db``; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow) if mlflow.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--default-artifact-root",
        (root / "mlflow-artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    with serving(command, http_ok(f"{url}/health"), root / "mlflow-server.log", timeout):
        yield url


@contextmanager
def moto_server(root: Path, timeout: float = 60.0) -> Iterator[str]:
    """A moto S3 server (server mode, a subprocess) on 127.0.0.1; yields its endpoint URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with serving(command, http_ok(f"{url}/moto-api/"), root / "moto.log", timeout):
        yield url


def python() -> str:
    """The interpreter running the benchmark (so subprocesses use the same venv)."""
    return sys.executable
