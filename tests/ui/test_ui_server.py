"""The UI inside ``modelbook server``'s application, called in-process: log-in with an access
key and secret, the API beside it, and downloads limited to the files server's own files
(about 2 s)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_client import Browser, error_of

from modelbook.server.app import create_app
from modelbook.server.credentials import create_credentials
from modelbook.server.settings import ServerSettings
from modelbook.server.ui.testing import call
from modelbook.store.sql import SqlStore

pytestmark = pytest.mark.embedded_only  # an in-process server of its own


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, SqlStore, Any]]:
    root = tmp_path_factory.mktemp("ui-server")
    settings = ServerSettings(db_url=f"sqlite:///{root / 'r.db'}", files_root=root / "files")
    store = SqlStore(settings.db_url)
    cred = create_credentials(store, user="ana")
    app = create_app(settings, store)
    yield app, store, cred
    store.close()


def _login(app: Any, cred: Any) -> Browser:
    client = Browser(app)
    done = client.post("/ui/login?next=/ui/", {"access_key": cred.access_key,
                                               "secret_key": cred.secret_key})  # fmt: skip
    assert done.status == 303, error_of(done.text)
    return client


def test_log_in_with_an_access_key_and_secret(server: tuple[Any, SqlStore, Any]) -> None:
    app, _, cred = server
    client = Browser(app)
    assert client.get("/").headers["location"] == "/ui/"
    assert client.get("/ui/").headers["location"] == "/ui/login?next=%2Fui%2F"
    form = client.get("/ui/login").text
    assert 'name="access_key"' in form and 'type="password" name="secret_key"' in form
    wrong = client.post("/ui/login", {"access_key": cred.access_key, "secret_key": "x" * 20})
    assert wrong.status == 401 and "wrong access key or secret key" in error_of(wrong.text)
    right = client.post("/ui/login?next=/ui/", {"access_key": cred.access_key,
                                                "secret_key": cred.secret_key})  # fmt: skip
    assert right.status == 303 and "HttpOnly; SameSite=Strict" in right.headers["set-cookie"]
    page = client.get("/ui/")
    assert page.status == 200 and '<span class="who">ana ' in page.text


def test_the_cookie_is_secure_over_https(server: tuple[Any, SqlStore, Any]) -> None:
    app, _, cred = server
    body = f"access_key={cred.access_key}&secret_key={cred.secret_key}".encode()
    answer = call(app, "POST", "/ui/login", {"content-type": "application/x-www-form-urlencoded"},
                  body, scheme="https")  # fmt: skip
    assert answer.status == 303 and answer.headers["set-cookie"].endswith("; Secure")


def test_failed_log_ins_are_limited_as_the_apis_are(server: tuple[Any, SqlStore, Any]) -> None:
    client = Browser(server[0])
    for _ in range(10):
        assert client.post("/ui/login", {"access_key": "GUESSER1", "secret_key": "y"}).status == 401
    refused = client.post("/ui/login", {"access_key": "GUESSER1", "secret_key": "y"})
    assert refused.status == 429 and "try again in" in error_of(refused.text)
    basic = base64.b64encode(b"GUESSER1:y").decode()
    api = call(server[0], "GET", "/auth.login", {"authorization": f"Basic {basic}"})
    assert api.status == 429  # one limiter for the API and the pages


def test_the_api_and_files_server_still_answer_beside_the_ui(
    server: tuple[Any, SqlStore, Any],
) -> None:
    app, _, cred = server
    basic = base64.b64encode(f"{cred.access_key}:{cred.secret_key}".encode()).decode()
    login = call(app, "GET", "/auth.login", {"authorization": f"Basic {basic}"})
    assert login.status == 200 and '"token"' in login.text
    assert call(app, "GET", "/files/").text == "OK"


def test_downloads_serve_only_the_files_servers_files(
    server: tuple[Any, SqlStore, Any], tmp_path: Path
) -> None:
    app, store, cred = server
    files = Path(store.url[len("sqlite:///") :]).parent / "files"
    (files / "p").mkdir(parents=True, exist_ok=True)
    (files / "p" / "w.pt").write_bytes(b"server weights")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    model = store.create_model(name="served", project=None)
    for uri in ("http://127.0.0.1:8008/files/p/w.pt", secret.as_uri(),
                "http://127.0.0.1:8008/files/p/%2e%2e/%2e%2e/r.db",
                "http://127.0.0.1:8008/files/p/gone.pt"):  # fmt: skip
        store.add_model_version(model.id, uri=uri, sha256=None, size=1, iteration=None,
                                owned=False)  # fmt: skip
    client = _login(app, cred)
    base = f"/ui/models/{model.id}/versions"
    good = client.get(f"{base}/1/download")
    assert good.status == 200 and good.body == b"server weights"
    assert hashlib.sha256(good.body).hexdigest() == hashlib.sha256(b"server weights").hexdigest()
    outside = client.get(f"{base}/2/download")
    assert outside.status == 404 and "outside this server's files server" in error_of(
        outside.text
    ).replace("&#x27;", "'")
    assert b"not for the web" not in outside.body
    escape = client.get(f"{base}/3/download")
    assert escape.status == 404 and "is not allowed" in error_of(escape.text)
    gone = client.get(f"{base}/4/download")
    assert gone.status == 404 and "holds no file" in error_of(gone.text)
