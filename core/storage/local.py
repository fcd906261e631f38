"""Local paths and ``file://`` URIs: atomic copies with the sha256 computed on the way."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from modelbook.errors import StorageError
from modelbook.storage.base import CHUNK, StorageDriver, StoredObject, progress


def to_path(uri: str) -> Path:
    """The local path behind a ``file://`` URI or a plain path."""
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return Path(uri).expanduser()


def to_uri(path: Path | str) -> str:
    """``file://`` + the absolute path, unquoted (as ClearML stores local registrations)."""
    return "file://" + str(Path(path).expanduser().absolute())


def copy_hashed(src: Path, dest: Path) -> StoredObject:
    """Copy ``src`` to ``dest`` atomically and return the copy's sha256 and size.

    The bytes go to a hidden temporary file next to ``dest``, are flushed to disk, and only
    then renamed onto ``dest``: a reader sees the old file or the whole new one, never a
    part, even if this process is killed half-way.
    """
    import hashlib

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.partial"
    digest, size = hashlib.sha256(), 0
    try:
        total = os.path.getsize(src)
        with open(src, "rb") as fin, open(tmp, "wb") as fout, progress(total, dest.name) as step:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
                size += len(chunk)
                step(len(chunk))
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return StoredObject(uri=to_uri(dest), sha256=digest.hexdigest(), size=size)


class LocalDriver(StorageDriver):
    """Files on this machine (or a mounted share), addressed by path or ``file://``."""

    schemes = ("file", "")

    def put(self, src: Path, uri: str, sha256: str | None = None) -> StoredObject:
        try:
            return copy_hashed(Path(src), to_path(uri))
        except OSError as exc:
            raise StorageError(f"could not store {str(src)!r} at {uri!r}: {exc}") from exc

    def get(self, uri: str, dest: Path) -> None:
        path = to_path(uri)
        if not path.is_file():
            raise StorageError(f"{uri!r} does not exist")
        copy_hashed(path, Path(dest))

    def delete(self, uri: str) -> bool:
        path = to_path(uri)
        if path.is_dir():
            shutil.rmtree(path)
            return True
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, uri: str) -> bool:
        return to_path(uri).exists()

    def local_path(self, uri: str) -> Path | None:
        return to_path(uri)
