"""The web UI's Starlette application: pages under ``/ui``, ``/`` redirecting there.

Every page and action checks the session cookie (:mod:`.auth`); without one a page
redirects to the log-in form and an action answers 403. Actions are POST forms carrying the
session's CSRF token, and they change the store through the same verbs, with the same rules,
as the API: publishing a published model is refused, a published model's weights, design and
labels stay read-only (the UI offers no way to change them), tags and the archive mark may
change. Each answer carries ``Server-Timing: app;dur=<ms>``.

Example:
    >>> from modelbook.server.ui.auth import TokenLogin
    >>> from modelbook.store.sql import SqlStore
    >>> app = create_ui(UiConfig(SqlStore("sqlite://"), TokenLogin("t"), Locator()))
    >>> [r.path for r in ui_routes(app)]
    ['/', '/ui']
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from modelbook.errors import (
    InvalidArgumentError,
    ModelbookError,
    ModelPublishedError,
    NotFoundError,
    StorageError,
)
from modelbook.server.ui import actions
from modelbook.server.ui.auth import (
    COOKIE,
    Login,
    LoginRefused,
    check_csrf,
    cookie_header,
    csrf_token,
)
from modelbook.server.ui.downloads import Locator
from modelbook.server.ui.pages import model_html, models_html
from modelbook.server.ui.pages_extra import compare_html, error_html, login_html, task_html
from modelbook.server.ui.queries import ModelFilter, models_page
from modelbook.server.ui.render import CSP, PREFIX, layout, url
from modelbook.server.ui.views import (
    compare,
    model_view,
    parse_refs,
    task_view,
    versions_before,
)
from modelbook.store.sql import SqlStore

_HEADERS = {
    "Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
}  # fmt: skip
_STATUS = [
    (actions.VersionPrunedError, 410), (NotFoundError, 404), (ModelPublishedError, 409),
    (InvalidArgumentError, 400), (StorageError, 404), (ModelbookError, 400),
]  # fmt: skip


@dataclass(frozen=True)
class UiConfig:
    """What the pages need.

    Attributes:
        store: the registry store.
        login: how people log in (:class:`~.auth.CredentialsLogin` or
            :class:`~.auth.TokenLogin`).
        locator: where versions' bytes are, for downloads.
        where: what the header says this registry is (a folder, a server).
        hint: the log-in page's help line.

    Example:
        >>> from modelbook.server.ui.auth import TokenLogin
        >>> from modelbook.store.sql import SqlStore
        >>> UiConfig(SqlStore("sqlite://"), TokenLogin("t"), Locator(), where="~/.modelbook").hint
        ''
    """

    store: SqlStore
    login: Login
    locator: Locator
    where: str = ""
    hint: str = ""


@dataclass(frozen=True)
class _Session:
    """A request's valid session: its cookie, its user, its CSRF token."""

    cookie: str
    user: str
    csrf: str


Handler = Callable[[Request], Awaitable[Response]]


class _Handlers:
    """The handlers, over one :class:`UiConfig`."""

    def __init__(self, config: UiConfig) -> None:
        self.config, self.store, self.login = config, config.store, config.login
        self.css = resources.files("modelbook.server.ui").joinpath("static/ui.css").read_bytes()

    # -- answers --------------------------------------------------------------------------
    def page(self, title: str, body: str, session: _Session | None, status: int = 200,
             notice: str = "", error: str = "") -> Response:  # fmt: skip
        html = layout(title, body, user=session.user if session else None,
                      csrf=session.csrf if session else "", notice=notice, error=error,
                      where=self.config.where)  # fmt: skip
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def failure(self, exc: ModelbookError, session: _Session | None) -> Response:
        status = next(code for kind, code in _STATUS if isinstance(exc, kind))
        return self.page("Error", error_html(str(exc)), session, status)

    # -- sessions -------------------------------------------------------------------------
    def session(self, request: Request) -> _Session | None:
        cookie = request.cookies.get(COOKIE, "")
        user = self.login.check(cookie) if cookie else None
        return _Session(cookie, user, csrf_token(self.login.key, cookie)) if user else None

    def _cookie(self, request: Request, response: Response, value: str, max_age: int) -> Response:
        secure = request.url.scheme == "https"
        response.headers.append("set-cookie", cookie_header(value, max_age, secure))
        return response

    async def _token_login(self, request: Request) -> Response | None:
        """A GET carrying ``?token=``: log in and come back without it in the URL."""
        token = request.query_params.get("token")
        if token is None:
            return None
        client = request.client.host if request.client else ""
        try:
            cookie = await run_in_threadpool(self.login.login, {"token": token}, client)
        except LoginRefused as exc:
            return self.page("Log in", login_html(self.login.fields, PREFIX + "/", ""), None,
                             429, error=str(exc))  # fmt: skip
        if cookie is None:
            body = login_html(self.login.fields, PREFIX + "/", self.config.hint)
            return self.page("Log in", body, None, 401, error="that access token is not valid")
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = request.url.path + ("?" + urlencode(rest) if rest else "")
        return self._cookie(request, RedirectResponse(target, 303), cookie, self.login.ttl)

    def guarded(self, handler: Callable[[Request, _Session], Awaitable[Response]],
                write: bool = False) -> Handler:  # fmt: skip
        """``handler`` behind the session check (and, for ``write``, the CSRF and origin
        checks), timed into ``Server-Timing``."""

        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            response = await self._check(request, handler, write)
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1e3:.1f}"
            return response

        return endpoint

    async def _check(self, request: Request, handler: Callable[[Request, _Session],
                     Awaitable[Response]], write: bool) -> Response:  # fmt: skip
        if not write:
            logged_in = await self._token_login(request)
            if logged_in is not None:
                return logged_in
        session = await run_in_threadpool(self.session, request)
        if session is None:
            if write:
                return self.page("Log in", error_html("log in first"), None, 403)
            next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{url('login')}?{urlencode({'next': next_path})}", 303)
        if write:
            form = await request.form()
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != request.headers.get("host"):
                return self.page("Error", error_html(f"refused a form sent from {origin}"),
                                 session, 403)  # fmt: skip
            if not check_csrf(self.login.key, session.cookie, str(form.get("csrf", ""))):
                return self.page("Error", error_html(
                    "this form is stale or was not sent by these pages (CSRF check failed); "
                    "reload the page and try again"), session, 403)  # fmt: skip
        try:
            return await handler(request, session)
        except ModelbookError as exc:
            return self.failure(exc, session)

    # -- log-in ---------------------------------------------------------------------------
    @staticmethod
    def _next(value: str | None) -> str:
        ok = value and value.startswith(PREFIX + "/") and "\\" not in value and "//" not in value
        return value if ok else PREFIX + "/"  # type: ignore[return-value]

    async def login_page(self, request: Request) -> Response:
        next_path = self._next(request.query_params.get("next"))
        logged_in = await self._token_login(request)
        if logged_in is not None:
            return logged_in
        if request.method == "GET":
            if await run_in_threadpool(self.session, request) is not None:
                return RedirectResponse(next_path, 303)
            return self.page("Log in", login_html(self.login.fields, next_path, self.config.hint),
                             None)  # fmt: skip
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            return self.page("Error", error_html(f"refused a log-in sent from {origin}"), None, 403)
        form = {k: str(v) for k, v in (await request.form()).items()}
        client = request.client.host if request.client else ""
        body = login_html(self.login.fields, next_path, self.config.hint)
        try:
            cookie = await run_in_threadpool(self.login.login, form, client)
        except LoginRefused as exc:
            return self.page("Log in", body, None, 429, error=str(exc))
        if cookie is None:
            wrong = " or ".join(label.lower() for _, label, _ in self.login.fields)
            return self.page("Log in", body, None, 401, error=f"wrong {wrong}")
        return self._cookie(request, RedirectResponse(next_path, 303), cookie, self.login.ttl)

    async def logout(self, request: Request, session: _Session) -> Response:
        return self._cookie(request, RedirectResponse(url("login"), 303), "", 0)

    async def static(self, request: Request) -> Response:
        if request.path_params["name"] != "ui.css":
            return Response("not found", 404, media_type="text/plain")
        return Response(self.css, media_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip

    # -- pages ----------------------------------------------------------------------------
    async def models(self, request: Request, session: _Session) -> Response:
        chosen = ModelFilter.from_params(request.query_params)
        page = await run_in_threadpool(models_page, self.store, chosen)
        return self.page("Models", models_html(page, chosen), session)

    async def model(self, request: Request, session: _Session) -> Response:
        before = versions_before(request.query_params.get("before"))
        view = await run_in_threadpool(model_view, self.store, request.path_params["model_id"])
        notice = actions.NOTICES.get(request.query_params.get("done", ""), "")
        body = model_html(view, session.csrf, before)
        return self.page(view.model.name, body, session, notice=notice)

    async def compare(self, request: Request, session: _Session) -> Response:
        params = request.query_params
        refs = parse_refs(params.getlist("v"), params.getlist("m"))
        found = await run_in_threadpool(compare, self.store, refs)
        only = params.get("only_differences") == "1"
        return self.page("Compare", compare_html(found, only, request.url.query), session)

    async def task(self, request: Request, session: _Session) -> Response:
        view = await run_in_threadpool(task_view, self.store, request.path_params["task_id"])
        return self.page(view.task.name, task_html(view), session)

    async def download(self, request: Request, session: _Session) -> Response:
        model_id, number = request.path_params["model_id"], request.path_params["version"]
        version = await run_in_threadpool(actions.find_version, self.store, model_id, number)
        located = await run_in_threadpool(self.config.locator.locate, version.uri)
        name = urlsplit(version.uri).path.rsplit("/", 1)[-1] or "weights"
        headers = {"X-Modelbook-Sha256": version.sha256} if version.sha256 else {}
        return FileResponse(
            located.path, media_type="application/octet-stream", filename=name,
            content_disposition_type="attachment", headers={**headers, **_HEADERS},
            background=BackgroundTask(located.cleanup) if located.cleanup else None,
        )  # fmt: skip

    async def act(self, request: Request, session: _Session) -> Response:
        model_id, action = request.path_params["model_id"], request.path_params["action"]
        form = await request.form()
        done = await run_in_threadpool(actions.apply, self.store, model_id, action,
                                       str(form.get("tag", "")))  # fmt: skip
        return RedirectResponse(f"{url('models', model_id)}?done={done}", 303)


def create_ui(config: UiConfig) -> Starlette:
    """The UI application, to mount at :data:`~.render.PREFIX` (see :func:`ui_routes`)."""
    app = _Handlers(config)
    guard = app.guarded
    routes: list[BaseRoute] = [
        Route("/", guard(app.models)),
        Route("/login", app.login_page, methods=["GET", "POST"]),
        Route("/logout", guard(app.logout, write=True), methods=["POST"]),
        Route("/static/{name}", app.static),
        Route("/models/{model_id}", guard(app.model)),
        Route("/models/{model_id}/versions/{version:int}/download", guard(app.download)),
        Route("/models/{model_id}/{action:path}", guard(app.act, write=True), methods=["POST"]),
        Route("/compare", guard(app.compare)),
        Route("/tasks/{task_id}", guard(app.task)),
    ]
    return Starlette(routes=routes)


def ui_routes(ui: Any) -> list[BaseRoute]:
    """Routes to add to an application: ``/`` redirects to the UI, mounted at ``/ui``."""

    async def home(request: Request) -> Response:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{PREFIX}/{query}", 307)

    return [Route("/", home), Mount(PREFIX, app=ui)]
