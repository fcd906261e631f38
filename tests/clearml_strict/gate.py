"""An HTTP proxy on 127.0.0.1 in front of ``modelbook server --clearml-strict`` that holds a
client to the real ClearML server's schema (:mod:`.schema`): each API request is checked
(a violation is recorded and answered 400, so the client fails where it went wrong) and each
reply reduced to the fields a real server sends. Files traffic passes untouched.
"""

from __future__ import annotations

import json
import re
import threading

from modelbook.server.testing import Forward, HttpRelay

from .schema import check_request, reduce_reply

_API_PATH = re.compile(r"^/(?:v(?P<version>\d+\.\d+)/)?(?P<endpoint>[a-z_]+\.[a-z_]+)(?:\?.*)?$")
VERSION = "2.23"  # what the SDK 2.1.12 and modelbook call


class SchemaGate(HttpRelay):
    """Forwards to ``127.0.0.1:target_port``, checked against ClearML's schema.

    Attributes:
        violations: ``"<endpoint>: <what>"`` for every request a real server would not have
            taken as meant.
        calls: the endpoints called, in order.
    """

    def __init__(self, target_port: int) -> None:
        self.violations: list[str] = []
        self.calls: list[str] = []
        self._lock = threading.Lock()
        super().__init__(target_port)

    def handle(
        self, method: str, path: str, body: bytes, forward: Forward
    ) -> tuple[int, dict[str, str], bytes]:
        match = _API_PATH.match(path)
        if not match or match["endpoint"] == "auth.login":
            return forward()
        endpoint, version = match["endpoint"], match["version"] or VERSION
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:  # events.add_batch: JSON lines
            payload = [json.loads(line) for line in body.splitlines() if line.strip()]
        found = check_request(endpoint, version, payload)
        with self._lock:
            self.calls.append(endpoint)
            self.violations += found
        if found:
            meta = {"result_code": 400, "result_subcode": 0,
                    "result_msg": "schema gate: " + "; ".join(found)}  # fmt: skip
            return 400, {"Content-Type": "application/json"}, json.dumps(
                {"meta": meta, "data": {}}
            ).encode()
        status, headers, data = forward()
        if status == 200:
            answer = json.loads(data)
            answer["data"] = reduce_reply(endpoint, version, answer.get("data"))
            data = json.dumps(answer).encode()
        return status, headers, data
