"""Query scale: ``Model.query_models`` with a tag filter and ``max_results=5`` over 10 000 and
100 000 models, on the embedded store and through a ``modelbook server``; MLflow's
``MlflowClient.search_model_versions`` with a tag filter on a SQLite registry of the same
size as the peer.

Stores are filled in bulk (see ``bench/_fill.py``): modelbook by inserting rows into its
schema's tables, MLflow by inserting rows into the tables of its ORM models after its
``SqlAlchemyStore`` created the schema. Each model has 3 of 50 tags; the query asks for tag
``t1`` (about 6 % of the models), newest first, excluding archived models (modelbook's
default). Each sample is one query, timed in the calling process; a round runs a batch of
queries per case and size in slices of 10, the slices of all cases and both sizes interleaved,
after one warm-up batch each.

Usage: ``python bench/query_scale.py [--quick] [--runs N] [--no-peers]``
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _common import (
    Goal,
    Table,
    header,
    installed,
    missing,
    modelbook_at,
    options,
    percentile,
    report,
)
from _fill import PROJECT, fill_mlflow, fill_modelbook

EMBEDDED = "modelbook embedded (Model.query_models)"
SERVER = "modelbook server (Model.query_models over HTTP)"
MLFLOW = "MLflow search_model_versions (SQLite)"
BATCH = 40  # queries per case and round
SLICES = 4  # ... run in this many interleaved slices
Cases = dict[str, Callable[[int], list[float]]]
GROWTH_GOAL = 1.3  # issue 15: the tag index walk stops at max_results


def modelbook_case(home: Path, server: Any = None) -> Callable[[int], list[float]]:
    """A case: ``count`` timed queries through modelbook (after one untimed query)."""
    from modelbook import Model

    def query() -> list[Any]:
        return Model.query_models(project_name=PROJECT, tags=["t1"], max_results=5)

    def run(count: int) -> list[float]:
        with modelbook_at(home, server):
            if len(query()) != 5:  # opens the store or logs in
                raise RuntimeError("the query found fewer than 5 models")
            return [_timed(query) for _ in range(count)]

    return run


def mlflow_case(db_uri: str) -> Callable[[int], list[float]]:
    """A case: ``count`` timed ``search_model_versions`` calls (after one untimed call)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=db_uri, registry_uri=db_uri)

    def query() -> list[Any]:
        return list(client.search_model_versions("tags.t1 = '1'", max_results=5))

    def run(count: int) -> list[float]:
        if len(query()) != 5:
            raise RuntimeError("the MLflow search found fewer than 5 versions")
        return [_timed(query) for _ in range(count)]

    return run


def _count(n: int) -> str:
    return f"{n:_}".replace("_", " ")


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def prepare(n: int, root: Path, opts: Any, stack: ExitStack) -> tuple[Table, Cases]:
    """Fill the stores with ``n`` models and start the server: the table for ``n``, its cases."""
    folder = root / str(n)
    home = folder / "home"
    home.mkdir(parents=True)
    print(f"  .. filling modelbook with {n} models", file=sys.stderr, flush=True)
    fill_modelbook(f"sqlite:///{home / 'store.db'}", n)
    table = Table(
        f"{_count(n)} models: one query, tag filter, max_results=5", "ms", MLFLOW, scale=1000
    )
    cases: Cases = {EMBEDDED: modelbook_case(home)}
    if installed("modelbook.server.testing") and not missing(["starlette", "uvicorn"]):
        from modelbook.server.testing import live_server

        server = stack.enter_context(
            live_server(folder / "server", db_url=f"sqlite:///{home / 'store.db'}")
        )
        cases[SERVER] = modelbook_case(folder / "client-home", server)
    else:
        table.notes[SERVER] = "not measured: pip install 'modelbook[server]'"
    if not opts.peers:
        table.notes[MLFLOW] = "skipped (--no-peers)"
    elif not installed("mlflow"):
        table.notes[MLFLOW] = "not installed"
    else:
        print(f"  .. filling MLflow with {n} model versions", file=sys.stderr, flush=True)
        db_uri = f"sqlite:///{folder / 'mlflow.db'}"
        fill_mlflow(db_uri, n)
        cases[MLFLOW] = mlflow_case(db_uri)
    table.goals.append(Goal("embedded p50 <= 20 ms", EMBEDDED, 20, "value<="))
    return table, cases


def measure(sizes: list[int], root: Path, opts: Any) -> list[Table]:
    """Every case at every size, interleaved: each round runs its batch per case and size
    in :data:`SLICES` slices, one slice of every case and size after the other, so a burst
    of load on the shared machine lands on both sides of the growth ratio alike."""
    with ExitStack() as stack:
        prepared = [prepare(n, root, opts, stack) for n in sizes]
        batch = 5 if opts.quick else BATCH
        slices = 1 if opts.quick else SLICES
        for _ in range(opts.warmup):
            for _table, cases in prepared:
                for case in cases.values():
                    case(batch)
        for index in range(opts.runs):
            for _ in range(slices):
                for table, cases in prepared:
                    for name, case in cases.items():
                        table.samples.setdefault(name, []).extend(case(batch // slices))
            print(f"  .. round {index + 1}/{opts.runs} done", file=sys.stderr, flush=True)
    tables = [table for table, _cases in prepared]
    for table in tables:
        table.columns["p95 (ms)"] = {
            name: f"{percentile(values, 95) * 1000:.1f}" for name, values in table.samples.items()
        }
    return tables


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(__doc__.splitlines()[0], argv, runs=5, quick_runs=1)
    sizes = [300, 1200] if opts.quick else [10_000, 100_000]
    head = header("5. Query scale", opts, ["sqlalchemy", "mlflow"])
    root = Path(tempfile.mkdtemp(prefix="modelbook-bench-query-"))
    try:
        tables = measure(sizes, root, opts)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(
        head,
        [*tables, growth(tables, sizes)],
        [
            "each sample is one query; 'runs' counts queries",
            "modelbook filled by inserting into its schema's tables; MLflow by inserting into the "
            "tables of its ORM models (schema made by its SqlAlchemyStore); 10 versions per MLflow "
            "registered model",
        ],
    )
    return 0


def growth(tables: list[Table], sizes: list[int]) -> Table:
    """p50 at the larger size over the smaller, per case."""
    small, large = tables
    low, high = _count(sizes[0]), _count(sizes[1])
    table = Table(f"p50 growth from {low} to {high} models", "ms", "", scale=1000, ratios=False)
    for row in (EMBEDDED, SERVER, MLFLOW):
        if row in small.samples and row in large.samples:
            table.samples[f"{row} @ {low}"] = small.samples[row]
            table.samples[f"{row} @ {high}"] = large.samples[row]
            limit = None if row == MLFLOW else GROWTH_GOAL
            text = f"{row}: growth" + (f" <= {GROWTH_GOAL}x" if limit else " (the peer)")
            table.goals.append(Goal(text, f"{row} @ {high}", limit, other=f"{row} @ {low}"))
    return table


if __name__ == "__main__":
    sys.exit(main())
