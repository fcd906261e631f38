"""Calling an ASGI application in-process, without a socket: for tests and benchmarks.

Example:
    >>> from starlette.applications import Starlette
    >>> from starlette.responses import PlainTextResponse
    >>> from starlette.routing import Route
    >>> app = Starlette(routes=[Route("/", lambda r: PlainTextResponse("hi"))])
    >>> call(app, "GET", "/").body
    b'hi'
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    """An application's answer: status, headers (names in lower case; ``set-cookie`` may
    repeat, the last one wins here), body.

    Example:
        >>> Answer(200, {}, b"ok").text
        'ok'
    """

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def acall(app: Any, method: str, target: str, headers: Mapping[str, str] | None = None,
                body: bytes = b"", scheme: str = "http") -> Answer:  # fmt: skip
    """Send one request to ``app`` and collect its whole answer (``scheme`` is what the
    request arrived over: ``https`` behind a TLS proxy)."""
    parts = urlsplit(target)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": scheme, "path": parts.path, "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(), "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in
                    {"host": "testserver", **(headers or {})}.items()],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    sent = False
    status, out_headers, chunks = 0, {}, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # the client never disconnects during a call
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers.update({k.decode().lower(): v.decode() for k, v in message["headers"]})
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await asyncio.wait_for(app(scope, receive, send), timeout=60)
    return Answer(status, out_headers, b"".join(chunks))


def call(app: Any, method: str, target: str, headers: Mapping[str, str] | None = None,
         body: bytes = b"", scheme: str = "http") -> Answer:  # fmt: skip
    """:func:`acall` from synchronous code (a new event loop per call)."""
    return asyncio.run(acall(app, method, target, headers, body, scheme))
