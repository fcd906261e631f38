"""An HTTP proxy on 127.0.0.1 that answers errors at random: a flaky registry, for real.

Each request is, at random: refused with a 503 before it reaches the server, forwarded and
its answer replaced by a 502 (the server did it; the client never hears: a lost answer), or
forwarded faithfully. ``/debug.ping`` and ``auth.login`` pass, so the test is about the calls.
"""

from __future__ import annotations

import http.client
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class ChaosProxy:
    """Forwards to ``127.0.0.1:target_port``; ``before`` / ``after`` are the chances of an
    error answer instead of forwarding, and after forwarding.

    Attributes:
        counts: how many requests were refused, lost and passed.
    """

    def __init__(self, target_port: int, before: float, after: float, seed: int = 0) -> None:
        self.counts = {"refused": 0, "lost": 0, "passed": 0}
        rng, lock, proxy = random.Random(seed), threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                exempt = self.path.endswith(("/debug.ping", "auth.login"))
                with lock:
                    roll = rng.random()
                fate = "passed" if exempt else (
                    "refused" if roll < before else "lost" if roll < before + after else "passed"
                )  # fmt: skip
                with lock:
                    proxy.counts[fate] += 1
                if fate == "refused":
                    return self._answer(503, {}, b"refused by the chaos proxy")
                upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    reply = upstream.getresponse()
                    data = reply.read()
                finally:
                    upstream.close()
                if fate == "lost":
                    return self._answer(502, {}, b"answer lost by the chaos proxy")
                kept = {k: v for k, v in reply.getheaders() if k.lower() not in HOP_BY_HOP}
                self._answer(reply.status, kept, data)

            def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
