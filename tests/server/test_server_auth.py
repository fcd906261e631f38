"""Authentication: credentials, hashed secrets, signed expiring tokens, refusals."""

from __future__ import annotations

import base64
import json
import sqlite3
import time

import jwt
import pytest
import requests

from modelbook.server.credentials import create_credentials, revoke_credentials
from modelbook.server.testing import envelope_data, envelope_meta, live_server
from modelbook.server.tokens import signing_key
from modelbook.store.sql import SqlStore

TIMEOUT = 10


def _login(server, access_key=None, secret_key=None, **kwargs) -> requests.Response:
    auth = (access_key or server.access_key, secret_key or server.secret_key)
    return requests.get(f"{server.api_host}/auth.login", auth=auth, timeout=TIMEOUT, **kwargs)


def _call(server, token: str | None, endpoint: str = "projects.get_all", **headers):
    if token is not None:
        headers.setdefault("Authorization", f"Bearer {token}")
    return requests.post(
        f"{server.api_host}/v2.23/{endpoint}", json={}, headers=headers, timeout=TIMEOUT
    )


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_login_returns_a_jwt_the_clearml_sdk_understands(server) -> None:
    token = envelope_data(_login(server))["token"]
    claims = _claims(token)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert claims["api_version"] == "2.23" and claims["feature_set"] == "basic"
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert claims["identity"]["user"] == "test"


def test_login_also_works_with_post_and_versioned_path(server) -> None:
    auth = (server.access_key, server.secret_key)
    for url in (f"{server.api_host}/auth.login", f"{server.api_host}/v2.23/auth.login"):
        response = requests.post(url, auth=auth, json={}, timeout=TIMEOUT)
        assert envelope_data(response)["token"]


def test_expiration_sec_shortens_but_never_lengthens_a_token(server) -> None:
    short = envelope_data(_login(server, params={"expiration_sec": "900"}))["token"]
    long = envelope_data(_login(server, params={"expiration_sec": str(10**9)}))["token"]
    assert _claims(short)["exp"] - _claims(short)["iat"] == 900
    assert _claims(long)["exp"] - _claims(long)["iat"] == 24 * 3600


@pytest.mark.parametrize(
    ("auth", "subcode"),
    [
        (None, 20),
        ("Bearer abc", 10),
        ("Basic !!!notbase64", 21),
        ("Basic " + base64.b64encode(b"no-colon").decode(), 21),
    ],
)
def test_malformed_logins_are_401(server, auth, subcode) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = requests.get(f"{server.api_host}/auth.login", headers=headers, timeout=TIMEOUT)
    assert response.status_code == 401
    assert envelope_meta(response)["result_subcode"] == subcode


def test_wrong_secret_and_unknown_key_are_refused_alike(server) -> None:
    wrong = _login(server, secret_key="x" * 40)
    unknown = _login(server, access_key="NOSUCHKEY123456789AB")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert envelope_meta(response)["result_subcode"] == 22
    assert envelope_meta(wrong)["result_msg"] == envelope_meta(unknown)["result_msg"]


def test_calls_without_a_token_are_refused(server) -> None:
    response = _call(server, None)
    assert response.status_code == 401 and envelope_meta(response)["result_subcode"] == 20


def test_basic_auth_is_not_accepted_on_other_endpoints(server) -> None:
    basic = base64.b64encode(f"{server.access_key}:{server.secret_key}".encode()).decode()
    response = _call(server, None, Authorization=f"Basic {basic}")
    assert response.status_code == 401 and envelope_meta(response)["result_subcode"] == 10


def _forge(claims: dict, key: bytes | str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_forged_tokens_are_refused(server) -> None:
    genuine = envelope_data(_login(server))["token"]
    claims = _claims(genuine)
    header, payload, signature = genuine.split(".")
    tampered_claims = dict(claims, identity={"user": "admin"})
    tampered = base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).rstrip(b"=")
    unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=")
    forged = [
        _forge(claims, b"another-server-key-32-bytes-long!"),  # wrong key
        f"{header}.{tampered.decode()}.{signature}",  # payload changed, old signature
        f"{unsigned_header.decode()}.{payload}.",  # alg: none
        "not-a-jwt",
        genuine + "x",
    ]
    for token in forged:
        response = _call(server, token)
        assert response.status_code == 401, token
        assert envelope_meta(response)["result_subcode"] == 30


def test_expired_token_is_refused(server) -> None:
    store = SqlStore(server.db_url)
    try:
        key = signing_key(store)
    finally:
        store.close()
    genuine = envelope_data(_login(server))["token"]
    claims = dict(_claims(genuine), iat=int(time.time()) - 7200, exp=int(time.time()) - 60)
    expired = _forge(claims, key)
    response = _call(server, expired)
    assert response.status_code == 401
    assert envelope_meta(response)["result_subcode"] == 30
    assert "expired" in envelope_meta(response)["result_msg"].lower()
    # the same claims with a future expiry pass: only the expiry was wrong
    valid = _forge(dict(claims, exp=int(time.time()) + 600), key)
    assert _call(server, valid).status_code == 200


def test_secrets_are_stored_hashed_and_never_logged(server) -> None:
    _login(server, secret_key="a-wrong-secret-that-must-not-be-logged")
    envelope_data(_login(server))
    path = server.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        values = [row[0] for row in conn.execute("select value from settings")]
    dump = "\n".join(values)
    assert server.secret_key not in dump
    assert "scrypt$" in dump
    log = server.log()
    assert server.secret_key not in log
    assert "a-wrong-secret-that-must-not-be-logged" not in log


def test_revoked_key_cannot_log_in_nor_use_its_tokens(tmp_path) -> None:
    with live_server(tmp_path) as srv:
        store = SqlStore(srv.db_url)
        cred = create_credentials(store, user="temp")
        token = envelope_data(_login(srv, cred.access_key, cred.secret_key))["token"]
        assert revoke_credentials(store, cred.access_key)
        store.close()
        assert _login(srv, cred.access_key, cred.secret_key).status_code == 401
        # this server never saw the token used, so the revocation applies at once
        response = _call(srv, token)
        assert response.status_code == 401 and envelope_meta(response)["result_subcode"] == 30


def test_files_server_needs_the_same_token(server) -> None:
    url = f"{server.files_host}/"
    files = {"/auth/x.bin": ("/auth/x.bin", b"data")}
    assert requests.post(url, files=files, timeout=TIMEOUT).status_code == 401
    bogus = {"Authorization": "Bearer not-a-token"}
    assert requests.post(url, files=files, headers=bogus, timeout=TIMEOUT).status_code == 401
    assert not (server.files_root / "auth").exists()
