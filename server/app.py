"""The ASGI application: the API at the root, the files server under ``/files``, the web UI
at ``/`` and ``/ui/...`` (:mod:`modelbook.server.ui`).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> app = create_app(ServerSettings(db_url=f"sqlite:///{folder}/r.db", files_root=folder / "f"))
    >>> sorted(r.path for r in app.routes)[:3]
    ['/', '/files', '/files/{path:path}']
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from modelbook.server.api import Api
from modelbook.server.files import FilesServer
from modelbook.server.settings import ServerSettings
from modelbook.server.tokens import TokenService
from modelbook.server.ui.mount import server_ui
from modelbook.store.sql import SqlStore

_API_METHODS = ["GET", "POST", "PUT"]
_FILES_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]


def create_app(settings: ServerSettings, store: SqlStore | None = None) -> Starlette:
    """Build the application on a store (opened from ``settings.db_url`` if not given)."""
    store = store or SqlStore(settings.db_url, statement_timeout=settings.request_timeout)
    tokens = TokenService(store, settings.token_ttl)
    files = FilesServer(settings, tokens, store)
    api = Api(settings, store, tokens, files)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    routes = [
        Route("/files", files.handle, methods=_FILES_METHODS),
        Route("/files/{path:path}", files.handle, methods=_FILES_METHODS),
        *server_ui(settings, store, tokens, api.logins),  # the web UI: "/" and "/ui/..."
        Route("/v{version}/{endpoint}", api.handle, methods=_API_METHODS),
        Route("/{endpoint}", api.handle, methods=_API_METHODS),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def create_app_from_env() -> Starlette:
    """The application factory uvicorn worker processes call (settings from the env)."""
    return create_app(ServerSettings.from_env())
