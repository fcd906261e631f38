"""Write-behind for large files: flush to disk while the file is still being written.

A file made durable by one ``fsync`` at the end makes its writer wait for every byte to
reach the disk after the last one arrived (2 GiB: seconds). :class:`WriteBehind` asks the
kernel to write the file back from a background thread every few tens of MiB, so the
writeback overlaps the transfer and the final ``fsync`` waits only for the last piece.
The files-server driver's downloads and the files server's uploads use it.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

#: Bytes written between two background flushes.
EVERY = 64 * 1024 * 1024
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class WriteBehind:
    """Flushes the open file ``fd`` to disk in the background every ``every`` bytes written;
    :meth:`finish` makes it durable (``fsync``).

    The thread starts at the first flush, so small files cost nothing; it never outlives
    the ``with`` block.

    Args:
        fd: the file descriptor being written (the caller keeps it open until the end).
        every: bytes written between two background flushes.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryFile() as fh, WriteBehind(fh.fileno(), every=4) as behind:
        ...     for piece in (b"ab", b"cd", b"ef"):
        ...         behind.wrote(fh.write(piece))  # the 4th byte wakes the flusher
        ...     fh.flush()
        ...     behind.finish()  # stops the flusher, then fsync: durable now
    """

    def __init__(self, fd: int, every: int = EVERY) -> None:
        self._fd, self._every = fd, every
        self._since = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None
        #: Background flushes done so far.
        self.flushes = 0

    def wrote(self, count: int) -> None:
        """Count ``count`` more bytes written; past ``every``, wake the flusher."""
        self._since += count
        if self._since < self._every:
            return
        self._since = 0
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="modelbook-writeback", daemon=True
            )
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                _datasync(self._fd)
            except OSError as exc:  # reported by finish()
                self._error = exc
                return
            self.flushes += 1

    def close(self) -> None:
        """Stop the flusher (waits for a flush in progress); the file is not made durable."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join()
            self._thread = None

    def finish(self) -> None:
        """Stop the flusher and ``fsync`` the file.

        Raises:
            OSError: a background flush or the final ``fsync`` failed.
        """
        self.close()
        if self._error is not None:
            raise self._error
        os.fsync(self._fd)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
