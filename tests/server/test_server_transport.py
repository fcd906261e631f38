"""The API transport: envelope, versioned routing, methods, bodies, limits."""

from __future__ import annotations

import json

import pytest
import requests

from modelbook.server.testing import envelope_data as data_of
from modelbook.server.testing import envelope_meta as meta_of
from modelbook.server.testing import live_server


def test_envelope_has_the_meta_clearml_reads(api) -> None:
    response = api("projects.get_all", {})
    body = response.json()
    assert set(body) == {"meta", "data"}
    meta = body["meta"]
    assert meta["result_code"] == 200 and meta["result_subcode"] == 0
    assert meta["result_msg"] == "OK"
    assert meta["endpoint"] == {
        "name": "projects.get_all",
        "requested_version": "2.23",
        "actual_version": "2.23",
    }
    assert meta["id"] and meta["trx"] == meta["id"]
    assert meta["error_stack"] is None and meta["error_data"] == {}


@pytest.mark.parametrize("version", ["2.9", "2.13", "2.20", "2.23", None])
def test_every_sdk_version_and_the_unversioned_path_are_served(api, version) -> None:
    response = api("projects.get_all", {}, version=version)
    data_of(response)
    assert meta_of(response)["endpoint"]["actual_version"] == (version or "2.23")


@pytest.mark.parametrize("version", ["2.8", "2.24", "2.31", "3.0", "x", "2.9.1"])
def test_versions_outside_the_range_are_refused(api, version) -> None:
    response = api("projects.get_all", {}, version=version)
    assert response.status_code == 400
    assert meta_of(response)["result_subcode"] == 2
    assert "2.9 to 2.23" in meta_of(response)["result_msg"]


def test_get_with_a_json_body_like_the_sdk_sends(api) -> None:
    data_of(api("projects.create", {"name": "transport-get"}))
    response = api(
        "projects.get_all",
        {"name": "^transport\\-get$", "only_fields": ["id"], "method": "get"},
        method="GET",
    )
    projects = data_of(response)["projects"]
    assert len(projects) == 1 and set(projects[0]) == {"id"}


def test_query_arguments_are_merged_into_the_body(api) -> None:
    data_of(api("projects.create", {"name": "transport-query"}))
    response = api("projects.get_all", None, params={"name": "^transport\\-query$"})
    assert [p["name"] for p in data_of(response)["projects"]] == ["transport-query"]


def test_unknown_endpoint_is_404_as_on_clearml(api) -> None:
    response = api("queues.get_all", {})
    assert response.status_code == 404 and meta_of(response)["result_subcode"] == 0
    assert meta_of(response)["result_msg"] == (
        "Unable to find endpoint for name queues.get_all and version 2.23"
    )


def test_server_info_and_ping_answer_without_a_token(server) -> None:
    for endpoint in ("server.info", "debug.ping"):
        response = requests.post(f"{server.api_host}/{endpoint}", json={}, timeout=10)
        assert response.status_code == 200, (endpoint, response.text)
    info = requests.get(f"{server.api_host}/server.info", timeout=10).json()["data"]
    assert "models.add_version" in info["modelbook"]["extensions"]  # how clients tell


def test_malformed_endpoint_name_is_refused(api) -> None:
    response = api("models.get_all;drop", {})
    assert response.status_code == 400


def test_invalid_json_is_a_validation_error(api, server, token) -> None:
    response = requests.post(
        f"{server.api_host}/v2.23/projects.get_all",
        data=b"{not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400 and meta_of(response)["result_subcode"] == 12


def test_missing_required_field_is_400_11(api) -> None:
    response = api("models.get_by_id", {})
    assert response.status_code == 400 and meta_of(response)["result_subcode"] == 11


def test_wrong_field_type_is_400_12(api) -> None:
    response = api("models.get_all", {"project": 5})
    assert response.status_code == 400 and meta_of(response)["result_subcode"] == 12


def test_events_batch_in_json_lines_is_accepted(api, server, token) -> None:
    task = data_of(api("tasks.create", {"name": "lines", "type": "training"}))["id"]
    lines = "\n".join(json.dumps({"type": "log", "task": task, "msg": f"line {i}"})
                      for i in range(3))  # fmt: skip
    response = requests.post(
        f"{server.api_host}/v2.23/events.add_batch",
        data=lines.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json-lines"},
        timeout=10,
    )
    assert data_of(response) == {"added": 3, "errors": 0, "errors_info": {}}
    log = data_of(api("events.get_task_log", {"task": task, "order": "asc"}))["events"]
    assert [e["msg"] for e in log] == ["line 0", "line 1", "line 2"]


def test_errors_never_use_statuses_clearml_retries_forever(api) -> None:
    calls = [
        ("models.get_by_id", {"model": "nope"}),
        ("tasks.get_by_id", {"task": "nope"}),
        ("projects.get_by_id", {"project": "nope"}),
        ("models.get_all", {"tags": ["__$bogus", "x"]}),
        ("models.get_all", {"name": "(unclosed"}),
        ("models.get_all", {"order_by": ["-nonsense"]}),
        ("nothing.here", {}),
    ]
    for endpoint, body in calls:
        response = api(endpoint, body)
        assert response.status_code not in (429, 502, 503, 509), endpoint
        assert meta_of(response)["result_code"] == response.status_code
        assert response.json()["data"] == {}


def test_request_body_limit(tmp_path) -> None:
    with live_server(tmp_path, extra_args=["--max-request-size", str(1024 * 1024)]) as srv:
        token = requests.get(
            f"{srv.api_host}/auth.login", auth=(srv.access_key, srv.secret_key), timeout=10
        ).json()["data"]["token"]
        headers = {"Authorization": f"Bearer {token}"}
        big = {"name": "x" * (2 * 1024 * 1024)}
        response = requests.post(
            f"{srv.api_host}/v2.23/projects.get_all", json=big, headers=headers, timeout=10
        )
        assert response.status_code == 413
        assert meta_of(response)["result_code"] == 413

        def chunks():
            for _ in range(3):
                yield b" " * (512 * 1024)

        response = requests.post(  # no Content-Length: counted while streaming
            f"{srv.api_host}/v2.23/projects.get_all", data=chunks(), headers=headers, timeout=10
        )
        assert response.status_code == 413


def test_models_are_born_published_and_published_ones_need_force_to_go(api) -> None:
    made = data_of(api("models.create", {"name": "born", "uri": "s3://b/k"}))
    model = data_of(api("models.get_by_id", {"model": made["id"]}))["model"]
    assert model["ready"] is True  # ClearML's default
    refused = api("models.delete", {"model": made["id"]})
    assert refused.status_code == 400 and meta_of(refused)["result_subcode"] == 203
    assert data_of(api("models.delete", {"model": made["id"], "force": True}))["deleted"]
