"""The harness itself: the strict server answers as a real ClearML server does, and the
schema gate refuses what a real server would not take as meant."""

from __future__ import annotations

import requests

from modelbook.server.testing import envelope_data, envelope_meta

from .conftest import StrictSite
from .schema import check_request, reduce_reply


def _call(site: StrictSite, endpoint: str, body: dict, direct: bool = False):
    host = site.server.api_host if direct else site.api_host
    token = envelope_data(requests.get(f"{host}/auth.login", timeout=10,
                                       auth=(site.server.access_key, site.server.secret_key)))
    return requests.post(f"{host}/v2.23/{endpoint}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token['token']}"})  # fmt: skip


def test_the_strict_server_has_no_extensions(strict: StrictSite) -> None:
    for endpoint in ("models.add_version", "models.get_versions", "models.count",
                     "storage.begin_write"):  # fmt: skip
        answer = _call(strict, endpoint, {"model": "x"}, direct=True)
        assert answer.status_code == 404 and envelope_meta(answer)["result_subcode"] == 0, endpoint
    info = envelope_data(requests.get(f"{strict.api_host}/server.info", timeout=10))
    assert "modelbook" not in info and info["api_version"]


def test_models_are_created_as_on_clearml(strict: StrictSite) -> None:
    refused = _call(strict, "models.create", {"name": "no-uri"}, direct=True)
    assert refused.status_code == 400
    created = envelope_data(_call(strict, "models.create", {"name": "net", "uri": "s3://b/k"}))
    model = envelope_data(_call(strict, "models.get_by_id", {"model": created["id"]}))["model"]
    assert model["ready"] is True  # born published unless told otherwise, as on ClearML
    assert "sha256" not in model and "version" not in model  # replies carry ClearML's fields


def test_the_gate_refuses_what_a_real_server_would_not_take(strict: StrictSite) -> None:
    answer = _call(strict, "models.create", {"name": "net", "uri": "s3://b/k", "sha256": "ab"})
    assert answer.status_code == 400 and "unknown field 'sha256'" in answer.text
    strict.gate.violations.clear()  # this test made them on purpose


def test_schema_checks() -> None:
    assert check_request("models.get_all", "2.23", {"name": "x", "metadata.a.value": ["1"]}) == []
    assert check_request("models.add_version", "2.23", {}) == [
        "models.add_version: no such endpoint at API 2.23 (a real server answers 404)"
    ]
    found = check_request("models.create", "2.23", {"name": 5, "labels": {"a": "x"}})
    assert found == [
        "models.create: missing required field 'uri'",
        "models.create.name: int 5 is not string",
        "models.create.labels.a: str \"x\" is not integer",
    ]
    assert check_request("tasks.edit", "2.23", {"task": "t", "last_iteration": 3}) == [
        "tasks.edit: unknown field 'last_iteration'"
    ]
    reply = {"model": {"id": "m", "name": "n", "sha256": "ab", "metadata": {"k": {
        "key": "k", "value": "1", "type": "int", "extra": 1}}}}  # fmt: skip
    item = {"key": "k", "value": "1", "type": "int"}
    assert reduce_reply("models.get_by_id", "2.23", reply) == {
        "model": {"id": "m", "name": "n", "metadata": {"k": item}}
    }


def test_the_strict_server_keeps_clearmls_destructive_semantics(strict: StrictSite) -> None:
    """What a client must not lean on: tasks.edit replaces hyper-parameters wholesale, and
    tasks.reset deletes the task's output models unless told not to."""
    project = envelope_data(_call(strict, "projects.create", {"name": "semantics"}))["id"]
    task = envelope_data(_call(strict, "tasks.create", {"name": "run", "project": project,
                                                        "type": "training"}))["id"]  # fmt: skip
    for section in ("Args", "Data"):
        params = {section: {"x": {"section": section, "name": "x", "value": "1"}}}
        _call(strict, "tasks.edit", {"task": task, "hyperparams": params})
    got = envelope_data(_call(strict, "tasks.get_by_id", {"task": task}))["task"]["hyperparams"]
    assert list(got) == ["Data"]  # the second edit replaced the first
    for keep in (False, True):
        model = envelope_data(_call(strict, "models.create", {"name": "out", "uri": "s3://b/k"}))
        _call(strict, "tasks.add_or_update_model",
              {"task": task, "name": "out", "model": model["id"], "type": "output"})  # fmt: skip
        body = {"task": task, "force": True, **({"delete_output_models": False} if keep else {})}
        assert _call(strict, "tasks.reset", body).status_code == 200
        found = _call(strict, "models.get_by_id", {"model": model["id"]}, direct=True)
        assert (found.status_code == 200) == keep, keep
