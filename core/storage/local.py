"""Local paths and ``file://`` URIs: atomic copies with the sha256 computed on the way."""

from __future__ import annotations

import contextlib
import errno
import os
import time
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


def sweep_partials(root: Path, older_than: float, dry_run: bool = False) -> list[Path]:
    """The temporary files :func:`copy_hashed` left under ``root`` (a process died
    mid-copy) not modified for ``older_than`` seconds; removed unless ``dry_run``."""
    cutoff = time.time() - older_than
    found = []
    for path in Path(root).rglob(".*.partial"):
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                found.append(path)
                if not dry_run:
                    path.unlink()
    return found


def _move_synced(src: Path, dest: Path) -> bool:
    """Flush ``src`` to disk and rename it onto ``dest``; False when they are on different
    file systems (the caller copies instead)."""
    with open(src, "rb") as fh:
        os.fsync(fh.fileno())
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


class LocalDriver(StorageDriver):
    """Files on this machine (or a mounted share), addressed by path or ``file://``."""

    schemes = ("file", "")

    def put(
        self, src: Path, uri: str, sha256: str | None = None, move: bool = False
    ) -> StoredObject:
        dest = to_path(uri)
        try:
            if move and sha256 is not None and _move_synced(Path(src), dest):
                return StoredObject(uri=to_uri(dest), sha256=sha256, size=dest.stat().st_size)
            return copy_hashed(Path(src), dest)
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
            raise StorageError(f"refusing to delete {uri!r}: it is a folder, not a stored object")
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"could not delete {uri!r}: {exc}", transient=True) from exc
        with contextlib.suppress(OSError):  # the digest folder the object had to itself
            path.parent.rmdir()
        return True

    def exists(self, uri: str) -> bool:
        return to_path(uri).exists()

    def local_path(self, uri: str) -> Path | None:
        return to_path(uri)
