"""Helpers of the server ownership tests (test_server_ownership*.py): files-server uploads,
downloads and deletes, and the models API calls that reference the files."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

from modelbook.server.testing import envelope_data

TIMEOUT = 30


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _upload(files_host: str, auth: dict[str, str], path: str, content: bytes) -> requests.Response:
    """Upload ``content`` to ``path`` (relative to the files root), as ClearML does."""
    name = "/" + path
    return requests.post(
        f"{files_host}/",
        files={name: (name, content, "binary/octet-stream")},
        headers=auth,
        timeout=TIMEOUT,
    )


def _put(server, auth, path: str, content: bytes) -> str:
    """Upload and return the plain URI modelbook's clients give the file."""
    response = _upload(server.files_host, auth, path, content)
    assert response.status_code == 200, response.text
    return f"{server.files_host}/{path}"


def _url(server, path: str) -> str:
    return f"{server.files_host}/{quote(path)}"


def _get(server, auth, path: str) -> requests.Response:
    return requests.get(_url(server, path), headers=auth, timeout=TIMEOUT)


def _delete(server, auth, path: str) -> requests.Response:
    return requests.delete(_url(server, path), headers=auth, timeout=TIMEOUT)


def _ok(api, endpoint: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return envelope_data(api(endpoint, body, **kwargs))


def _new_model(api, name: str, **fields: Any) -> str:
    return _ok(api, "models.create", {"name": _unique(name), "ready": False, **fields})["id"]


def _add_version(api, model_id: str, uri: str, content: bytes, **fields: Any) -> dict[str, Any]:
    body = {"model": model_id, "uri": uri, "sha256": _sha(content), "size": len(content)}
    return _ok(api, "models.add_version", {**body, **fields})["model"]


def _model(api, model_id: str) -> dict[str, Any]:
    return _ok(api, "models.get_by_id", {"model": model_id})["model"]


def _versions(api, model_id: str) -> list[dict[str, Any]]:
    return _ok(api, "models.get_versions", {"model": model_id})["versions"]


def _relative(server, uri: str) -> str:
    """The files-root path behind a URI of the module's files server (quoted or not)."""
    assert uri.startswith(server.files_host + "/"), uri
    return unquote(urlsplit(uri).path)[len("/files/") :]


def _downloads_with(backend, uri: str, sha256: str, dest: Path) -> None:
    """modelbook's HTTP backend downloads ``uri``; the bytes have ``sha256``."""
    backend.driver_for(uri).get(uri, dest)
    assert _sha(dest.read_bytes()) == sha256, uri


def _tmp_files(server) -> list[Path]:
    return list((server.files_root / ".modelbook-tmp").iterdir())
