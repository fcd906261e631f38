"""The files-server driver: ClearML's upload protocol over HTTP(S), and a raw upload to a
``modelbook server``.

* ``put`` to a ``modelbook server`` (the backend says which kind it talks to): ``PUT <files
  host>/<path>`` whose body is the file's bytes, then the 64 hex characters of their sha256
  (``X-Modelbook-Trailer: sha256``). The file is read once, in 1 MiB pieces into a reused
  buffer, hashed and handed to the socket in the same pass; the server hashes what arrives
  and keeps the file only if the trailer matches. A digest the caller knows already is sent
  as ``X-Modelbook-Sha256`` instead and the client hashes nothing.
* ``put`` to a ClearML files server: ``POST <files host>/`` with one ``multipart/form-data``
  part whose name is the destination path (ClearML's protocol), streamed from the file with a
  ``Content-Length``; the sha256 is computed first and sent as ``X-Modelbook-Sha256`` (a
  ClearML server ignores it).
* Either upload: connection failures and 5xx answers are retried (3 attempts), a 401 once
  after logging in again; a source that shrinks while it is sent fails the upload.
* ``get``: ``GET`` streamed in 1 MiB pieces to a temporary file next to the destination,
  written back to disk while it arrives (:class:`~modelbook.storage.writeback.WriteBehind`),
  fsynced and renamed when the byte count matches ``Content-Length``.
* ``delete``: ``DELETE``; ``exists``: ``HEAD``.

The Bearer token of the HTTP backend goes only to URLs under its files host (as ClearML
does); other http(s) URLs are read anonymously. The backend injects its client: get a driver
with ``backend.driver_for(uri)``.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from modelbook.errors import StorageError, UploadError
from modelbook.storage.base import CHUNK, StorageDriver, StoredObject, sha256_file
from modelbook.storage.writeback import WriteBehind

if TYPE_CHECKING:
    import requests

    from modelbook.backends.api_client import ApiClient

SHA256_HEADER = "X-Modelbook-Sha256"
#: A raw upload whose body ends with the hex sha256 of the bytes before it.
TRAILER_HEADER = "X-Modelbook-Trailer"
TRAILER_SHA256 = "sha256"
TRAILER_LENGTH = 64
UPLOAD_ATTEMPTS = 3
#: (connect, read) seconds; the read timeout is per received chunk, not per file.
TIMEOUT = (10.0, 300.0)


class _MultipartBody:
    """A one-part ``multipart/form-data`` body read from a file, with a known length.

    ``requests`` sends it with a ``Content-Length`` and reads it chunk by chunk.
    """

    def __init__(self, src: Path, part_name: str) -> None:
        self.boundary = uuid.uuid4().hex
        quoted = part_name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        self._head = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{quoted}"; filename="{quoted}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._size = src.stat().st_size
        self.len = len(self._head) + self._size + len(self._tail)
        self._src = src
        self._fh: Any = None
        self._stage = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size is None or size < 0 else size
        if self._stage == 0:
            self._stage = 1
            self._fh = open(self._src, "rb")  # noqa: SIM115 - closed at the end of the body
            return self._head
        if self._stage == 1:
            chunk = self._fh.read(size)
            if chunk:
                return chunk
            self._fh.close()
            self._stage = 2
            return self._tail
        return b""

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()


class _RawBody:
    """A raw upload body: ``size`` bytes of the file, read once into a reused buffer, then
    (``trailer``) the hex sha256 of those bytes.

    ``requests`` sends it with a ``Content-Length`` (:attr:`len`) and hands each piece to
    the socket before asking for the next, so one buffer serves the whole file. A piece is
    hashed on a thread of its own while the socket sends it (both only read the buffer; each
    releases the GIL), and the buffer is refilled once both are done.
    """

    def __init__(self, src: Path, size: int, trailer: bool) -> None:
        self._src, self._size = src, size
        self._digest = hashlib.sha256() if trailer else None
        self.len = size + (TRAILER_LENGTH if trailer else 0)
        #: The hex sha256 of the bytes sent (with ``trailer``, once they all were).
        self.sha256: str | None = None

    def __iter__(self) -> Iterator[bytes | memoryview]:
        from concurrent.futures import ThreadPoolExecutor

        buffer = memoryview(bytearray(min(CHUNK, max(self._size, 1))))
        left = self._size
        digest = self._digest
        with (
            open(self._src, "rb", buffering=0) as fh,
            ThreadPoolExecutor(1, thread_name_prefix="modelbook-hash") as hasher,
        ):
            while left:
                count = fh.readinto(buffer[: min(left, len(buffer))])
                if not count:
                    raise UploadError(
                        f"{str(self._src)!r} shrank while it was uploaded: "
                        f"{self._size - left} of {self._size} bytes read"
                    )
                piece = buffer[:count]
                hashed = hasher.submit(digest.update, piece) if digest is not None else None
                try:
                    yield piece  # sent while it is hashed
                finally:
                    if hashed is not None:
                        hashed.result()  # the buffer is reused only once the hash has read it
                left -= count
        if digest is not None:
            self.sha256 = digest.hexdigest()
            yield self.sha256.encode("ascii")

    def close(self) -> None:
        """Nothing to release: the file is open only while the body is sent."""


class HttpFilesDriver(StorageDriver):
    """Moves files to and from a ClearML-protocol files server.

    Args:
        files_host: the files server's base URL, or None for anonymous reads only.
        client: the API client whose token authenticates calls to ``files_host``.
        raw_upload: whether the files host is a ``modelbook server``'s (a callable is
            asked at the first upload): upload with a raw ``PUT`` (hashed while sent)
            instead of ClearML's multipart ``POST``.

    Example:
        >>> driver = HttpFilesDriver("http://127.0.0.1:8008/files", client=None)
        >>> driver.relative_path("http://127.0.0.1:8008/files/p/t.1/models/m%20a.pt")
        'p/t.1/models/m a.pt'
    """

    schemes = ("http", "https")

    def __init__(
        self,
        files_host: str | None,
        client: ApiClient | None,
        raw_upload: bool | Callable[[], bool] = False,
    ) -> None:
        self.files_host = files_host.rstrip("/") if files_host else None
        self.client = client
        self._raw_upload = raw_upload

    @property
    def raw_upload(self) -> bool:
        """Whether uploads are raw ``PUT`` requests (a ``modelbook server``)."""
        if callable(self._raw_upload):
            self._raw_upload = bool(self._raw_upload())
        return self._raw_upload

    @property
    def hashes_in_transit(self) -> bool:
        return self.raw_upload  # the sha256 trailer; a multipart POST hashes first

    def _under_host(self, uri: str) -> bool:
        host = self.files_host
        return bool(host) and (uri == host or uri.startswith(host + "/"))  # type: ignore[operator]

    def relative_path(self, uri: str) -> str:
        """The path of ``uri`` below the files host, percent-decoded."""
        if not self._under_host(uri):
            raise StorageError(
                f"{uri!r} is not on the files server {self.files_host!r}; uploads go to the "
                "configured files host"
            )
        relative = unquote(urlsplit(uri).path)[len(unquote(urlsplit(self.files_host).path)) :]
        relative = relative.lstrip("/")
        if not relative:
            raise StorageError(f"{uri!r} names the files server itself, not a file")
        return relative

    def _headers(self, uri: str, renew: bool = False) -> dict[str, str]:
        if self.client is None or not self._under_host(uri):
            return {}
        return {"Authorization": f"Bearer {self.client.token(renew=renew)}"}

    def _request(
        self,
        method: str,
        uri: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One request, with the token for files-host URLs (renewed once after a 401).

        Args:
            body: a callable returning a fresh body (:class:`_MultipartBody`,
                :class:`_RawBody`) for each attempt; such requests go through the session
                without status retries, since a streamed body cannot be replayed by urllib3.
        """
        import requests

        from modelbook.backends.api_client import shared_session

        session = shared_session(replayable=body is None)
        response = None
        for attempt in range(2):
            sent = {**(headers or {}), **self._headers(uri, renew=attempt > 0)}
            data = body() if body is not None else None
            if data is not None:
                sent["Content-Type"] = getattr(data, "content_type", "application/octet-stream")
            try:
                response = session.request(
                    method, uri, headers=sent, data=data, timeout=TIMEOUT, **kwargs
                )
            except requests.RequestException as exc:
                raise StorageError(
                    f"{method} {uri} failed: {type(exc).__name__}: {exc}", transient=True
                ) from exc
            finally:
                if data is not None:
                    data.close()
            if response.status_code != 401 or "Authorization" not in sent:
                break
            response.close()
        assert response is not None
        return response

    @staticmethod
    def _message(response: requests.Response) -> str:
        try:
            return str(response.json().get("error") or response.text[:300])
        except (ValueError, AttributeError):
            return response.text[:300] or response.reason

    def put(
        self, src: Path, uri: str, sha256: str | None = None, move: bool = False
    ) -> StoredObject:
        src = Path(src)
        relative = self.relative_path(uri)
        if self.client is None:
            raise UploadError(f"no credentials for the files server of {uri!r}")
        if self.raw_upload:
            size = src.stat().st_size
            method, url = "PUT", f"{self.files_host}/{quote(relative)}"
            headers = {SHA256_HEADER: sha256} if sha256 else {TRAILER_HEADER: TRAILER_SHA256}
            sent: list[_RawBody] = []

            def make_body() -> Any:
                sent.append(_RawBody(src, size, trailer=sha256 is None))
                return sent[-1]

        else:
            if sha256 is None:
                sha256, size = sha256_file(src)
            else:  # the server checks the body against this digest before it keeps the file
                size = src.stat().st_size
            method, url, headers = "POST", f"{self.files_host}/", {SHA256_HEADER: sha256}

            def make_body() -> Any:
                return _MultipartBody(src, "/" + relative)

        last, transient = "", True
        for attempt in range(UPLOAD_ATTEMPTS):
            if attempt:
                time.sleep(2**attempt)
            try:
                response = self._request(method, url, body=make_body, headers=headers)
            except StorageError as exc:  # no answer; or (not transient) the source shrank
                last, transient = str(exc), exc.transient
                if not transient:
                    break
                continue
            if response.status_code == 200:
                digest = sha256 or sent[-1].sha256
                assert digest is not None  # a raw body sent whole has hashed every byte
                return StoredObject(uri=uri, sha256=digest, size=size)
            last = f"HTTP {response.status_code}: {self._message(response)}"
            transient = response.status_code >= 500 or response.status_code in (408, 429)
            if not transient:
                break
        raise UploadError(f"could not upload {str(src)!r} to {uri!r}: {last}", transient=transient)

    def get(self, uri: str, dest: Path) -> None:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.partial"
        response = self._request("GET", uri, stream=True)
        try:
            if response.status_code == 404:
                raise StorageError(f"{uri!r} does not exist on the files server")
            if response.status_code != 200:
                raise StorageError(
                    f"download of {uri!r} failed: HTTP {response.status_code}: "
                    f"{self._message(response)}",
                    transient=response.status_code >= 500,
                )
            expected = response.headers.get("Content-Length")
            received = 0
            with open(tmp, "wb") as fh, WriteBehind(fh.fileno()) as behind:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)  # a piece this large bypasses the buffer: no copy
                    received += len(chunk)
                    behind.wrote(len(chunk))
                fh.flush()
                behind.finish()
            if expected is not None and int(expected) != received:
                raise StorageError(
                    f"download of {uri!r} was cut short: {received} of {expected} bytes",
                    transient=True,
                )
            os.replace(tmp, dest)
        except OSError as exc:
            raise StorageError(f"could not save {uri!r} to {str(dest)!r}: {exc}") from exc
        finally:
            response.close()
            tmp.unlink(missing_ok=True)

    def delete(self, uri: str) -> bool:
        response = self._request("DELETE", uri)
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise StorageError(
                f"delete of {uri!r} failed: HTTP {response.status_code}: {self._message(response)}"
            )
        return True

    def exists(self, uri: str) -> bool:
        response = self._request("HEAD", uri)
        if response.status_code in (200, 206):
            return True
        if response.status_code == 404:
            return False
        raise StorageError(f"cannot check {uri!r}: HTTP {response.status_code}")
