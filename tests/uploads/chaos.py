"""An HTTP proxy on 127.0.0.1 that answers errors at random: a flaky registry, for real.

Each request is, at random: refused with a 503 before it reaches the server, forwarded and
its answer replaced by a 502 (the server did it; the client never hears: a lost answer), or
forwarded faithfully. ``/debug.ping`` and ``auth.login`` pass, so the test is about the calls.
"""

from __future__ import annotations

import random
import threading

from modelbook.server.testing import Forward, HttpRelay


class ChaosProxy(HttpRelay):
    """Forwards to ``127.0.0.1:target_port``; ``before`` / ``after`` are the chances of an
    error answer instead of forwarding, and after forwarding.

    Attributes:
        counts: how many requests were refused, lost and passed.
    """

    def __init__(self, target_port: int, before: float, after: float, seed: int = 0) -> None:
        self.counts = {"refused": 0, "lost": 0, "passed": 0}
        self._before, self._after = before, after
        self._rng, self._lock = random.Random(seed), threading.Lock()
        super().__init__(target_port)

    def handle(
        self, method: str, path: str, body: bytes, forward: Forward
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            roll = self._rng.random()
        exempt = path.endswith(("/debug.ping", "auth.login"))
        fate = "passed" if exempt else (
            "refused" if roll < self._before
            else "lost" if roll < self._before + self._after else "passed"
        )  # fmt: skip
        with self._lock:
            self.counts[fate] += 1
        if fate == "refused":
            return 503, {}, b"refused by the chaos proxy"
        answer = forward()
        return (502, {}, b"answer lost by the chaos proxy") if fate == "lost" else answer
