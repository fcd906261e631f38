"""Malformed requests get a 400 naming the field, never a 500 (issue 13)."""

from __future__ import annotations

import pytest
import requests

from modelbook.server.testing import envelope_meta

TOO_BIG = 2**63


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [("models.get_all", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
     ("models.get_all", {"page": TOO_BIG, "page_size": 10}, "'page' must be a 64-bit integer"),
     ("models.get_all", {"page_size": TOO_BIG}, "'page_size' must be a 64-bit integer"),
     ("models.get_all", {"tags": 5}, "'tags' must be a list of tag filter terms"),
     ("models.get_all", {"tags": {"a": 1}}, "'tags' must be a list of tag filter terms"),
     ("models.get_all", {"system_tags": [3]}, "'system_tags' must be a list of tag filter"),
     ("tasks.get_all", {"tags": {"a": 1}}, "tag filter terms must be strings"),
     ("models.create", {"name": "m", "uri": "file:///m.pt", "tags": {"a": 1}},
      "'tags' must be a list of strings"),
     ("models.create", {"name": "m", "uri": "file:///m.pt", "iteration": TOO_BIG},
      "'iteration' must be a 64-bit integer"),
     # the Python API's rules (modelbook.validate), shared by the server
     ("models.create", {"name": "a\x00b", "uri": "file:///m.pt"}, "control character"),
     ("models.create", {"name": "n" * 5000, "uri": "file:///m.pt"}, "at most"),
     ("models.create", {"name": "m", "uri": "file:///m.pt", "tags": [""]}, "non-empty strings"),
     ("models.create", {"name": "m", "uri": "file:///m.pt",
                        "metadata": [{"key": "k\nx", "value": "1", "type": "int"}]},
      "metadata key"),
     ("tasks.create", {"name": "t\x07", "type": "training"}, "control character"),
     ("projects.create", {"name": "p" * 5000}, "at most")],
)  # fmt: skip
def test_malformed_bodies_are_400s_naming_the_field(api, endpoint, body, message) -> None:
    raw = isinstance(body, bytes)
    response = api(endpoint, None if raw else body, data=body if raw else None,
                   headers={"Content-Type": "application/json"})  # fmt: skip
    meta = envelope_meta(response)
    assert (response.status_code, meta["result_code"]) == (400, 400), meta
    assert message in meta["result_msg"]


def test_an_overlong_file_name_is_a_400(server, token) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    long = "a" * 300
    got = requests.get(f"{server.files_host}/{long}/m.pt", headers=headers, timeout=30)
    sent = requests.post(f"{server.files_host}/{long}", files={f"{long}/m.pt": b"x"},
                         headers=headers, timeout=30)  # fmt: skip
    for response in (got, sent):
        assert response.status_code == 400 and "longer than 240 bytes" in response.text


def test_failed_logins_are_limited_per_access_key_and_address(server) -> None:
    login = f"{server.api_host}/auth.login"
    for _ in range(10):  # the window's allowance
        bad = requests.get(login, auth=(server.access_key, "wrong-secret-123456"), timeout=30)
        assert bad.status_code == 401
    refused = requests.get(login, auth=(server.access_key, server.secret_key), timeout=30)
    assert refused.status_code == 429  # even the right secret, until the window passes
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "too many failed logins" in envelope_meta(refused)["result_msg"]
    other = requests.get(login, auth=("unknown-key-0000000000", "whatever-123456"), timeout=30)
    assert other.status_code == 401  # another access key is counted apart
