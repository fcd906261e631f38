"""Snapshot in memory, serialise in the background: the framework-free half.

On an improvement the training thread copies what it must keep into host buffers owned by a
:class:`BackgroundWriter` (the framework's :class:`Stager` does the copy) and returns; the
writer's one daemon thread serialises the copy and registers it. Memory is bounded:

* at most two sets of buffers per writer (one model): the snapshot being written and one
  waiting; a newer improvement replaces the waiting one and reuses its buffers (latest wins);
* a cap on the bytes those buffers hold (``snapshot_memory=``, else the environment variable
  ``MODELBOOK_SNAPSHOT_MEMORY``, else :func:`default_cap`): past it the training thread saves
  synchronously, with one warning per writer.

Buffers stay allocated between improvements (reused when the shapes match) until the writer
is closed at the end of training, or at exit (joined with a timeout).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelbook import config
from modelbook.errors import InvalidArgumentError
from modelbook.output_model import add_upload_producer
from modelbook.records import Metadata
from modelbook.threads import run_in_background

log = logging.getLogger("modelbook")
GIB = 1 << 30
#: The environment variable holding the default cap, in bytes.
ENV = "MODELBOOK_SNAPSHOT_MEMORY"

#: A function that serialises what is staged into the file (or folder) at the path given.
Write = Callable[[Path], None]


class SnapshotMemoryWarning(UserWarning):
    """A snapshot did not fit the memory cap: it was saved on the training thread."""


class Stager(Protocol):
    """Copies one improvement's state into host buffers (framework-specific)."""

    @property
    def nbytes(self) -> int:
        """Host bytes the copy needs."""
        ...

    def stage(self, buffers: Any) -> tuple[Any, Write]:
        """Copy into ``buffers`` (those of an earlier snapshot, reused where they fit, or
        None); return the buffers now holding the copy and the function writing it."""
        ...


def default_cap() -> int:
    """4 GiB, or a quarter of the machine's memory when that is less."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not reported on this platform
        return 4 * GIB
    return min(4 * GIB, total // 4)


def memory_cap(value: int | None) -> int:
    """The cap in bytes: ``value``, else ``MODELBOOK_SNAPSHOT_MEMORY``, else the default.

    0 turns background saving off (every improvement is saved on the training thread).

    Raises:
        InvalidArgumentError: not an int >= 0 (or, from the environment, not digits).
    """
    if value is None:
        text = os.environ.get(ENV, "").strip().replace("_", "")
        if not text:
            return default_cap()
        if not text.isdigit():
            raise InvalidArgumentError(
                f"{ENV} must be a number of bytes (digits, 0 to save on the training thread), "
                f"got {os.environ[ENV]!r}"
            )
        return int(text)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgumentError(
            f"snapshot_memory must be None or an int >= 0 (bytes; 0 saves on the training "
            f"thread), got {value!r}"
        )
    return value


@dataclass(eq=False)
class Slot:
    """One set of host buffers, and the snapshot staged in them (while there is one)."""

    buffers: Any = None
    nbytes: int = 0
    state: str = "free"  # free, staging, waiting, writing
    write: Write | None = None
    filename: str = ""
    iteration: int = 0
    metadata: Metadata = field(default_factory=dict)
    seq: int = 0

    def clear(self) -> None:
        """Drop the snapshot (not the buffers, kept for the next one)."""
        self.write, self.metadata, self.state = None, {}, "free"


#: Delivers one staged slot: serialises it (``slot.write``) and registers the file.
Deliver = Callable[[Slot], None]


class BackgroundWriter:
    """Writes staged snapshots of one model on a daemon thread, newest first, at most two
    sets of buffers at a time (see the module docstring).

    Args:
        owner: named in warnings and logs.
        cap: the most bytes the buffers may hold (0: never stage, always synchronous).
        deliver: serialises and registers one slot (called on the writer's thread; it must
            not raise for registry failures: those are the registrar's to report).

    Example:
        >>> written = []
        >>> writer = BackgroundWriter("demo", cap=1024, deliver=lambda s: written.append(s.seq))
        >>> slot = writer.reserve(100)
        >>> slot.buffers, slot.nbytes = bytearray(100), 100
        >>> writer.submit(slot, lambda path: None, "model.bin", iteration=1, metadata={}, seq=1)
        >>> writer.close(timeout=10), written, writer.peak
        ([], [1], 100)
        >>> writer.reserve(2048) is None  # over the cap: the caller saves synchronously
        True
    """

    def __init__(self, owner: str, cap: int, deliver: Deliver) -> None:
        self.owner, self.cap, self.deliver = owner, cap, deliver
        self._cond = threading.Condition()
        self._slots: list[Slot] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._warned = False
        #: The most bytes the buffers held at once.
        self.peak = 0
        #: Snapshots replaced by a newer one before they were written (latest wins).
        self.replaced = 0

    # -- the training thread's side ---------------------------------------------------------
    def reserve(self, nbytes: int) -> Slot | None:
        """A slot to stage a snapshot of ``nbytes`` into: the waiting one (its snapshot is
        dropped: latest wins), else a free one, else a new one. None when the buffers would
        then hold more than the cap: the caller saves synchronously (warned once)."""
        with self._cond:
            slot = self._find("waiting")
            if slot is not None:
                self.replaced += 1
                log.info("%s: the snapshot of step %d was replaced by a newer one before it "
                         "was written", self.owner, slot.iteration)  # fmt: skip
            slot = slot or self._find("free") or self._new_slot()
            slot.clear()
            if self._held(but=slot) + nbytes > self.cap:
                for idle in self._slots:  # free what is not being written, then look again
                    if idle.state == "free":
                        idle.buffers, idle.nbytes = None, 0
            if self._held(but=slot) + nbytes > self.cap:
                self._over_cap(nbytes)
                return None
            slot.state = "staging"
            return slot

    def submit(
        self, slot: Slot, write: Write, filename: str, *, iteration: int, metadata: Metadata,
        seq: int,
    ) -> None:  # fmt: skip
        """Hand a staged slot to the writer's thread: it is written next if nothing is being
        written, else it waits (and a newer snapshot replaces it)."""
        with self._cond:
            slot.write, slot.filename, slot.iteration = write, filename, iteration
            slot.metadata, slot.seq = metadata, seq
            slot.state = "waiting" if self._find("writing") is not None else "writing"
            self.peak = max(self.peak, self._held())
            self._stopping = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name=f"modelbook-snapshots-{id(self):x}", daemon=True
                )
                self._thread.start()
                _close_at_exit(self)
            self._cond.notify_all()

    def cancel(self, slot: Slot) -> None:
        """Staging failed: the slot is free again (its buffers may hold part of a copy)."""
        with self._cond:
            slot.clear()
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> bool:
        """Wait until nothing is waiting or being written; whether that happened in time.
        The writer's own thread (registering a snapshot) does not wait for itself."""
        if threading.current_thread() is self._thread:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(timeout=left)
            return True

    def close(self, timeout: float | None) -> list[int]:
        """Write what is pending (waiting up to ``timeout`` seconds), stop the thread and
        free the buffers. Returns the steps of snapshots still unwritten (then the thread
        goes on writing them in the background and keeps its buffers)."""
        started = time.monotonic()
        done = self.wait(timeout)
        with self._cond:
            left = [s.iteration for s in self._slots if s.state in ("waiting", "writing")]
            if not done:
                return left
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            rest = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            thread.join(rest)
        with self._cond:
            if self._thread is thread and (thread is None or not thread.is_alive()):
                self._thread = None
            self._slots = [s for s in self._slots if s.state not in ("free", "staging")]
        return []

    @property
    def held(self) -> int:
        """Bytes the buffers hold now."""
        with self._cond:
            return self._held()

    # -- internals --------------------------------------------------------------------------
    def _pending(self) -> bool:
        return any(s.state in ("waiting", "writing") for s in self._slots)

    def _find(self, state: str) -> Slot | None:
        return next((s for s in self._slots if s.state == state), None)

    def _new_slot(self) -> Slot:
        slot = Slot()
        self._slots.append(slot)
        return slot

    def _held(self, but: Slot | None = None) -> int:
        return sum(s.nbytes for s in self._slots if s is not but)

    def _over_cap(self, nbytes: int) -> None:
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"{self.owner}: a snapshot of {nbytes / GIB:.2f} GiB does not fit the snapshot "
            f"memory cap of {self.cap / GIB:.2f} GiB ({self._held() / GIB:.2f} GiB held by a "
            "snapshot still being written): saving on the training thread instead. Raise "
            f"snapshot_memory= or {ENV} (bytes) to save in the background",
            SnapshotMemoryWarning,
            stacklevel=5,
        )

    def _run(self) -> None:
        run_in_background()
        while True:
            with self._cond:
                while not self._pending() and not self._stopping:
                    self._cond.wait()
                slot = self._find("writing") or self._find("waiting")
                if slot is None:
                    return  # stopping, nothing left
                slot.state = "writing"
            try:
                self.deliver(slot)
            except Exception as exc:  # the writer must outlive one bad snapshot; reported
                log.error("%s: could not write the snapshot of step %d: %s: %s",
                          self.owner, slot.iteration, type(exc).__name__, exc)  # fmt: skip
            finally:
                with self._cond:
                    slot.clear()
                    waiting = self._find("waiting")
                    if waiting is not None:
                        waiting.state = "writing"  # next: a newer one no longer replaces it
                    self._cond.notify_all()


_open: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()
_hooked = False


def _close_at_exit(writer: BackgroundWriter) -> None:
    """Close ``writer`` at exit. Hooked at the first writer's start, after ``Task.init``
    hooked its own exit handler, so that it runs first: pending snapshots reach the upload
    spool before the task closes."""
    global _hooked
    _open.add(writer)
    if not _hooked:
        _hooked = True
        atexit.register(_drain)


def _drain() -> None:
    for writer in list(_open):
        left = writer.close(config.upload_timeout())
        if left:
            log.warning("%s: snapshot(s) of step(s) %s were not written before exit",
                        writer.owner, left)  # fmt: skip


def wait_all(timeout: float | None) -> bool:
    """Wait (up to ``timeout`` seconds in all) until no writer of this process has a
    snapshot waiting or being written."""
    deadline = None if timeout is None else time.monotonic() + timeout
    done = True
    for writer in list(_open):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        done = writer.wait(left) and done
    return done


add_upload_producer(wait_all)  # OutputModel.wait_for_uploads first waits for the writers
