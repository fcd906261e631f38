"""The API endpoints, one module per ClearML service, merged into one table."""

from __future__ import annotations

from modelbook.server.services import misc, models, projects, storage, tasks
from modelbook.server.services.call import Call, Handler

ENDPOINTS: dict[str, Handler] = {
    **projects.ENDPOINTS,
    **tasks.ENDPOINTS,
    **models.ENDPOINTS,
    **misc.ENDPOINTS,
    **storage.ENDPOINTS,
}

__all__ = ["ENDPOINTS", "Call", "Handler"]
