"""Server throughput: requests per second with 4 concurrent clients, ``modelbook server``
against the MLflow tracking server, both on SQLite with the same number of worker processes.

* read: modelbook ``models.get_all`` (project, tag ``t1``, archived excluded, newest first,
  page of 5: what ``Model.query_models`` sends) against MLflow
  ``GET registered-models/search`` (``filter=tags.t1 = '1'``, ``max_results=5``);
* write: modelbook ``models.edit`` (a new comment on a random model) against MLflow
  ``PATCH model-versions/update`` (a new description on a random version).

Each store holds 1 000 models with 3 of 50 tags each (``bench/_fill.py``; MLflow: 1 000
registered models with one version each). The clients are 4 processes, each with its own
``requests.Session``, started together for a fixed time; a request counts if it completed
with HTTP 200 before the time was up. The clients run on the same 2-core machine as the
servers, for both servers alike.

Usage: ``python bench/server_throughput.py [--quick] [--runs N] [--no-peers]``
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _common import Goal, Table, header, installed, measure, missing, mlflow_server, options, report
from _fill import PROJECT, fill_mlflow, fill_modelbook

CLIENTS = 4
WORKERS = 2
MODELS = 1000
MB_READ = "modelbook models.get_all"
MB_WRITE = "modelbook models.edit"
ML_READ = "MLflow registered-models/search"
ML_WRITE = "MLflow model-versions/update"
TIMEOUT = 30.0


def client(spec: dict[str, Any]) -> tuple[int, int]:
    """One client process: requests until the deadline; (completed with 200, failed)."""
    import requests

    session = requests.Session()
    headers = {}
    if spec.get("auth"):
        login = session.get(f"{spec['api']}/auth.login", auth=tuple(spec["auth"]), timeout=TIMEOUT)
        headers["Authorization"] = f"Bearer {login.json()['data']['token']}"
    rng = random.Random(spec["seed"])
    method, url, ids = spec["method"], spec["url"], spec.get("ids") or [None]
    ok = failed = 0
    time.sleep(max(0.0, spec["start"] - time.time()))
    deadline = spec["start"] + spec["duration"]
    counter = 0
    while time.time() < deadline:
        counter += 1
        body = fill(spec.get("body"), rng.choice(ids), counter)
        response = session.request(
            method, url, json=body, params=spec.get("params"), headers=headers, timeout=TIMEOUT
        )
        if time.time() > deadline:
            break
        if response.status_code == 200:
            ok += 1
        else:
            failed += 1
    return ok, failed


def fill(template: dict[str, Any] | None, chosen: Any, counter: int) -> dict[str, Any] | None:
    """The request body: ``{id}`` / ``{n}`` placeholders filled in."""
    if template is None:
        return None
    return {
        key: value.format(id=chosen, n=counter) if isinstance(value, str) else value
        for key, value in template.items()
    }


def modelbook_specs(server: Any) -> dict[str, dict[str, Any]]:
    """The read and write requests for a running ``modelbook server``."""
    import requests

    api, key, secret = server.api_host, server.access_key, server.secret_key
    with requests.Session() as session:
        login = session.get(f"{api}/auth.login", auth=(key, secret), timeout=TIMEOUT)
        auth = {"Authorization": f"Bearer {login.json()['data']['token']}"}

        def call(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
            reply = session.post(
                f"{api}/v2.23/{endpoint}", json=body, headers=auth, timeout=TIMEOUT
            )
            reply.raise_for_status()
            return reply.json()["data"]

        project = call("projects.get_all", {"name": f"^{PROJECT}$"})["projects"][0]["id"]
        ids = [
            m["id"]
            for m in call("models.get_all", {"project": [project], "only_fields": ["id"]})["models"]
        ]
    common = {"api": api, "auth": [key, secret], "method": "POST"}
    read = {
        "project": [project],
        "tags": ["t1"],
        "system_tags": ["-archived"],
        "order_by": ["-created"],
        "page": 0,
        "page_size": 5,
    }
    return {
        MB_READ: {**common, "url": f"{api}/v2.23/models.get_all", "body": read},
        MB_WRITE: {
            **common,
            "url": f"{api}/v2.23/models.edit",
            "ids": ids,
            "body": {"model": "{id}", "comment": "edited {n}"},
        },
    }


def mlflow_specs(url: str) -> dict[str, dict[str, Any]]:
    """The read and write requests for a running MLflow tracking server."""
    api = f"{url}/api/2.0/mlflow"
    return {
        ML_READ: {
            "method": "GET",
            "url": f"{api}/registered-models/search",
            "params": {"filter": "tags.t1 = '1'", "max_results": 5},
        },
        ML_WRITE: {
            "method": "PATCH",
            "url": f"{api}/model-versions/update",
            "ids": [f"m{k}" for k in range(MODELS)],
            "body": {"name": "{id}", "version": "1", "description": "edited {n}"},
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(__doc__.splitlines()[0], argv, runs=5, quick_runs=1)
    head = header("6. Server throughput", opts, ["uvicorn", "mlflow"])
    if missing(["starlette", "uvicorn"]) or not installed("modelbook.server.testing"):
        print(head + "\nskipped: pip install 'modelbook[server]'")
        return 0
    duration = 0.5 if opts.quick else 3.0
    opts = dataclasses.replace(opts, warmup=max(opts.warmup, 1))  # cold workers answer slowly
    root = Path(tempfile.mkdtemp(prefix="modelbook-bench-server-"))
    notes: dict[str, str] = {}
    try:
        with ExitStack() as stack:
            from modelbook.server.testing import live_server

            db = root / "modelbook" / "registry.db"
            db.parent.mkdir(parents=True)
            fill_modelbook(f"sqlite:///{db}", MODELS)
            server = stack.enter_context(
                live_server(db.parent, db_url=f"sqlite:///{db}", workers=WORKERS)
            )
            specs = modelbook_specs(server)
            if not opts.peers:
                notes[ML_READ] = notes[ML_WRITE] = "skipped (--no-peers)"
            elif not installed("mlflow"):
                notes[ML_READ] = notes[ML_WRITE] = "not installed"
            else:
                fill_mlflow(f"sqlite:///{root / 'mlflow.db'}", MODELS, versions_per_model=1)
                specs.update(mlflow_specs(stack.enter_context(mlflow_server(root, WORKERS))))
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(CLIENTS))
            cases = {name: _case(pool, spec, duration) for name, spec in specs.items()}
            order = [MB_READ, ML_READ, MB_WRITE, ML_WRITE]
            samples = measure({n: cases[n] for n in order if n in cases}, opts.runs, opts.warmup)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    tables = []
    for title, ours, theirs in (
        ("Reads: search 5 models by tag", MB_READ, ML_READ),
        ("Writes: edit one model", MB_WRITE, ML_WRITE),
    ):
        table = Table(
            f"{title}, {CLIENTS} clients, {WORKERS} server workers",
            "requests/s",
            theirs,
            samples={k: samples[k] for k in (ours, theirs) if k in samples},
        )
        table.notes.update({k: v for k, v in notes.items() if k == theirs})
        table.goals.append(Goal(f"{ours} >= 3x {theirs}", ours, 3.0, "ratio>="))
        tables.append(table)
    report(head, tables, [f"each run: {CLIENTS} client processes for {duration:g} s"])
    return 0


def _case(pool: Any, spec: dict[str, Any], duration: float) -> Any:
    def run() -> float:
        start = time.time() + 0.3  # every client is ready and sleeping by then
        jobs = [{**spec, "start": start, "duration": duration, "seed": k} for k in range(CLIENTS)]
        results = pool.map(client, jobs)
        failed = sum(f for _, f in results)
        if failed:
            raise RuntimeError(f"{failed} request(s) to {spec['url']} failed")
        return sum(ok for ok, _ in results) / duration

    return run


if __name__ == "__main__":
    sys.exit(main())
