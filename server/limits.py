"""Failed ``auth.login`` attempts, limited per access key and client address.

Past :data:`MAX_FAILURES` failures of one (access key, address) within :data:`WINDOW`
seconds, every login of that pair is refused (429 with ``Retry-After``) until the oldest
failure ages out, a good secret included: guessing a secret costs a window per ten guesses.
The count is per server process (each ``--workers`` process keeps its own).

Example:
    >>> limiter = LoginLimiter(max_failures=2, window=60.0, clock=lambda: 100.0)
    >>> limiter.retry_after(("key", "10.0.0.1")) is None
    True
    >>> limiter.failed(("key", "10.0.0.1")); limiter.failed(("key", "10.0.0.1"))
    >>> limiter.retry_after(("key", "10.0.0.1"))
    60
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 10
WINDOW = 60.0
#: Pairs remembered at most (the oldest are forgotten first).
MAX_PAIRS = 10_000

Pair = tuple[str, str]


class LoginLimiter:
    """Counts failed logins per (access key, client address) in a sliding window.

    Example:
        >>> limiter = LoginLimiter(max_failures=1)
        >>> limiter.failed(("key", "::1")); limiter.retry_after(("key", "::1")) is not None
        True
        >>> limiter.succeeded(("key", "::1")); limiter.retry_after(("key", "::1")) is None
        True
    """

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_failures, self.window, self.clock = max_failures, window, clock
        self._failures: OrderedDict[Pair, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, pair: Pair, now: float) -> deque[float]:
        times = self._failures.get(pair, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, pair: Pair) -> int | None:
        """Seconds until ``pair`` may try again, or None when it may now."""
        with self._lock:
            now = self.clock()
            times = self._recent(pair, now)
            if len(times) < self.max_failures:
                return None
            return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, pair: Pair) -> None:
        with self._lock:
            now = self.clock()
            times = self._recent(pair, now)
            times.append(now)
            self._failures[pair] = times
            self._failures.move_to_end(pair)
            while len(self._failures) > MAX_PAIRS:
                self._failures.popitem(last=False)

    def succeeded(self, pair: Pair) -> None:
        with self._lock:
            self._failures.pop(pair, None)
