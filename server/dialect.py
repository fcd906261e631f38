"""What the server speaks: ClearML's API plus modelbook's extensions, or, with
``modelbook server --clearml-strict``, only what a real ClearML server answers.

Strict mode is a harness for clients (modelbook's own HTTP backend in ClearML mode first):
the extension endpoints answer as unknown ones do on ClearML (HTTP 404, subcode 0),
``models.create`` requires ``uri``, ``tasks.edit`` replaces hyper-parameters wholesale,
``tasks.reset`` deletes the task's output models unless told not to, and ``server.info`` does
not name modelbook. A client tells the two apart by that ``server.info``: a modelbook server
adds ``modelbook`` (its version and extensions).

Example:
    >>> "models.add_version" in EXTENSIONS, "models.get_all" in EXTENSIONS
    (True, False)
"""

from __future__ import annotations

from typing import Any

from modelbook.server.envelope import NO_ENDPOINT, ApiError

#: Endpoints a real ClearML server does not have.
EXTENSIONS = frozenset({
    "models.add_version", "models.get_versions", "models.count", "models.prune_versions",
    "storage.begin_write", "storage.gc", "storage.forget", "storage.referenced",
})  # fmt: skip
#: Endpoints that answer without a token (as on ClearML).
OPEN = frozenset({"server.info", "debug.ping"})


def no_endpoint(endpoint: str, version: str) -> ApiError:
    """ClearML's answer to an endpoint it does not have."""
    return ApiError.of(
        NO_ENDPOINT, f"Unable to find endpoint for name {endpoint} and version {version}"
    )


def strict(context: dict[str, Any]) -> bool:
    """Whether the call is answered as a real ClearML server would."""
    return bool(context.get("clearml_strict"))
