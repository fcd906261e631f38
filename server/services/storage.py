"""``storage.*`` (modelbook's own service): ownership of stored objects.

* ``storage.begin_write`` ``{uri, sha256, size}``: a client is about to write ``uri`` for
  the registry (recorded as pending, before any byte is written).
* ``storage.gc`` ``{pending_grace, dry_run}`` → ``{doomed, partials}``: owned objects nothing
  references (those this files server holds are deleted here; ``doomed`` lists the others,
  for the client to delete) and partial uploads a crash left in the files server.
* ``storage.forget`` ``{uris}``: the client deleted these doomed objects' bytes.
* ``storage.referenced`` ``{uri}`` → ``{referenced}``: whether a model or version names it.
"""

from __future__ import annotations

from typing import Any

from modelbook.server.envelope import VALIDATION_ERROR, ApiError
from modelbook.server.services.call import Call, Handler
from modelbook.server.services.models import delete_own_objects


def begin_write(call: Call) -> dict[str, Any]:
    call.store.begin_object_write(
        call.string("uri", required=True) or "", call.string("sha256"), call.integer("size")
    )
    return {"recorded": True}


#: The longest ``pending_grace`` (seconds): longer ones would overflow a date.
MAX_GRACE = 10**9


def gc(call: Call) -> dict[str, Any]:
    grace = call.get("pending_grace", 86400.0)
    number = isinstance(grace, (int, float)) and not isinstance(grace, bool)
    if not number or not 0 <= grace <= MAX_GRACE:  # NaN fails the comparison too
        raise ApiError.of(VALIDATION_ERROR, f"field 'pending_grace' must be a number of seconds "
                          f"from 0 to {MAX_GRACE} (about 30 years), got {grace!r:.40}")
    dry_run = bool(call.boolean("dry_run", False))
    found = call.store.collect_garbage(float(grace), dry_run=dry_run)
    files = call.context.get("files")
    partials = files.remove_stale_tmp(float(grace), dry_run) if files else []
    return {
        "doomed": found.doomed if dry_run else delete_own_objects(call, found.doomed),
        "partials": [p.name for p in partials],
    }


def referenced(call: Call) -> dict[str, Any]:
    return {"referenced": call.store.is_referenced(call.string("uri", required=True) or "")}


def forget(call: Call) -> dict[str, Any]:
    call.store.forget_objects(call.string_list("uris") or [])
    return {"forgotten": True}


ENDPOINTS: dict[str, Handler] = {
    "storage.begin_write": begin_write,
    "storage.gc": gc,
    "storage.forget": forget,
    "storage.referenced": referenced,
}
