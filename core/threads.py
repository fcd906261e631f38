"""The CPU priority of modelbook's background threads: training comes first.

The threads that serialise snapshots, upload them and send reported values run at a lower
CPU priority (``nice`` +10 by default; ``MODELBOOK_BACKGROUND_NICE`` from 0, same as the
training, to 19, lowest) so that, on a machine whose cores the training keeps busy, they
take the CPU the training leaves over instead of pre-empting one of its threads in the
middle of a parallel kernel (which stalls every thread of that kernel). When they fall
behind, the background writer keeps only the newest snapshot waiting (latest wins).

Linux sets the priority per thread; elsewhere this does nothing.

Example:
    >>> import threading
    >>> seen = []
    >>> thread = threading.Thread(target=lambda: seen.append(run_in_background()))
    >>> thread.start(); thread.join(5)
    >>> seen[0] is None or seen[0] >= background_nice()
    True
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from modelbook.errors import InvalidArgumentError

log = logging.getLogger("modelbook")
#: The environment variable holding the niceness of the background threads.
ENV = "MODELBOOK_BACKGROUND_NICE"
DEFAULT_NICE = 10


def background_nice() -> int:
    """The niceness modelbook's background threads run at (``MODELBOOK_BACKGROUND_NICE``).

    Raises:
        InvalidArgumentError: the variable is not a whole number from 0 to 19.
    """
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_NICE
    if not text.isdigit() or int(text) > 19:
        raise InvalidArgumentError(
            f"{ENV} must be a whole number from 0 (the training's priority) to 19 (lowest), "
            f"got {os.environ[ENV]!r}"
        )
    return int(text)


def run_in_background() -> int | None:
    """Lower the calling thread's CPU priority by :func:`background_nice` from the
    process's own (call it first thing in a background thread).

    Returns the niceness set, or None where the platform cannot set it per thread. Never
    raises: a thread that cannot be lowered keeps running."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        nice = background_nice()
        tid = threading.get_native_id()
        # niceness adds up from the process's; a thread only ever lowers itself here
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())
        target = max(os.getpriority(os.PRIO_PROCESS, tid), min(19, base + nice))
        os.setpriority(os.PRIO_PROCESS, tid, target)
        return target
    except (OSError, InvalidArgumentError) as exc:
        log.warning("modelbook: background thread keeps its priority: %s", exc)
        return None
