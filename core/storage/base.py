"""The storage driver interface: moving whole files to and from a destination URI."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    """A file that a driver stored completely: where, and what it holds."""

    uri: str
    sha256: str
    size: int


class StorageDriver(ABC):
    """Moves files for one family of URI schemes.

    ``put`` is all-or-nothing: when it returns, the object at ``uri`` is complete and its
    sha256 and size are the ones returned; when it raises, no partial object is visible at
    ``uri`` (a previous object there is left as it was).
    """

    schemes: tuple[str, ...] = ()

    @property
    def hashes_in_transit(self) -> bool:
        """Whether :meth:`put` without a digest hashes the bytes as it sends them (one read
        of the file); otherwise the caller that needs the digest anyway hashes first and
        passes it, which lets the driver skip a pass (a rename instead of a copy, say)."""
        return False

    @abstractmethod
    def put(
        self, src: Path, uri: str, sha256: str | None = None, move: bool = False
    ) -> StoredObject:
        """Store the local file ``src`` at ``uri``.

        ``sha256`` is the digest of ``src`` when the caller knows it already (the upload
        queue does); a driver may then skip its own hashing pass, but must still make sure
        the stored object has that digest. With ``move`` the caller gives ``src`` up: a
        driver may rename it into place instead of copying it (local folders do).
        """

    @abstractmethod
    def get(self, uri: str, dest: Path) -> None:
        """Download ``uri`` to the local path ``dest``, atomically (temp name, then rename)."""

    @abstractmethod
    def delete(self, uri: str) -> bool:
        """Delete the object (one file) at ``uri``; return False if it did not exist.

        Only :mod:`modelbook.retention` calls this, for objects the registry wrote and
        nothing references any more.
        """

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """Whether an object is stored at ``uri``."""

    def local_path(self, uri: str) -> Path | None:
        """The local file behind ``uri`` when it can be read in place (file://), else None."""
        return None


@contextmanager
def progress(total: int | None, label: str) -> Iterator[Callable[[int], object]]:
    """A progress bar for one transfer: shown on a terminal once it has run 2 s, never
    when stderr is not a terminal (CI logs, notebooks' captured output), never without tqdm.

    Yields a function to call with the number of bytes just moved.
    """
    try:
        from tqdm import tqdm
    except ImportError:
        yield lambda n: None
        return
    bar = tqdm(
        total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, delay=2.0,
        disable=None, leave=False,
    )  # fmt: skip
    try:
        yield bar.update
    finally:
        bar.close()


def sha256_file(path: Path) -> tuple[str, int]:
    """Return the sha256 hex digest and the size of a file, reading it in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
