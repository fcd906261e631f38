"""The body of a raw upload (``PUT /files/<path>``), written to disk as it streams in.

The body is the file's bytes, optionally followed by a trailer: with ``X-Modelbook-Trailer:
sha256`` its last 64 bytes are the hex sha256 of the bytes before them, which the client
computed while sending (it reads the file once). Every piece is written straight to the
temporary file as it arrives (no parsing, no copy but the trailer's) and hashed on the way,
on a thread of the upload's own (:func:`pump`) so that the event loop keeps receiving while
the previous megabyte is written and hashed; the file is written back to disk during the
transfer (:class:`~modelbook.storage.writeback.WriteBehind`), so the one ``fsync`` at the
end is short.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from modelbook.storage.writeback import WriteBehind

TRAILER_HEADER = "x-modelbook-trailer"
#: What ``X-Modelbook-Trailer`` may say, and the length of that trailer.
TRAILERS = {"sha256": 64}
#: :func:`pump` hands the writer thread this many bytes at a time, at most ``DEPTH`` batches
#: ahead of it (memory per upload: about BATCH * (DEPTH + 1)).
BATCH = 1024 * 1024
DEPTH = 2


class BodyError(Exception):
    """The body does not match what its headers declared (answered 400).

    Example:
        >>> import io
        >>> try:
        ...     RawReceiver(io.BytesIO(), declared=3, trailer=False).write(b"four")
        ... except BodyError as exc:
        ...     print(exc)
        the body is longer than its Content-Length 3
    """


class RawReceiver:
    """Writes the content of a raw upload body to ``fh`` and hashes it; keeps the trailer.

    Args:
        fh: the open temporary file.
        declared: the request's ``Content-Length`` (content and trailer).
        trailer: whether the body ends with a sha256 trailer.

    Example:
        >>> import io
        >>> body = b"weights" + hashlib.sha256(b"weights").hexdigest().encode()
        >>> receiver = RawReceiver(io.BytesIO(), declared=len(body), trailer=True)
        >>> for piece in (body[:3], body[3:40], body[40:]):  # the trailer split across pieces
        ...     receiver.write(piece)
        >>> receiver.size, receiver.expected_sha256() == receiver.digest.hexdigest()
        (7, True)
    """

    def __init__(self, fh: BinaryIO, declared: int, trailer: bool) -> None:
        self.fh, self.declared = fh, declared
        self.content_size = declared - (TRAILERS["sha256"] if trailer else 0)
        if self.content_size < 0:
            raise BodyError(f"a body of {declared} bytes cannot hold the sha256 trailer")
        self.digest: Any = hashlib.sha256()
        self.received = 0
        self._trailer = bytearray()
        self._behind: WriteBehind | None = None
        if hasattr(fh, "fileno"):
            try:
                self._behind = WriteBehind(fh.fileno())
            except OSError:  # not a real file (tests): nothing to write back
                self._behind = None

    @property
    def size(self) -> int:
        """Content bytes received so far."""
        return min(self.received, self.content_size)

    def write(self, piece: bytes) -> None:
        """Take the next piece of the body.

        Raises:
            BodyError: the body is longer than declared.
        """
        start = self.received
        self.received += len(piece)
        if self.received > self.declared:
            raise BodyError(f"the body is longer than its Content-Length {self.declared}")
        content_left = self.content_size - start
        if content_left >= len(piece):
            self._content(piece)
            return
        view = memoryview(piece)
        if content_left > 0:
            self._content(view[:content_left])
        self._trailer += view[max(content_left, 0) :]

    def write_all(self, pieces: list[bytes]) -> None:
        """:meth:`write` each of ``pieces`` in turn."""
        for piece in pieces:
            self.write(piece)

    def _content(self, data: bytes | memoryview) -> None:
        self.fh.write(data)
        self.digest.update(data)
        if self._behind is not None:
            self._behind.wrote(len(data))

    def expected_sha256(self) -> str | None:
        """The trailer's digest (None without a trailer), once the whole body arrived.

        Raises:
            BodyError: the body is shorter than declared, or the trailer is not a hex sha256.
        """
        if self.received != self.declared:
            raise BodyError(f"the body ended after {self.received} of {self.declared} bytes")
        if self.content_size == self.declared:
            return None
        text = self._trailer.decode("ascii", errors="replace").lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise BodyError(f"the sha256 trailer {text[:64]!r} is not 64 hex characters")
        return text

    def finish(self) -> None:
        """Flush, ``fsync`` and close the file (blocking: run it off the event loop)."""
        try:
            self.fh.flush()
            if self._behind is not None:
                self._behind.finish()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background writeback and close the file (the upload failed or is done)."""
        if self._behind is not None:
            self._behind.close()
        self.fh.close()


async def pump(body: AsyncIterator[bytes], receiver: RawReceiver) -> None:
    """Feed ``body`` to ``receiver`` on a writer thread of its own, in order, in batches of
    about :data:`BATCH` bytes with at most :data:`DEPTH` waiting: the event loop receives the
    next batch while the thread writes and hashes the previous one (each releases the GIL).

    Raises:
        BodyError: from :meth:`RawReceiver.write`; and whatever ``body`` raises (a client
            that disconnects). The writer thread has stopped when this returns or raises.
    """
    loop = asyncio.get_running_loop()
    pending: deque[asyncio.Future[None]] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="modelbook-upload") as writer:
        try:
            held: list[bytes] = []
            size = 0
            async for chunk in body:
                held.append(chunk)
                size += len(chunk)
                if size < BATCH:
                    continue
                if len(pending) >= DEPTH:
                    await pending.popleft()
                pending.append(loop.run_in_executor(writer, receiver.write_all, held))
                held, size = [], 0
            if held:
                pending.append(loop.run_in_executor(writer, receiver.write_all, held))
            while pending:
                await pending.popleft()
        finally:
            for waiting in pending:
                waiting.cancel()  # not started yet; the running batch ends in shutdown()
