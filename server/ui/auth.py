"""Who may see the pages: a session cookie, set by a log-in, checked on every request.

Two ways in, one cookie:

* :class:`CredentialsLogin` (``modelbook server``): an API access key and secret, checked as
  ``auth.login`` checks them (scrypt, constant time, failed attempts limited per key and
  address); the cookie holds a token of the server's :class:`~modelbook.server.tokens.
  TokenService`, so revoking the key ends the session within a minute.
* :class:`TokenLogin` (``modelbook ui``): a random access token printed in the URL, as
  Jupyter does; the cookie holds an HMAC-signed expiry, valid for this process only.

The cookie is ``HttpOnly`` and ``SameSite=Strict`` (``Secure`` over https). Every form that
changes something carries a CSRF token derived from the session (an HMAC of it), and a POST
whose ``Origin`` names another host is refused.

Example:
    >>> login = TokenLogin("s3cret-token")
    >>> session = login.login({"token": "s3cret-token"}, client="127.0.0.1")
    >>> login.check(session)
    'local'
    >>> login.login({"token": "wrong"}, client="127.0.0.1") is None
    True
    >>> check_csrf(login.key, session, csrf_token(login.key, session))
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping

from modelbook.server.credentials import verify_credentials
from modelbook.server.envelope import ApiError
from modelbook.server.limits import LoginLimiter
from modelbook.server.tokens import TokenService, signing_key
from modelbook.store.sql import SqlStore

#: The session cookie's name.
COOKIE = "modelbook_ui"


class LoginRefused(Exception):
    """Too many failed log-ins from this address: the message says how long to wait.

    Example:
        >>> str(LoginRefused("try again in 30 s"))
        'try again in 30 s'
    """


class Login(ABC):
    """How people log in, and how their session cookie is made and checked.

    Attributes:
        fields: the log-in form's fields, ``(name, label, input type)``.
        key: the secret the CSRF tokens are derived with.
        ttl: session lifetime, seconds.

    Example:
        >>> [name for name, _, _ in TokenLogin("t").fields]
        ['token']
    """

    fields: tuple[tuple[str, str, str], ...] = ()
    key: bytes = b""
    ttl: int = 24 * 3600

    def __init__(self, limiter: LoginLimiter | None = None) -> None:
        self.limiter = limiter or LoginLimiter()

    def login(self, form: Mapping[str, str], client: str) -> str | None:
        """The session cookie's value for a good log-in, None for a bad one.

        Raises:
            LoginRefused: too many failed attempts of this key from ``client``.
        """
        pair = (self._who(form)[:128], client)
        wait = self.limiter.retry_after(pair)
        if wait is not None:
            raise LoginRefused(f"too many failed log-ins from {client}; try again in {wait} s")
        session = self._login(form)
        if session is None:
            self.limiter.failed(pair)
        else:
            self.limiter.succeeded(pair)
        return session

    def _who(self, form: Mapping[str, str]) -> str:
        return ""

    @abstractmethod
    def _login(self, form: Mapping[str, str]) -> str | None:
        """The session for a good log-in."""

    @abstractmethod
    def check(self, session: str) -> str | None:
        """The user a session cookie belongs to, or None when it is not valid (any more)."""


class CredentialsLogin(Login):
    """Log in with an API access key and secret (``modelbook server``).

    Args:
        store: the server's store (credentials).
        tokens: the server's token service; sessions are its tokens.
        limiter: the API's failed-login limiter, shared so both count the same attempts.

    Example:
        >>> from modelbook.server.credentials import create_credentials
        >>> store = SqlStore("sqlite://")
        >>> cred = create_credentials(store, user="ana")
        >>> login = CredentialsLogin(store, TokenService(store, ttl=3600))
        >>> form = {"access_key": cred.access_key, "secret_key": cred.secret_key}
        >>> login.check(login.login(form, client="10.0.0.1"))
        'ana'
    """

    fields = (("access_key", "Access key", "text"), ("secret_key", "Secret key", "password"))

    def __init__(
        self, store: SqlStore, tokens: TokenService, limiter: LoginLimiter | None = None
    ) -> None:
        super().__init__(limiter)
        self.store, self.tokens, self.ttl = store, tokens, tokens.ttl
        self.key = hashlib.sha256(b"modelbook-ui-csrf" + signing_key(store)).digest()

    def _who(self, form: Mapping[str, str]) -> str:
        return form.get("access_key", "")

    def _login(self, form: Mapping[str, str]) -> str | None:
        identity = verify_credentials(
            self.store, form.get("access_key", "").strip(), form.get("secret_key", "")
        )
        if identity is None:
            return None
        return self.tokens.issue(identity.access_key, identity.user)

    def check(self, session: str) -> str | None:
        try:
            claims = self.tokens.verify(session)
        except ApiError:
            return None
        return str((claims.get("identity") or {}).get("user") or claims["sub"])


class TokenLogin(Login):
    """Log in with the access token ``modelbook ui`` printed (the URL's ``?token=``).

    Args:
        token: the access token.
        ttl: session lifetime, seconds.
        user: the name the pages show.

    Example:
        >>> login = TokenLogin("t0ken", user="ana")
        >>> login.check(login.login({"token": "t0ken"}, client="::1"))
        'ana'
        >>> login.check("forged.cookie.value") is None
        True
    """

    fields = (("token", "Access token", "password"),)

    def __init__(self, token: str, ttl: int = 24 * 3600, user: str = "local") -> None:
        super().__init__()
        self.token, self.ttl, self.user = token, ttl, user
        self.key = secrets.token_bytes(32)

    def _login(self, form: Mapping[str, str]) -> str | None:
        given = form.get("token", "").strip().encode()
        if not given or not hmac.compare_digest(given, self.token.encode()):
            return None
        payload = f"{int(time.time()) + self.ttl}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{_sign(self.key, payload)}"

    def check(self, session: str) -> str | None:
        payload, _, signature = session.rpartition(".")
        expiry = payload.partition(".")[0]
        if not payload or not hmac.compare_digest(signature, _sign(self.key, payload)):
            return None
        return self.user if expiry.isdigit() and int(expiry) > time.time() else None


def _sign(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_token(key: bytes, session: str) -> str:
    """The CSRF token of a session: forms that change something must send it back."""
    return _sign(key, "csrf:" + session)


def check_csrf(key: bytes, session: str, token: str) -> bool:
    """Whether ``token`` is the CSRF token of ``session`` (constant time)."""
    return bool(session) and hmac.compare_digest(token.encode(), csrf_token(key, session).encode())


def cookie_header(session: str, max_age: int, secure: bool) -> str:
    """The ``Set-Cookie`` value for a session (``max_age`` 0 deletes the cookie).

    Example:
        >>> cookie_header("abc", 60, secure=False)
        'modelbook_ui=abc; Max-Age=60; Path=/; HttpOnly; SameSite=Strict'
    """
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={session}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{flags}"
