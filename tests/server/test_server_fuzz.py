"""Fuzzed request bodies for every endpoint of ``modelbook server`` (issue 13).

Every API endpoint of the dispatch table (``modelbook.server.services.ENDPOINTS`` and
``auth.login``) and every method of the files server gets Hypothesis-generated requests: the
fields its handler reads (found in the handler's source, and in the functions it calls, by
``fuzz_endpoints.endpoint_fields``), well typed and not (ids of existing models, tasks and projects,
names, tags, numbers at the edges, NaN, lone surrogates, huge lists, deep nesting, unknown
fields, null), plus raw garbage (non-JSON, other content types, other methods and versions).

Two properties hold for each request: the answer is never a 5xx (and an API answer is always
an envelope whose ``result_code`` is the HTTP status), and a 4xx leaves the registry as it
was: a digest of every table of the server's SQLite file and a listing of its files root are
taken before the request and compared after it.

One live server (a real subprocess) serves the whole module; a few models, tasks, projects,
events and files are seeded first and topped up when requests delete them. Derandomized, no
example database: CI runs the same cases every time. Cost: about 2 200 requests, 40 s of
CPU; ``MODELBOOK_FUZZ_SCALE=10`` runs ten times as many, new ones each run (bug hunting),
and ``MODELBOOK_FUZZ_STATS=1`` prints the answers' status classes per endpoint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from fuzz_endpoints import endpoint_fields
from fuzz_requests import api_requests, files_requests, login_requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelbook.backends.api_client import ApiClient
from modelbook.errors import is_transient
from modelbook.server.api import LOGIN
from modelbook.server.app import _FILES_METHODS
from modelbook.server.services import ENDPOINTS
from modelbook.server.testing import LiveServer, envelope_data, live_server

TIMEOUT = 20
#: The suite's total number of requests (at least 2 000, spread over the endpoints).
TARGET_CASES = 2200


# -- the server, its state and the requests --------------------------------------------------
class Registry:
    """The live server under fuzzing: ids to draw from, state snapshots, checked requests."""

    def __init__(self, server: LiveServer, token: str) -> None:
        self.server, self.token, self.access_key = server, token, server.access_key
        self.session = requests.Session()
        path = Path(server.db_url.removeprefix("sqlite:///"))
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT)
        self._version, self._digests = -1, {}  # type: int, dict[str, str]
        self._stale = True
        self.ids: dict[str, list[str]] = {"models": [], "tasks": [], "projects": []}
        self.files: list[str] = []
        self.cases = 0
        self.statuses: Counter[str] = Counter()

    def api(self, endpoint: str, body: Any) -> dict[str, Any]:
        """A well-formed call that must succeed (seeding)."""
        reply = self.session.post(f"{self.server.api_host}/{endpoint}", json=body,
                                  headers=self.auth, timeout=TIMEOUT)  # fmt: skip
        self._stale = True
        return envelope_data(reply)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def upload(self, path: str, content: bytes) -> None:
        reply = self.session.post(f"{self.server.files_host}/", files={path: content},
                                  headers=self.auth, timeout=TIMEOUT)  # fmt: skip
        assert reply.status_code == 200, reply.text
        self._stale = True

    def seed(self) -> None:
        """A little of everything: projects, tasks in several states, models with versions,
        metadata, scalars, plots, logs and stored files."""
        project = self.api("projects.create", {"name": "fuzz"})["id"]
        self.api("projects.create", {"name": "fuzz/sub"})
        first = self.api("tasks.create", {
            "name": "train", "project": project, "tags": ["a"],
            "hyperparams": {"Args": {"lr": {"value": "0.1"}}},
            "configuration": {"General": {"value": "x: 1"}},
            "execution": {"artifacts": [{"key": "data", "type": "custom"}]},
        })["id"]  # fmt: skip
        second = self.api("tasks.create", {"name": "eval", "project": project})["id"]
        self.api("tasks.started", {"task": first})
        self.upload("fuzz/seed.bin", b"seed bytes")
        self.upload("fuzz/free.bin", b"free bytes")
        uri = f"{self.server.files_host}/fuzz/seed.bin"
        draft = self.api("models.create", {
            "name": "draft", "project": project, "task": first, "uri": uri, "ready": False,
            "tags": ["x"],
        })["id"]  # fmt: skip
        self.api("models.add_version", {"model": draft, "uri": uri, "sha256": "0" * 64,
                                        "size": 10, "iteration": 3})  # fmt: skip
        self.api("models.add_or_update_metadata",
                 {"model": draft, "metadata": [{"key": "acc", "value": "0.9", "type": "float"}]})
        self.api("models.create", {"name": "published", "project": project, "uri": uri})
        self.api("tasks.add_or_update_model",
                 {"task": first, "type": "output", "name": "best", "model": draft})
        events = [{"type": "training_stats_scalar", "task": first, "metric": "loss",
                   "variant": "train", "iter": i, "value": 1.0 / (i + 1)} for i in range(5)]
        events += [{"type": "plot", "task": first, "metric": "m", "variant": "v", "iter": 1,
                    "plot_str": "{}"}, {"type": "log", "task": first, "msg": "hello"},
                   {"type": "training_stats_scalar", "task": draft, "model_event": True,
                    "metric": "acc", "variant": "val", "iter": 1, "value": 0.5}]  # fmt: skip
        self.api("events.add_batch", events)
        self.api("tasks.publish", {"task": second, "force": True})
        self.refresh()

    def refresh(self) -> None:
        """Re-read the ids to draw from; top them up when requests deleted them."""
        if not self._stale:
            return  # nothing succeeded since the last look
        self._stale = False
        self._read_ids()
        if len(self.ids["projects"]) < 2 or len(self.ids["tasks"]) < 3 or len(
                self.ids["models"]) < 3:  # fmt: skip
            self._top_up()
            self._read_ids()
        root = self.server.files_root
        self.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                            if p.is_file() and not p.relative_to(root).as_posix()
                            .startswith(".modelbook"))[:20]  # fmt: skip

    def _read_ids(self) -> None:
        for table in self.ids:
            rows = self.db.execute(f"SELECT id FROM {table} ORDER BY rowid DESC LIMIT 6")
            self.ids[table] = [row[0] for row in rows]

    def _top_up(self) -> None:
        if len(self.ids["projects"]) < 2:
            self.api("projects.create", {"name": f"fuzz-{self.cases}"})
        if len(self.ids["tasks"]) < 3:
            self.api("tasks.create", {"name": f"t{self.cases}"})
        if len(self.ids["models"]) < 3:
            self.api("models.create", {"name": f"m{self.cases}", "ready": False})

    def _tables(self) -> dict[str, str]:
        """A digest of every table, computed again only when the server committed a write
        since (SQLite's ``data_version`` changes with every commit of another connection)."""
        version = self.db.execute("PRAGMA data_version").fetchall()[0][0]  # no open read
        if version != self._version:
            self._version, self._digests = version, {}
            tables = [r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]  # fmt: skip
            for table in tables:
                digest = hashlib.sha256()
                for row in self.db.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
                    digest.update(repr(row).encode("utf-8", "surrogatepass"))
                self._digests[table] = digest.hexdigest()
        return self._digests

    def state(self) -> dict[str, str]:
        """A digest of every table of the store and one of the files root's listing."""
        listing = hashlib.sha256()
        for folder, dirs, names in sorted(os.walk(self.server.files_root)):
            dirs.sort()
            for name in sorted(names):
                stat = (Path(folder) / name).stat()
                listing.update(f"{folder}/{name} {stat.st_size} {stat.st_mtime_ns}\n".encode(
                    "utf-8", "surrogateescape"))  # fmt: skip
            listing.update(f"{folder}/\n".encode("utf-8", "surrogateescape"))
        return {**self._tables(), "files root": listing.hexdigest()}

    def check(self, what: str, send: Callable[[], requests.Response], api: bool,
              target: str = "") -> None:  # fmt: skip
        """Send one request; no 5xx, an envelope from the API, no change on a 4xx
        (``target``: the endpoint or files method, for the statistics)."""
        before = self.state()
        response = send()
        self.cases += 1
        status = response.status_code
        self.statuses[f"{target or what[:40]} {status // 100}xx"] += 1
        detail = f"{what} -> {status}: {response.text[:600]}"
        assert status < 500, f"{detail}\nserver log:\n{self.server.log()[-4000:]}"
        if api:
            meta = response.json()["meta"]
            assert meta["result_code"] == status, detail
            assert status == 200 or meta["result_msg"], detail
        if 400 <= status < 500:
            after = self.state()
            changed = sorted(k for k in before if after.get(k) != before[k])
            assert not changed, f"{detail}\nchanged on a {status}: {changed}"
        else:
            self._stale = True


# -- the tests -------------------------------------------------------------------------------
API_ENDPOINTS = sorted({*ENDPOINTS, LOGIN})
FILES_METHODS = sorted(_FILES_METHODS)
#: ``MODELBOOK_FUZZ_SCALE=10`` runs ten times the cases, with new random ones (bug hunting).
SCALE = int(os.environ.get("MODELBOOK_FUZZ_SCALE") or 1)
EXAMPLES = SCALE * max(20, math.ceil(TARGET_CASES / (len(API_ENDPOINTS) + 2 * len(FILES_METHODS))))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=SCALE == 1, database=None,
                suppress_health_check=list(HealthCheck))  # fmt: skip


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with live_server(tmp_path_factory.mktemp("fuzz")) as server:
        login = requests.get(f"{server.api_host}/auth.login",
                             auth=(server.access_key, server.secret_key), timeout=TIMEOUT)
        registry = Registry(server, envelope_data(login)["token"])  # fmt: skip
        registry.seed()
        yield registry
        registry.session.close()
        registry.db.close()
        by_class = Counter(k.rsplit(" ", 1)[1] for k in registry.statuses.elements())
        print(f"\nserver fuzz: {registry.cases} requests, {dict(sorted(by_class.items()))}")
        if os.environ.get("MODELBOOK_FUZZ_STATS"):
            print("\n".join(f"{k}: {n}" for k, n in sorted(registry.statuses.items())))


def test_the_fields_are_found_in_the_handlers() -> None:
    """The field finder sees through loops, helpers (and the field names their callers pass)
    and other modules, or the fuzz would send only unknown fields."""
    models = endpoint_fields(ENDPOINTS["models.get_all"])
    assert {"page": "int", "tags": "tags", "name": "string", "only_fields": "strings"}.items() \
        <= models.fields.items()  # fmt: skip
    edit = endpoint_fields(ENDPOINTS["tasks.edit"])
    assert {"task", "script", "hyperparams", "execution", "models", "force"} <= set(edit.fields)
    assert "model_labels" in edit.words
    assert endpoint_fields(ENDPOINTS["tasks.add_or_update_model"]).choices["type"] == [
        "input", "output"]  # fmt: skip
    assert "iso_time" in endpoint_fields(ENDPOINTS["events.scalar_metrics_iter_histogram"]
                                         ).choices["key"]  # fmt: skip
    assert "name" in endpoint_fields(ENDPOINTS["projects.create"]).required  # through a helper
    assert all(endpoint_fields(ENDPOINTS[e]).fields for e in ENDPOINTS if not e.endswith(
        ("ping", "get_vaults", "server.info")))  # fmt: skip


def test_the_checks_see_a_5xx_and_a_change(registry: Registry) -> None:
    """The two checks can fail: a change shows in the digest, a 5xx fails the check."""
    before = dict(registry.state())
    registry.api("projects.create", {"name": "fuzz-check"})
    assert registry.state() != before

    def broken() -> requests.Response:
        response = requests.Response()
        response.status_code, response._content = 500, b"boom"
        return response

    with pytest.raises(AssertionError, match="-> 500"):
        registry.check("broken", broken, api=False)


def _draft(registry: Registry) -> str:
    task = registry.api("tasks.create", {"name": "known"})["id"]
    return registry.api("models.create", {"name": "known", "task": task, "ready": False})["id"]


Body = Callable[[Registry], Any]
#: What the fuzz found (a 5xx, or a change on a 4xx), kept as fixed cases:
#: (endpoint, body from the registry, status, words of the message).
# fmt: off
KNOWN: list[tuple[str, Body, int, str]] = [
    ("projects.get_all", lambda r: {"name": "\ud800"}, 400, "lone surrogate"),
    ("models.create", lambda r: {"name": "m", "tags": ["ok", "\udc00x"]}, 400, "'tags[1]'"),
    ("tasks.edit", lambda r: {"task": r.ids["tasks"][0], "execution": json.loads(
        '{"a":' * 100 + "1" + "}" * 100)}, 400, "nested too deeply"),
    ("tasks.clone", lambda r: {"task": r.ids["tasks"][0], "new_project_name": "known-new",
                               "new_task_container": 5}, 400, "'container'"),
    ("tasks.add_or_update_model", lambda r: {"task": r.ids["tasks"][0], "type": "output",
                                             "name": "n", "model": r.ids["models"][0],
                                             "iteration": "abc"}, 400, "'iteration'"),
    ("models.set_ready", lambda r: {"model": _draft(r), "publish_task": "maybe"}, 400,
     "'publish_task'"),
    ("tasks.delete", lambda r: {"task": r.ids["tasks"][0], "force": True,
                                "return_file_urls": "x"}, 400, "'return_file_urls'"),
    ("models.archive_many", lambda r: {"ids": [r.ids["models"][0], "missing"]}, 400, "missing"),
    ("storage.begin_write", lambda r: {"uri": "mem://known", "sha256": "b" * 64}, 400,
     "not " + "b" * 64),
    ("storage.gc", lambda r: {"pending_grace": 2**53 + 1}, 400, "'pending_grace'"),
    ("storage.gc", lambda r: {"pending_grace": math.nan}, 400, "'pending_grace'"),
    ("models.get_all", lambda r: {"metadata": {f"k{i}": i for i in range(1000)}}, 400,
     "at most 100"),
    ("tasks.get_all", lambda r: {"order_by": ["configuration", "-execution"]}, 200, "OK"),
    ("models.get_all", lambda r: {"page": 2, "page_size": 2**63 - 1}, 400, "below 2**63"),
    ("models.get_all", lambda r: {"offset": -1}, 400, "must not be negative"),
]
# fmt: on


@pytest.mark.parametrize(("endpoint", "body", "status", "message"), KNOWN,
                         ids=[case[0] for case in KNOWN])  # fmt: skip
def test_known_cases(registry: Registry, endpoint: str, body: Body, status: int,
                     message: str) -> None:  # fmt: skip
    registry.api("storage.begin_write", {"uri": "mem://known", "sha256": "a" * 64})
    registry.refresh()
    sent = json.dumps(body(registry)).encode()
    url = f"{registry.server.api_host}/{endpoint}"
    registry.check(endpoint, lambda: registry.session.post(
        url, data=sent, headers=registry.auth, timeout=TIMEOUT), api=True)  # fmt: skip
    reply = registry.session.post(url, data=sent, headers=registry.auth, timeout=TIMEOUT)
    meta = reply.json()["meta"]
    assert (reply.status_code, meta["result_code"]) == (status, status), meta
    assert message in meta["result_msg"]


def test_a_busy_object_is_a_409_the_client_retries(registry: Registry) -> None:
    """Writing an object the registry is deleting is refused for now (409, transient), not
    with a 500; modelbook's client takes it as transient and writes it again later."""
    uri = "mem://busy/w.pt"
    registry.api("storage.begin_write", {"uri": uri, "sha256": "c" * 64})
    assert uri in registry.api("storage.gc", {"pending_grace": 0})["doomed"]
    url = f"{registry.server.api_host}/storage.begin_write"
    body = {"uri": uri, "sha256": "c" * 64}
    registry.check("busy", lambda: registry.session.post(url, json=body, headers=registry.auth,
                                                         timeout=TIMEOUT), api=True)  # fmt: skip
    reply = registry.session.post(url, json=body, headers=registry.auth, timeout=TIMEOUT)
    meta = reply.json()["meta"]
    assert reply.status_code == 409 and meta["error_data"]["transient"] is True, meta
    error = ApiClient._error("storage.begin_write", reply.status_code, meta, body)
    assert is_transient(error) and "being deleted" in str(error)


def _multipart(names: list[str]) -> bytes:
    parts = [f'--b\r\nContent-Disposition: form-data; name="{n}"; filename="{n}"\r\n\r\nx\r\n'
             for n in names]  # fmt: skip
    return ("".join(parts) + "--b--\r\n").encode()


@pytest.mark.parametrize("names", [["new/a.bin", "fuzz/seed.bin/b.bin"],
                                   ["new/a.bin", "new/a.bin/b.bin"]])  # fmt: skip
def test_an_upload_refused_for_one_part_writes_none(registry: Registry, names: list[str]) -> None:
    """The folders of the first part are not made when a later part's parent is a file."""
    headers = {**registry.auth, "Content-Type": "multipart/form-data; boundary=b"}
    send = functools.partial(registry.session.post, f"{registry.server.files_host}/",
                             data=_multipart(names), headers=headers, timeout=TIMEOUT)
    registry.check(f"upload {names}", send, api=False)
    reply = send()
    assert reply.status_code == 400 and "is a file" in reply.json()["error"]
    assert not (registry.server.files_root / "new").exists()


def test_a_path_under_a_file_is_a_404(registry: Registry) -> None:
    url = f"{registry.server.files_host}/fuzz/seed.bin/0"
    registry.check("DELETE under a file", lambda: registry.session.delete(
        url, headers=registry.auth, timeout=TIMEOUT), api=False)  # fmt: skip
    reply = registry.session.delete(url, headers=registry.auth, timeout=TIMEOUT)
    assert reply.status_code == 404 and "no file" in reply.json()["error"]


@pytest.mark.parametrize("endpoint", API_ENDPOINTS)
def test_api_fuzz(registry: Registry, endpoint: str) -> None:
    strategy = login_requests(registry) if endpoint == LOGIN else api_requests(registry, endpoint)
    first = registry.cases

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        registry.refresh()
        request = data.draw(strategy)
        url = registry.server.api_host + request["path"]
        registry.check(
            f"{request['method']} {request['path']} {request['data'][:300]!r}",
            lambda: registry.session.request(
                request["method"], url, data=request["data"], headers=request["headers"],
                params=request["params"], timeout=TIMEOUT),
            api=True, target=endpoint,
        )  # fmt: skip

    run()
    assert registry.cases - first >= EXAMPLES  # each case one request


@pytest.mark.parametrize("method", FILES_METHODS)
def test_files_fuzz(registry: Registry, method: str) -> None:
    strategy, first = files_requests(registry, method), registry.cases

    @settings(FUZZ, max_examples=2 * EXAMPLES)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        registry.refresh()
        request = data.draw(strategy)
        url = f"{registry.server.files_host}/{quote(request['path'], safe='/%:')}"
        registry.check(
            f"{method} {url} {request['headers']} {request['data'][:300]!r}",
            lambda: registry.session.request(method, url, data=request["data"],
                                             headers=request["headers"], timeout=TIMEOUT),
            api=False, target=f"files {method}",
        )  # fmt: skip

    run()
    assert registry.cases - first >= 2 * EXAMPLES


def test_the_fuzz_sends_at_least_2000_requests() -> None:
    """Each fuzz test checks it sent its share (with pytest-xdist they run in several
    processes, each with its own server); together they send this many."""
    total = EXAMPLES * (len(API_ENDPOINTS) + 2 * len(FILES_METHODS))
    print(f"\nserver fuzz: {total} requests to {len(API_ENDPOINTS)} API endpoints and "
          f"{len(FILES_METHODS)} files-server methods")  # fmt: skip
    assert total >= 2000
