"""Local copies of stored weights: verified by sha256, downloaded into a cache, unzipped."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from modelbook.errors import BlobCorruptedError, StorageError
from modelbook.storage import StorageDriver, StoredObject, sha256_file

_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def verify(path: Path, expected: str | None) -> None:
    """Raise :class:`BlobCorruptedError` unless ``path`` hashes to ``expected``.

    A file already verified in this process, and unchanged since (same size and mtime), is
    not hashed again.
    """
    if not expected:
        return
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        if _verified.get(key) == expected:
            return
    actual, _ = sha256_file(path)
    if actual != expected:
        raise BlobCorruptedError(str(path), expected, actual)
    with _verified_lock:
        _verified[key] = expected


def _basename(uri: str) -> str:
    return PurePosixPath(unquote(urlsplit(uri).path)).name or "weights"


def local_copy(
    stored: StoredObject, driver: StorageDriver, cache_root: Path, force_download: bool = False
) -> Path:
    """The verified local file holding ``stored``, downloaded into the cache if needed."""
    local = driver.local_path(stored.uri)
    if local is not None:
        if not local.is_file():
            raise StorageError(
                f"{stored.uri!r} does not exist (deleted or moved); re-register the weights "
                "with update_weights"
            )
        verify(local, stored.sha256)
        return local
    key = stored.sha256 or hashlib.md5(stored.uri.encode()).hexdigest()
    target = cache_root / "downloads" / key / _basename(stored.uri)
    if target.is_file() and not force_download:
        try:
            verify(target, stored.sha256)
            return target
        except BlobCorruptedError:
            target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        driver.get(stored.uri, tmp)
        verify(tmp, stored.sha256)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def extract_package(archive: Path, cache_root: Path, key: str) -> Path:
    """Unzip ``archive`` once into ``cache_root/packages/<key>`` and return that folder.

    Extraction happens in a temporary folder renamed into place, so a reader never sees a
    half-extracted package; zip members that would land outside the folder are refused.
    """
    folder = cache_root / "packages" / key
    if folder.is_dir():
        return folder
    tmp = folder.with_name(f".{key}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (tmp / member).resolve()
                if not target.is_relative_to(tmp.resolve()):
                    raise StorageError(f"package {archive} has an unsafe member path {member!r}")
            zf.extractall(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not folder.is_dir():  # another process won the race otherwise
                raise
    except zipfile.BadZipFile as exc:
        raise StorageError(f"package {archive} is not a valid zip file: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def make_package(paths: list[Path], base: Path, dest: Path) -> None:
    """Zip ``paths`` (files and folders, recursively) into ``dest``, names relative to
    ``base``, uncompressed (weights do not compress) with zip64 for large files."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in paths:
            entries = sorted(path.rglob("*")) if path.is_dir() else [path]
            for entry in entries:
                if entry.is_file():
                    zf.write(entry, entry.relative_to(base).as_posix())
