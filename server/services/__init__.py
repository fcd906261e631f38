"""The API endpoints, one module per ClearML service, merged into one table."""

from __future__ import annotations

from modelbook.server.services import (
    events,
    misc,
    models,
    projects,
    storage,
    task_ops,
    task_parts,
    tasks,
)
from modelbook.server.services.call import Call, Handler

ENDPOINTS: dict[str, Handler] = {
    **projects.ENDPOINTS,
    **tasks.ENDPOINTS,
    **task_parts.ENDPOINTS,
    **task_ops.ENDPOINTS,
    **models.ENDPOINTS,
    **misc.ENDPOINTS,
    **events.ENDPOINTS,
    **storage.ENDPOINTS,
}

__all__ = ["ENDPOINTS", "Call", "Handler"]
