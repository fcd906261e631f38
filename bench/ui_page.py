"""UI page: the web UI's models page, filtered, over 100 000 models, against a plain
``models.get_all`` of the same page.

The registry is filled in bulk (``bench/_fill.py``: project ``scale``, 3 of 50 tags per model,
every tenth archived), plus the monitored metric on every model (``monitor`` /
``monitor_value`` metadata, which the page shows). ``modelbook server``'s application is
called in-process (no socket, no client): each sample is one request's server time, from the
request to the last byte of the answer. The page: project ``scale``, tag ``t1`` (about 6 % of
the models), archived hidden, newest first, 50 rows, with the total count. The API call asks
the same page (``project``, ``tags``, ``system_tags=["-archived"]``, ``size=50``). A third
case opens page 20 of the same filter through its keyset cursor (no OFFSET).

Usage: ``python bench/ui_page.py [--quick] [--runs N]``
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import Goal, Table, header, options, percentile, report
from _fill import fill_modelbook

UI = "modelbook UI: models page, filtered (HTML)"
DEEP = "modelbook UI: page 20 of the same filter (keyset)"
API = "modelbook API: models.get_all, same page (JSON)"
BATCH = 20  # requests per case and round
DEPTH = 20


def add_metrics(url: str) -> None:
    """Give every model a monitored metric, as the callbacks do (two metadata rows)."""
    import sqlalchemy as sa

    from modelbook.store import schema as s
    from modelbook.store.sql import SqlStore

    store = SqlStore(url)
    try:
        with store._write() as conn:
            seqs = [r[0] for r in conn.execute(sa.select(s.models.c.seq))]
            for first in range(0, len(seqs), 20_000):
                rows = [
                    {"model_seq": seq, "key": key, "value": value, "type": kind, "position": pos}
                    for seq in seqs[first : first + 20_000]
                    for pos, (key, value, kind) in enumerate(
                        [("monitor", "val_loss", "str"), ("monitor_value", f"{seq % 97 / 97}",
                                                          "float")], 1)
                ]  # fmt: skip
                conn.execute(sa.insert(s.model_metadata), rows)
    finally:
        store.close()


class InProcess:
    """``modelbook server``'s application over ``db_url``, called in this process."""

    def __init__(self, root: Path, db_url: str) -> None:
        from modelbook.server.app import create_app
        from modelbook.server.credentials import create_credentials
        from modelbook.server.settings import ServerSettings
        from modelbook.store.sql import SqlStore

        self.store = SqlStore(db_url)
        cred = create_credentials(self.store, user="bench")
        settings = ServerSettings(db_url=db_url, files_root=root / "files")
        self.app = create_app(settings, self.store)
        self.loop = asyncio.new_event_loop()
        form = f"access_key={cred.access_key}&secret_key={cred.secret_key}".encode()
        login = self.call("POST", "/ui/login", {"content-type": FORM}, form)
        self.cookie = login.headers["set-cookie"].split(";", 1)[0]
        basic = base64.b64encode(f"{cred.access_key}:{cred.secret_key}".encode()).decode()
        answer = self.call("GET", "/auth.login", {"authorization": f"Basic {basic}"})
        self.token = json.loads(answer.body)["data"]["token"]

    def call(self, method: str, target: str, headers: dict[str, str] | None = None,
             body: bytes = b"") -> Any:  # fmt: skip
        from modelbook.server.ui.testing import acall

        return self.loop.run_until_complete(acall(self.app, method, target, headers, body))

    def close(self) -> None:
        self.loop.close()
        self.store.close()


FORM = "application/x-www-form-urlencoded"


def cases(server: InProcess, project_id: str) -> dict[str, Callable[[], Any]]:
    """The requests to time (page :data:`DEPTH` only when the filter has that many)."""
    page_query = "project=scale&tags=t1"
    ui_headers = {"cookie": server.cookie}
    target: str | None = f"/ui/?{page_query}"
    for _ in range(DEPTH - 1):  # walk to page DEPTH as a reader would
        answer = server.call("GET", target or "", ui_headers)
        found = re.search(r'<a href="([^"]+)" class="next">', answer.text)
        target = found[1].replace("&amp;", "&") if found else None
        if target is None:
            break
    body = json.dumps({
        "project": [project_id], "tags": ["t1"], "system_tags": ["-archived"],
        "order_by": ["-created"], "size": 50,
    }).encode()  # fmt: skip
    api_headers = {"authorization": f"Bearer {server.token}", "content-type": "application/json"}
    chosen = {
        UI: lambda: server.call("GET", f"/ui/?{page_query}", ui_headers),
        DEEP: lambda: server.call("GET", target or "", ui_headers),
        API: lambda: server.call("POST", "/models.get_all", api_headers, body),
    }
    if target is None:  # fewer than DEPTH pages (the quick run)
        del chosen[DEEP]
    return chosen


def check(name: str, answer: Any) -> None:
    if answer.status != 200:
        raise RuntimeError(f"{name} answered {answer.status}: {answer.text[:300]}")
    if name != API and answer.text.count('class="model-link"') != 50:
        raise RuntimeError(f"{name} did not show 50 models")
    if name == API and len(json.loads(answer.body)["data"]["models"]) != 50:
        raise RuntimeError("models.get_all did not return 50 models")


def measure(n: int, root: Path, opts: Any) -> Table:
    """Fill a registry with ``n`` models and time the cases; the table."""
    import time

    db_url = f"sqlite:///{root / 'registry.db'}"
    print(f"  .. filling modelbook with {n} models", file=sys.stderr, flush=True)
    project_id = fill_modelbook(db_url, n)
    add_metrics(db_url)
    server = InProcess(root, db_url)
    count = f"{n:_}".replace("_", " ")
    table = Table(f"{count} models: one page of 50, tag t1, archived hidden (server time)", "ms",
                  API, scale=1000)  # fmt: skip
    timing: dict[str, list[float]] = {}
    try:
        requests = cases(server, project_id)
        if DEEP not in requests:
            table.notes[DEEP] = f"not measured: fewer than {DEPTH} pages"
        batch = 3 if opts.quick else BATCH
        for name, request in requests.items():  # warm-up (and a check of each answer)
            for _ in range(max(opts.warmup, 1)):
                check(name, request())
        for index in range(opts.runs):
            for name, request in requests.items():
                for _ in range(batch):
                    start = time.perf_counter()
                    answer = request()
                    table.samples.setdefault(name, []).append(time.perf_counter() - start)
                    found = re.search(r"app;dur=([\d.]+)", answer.headers.get("server-timing", ""))
                    if found:
                        timing.setdefault(name, []).append(float(found[1]))
                print(f"  .. round {index + 1}/{opts.runs}: {name}", file=sys.stderr, flush=True)
    finally:
        server.close()
    table.columns["p95 (ms)"] = {
        name: f"{percentile(values, 95) * 1000:.1f}" for name, values in table.samples.items()
    }
    table.columns["Server-Timing p50 (ms)"] = {
        name: f"{sorted(values)[len(values) // 2]:.1f}" for name, values in timing.items()
    }
    table.goals.append(Goal("filtered models page <= 100 ms (server time)", UI, 100, "value<="))
    table.goals.append(Goal("page 20 costs what page 1 costs (<= 1.5x)", DEEP, 1.5, other=UI))
    table.goals.append(Goal("UI page over the same page of models.get_all", UI, None))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(__doc__.splitlines()[0], argv, runs=5, quick_runs=1)
    n = 3000 if opts.quick else 100_000
    head = header("UI: models page", opts, ["starlette", "sqlalchemy"])
    root = Path(tempfile.mkdtemp(prefix="modelbook-bench-ui-"))
    try:
        table = measure(n, root, opts)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(head, [table], [
        "each sample is one request through the ASGI application in-process (SQLite store, "
        "page rendered to HTML); 'runs' counts requests",
        "the UI page also counts the matching models (the total it shows); models.get_all does not",
        "Server-Timing: the UI's own header (session check, queries, rendering)",
    ])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
