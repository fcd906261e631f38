"""Small services: users.get_vaults, server.info, debug.ping."""

from __future__ import annotations

from typing import Any

from modelbook import __version__
from modelbook.server import dialect
from modelbook.server.services.call import Call, Handler
from modelbook.server.tokens import API_VERSION, SERVER_VERSION


def get_vaults(call: Call) -> dict[str, Any]:
    return {"vaults": []}


def server_info(call: Call) -> dict[str, Any]:
    """ClearML's fields; a modelbook server (not in strict mode) also names itself and its
    extensions, which is how clients choose the dialect they speak."""
    info: dict[str, Any] = {
        "version": SERVER_VERSION, "api_version": API_VERSION, "build": "modelbook",
        "commit": "", "uid": "modelbook",
    }  # fmt: skip
    if not dialect.strict(call.context):
        info["modelbook"] = {"version": __version__, "extensions": sorted(dialect.EXTENSIONS)}
    else:
        info["build"] = info["uid"] = ""
    return info


def ping(call: Call) -> dict[str, Any]:
    return {}


ENDPOINTS: dict[str, Handler] = {
    "users.get_vaults": get_vaults,
    "server.info": server_info,
    "debug.ping": ping,
}
