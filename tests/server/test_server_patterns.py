"""Name filters cannot hang the server: patterns are matched in linear time (RE2) or refused
(issue 13). The pattern ``(a+)+$`` over names like ``"a"*24 + "!N"`` made Python's ``re``
backtrack for about 37 CPU-minutes over 2 000 models; a name of 26 "a" costs it about 8 s,
so over the names here it would run for minutes: each request must answer within its 60 s
timeout."""

from __future__ import annotations

import pytest
import requests

from modelbook.server.testing import envelope_data, envelope_meta

pytest.importorskip("re2", reason="pip install 'modelbook[server]' (google-re2)")

EVIL = "(a+)+$"
NAMES = 200


EVIL_NAME = "a" * 26 + "!{}"


@pytest.fixture(scope="module")
def populated(server, backend) -> str:
    """``NAMES`` models, 20 tasks and 20 projects named ``EVIL_NAME``."""
    project = backend.get_or_create_project("patterns").id
    for n in range(NAMES):
        backend.create_model(name=EVIL_NAME.format(n), project=project, uri=f"file:///m/{n}.pt")
    for n in range(20):
        backend.create_task(name=EVIL_NAME.format(n), project=project)
        backend.get_or_create_project(EVIL_NAME.format(n))
    return project


def _post(server, token: str, endpoint: str, body: dict) -> requests.Response:
    return requests.post(f"{server.api_host}/v2.23/{endpoint}", json=body, timeout=60,
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip


@pytest.mark.parametrize("endpoint", ["models.get_all", "tasks.get_all", "projects.get_all"])
def test_a_backtracking_pattern_answers_at_once(populated, server, token, endpoint) -> None:
    body = {"name": EVIL, "only_fields": ["id", "name"]}
    if endpoint == "models.get_all":
        body["project"] = [populated]
    data = envelope_data(_post(server, token, endpoint, body))  # a timeout fails the test
    assert next(iter(data.values())) == []  # no name ends in "a" only


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [(r"^(a)\1$", "no backreferences or lookarounds"),
     # PostgreSQL refuses counts over 255: refused on every store, not a 500 on one of them
     ("a{300}", "over 255, the largest every store accepts")],
)  # fmt: skip
def test_a_pattern_a_store_cannot_run_is_refused_with_the_reason(
    server, token, pattern: str, reason: str
) -> None:
    response = _post(server, token, "models.get_all", {"name": pattern})
    meta = envelope_meta(response)
    assert (response.status_code, meta["result_subcode"]) == (400, 21)
    assert reason in meta["result_msg"]


def test_ordinary_patterns_still_match(populated, server, token) -> None:
    found = envelope_data(_post(server, token, "models.get_all",
                                {"name": r"!1\d\d$", "project": [populated],
                                 "only_fields": ["name"]}))["models"]  # fmt: skip
    assert len(found) == 100 and all(m["name"].startswith("a" * 26 + "!1") for m in found)
