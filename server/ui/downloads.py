"""Where a version's bytes are, for its download link.

* ``modelbook server``: only files its files server holds (``http(s)://<any host>/files/
  <path>``, resolved inside the files root by :mod:`modelbook.server.paths`). A version
  registered elsewhere (``file://``, ``s3://``, another host) is not fetched by the server:
  reading the server's own disk or reaching out for any logged-in user would turn the
  download link into a file-read and request-forgery hole.
* ``modelbook ui`` (the embedded store, on the user's own machine): ``file://`` paths are
  read in place; other URIs are fetched with the registry's storage drivers into a
  temporary file, sent, then removed.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "p").mkdir(); _ = (root / "p" / "w.pt").write_bytes(b"w")
    >>> Locator(files_root=root).locate("http://srv:8008/files/p/w.pt").path.name
    'w.pt'
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelbook.errors import StorageError
from modelbook.server.paths import UnsafePathError, resolve_client_path
from modelbook.storage import StorageDriver, scheme_of
from modelbook.storage.local import to_path


@dataclass(frozen=True)
class Located:
    """A file to send; ``cleanup`` (if any) runs once it was sent.

    Example:
        >>> Located(Path("/srv/files/p/w.pt")).cleanup is None
        True
    """

    path: Path
    cleanup: Callable[[], None] | None = None


class Locator:
    """Finds the bytes behind a version's URI.

    Args:
        files_root: the server's files root (server mode); None for the embedded store.
        driver_for: the storage driver of a URI (embedded mode: the backend's).

    Example:
        >>> try:
        ...     Locator(files_root=Path("/srv/files")).locate("file:///etc/passwd")
        ... except StorageError as exc:
        ...     print(str(exc).split(";")[0])
        these weights are stored at 'file:///etc/passwd', outside this server's files server
    """

    def __init__(
        self,
        files_root: Path | None = None,
        driver_for: Callable[[str], StorageDriver] | None = None,
    ) -> None:
        self.files_root = Path(files_root).resolve() if files_root is not None else None
        self.driver_for = driver_for

    def locate(self, uri: str) -> Located:
        """The local file holding ``uri``'s bytes.

        Raises:
            StorageError: the bytes are not there (any more), or this server does not serve
                them (the message says where they are).
        """
        if self.files_root is not None:
            return Located(self._served_file(uri))
        if scheme_of(uri) in ("", "file"):
            path = to_path(uri)
            if not path.is_file():
                raise StorageError(f"the weights file {uri!r} does not exist any more")
            return Located(path)
        if self.driver_for is None:
            raise StorageError(f"no storage driver to fetch {uri!r}")
        folder = Path(tempfile.mkdtemp(prefix="modelbook-ui-"))
        target = folder / (Path(urlsplit(uri).path).name or "weights")
        try:
            self.driver_for(uri).get(uri, target)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Located(target, lambda: shutil.rmtree(folder, ignore_errors=True))

    def _served_file(self, uri: str) -> Path:
        assert self.files_root is not None
        parts = urlsplit(uri)
        path = unquote(parts.path)
        if parts.scheme not in ("http", "https") or not path.startswith("/files/"):
            raise StorageError(
                f"these weights are stored at {uri!r}, outside this server's files server; "
                "download them from there"
            )
        try:
            target = resolve_client_path(self.files_root, path[len("/files/") :])
        except UnsafePathError as exc:
            raise StorageError(str(exc)) from None
        if not target.is_file():
            raise StorageError(f"the files server holds no file {path[len('/files/') :]!r} "
                               "(deleted?)")  # fmt: skip
        return target
