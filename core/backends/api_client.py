"""The API client: the single place where modelbook makes ClearML API requests.

:class:`ApiClient` talks to a ``modelbook server`` (or, for the ClearML calls, a ClearML
server):

* one ``requests.Session`` per process (:func:`shared_session`), with urllib3 ``Retry`` on
  connection failures and on 408/429/502/503/504 answers (bounded: 5 tries, back-off capped
  at 10 s);
* :meth:`ApiClient.fail_fast`: within it, one attempt with short timeouts (the training
  thread's calls, which are deferred when they fail), and :meth:`ApiClient.reachable`, a probe;
* ClearML authentication: ``auth.login`` with HTTP Basic credentials gives a JWT, renewed
  6 minutes before it expires and once after a 401;
* every failure becomes a modelbook exception carrying the endpoint and the server's
  message: :class:`~modelbook.errors.RegistryError`, or for unknown ids
  :class:`~modelbook.errors.ModelNotFoundError` / :class:`~modelbook.errors.TaskNotFoundError`
  (a modelbook server also names the store's own exception, which is raised again here, so
  both backends fail the same way).

``requests`` is imported on first use, so importing this module stays light.

Example:
    >>> client = ApiClient("http://127.0.0.1:8008", "KEY", "SECRET")
    >>> client
    ApiClient('http://127.0.0.1:8008', access_key='KEY')
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from modelbook import errors
from modelbook.errors import ModelNotFoundError, RegistryError, TaskNotFoundError

if TYPE_CHECKING:
    import requests

#: The API version modelbook speaks (the highest the clearml 2.1.12 SDK knows).
API_VERSION = "2.23"
#: Renew the token this many seconds before it expires (ClearML's SDK uses the same).
REFRESH_BEFORE = 360
#: (connect, read) timeouts of API calls, in seconds.
TIMEOUT = (10.0, 120.0)
#: The same, for calls made under :meth:`ApiClient.fail_fast` and for the probe.
FAST_TIMEOUT = (2.0, 10.0)
RETRY_STATUSES = (408, 429, 502, 503, 504)
#: Calls that must not be sent again after an error answer (the server may have done them
#: and only the answer was lost): the caller retries them the idempotent way (see
#: :mod:`modelbook.deferred` and the upload queue).
SEND_ONCE = frozenset({"projects.create", "tasks.create", "models.create", "models.add_version"})

#: Exceptions a modelbook server names in ``meta.error_data`` that are raised again here.
_REBUILDABLE = (
    "InvalidArgumentError", "TagFilterError", "NotFoundError", "TaskNotFoundError",
    "ProjectNotFoundError", "ModelPublishedError",
)  # fmt: skip

#: ``models.delete`` without force: ClearML's refusals (model_is_ready, model_in_use,
#: model_creating_task_exists), as :class:`~modelbook.errors.ModelInUseError` reasons.
_DELETE_REFUSALS: dict[tuple[Any, Any], str] = {
    (400, 203): "published", (400, 205): "in_use", (400, 206): "task_published",
}  # fmt: skip

_session_lock = threading.Lock()
_sessions: dict[tuple[int, bool, bool], requests.Session] = {}
_fast: ContextVar[bool] = ContextVar("modelbook_fail_fast", default=False)


def shared_session(replayable: bool = True, retries: bool = True) -> requests.Session:
    """This process's ``requests.Session`` (a forked child makes its own).

    Args:
        replayable: True for requests whose body urllib3 can send again, which get retries
            on 408/429/502/503/504 answers; False for streamed uploads, which are retried
            only when the connection could not be made (nothing was sent yet).
        retries: False for a session that tries each request once.
    """
    key = (os.getpid(), replayable, retries)
    with _session_lock:
        session = _sessions.get(key)
        if session is None:
            import requests
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            tries = 5 if retries else 0
            retry = Retry(
                total=tries, connect=tries, read=0, other=0, status=tries if replayable else 0,
                backoff_factor=0.5, backoff_max=10, allowed_methods=None,
                status_forcelist=RETRY_STATUSES if replayable else (),
                raise_on_status=False, respect_retry_after_header=True,
            )  # fmt: skip
            session = requests.Session()
            adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=16)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            for stale in [k for k in _sessions if k[0] != key[0]]:
                del _sessions[stale]  # inherited from the parent over fork; never closed here
            _sessions[key] = session
        return session


def _token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without checking the signature (as ClearML does)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _rebuild(name: str, message: str) -> errors.ModelbookError:
    """The modelbook exception ``name`` with exactly the server's message."""
    cls = getattr(errors, name)
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    return exc


class ApiClient:
    """Calls ClearML API endpoints: the single place where modelbook makes API requests.

    Args:
        api_host: the API server's base URL.
        access_key / secret_key: API credentials.
        timeout: ``(connect, read)`` seconds.
    """

    def __init__(
        self,
        api_host: str,
        access_key: str,
        secret_key: str,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self.api_host, self.timeout = api_host, timeout
        self._auth = (access_key, secret_key)
        self._token: str | None = None
        self._expires: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the secret
        return f"ApiClient({self.api_host!r}, access_key={self._auth[0]!r})"

    @staticmethod
    @contextmanager
    def fail_fast() -> Iterator[None]:
        """Calls made in this context (this thread) try once, with short timeouts."""
        reset = _fast.set(True)
        try:
            yield
        finally:
            _fast.reset(reset)

    def reachable(self) -> bool:
        """Whether anything answers HTTP at the API host: one try, a few seconds at most."""
        import requests

        try:
            shared_session(retries=False).get(f"{self.api_host}/debug.ping", timeout=FAST_TIMEOUT)
        except requests.RequestException:
            return False
        return True

    # -- tokens ---------------------------------------------------------------------------
    def token(self, renew: bool = False) -> str:
        """A valid token, logging in when there is none or it expires within 6 minutes."""
        with self._lock:
            stale = self._expires is not None and self._expires - time.time() < REFRESH_BEFORE
            if renew or self._token is None or stale:
                self._token = self._login()
                self._expires = _token_expiry(self._token)
            return self._token

    def _login(self) -> str:
        endpoint = "auth.login"
        response = self._send("GET", f"{self.api_host}/{endpoint}", endpoint, auth=self._auth)
        meta, data = self._decode(endpoint, response)
        if response.status_code != 200 or not isinstance(data.get("token"), str):
            raise RegistryError(
                endpoint,
                f"log-in refused: {meta.get('result_msg') or response.reason}; check the access "
                "and secret keys (modelbook server create-credentials makes new ones)",
                response.status_code,
            )
        return data["token"]

    # -- calls ----------------------------------------------------------------------------
    def _send(self, method: str, url: str, endpoint: str, **kwargs: Any) -> requests.Response:
        import requests

        fast = _fast.get()
        kwargs.setdefault("timeout", FAST_TIMEOUT if fast else self.timeout)
        session = shared_session(replayable=endpoint not in SEND_ONCE, retries=not fast)
        try:
            return session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            raise RegistryError(
                endpoint, f"cannot reach {self.api_host}: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _decode(endpoint: str, response: requests.Response) -> tuple[dict, dict]:
        try:
            body = response.json()
            meta, data = body["meta"], body.get("data")
        except (ValueError, KeyError, TypeError):
            text = response.text[:300].strip() or response.reason
            raise RegistryError(
                endpoint, f"not a ClearML API answer: {text}", response.status_code
            ) from None
        return meta or {}, data if isinstance(data, dict) else {}

    def call(
        self, endpoint: str, body: dict[str, Any] | None = None,
        lines: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Call ``endpoint`` with a JSON body (or, ``lines``, a batch: one JSON object per
        line, as ``events.add_batch`` takes it) and return the reply's ``data``.

        Raises:
            ModelNotFoundError / TaskNotFoundError: the call named an unknown id.
            RegistryError: any other failure, with the server's message.
        """
        url = f"{self.api_host}/v{API_VERSION}/{endpoint}"
        body = body or {}
        payload: dict[str, Any] = {"json": body}
        if lines is not None:
            payload = {"data": "\n".join(json.dumps(line) for line in lines).encode()}
        response = None
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.token(renew=attempt > 0)}"}
            if lines is not None:
                headers["Content-Type"] = "application/json-lines"
            response = self._send("POST", url, endpoint, headers=headers, **payload)
            if response.status_code != 401:
                break
        assert response is not None
        meta, data = self._decode(endpoint, response)
        if meta.get("result_code", response.status_code) == 200 and response.status_code == 200:
            return data
        raise self._error(endpoint, response.status_code, meta, body)

    @staticmethod
    def _error(endpoint: str, status: int, meta: dict, body: dict) -> errors.ModelbookError:
        code, sub = meta.get("result_code", status), meta.get("result_subcode")
        message = str(meta.get("result_msg") or f"HTTP {status}")
        extra = meta.get("error_data") or {}
        name = extra.get("modelbook_error") if isinstance(extra, dict) else None
        if name == "ModelNotFoundError" or (code, sub) == (400, 201):
            return ModelNotFoundError(str(extra.get("model_id") or body.get("model") or ""))
        if name in _REBUILDABLE:
            return _rebuild(name, message)
        budget = extra.get("budget_s") if isinstance(extra, dict) else None
        if name == "StatementTimeoutError" and isinstance(budget, (int, float)):
            stopped = _rebuild(name, message)
            stopped.budget = float(budget)  # type: ignore[attr-defined]
            return stopped
        if (code, sub) == (400, 101):
            return TaskNotFoundError(f"with id {body.get('task')!r}")
        refusal = _DELETE_REFUSALS.get((code, sub)) if endpoint == "models.delete" else None
        if refusal:
            return errors.ModelInUseError(message, refusal)
        transient = extra.get("transient") if isinstance(extra, dict) else None
        return RegistryError(endpoint, message, status,
                             transient=transient if isinstance(transient, bool) else None)
