"""The real ClearML server's API schema (``clearml_server_schema.json``, copied from
``shared/reference``: clearml-server 2.0.0, API 2.31, as the SDK 2.1.12 calls it at /v2.23/):
is a request one that server takes as meant, and what of a reply would it have sent.

The notation is the file's ``_meta.type_notation``. Stricter than the server on purpose: an
unknown top-level field fails (the server would drop it silently: data lost), as does a
wrong type or a missing required field. ``null`` passes for any field, as it does there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA: dict[str, Any] = json.loads(
    Path(__file__).with_name("clearml_server_schema.json").read_text()
)
_PLAIN = {
    "string": lambda v: isinstance(v, str),
    "datetime": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "any": lambda v: True,
    "null": lambda v: v is None,
}


def form(endpoint: str, version: str) -> dict[str, Any] | None:
    """``{request, required, response}`` of ``endpoint`` as served at ``version``, or None
    where the server has no such endpoint (it answers 404)."""
    spec = SCHEMA.get(endpoint)
    at = spec["at"].get(version) if spec else None
    if at is None:
        return None
    if at == spec["versions"][-1]:  # type: ignore[index]
        return spec
    # an older form the reference does not record (events.get_task_log 2.9): the newest
    return spec.get("older", {}).get(at, spec)  # type: ignore[union-attr]


def problems(value: Any, kind: Any, where: str) -> list[str]:
    """Why ``value`` is not of type ``kind`` (empty when it is)."""
    if value is None:
        return []
    if isinstance(kind, str):
        if any(_PLAIN[k](value) for k in kind.split("|")):
            return []
        return [f"{where}: {type(value).__name__} {_short(value)} is not {kind}"]
    if "enum" in kind:
        return [] if value in kind["enum"] else [f"{where}: {value!r} not in {kind['enum']}"]
    if "anyOf" in kind:
        return [] if any(not problems(value, k, where) for k in kind["anyOf"]) else [
            f"{where}: {_short(value)} matches none of {kind['anyOf']}"
        ]  # fmt: skip
    if "ref" in kind:
        return []
    if "array" in kind:
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {_short(value)}"]
        return [p for i, v in enumerate(value) for p in problems(v, kind["array"], f"{where}[{i}]")]
    if "map" in kind:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {_short(value)}"]
        return [p for k, v in value.items() for p in problems(v, kind["map"], f"{where}.{k}")]
    if "object" in kind:
        return _object(value, kind["object"], kind.get("required", []), kind.get("extra", True),
                       where)  # fmt: skip
    raise ValueError(f"unknown type notation at {where}: {kind!r}")


def _object(value: Any, fields: dict, required: list, extra: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {_short(value)}"]
    found = [f"{where}: missing required field {k!r}" for k in required if value.get(k) is None]
    for key, item in value.items():
        if key in fields:
            found += problems(item, fields[key], f"{where}.{key}")
        elif extra is False:
            found.append(f"{where}: unknown field {key!r}")
        elif extra is not True:
            found += problems(item, extra, f"{where}.{key}")
    return found


def check_request(endpoint: str, version: str, body: Any) -> list[str]:
    """Everything about this request a real server would not take as meant."""
    spec = form(endpoint, version)
    if spec is None:
        return [f"{endpoint}: no such endpoint at API {version} (a real server answers 404)"]
    if isinstance(body, list):  # events.add_batch: a batch of events, checked by the SDK
        return []
    found = _object(body, spec["request"], spec.get("required", []), False, endpoint)
    return [p for p in found if not _dotted_filter(endpoint, p)]


def _dotted_filter(endpoint: str, problem: str) -> bool:
    """``metadata.<key>.value`` and other dotted keys are filters of ``*.get_all``."""
    return endpoint.endswith(("get_all", "get_all_ex")) and "unknown field '" in problem and (
        "." in problem.split("unknown field '", 1)[1]
    )


def reduce(value: Any, kind: Any) -> Any:
    """``value`` with only what the schema declares (what a real server would return)."""
    if not isinstance(kind, dict) or value is None:
        return value
    if "array" in kind and isinstance(value, list):
        return [reduce(v, kind["array"]) for v in value]
    if "map" in kind and isinstance(value, dict):
        return {k: reduce(v, kind["map"]) for k, v in value.items()}
    if "object" in kind and isinstance(value, dict):
        fields = kind["object"]
        return {k: reduce(v, fields[k]) for k, v in value.items() if k in fields}
    return value


def reduce_reply(endpoint: str, version: str, data: Any) -> Any:
    spec = form(endpoint, version)
    if spec is None or not isinstance(data, dict):
        return data
    return reduce(data, {"object": spec.get("response") or {}})


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
