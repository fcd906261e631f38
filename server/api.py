"""The API dispatcher: versioned routing, authentication, request bodies, the envelope.

Paths are ``/<service>.<action>`` or ``/v<major>.<minor>/<service>.<action>`` with versions
2.9 to 2.23 (no version means 2.23). Any method works and the body is JSON even on GET,
as ClearML's SDK sends it; query arguments are merged into the body. ``auth.login`` takes
HTTP Basic credentials and returns a token; every other call needs ``Authorization: Bearer
<token>``. Errors are answered as envelopes with ClearML's status and subcode; an unexpected
failure is logged with a request id and answered 500 without details.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelbook.errors import ModelbookError, StatementTimeoutError
from modelbook.server import credentials, dialect
from modelbook.server.bodies import check_body
from modelbook.server.envelope import (
    BAD_AUTH_TYPE,
    BAD_CREDENTIALS,
    GENERAL_ERROR,
    INVALID_CREDENTIALS,
    INVALID_VERSION,
    NO_CREDENTIALS,
    NOT_SUPPORTED,
    TOO_LARGE,
    VALIDATION_ERROR,
    ApiError,
    envelope,
    from_modelbook_error,
)
from modelbook.server.limits import LoginLimiter
from modelbook.server.services import ENDPOINTS, Call
from modelbook.server.settings import ServerSettings
from modelbook.server.tokens import API_VERSION, TokenService
from modelbook.store.sql import SqlStore

if TYPE_CHECKING:
    from modelbook.server.files import FilesServer

log = logging.getLogger("modelbook.server.api")

MIN_VERSION = (2, 9)
MAX_VERSION = (2, 23)
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")
_ENDPOINT_RE = re.compile(r"^[a-z_]+\.[a-z_]+$")
LOGIN = "auth.login"
#: A statement stopped by the server's time budget: 400, not 503 (which ClearML's SDK would
#: retry forever, and the same query would be stopped again).
OVER_BUDGET = (400, 0)


def over_budget(exc: StatementTimeoutError) -> ApiError:
    """The answer to a request whose statement ran past ``--request-timeout``.

    Example:
        >>> over_budget(StatementTimeoutError(30)).status
        400
    """
    return ApiError.of(
        OVER_BUDGET, str(exc), modelbook_error=type(exc).__name__, budget_s=exc.budget
    )


def check_version(raw: str | None) -> str:
    """The version to serve, ``"2.23"`` when the path has none.

    Raises:
        ApiError: 400/2 for a malformed version or one outside 2.9-2.23.
    """
    if raw is None:
        return API_VERSION
    match = _VERSION_RE.match(raw)
    if not match or not MIN_VERSION <= (int(match[1]), int(match[2])) <= MAX_VERSION:
        lowest, highest = ".".join(map(str, MIN_VERSION)), ".".join(map(str, MAX_VERSION))
        raise ApiError.of(
            INVALID_VERSION,
            f"request path has invalid version {raw!r}; this server speaks {lowest} to {highest}",
        )
    return raw


class TooManyLogins(Exception):
    """Logins of an access key from an address are refused for ``retry_after`` seconds.

    Example:
        >>> TooManyLogins("too many failed logins", 30).retry_after
        30
    """

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Api:
    """Answers API calls on one store.

    Args:
        settings: the server settings (request size limit).
        store: the registry store.
        tokens: issues and verifies tokens.
    """

    def __init__(
        self,
        settings: ServerSettings,
        store: SqlStore,
        tokens: TokenService,
        files: FilesServer | None = None,
    ) -> None:
        self.settings, self.store, self.tokens, self.files = settings, store, tokens, files
        self.logins = LoginLimiter()

    async def handle(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        requested = request.path_params.get("version") or API_VERSION
        actual = requested
        status, subcode, msg, error_data, data = 200, 0, "OK", None, {}
        headers: dict[str, str] = {}
        try:
            actual = check_version(request.path_params.get("version"))
            if not _ENDPOINT_RE.match(endpoint):
                raise ApiError.of(NOT_SUPPORTED, f"invalid endpoint name {endpoint[:100]!r}")
            body = await self._read_body(request)
            payload = self._parse(endpoint, request, body)
            auth = request.headers.get("authorization", "")
            context = {
                "clearml_strict": self.settings.clearml_strict,
                "host": request.headers.get("host"),
                "clearml_client": request.headers.get("x-clearml-client"),
                "stored": self.files.index if self.files else None,
                "files": self.files,
                "client": request.client.host if request.client else "",
            }
            data = await run_in_threadpool(self._process, endpoint, actual, payload, auth, context)
        except StatementTimeoutError as exc:  # in auth.login or the token check
            error = over_budget(exc)
            status, subcode, msg = error.status, error.subcode, error.msg
            error_data, data = error.error_data, {}
            log.warning("%s: %s", endpoint[:100], msg)
        except TooManyLogins as exc:  # 429 on purpose: clients wait Retry-After, then retry
            status, subcode, msg, data = 429, 0, str(exc), {}
            headers["Retry-After"] = str(exc.retry_after)
            log.warning("%s", msg)
        except ApiError as exc:
            status, subcode, msg, error_data = exc.status, exc.subcode, exc.msg, exc.error_data
            data = {}
            level = logging.WARNING if status >= 500 else logging.INFO
            log.log(level, "%s: %s/%s %s", endpoint[:100], status, subcode, msg)
        except Exception:  # never answer without an envelope: ClearML would retry forever
            request_id = uuid.uuid4().hex[:12]
            log.exception("request %s to %s failed", request_id, endpoint[:100])
            status, subcode = GENERAL_ERROR
            msg, error_data, data = f"general server error (request {request_id})", None, {}
        body = envelope(endpoint, requested, actual, data, status, subcode, msg, error_data)
        return Response(body, status_code=status, media_type="application/json",
                        headers=headers)  # fmt: skip

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_request_size
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError.of(TOO_LARGE, f"request body larger than {limit} bytes")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError.of(TOO_LARGE, f"request body larger than {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise ApiError.of(VALIDATION_ERROR, "the client disconnected") from None
        return b"".join(chunks)

    @staticmethod
    def _parse(endpoint: str, request: Request, body: bytes) -> Any:
        content_type = request.headers.get("content-type", "")
        try:
            if "json-lines" in content_type or endpoint == "events.add_batch":
                data: Any = []
                for line in body.splitlines():  # JSON lines; a line may be a JSON array
                    if line.strip():
                        item = json.loads(line)
                        data.extend(item if isinstance(item, list) else [item])
            else:
                data = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError.of(VALIDATION_ERROR, f"the request body is not JSON: {exc}") from None
        except RecursionError:
            raise ApiError.of(VALIDATION_ERROR, "the request body is nested too deeply") from None
        check_body(data, body)
        if isinstance(data, dict):
            for key in request.query_params:
                values = request.query_params.getlist(key)
                data.setdefault(key, values if len(values) > 1 else values[0])
        elif not isinstance(data, list):
            raise ApiError.of(VALIDATION_ERROR, "the request body must be a JSON object")
        return data

    def _process(
        self,
        endpoint: str,
        version: str,
        data: Any,
        auth: str,
        context: dict[str, Any] | None = None,
    ) -> Any:
        """Authenticate and run one call (in a worker thread)."""
        if endpoint == LOGIN:
            return self._login(auth, data, str((context or {}).get("client") or ""))
        claims = {} if endpoint in dialect.OPEN else self._verify(auth)
        handler = ENDPOINTS.get(endpoint)
        if handler is None or (self.settings.clearml_strict and endpoint in dialect.EXTENSIONS):
            log.info("unknown endpoint %s", endpoint)
            raise dialect.no_endpoint(endpoint, version)
        call = Call(
            endpoint, version, data, self.store, claims.get("identity") or {}, context or {}
        )
        try:
            return handler(call)
        except ApiError:
            raise
        except StatementTimeoutError as exc:
            log.warning("%s: %s", endpoint, exc)
            raise over_budget(exc) from None
        except ModelbookError as exc:
            raise from_modelbook_error(exc) from None
        except Exception:
            request_id = uuid.uuid4().hex[:12]
            log.exception("request %s to %s failed", request_id, endpoint)
            raise ApiError.of(
                GENERAL_ERROR, f"general server error (request {request_id}; see the server log)"
            ) from None

    def _verify(self, auth: str) -> dict[str, Any]:
        scheme, _, token = auth.partition(" ")
        if not auth:
            raise ApiError.of(NO_CREDENTIALS, "missing credentials: log in with auth.login first")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError.of(BAD_AUTH_TYPE, "send Authorization: Bearer <token from auth.login>")
        return self.tokens.verify(token.strip())

    def _login(self, auth: str, data: Any, client: str = "") -> dict[str, Any]:
        scheme, _, encoded = auth.partition(" ")
        if not auth:
            raise ApiError.of(NO_CREDENTIALS, "missing credentials: use HTTP Basic auth")
        if scheme.lower() != "basic":
            raise ApiError.of(BAD_AUTH_TYPE, "auth.login takes HTTP Basic credentials")
        try:
            access_key, sep, secret_key = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise ApiError.of(BAD_CREDENTIALS, "malformed Basic credentials")
        pair = (access_key[:128], client)
        wait = self.logins.retry_after(pair)
        if wait is not None:
            raise TooManyLogins(
                f"too many failed logins of access key {access_key[:40]!r} from {client}; "
                f"try again in {wait} s", wait,
            )  # fmt: skip
        identity = credentials.verify_credentials(self.store, access_key, secret_key)
        if identity is None:
            self.logins.failed(pair)
            raise ApiError.of(INVALID_CREDENTIALS, "invalid access key or secret key")
        self.logins.succeeded(pair)
        ttl = None
        if isinstance(data, dict) and data.get("expiration_sec") not in (None, ""):
            try:
                ttl = int(data["expiration_sec"])
            except (TypeError, ValueError):
                raise ApiError.of(VALIDATION_ERROR, "expiration_sec must be an integer") from None
        return {"token": self.tokens.issue(identity.access_key, identity.user, ttl)}
