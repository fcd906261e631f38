"""The files server: ClearML's upload protocol, modelbook's raw upload, path safety, limits,
streaming."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from modelbook.errors import UploadError
from modelbook.server.testing import live_server
from modelbook.storage.http import HttpFilesDriver, _RawBody

TIMEOUT = 30


@pytest.fixture(scope="module")
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _upload(server, auth, name: str, content: bytes, **headers) -> requests.Response:
    return requests.post(
        f"{server.files_host}/",
        files={name: (name, content, "binary/octet-stream")},
        headers={**auth, **headers},
        timeout=TIMEOUT,
    )


def _raw(server, method: str, raw_path: str, auth, body: bytes | None = None, headers=None):
    """A request with the path sent byte for byte (no client-side normalisation)."""
    parts = urlsplit(server.api_host)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        conn.request(method, raw_path, body=body, headers={**auth, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_upload_download_delete_roundtrip_like_clearml(server, auth) -> None:
    name = "/My Project/my task.abc123/models/m.pth"
    response = _upload(server, auth, name, b"weights" * 100)
    assert response.status_code == 200
    assert response.json() == ["My Project/my task.abc123/models/m.pth"]
    assert (server.files_root / "My Project/my task.abc123/models/m.pth").read_bytes() == (
        b"weights" * 100
    )
    url = f"{server.files_host}/My%20Project/my%20task.abc123/models/m.pth"  # quoted, as stored
    got = requests.get(url, headers=auth, timeout=TIMEOUT, stream=True)
    assert got.status_code == 200 and got.headers["Content-Length"] == "700"
    assert got.content == b"weights" * 100
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.head(url, headers=auth, timeout=TIMEOUT).status_code == 200
    assert requests.delete(url, headers=auth, timeout=TIMEOUT).status_code == 200
    assert requests.delete(url, headers=auth, timeout=TIMEOUT).status_code == 404
    assert requests.get(url, headers=auth, timeout=TIMEOUT).status_code == 404


def test_upload_to_a_files_host_with_a_folder(server, auth) -> None:
    response = requests.post(
        f"{server.files_host}/team-a",
        files={"/p/m.bin": ("/p/m.bin", b"x")},
        headers=auth,
        timeout=TIMEOUT,
    )
    assert response.json() == ["team-a/p/m.bin"]


def test_reupload_replaces_the_file_whole(server, auth) -> None:
    _upload(server, auth, "/replace/m.bin", b"old" * 1000)
    _upload(server, auth, "/replace/m.bin", b"new")
    assert (server.files_root / "replace/m.bin").read_bytes() == b"new"
    assert not list((server.files_root / ".modelbook-tmp").iterdir())


def test_health_needs_no_token(server) -> None:
    assert requests.get(f"{server.files_host}/", timeout=TIMEOUT).text == "OK"


def test_reads_and_deletes_need_a_token(server, auth) -> None:
    _upload(server, auth, "/private/m.bin", b"secret weights")
    url = f"{server.files_host}/private/m.bin"
    assert requests.get(url, timeout=TIMEOUT).status_code == 401
    assert requests.delete(url, timeout=TIMEOUT).status_code == 401
    assert (server.files_root / "private/m.bin").exists()


def test_sha256_header_keeps_only_an_intact_upload(server, auth) -> None:
    content = b"0123456789" * 1000
    good = hashlib.sha256(content).hexdigest()
    ok = _upload(server, auth, "/sha/good.bin", content, **{"X-Modelbook-Sha256": good})
    assert ok.status_code == 200
    bad = _upload(server, auth, "/sha/bad.bin", content, **{"X-Modelbook-Sha256": "0" * 64})
    assert bad.status_code == 400 and "corrupted" in bad.json()["error"]
    assert not (server.files_root / "sha/bad.bin").exists()
    assert not list((server.files_root / ".modelbook-tmp").iterdir())


UNSAFE_PART_NAMES = [
    "/../escape.bin",
    "../escape.bin",
    "/a/../../escape.bin",
    "//etc/escape.bin",
    "/a//b.bin",
    "/a/./b.bin",
    "/%2e%2e/escape.bin",
    "/%252e%252e/escape.bin",
    "/a%2f..%2f..%2fescape.bin",
    "/a\\..\\..\\escape.bin",
    "/a/b\x00.bin",
    "/C:/escape.bin",
    "/.modelbook-tmp/x.part",
    "/.modelbook-meta/x.json",
    "/",
]


@pytest.mark.parametrize("name", UNSAFE_PART_NAMES)
def test_unsafe_part_names_are_refused(server, auth, name) -> None:
    outside = server.files_root.parent
    before = _tree(outside)
    response = _upload(server, auth, name, b"evil")
    assert response.status_code == 400, response.text
    assert _tree(outside) == before


UNSAFE_URL_PATHS = [
    "/files/../registry.db",
    "/files/%2e%2e/registry.db",
    "/files/%2E%2E/registry.db",
    "/files/%252e%252e/registry.db",
    "/files/a/..%2f..%2fregistry.db",
    "/files/..%5cregistry.db",
    "/files/a%00.bin",
    "/files//etc/passwd",
    "/files/%2fetc/passwd",
    "/files/.modelbook-tmp/x",
    "/files/.modelbook-meta/m.bin.json",
]


@pytest.mark.parametrize("path", UNSAFE_URL_PATHS)
@pytest.mark.parametrize("method", ["GET", "DELETE", "HEAD", "PUT"])
def test_unsafe_url_paths_are_refused(server, auth, path, method) -> None:
    status, _ = _raw(server, method, path, auth)
    assert status in (400, 404), (method, path, status)
    assert (Path(server.db_url.removeprefix("sqlite:///"))).exists()


@pytest.mark.parametrize(
    "path", ["/files/../outside", "/files/%2e%2e/outside", "/files/a%2f..%2f..%2foutside"]
)
def test_unsafe_upload_folders_are_refused(server, auth, path) -> None:
    before = _tree(server.files_root.parent)
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="/m.bin"; filename="/m.bin"'
        f"\r\n\r\nevil\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, _ = _raw(server, "POST", path, auth, body=body, headers=headers)
    assert status == 400
    assert _tree(server.files_root.parent) == before


def _put(server, auth, path: str, body: bytes, **headers) -> requests.Response:
    return requests.put(
        f"{server.files_host}/{path}", data=body, headers={**auth, **headers}, timeout=TIMEOUT
    )


def _trailed(content: bytes) -> bytes:
    return content + hashlib.sha256(content).hexdigest().encode()


def _no_partial_files(server) -> bool:
    return not list((server.files_root / ".modelbook-tmp").iterdir())


def test_raw_put_with_a_sha256_trailer(server, auth) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)  # several of the server's write batches
    trailer = {"X-Modelbook-Trailer": "sha256"}
    ok = _put(server, auth, "raw/My%20m.bin", _trailed(content), **trailer)
    assert ok.status_code == 200, ok.text
    assert ok.json() == ["raw/My m.bin"]
    assert (server.files_root / "raw/My m.bin").read_bytes() == content
    got = requests.get(f"{server.files_host}/raw/My%20m.bin", headers=auth, timeout=TIMEOUT)
    assert got.content == content
    bad = _put(server, auth, "raw/My%20m.bin", b"other" + b"0" * 64, **trailer)
    assert bad.status_code == 400 and "corrupted" in bad.json()["error"], bad.text
    assert (server.files_root / "raw/My m.bin").read_bytes() == content  # kept whole
    unknown = _put(server, auth, "raw/x.bin", b"x", **{"X-Modelbook-Trailer": "md5"})
    assert unknown.status_code == 400 and "sha256" in unknown.json()["error"]
    short = _put(server, auth, "raw/x.bin", b"x" * 10, **trailer)  # no room for a trailer
    assert short.status_code == 400
    not_hex = _put(server, auth, "raw/x.bin", b"abc" + b"z" * 64, **trailer)
    assert not_hex.status_code == 400 and "hex" in not_hex.json()["error"]
    assert not (server.files_root / "raw/x.bin").exists() and _no_partial_files(server)


def test_raw_put_with_a_sha256_header_or_none(server, auth) -> None:
    content = b"weights" * 1000
    good = hashlib.sha256(content).hexdigest()
    assert _put(server, auth, "raw/h.bin", content, **{"X-Modelbook-Sha256": good}).ok
    bad = _put(server, auth, "raw/bad.bin", content, **{"X-Modelbook-Sha256": "0" * 64})
    assert bad.status_code == 400 and "corrupted" in bad.json()["error"]
    assert _put(server, auth, "raw/plain.bin", content).ok
    assert (server.files_root / "raw/plain.bin").read_bytes() == content
    assert not (server.files_root / "raw/bad.bin").exists() and _no_partial_files(server)
    assert _put(server, {}, "raw/anon.bin", content).status_code == 401
    assert _put(server, auth, "raw", content).status_code == 400  # a folder


def test_raw_put_needs_a_content_length(server, auth) -> None:
    response = requests.put(
        f"{server.files_host}/raw/chunked.bin",
        data=iter([b"a" * 100, b"b" * 100]),  # sent chunked
        headers=auth,
        timeout=TIMEOUT,
    )
    assert response.status_code == 411 and "Content-Length" in response.json()["error"]
    assert not (server.files_root / "raw/chunked.bin").exists()


def test_raw_put_cut_short_leaves_nothing(server, auth) -> None:
    """A client that dies mid-body: no file, no partial file left (eventually: the server
    sees the disconnect after the socket closes)."""
    parts = urlsplit(server.api_host)
    head = (
        f"PUT /files/raw/cut.bin HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: {auth['Authorization']}\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall(head + b"x" * 300_000)
        deadline = time.monotonic() + TIMEOUT  # the partial file shows while it arrives
        while _no_partial_files(server) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _no_partial_files(server), "the upload never started"
    deadline = time.monotonic() + TIMEOUT
    while not _no_partial_files(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _no_partial_files(server) and not (server.files_root / "raw/cut.bin").exists()


def test_driver_puts_raw_to_modelbook_and_multipart_otherwise(server, backend, tmp_path) -> None:
    """The backend's driver knows it talks to a modelbook server (raw PUT, hashed while
    sent); the multipart form (a ClearML files server's) stores the same bytes."""
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(2 * 1024 * 1024 + 5))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    uri = f"{server.files_host}/driver/w.bin"
    raw = backend.driver_for(uri)
    assert isinstance(raw, HttpFilesDriver) and raw.raw_upload
    multipart = HttpFilesDriver(server.files_host, backend.client, raw_upload=False)
    for driver in (raw, multipart):
        stored = driver.put(src, uri)
        assert (stored.sha256, stored.size) == (digest, src.stat().st_size)
        assert (server.files_root / "driver/w.bin").read_bytes() == src.read_bytes()
        assert driver.put(src, uri, sha256=digest).sha256 == digest  # known: not hashed again
        with pytest.raises(UploadError, match="corrupted") as failed:
            driver.put(src, f"{server.files_host}/driver/bad.bin", sha256="0" * 64)
        assert not failed.value.transient
        driver.get(uri, tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
        empty = tmp_path / "empty.bin"
        empty.write_bytes(b"")
        assert driver.put(empty, f"{server.files_host}/driver/empty.bin").size == 0
        assert (server.files_root / "driver/empty.bin").read_bytes() == b""
    assert not (server.files_root / "driver/bad.bin").exists() and _no_partial_files(server)


def test_raw_body_reads_the_file_once_and_refuses_a_shrunk_one(tmp_path) -> None:
    src = tmp_path / "w.bin"
    content = os.urandom(2 * 1024 * 1024 + 3)
    src.write_bytes(content)
    body = _RawBody(src, len(content), trailer=True)
    sent = b"".join(bytes(piece) for piece in body)
    assert sent == _trailed(content) and body.len == len(sent)
    assert body.sha256 == hashlib.sha256(content).hexdigest()
    shrunk = _RawBody(src, len(content) + 10, trailer=True)  # the file lost bytes after stat
    with pytest.raises(UploadError, match="shrank"):
        for _ in shrunk:
            pass


def test_symlink_out_of_the_root_is_not_followed(server, auth, tmp_path) -> None:
    (tmp_path / "secret.txt").write_text("outside")
    link = server.files_root / "link"
    link.symlink_to(tmp_path, target_is_directory=True)
    try:
        got = requests.get(f"{server.files_host}/link/secret.txt", headers=auth, timeout=TIMEOUT)
        assert got.status_code == 400
        response = _upload(server, auth, "/link/new.bin", b"evil")
        assert response.status_code == 400
        assert not (tmp_path / "new.bin").exists()
    finally:
        link.unlink()


def test_malformed_multipart_is_400(server, auth) -> None:
    response = requests.post(
        f"{server.files_host}/",
        data=b"just bytes",
        headers={**auth, "Content-Type": "application/octet-stream"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 400


def test_upload_size_limit(tmp_path) -> None:
    with live_server(tmp_path, extra_args=["--max-upload-size", str(1024 * 1024)]) as srv:
        token = requests.get(
            f"{srv.api_host}/auth.login", auth=(srv.access_key, srv.secret_key), timeout=10
        ).json()["data"]["token"]
        auth = {"Authorization": f"Bearer {token}"}
        small = _upload(srv, auth, "/small.bin", b"x" * 1000)
        assert small.status_code == 200
        big = _upload(srv, auth, "/big.bin", b"x" * (2 * 1024 * 1024))
        assert big.status_code == 413
        assert not (srv.files_root / "big.bin").exists()
        raw_big = _put(srv, auth, "big.bin", b"x" * (2 * 1024 * 1024))
        assert raw_big.status_code == 413
        assert not (srv.files_root / "big.bin").exists()

        def chunks():  # no Content-Length: the limit is enforced while streaming
            yield (
                b'--bb\r\nContent-Disposition: form-data; name="/s.bin"; filename="/s.bin"\r\n\r\n'
            )
            for _ in range(4):
                yield b"y" * (512 * 1024)
            yield b"\r\n--bb--\r\n"

        response = requests.post(
            f"{srv.files_host}/",
            data=chunks(),
            headers={**auth, "Content-Type": "multipart/form-data; boundary=bb"},
            timeout=10,
        )
        assert response.status_code == 413
        assert not (srv.files_root / "s.bin").exists()
        assert not list((srv.files_root / ".modelbook-tmp").iterdir())


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_large_upload_streams_with_flat_memory(tmp_path) -> None:
    """A 2 GiB upload through the modelbook driver: the server's peak RSS stays flat."""
    from modelbook.backends.http import HttpBackend

    size = int(os.environ.get("SERVER_TEST_UPLOAD_MIB", "2048")) * 1024 * 1024
    src = tmp_path / "big.bin"
    with open(src, "wb") as fh:
        block = os.urandom(1024 * 1024)
        for _ in range(size // len(block)):
            fh.write(block)
    with live_server(tmp_path / "srv") as srv:
        backend = HttpBackend(
            api_host=srv.api_host,
            files_host=srv.files_host,
            access_key=srv.access_key,
            secret_key=srv.secret_key,
        )
        driver = backend.driver_for(f"{srv.files_host}/big/big.bin")
        before = _peak_rss_mib(srv.pid)
        started = time.monotonic()
        stored = driver.put(src, f"{srv.files_host}/big/big.bin")
        elapsed = time.monotonic() - started
        after = _peak_rss_mib(srv.pid)
        assert stored.size == size
        assert (srv.files_root / "big/big.bin").stat().st_size == size
        mib = size >> 20
        print(f"upload {mib} MiB in {elapsed:.1f}s; server peak RSS {before:.0f}->{after:.0f} MiB")
        assert after - before < 64, f"server memory grew by {after - before:.0f} MiB"
        backend.close()
