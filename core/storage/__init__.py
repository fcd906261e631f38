"""Moving bytes: one driver per URI scheme (local paths, the files server, S3)."""

from __future__ import annotations

from urllib.parse import urlsplit

from modelbook.errors import StorageError
from modelbook.storage.base import StorageDriver, StoredObject, sha256_file

__all__ = ["StorageDriver", "StoredObject", "driver_for", "scheme_of", "sha256_file"]


def scheme_of(uri: str) -> str:
    """The URI's scheme in lower case; ``""`` for a plain local path (also on Windows)."""
    scheme = urlsplit(uri).scheme.lower()
    return "" if len(scheme) == 1 else scheme


def driver_for(uri: str) -> StorageDriver:
    """Return the storage driver that handles ``uri``, without registry credentials (use
    ``Backend.driver_for`` to reach a registry's own files server).

    Raises:
        StorageError: no driver handles the URI's scheme.
    """
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        from modelbook.storage.local import LocalDriver

        return LocalDriver()
    if scheme in ("http", "https"):
        from modelbook.storage.http import HttpFilesDriver

        return HttpFilesDriver(None, None)  # anonymous; a backend injects its credentials
    if scheme == "s3":
        from modelbook.storage.s3 import S3Driver

        return S3Driver.for_uri(uri)
    raise StorageError(
        f"no storage driver for {uri!r} (scheme {scheme!r}); supported: local paths, "
        "file://, http:// and https:// (a modelbook or ClearML files server), s3://"
    )
