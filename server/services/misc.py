"""Small services: events (accepted, not kept), users.get_vaults, server.info, debug.ping."""

from __future__ import annotations

from typing import Any

from modelbook.server.services.call import Call, Handler
from modelbook.server.tokens import API_VERSION, SERVER_VERSION


def add_batch(call: Call) -> dict[str, Any]:
    """Console logs and scalars: counted and dropped (modelbook keeps no metrics)."""
    events = call.data if isinstance(call.data, list) else call.get("requests") or []
    return {"added": len(events), "errors": 0, "errors_info": {}}


def get_vaults(call: Call) -> dict[str, Any]:
    return {"vaults": []}


def server_info(call: Call) -> dict[str, Any]:
    return {
        "version": SERVER_VERSION,
        "api_version": API_VERSION,
        "build": "modelbook",
        "commit": "",
        "uid": "modelbook",
    }


def ping(call: Call) -> dict[str, Any]:
    return {}


ENDPOINTS: dict[str, Handler] = {
    "events.add_batch": add_batch,
    "events.add": add_batch,
    "users.get_vaults": get_vaults,
    "server.info": server_info,
    "debug.ping": ping,
}
