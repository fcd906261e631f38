"""The UI of a ``modelbook server``, or of an embedded store (``modelbook ui``).

Example:
    >>> import tempfile
    >>> app, store = embedded_ui(Path(tempfile.mkdtemp()), token="t0ken")
    >>> [r.path for r in app.routes]
    ['/', '/ui']
    >>> store.close()
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from modelbook.backends.embedded import EmbeddedBackend
from modelbook.server.limits import LoginLimiter
from modelbook.server.settings import ServerSettings
from modelbook.server.tokens import TokenService
from modelbook.server.ui.auth import CredentialsLogin, TokenLogin
from modelbook.server.ui.downloads import Locator
from modelbook.server.ui.routes import UiConfig, create_ui, ui_routes
from modelbook.store.sql import SqlStore


def server_ui(
    settings: ServerSettings, store: SqlStore, tokens: TokenService, limiter: LoginLimiter
) -> list[BaseRoute]:
    """The routes that add the UI to the server's application: ``/`` and ``/ui/...``.

    People log in with an API access key and secret; failed log-ins count in ``limiter``
    (the API's, so both limit the same guesses). Downloads serve the files server's files.
    """
    config = UiConfig(
        store=store,
        login=CredentialsLogin(store, tokens, limiter),
        locator=Locator(files_root=settings.files_root),
        where=settings.public_url or "modelbook server",
        hint="Log in with an API access key and secret "
        "(modelbook server create-credentials makes one).",
    )
    return ui_routes(create_ui(config))


def embedded_ui(home: Path, token: str) -> tuple[Starlette, SqlStore]:
    """The application of ``modelbook ui`` over the embedded store in ``home``, and that
    store (closed when the application shuts down)."""
    store = EmbeddedBackend(home)
    config = UiConfig(
        store=store,
        login=TokenLogin(token),
        locator=Locator(driver_for=store.driver_for),
        where=str(home),
        hint="Open the URL modelbook ui printed (it carries the token), or paste its token.",
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    return Starlette(routes=ui_routes(create_ui(config)), lifespan=lifespan), store
