"""Session tokens: HS256 JWTs signed with a per-server key kept in the store.

ClearML's SDK decodes the token without checking the signature to read ``api_version``,
``feature_set`` and ``exp``; the server checks everything: signature, algorithm, issuer,
expiry, and that the access key it names is still active (re-checked every minute).

Example:
    >>> from modelbook.store.sql import SqlStore
    >>> from modelbook.server.credentials import create_credentials
    >>> store = SqlStore("sqlite://")
    >>> cred = create_credentials(store)
    >>> tokens = TokenService(store, ttl=3600)
    >>> token = tokens.issue(cred.access_key, "modelbook")
    >>> tokens.verify(token)["sub"] == cred.access_key
    True
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import jwt

from modelbook.server.credentials import SettingsStore, key_is_active
from modelbook.server.envelope import INVALID_TOKEN, ApiError

_KEY_SETTING = "server.jwt_signing_key"
_ISSUER = "modelbook-server"
#: The API version announced in tokens; ClearML's SDK then calls ``/v2.23/...``.
API_VERSION = "2.23"
#: The ClearML server version this server behaves like (the SDK gates features on it).
SERVER_VERSION = "2.0.0"
_KEY_CHECK_SECONDS = 60.0


def signing_key(store: SettingsStore) -> bytes:
    """The server's signing key, created (256 random bits) on first use."""
    value = store.get_setting(_KEY_SETTING)
    if value is None:
        store.set_setting(_KEY_SETTING, secrets.token_hex(32))
        value = store.get_setting(_KEY_SETTING)
    return bytes.fromhex(value or "")


class TokenService:
    """Issues and verifies tokens for one server.

    Args:
        store: the store holding the signing key and the credentials.
        ttl: token lifetime in seconds.
    """

    def __init__(self, store: SettingsStore, ttl: int) -> None:
        self.store, self.ttl = store, ttl
        self._key = signing_key(store)
        self._active: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, access_key: str, user: str, ttl: int | None = None) -> str:
        """A signed token for ``access_key``, valid for ``ttl`` (at most the server's)."""
        now = int(time.time())
        lifetime = min(int(ttl), self.ttl) if ttl else self.ttl
        claims = {
            "iss": _ISSUER,
            "sub": access_key,
            "iat": now,
            "exp": now + max(lifetime, 1),
            "jti": secrets.token_hex(8),
            "identity": {
                "user": user,
                "company": "modelbook",
                "role": "user",
                "user_name": user,
                "company_name": "modelbook",
            },
            "api_version": API_VERSION,
            "server_version": SERVER_VERSION,
            "feature_set": "basic",
            "env": "modelbook",
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token.

        Raises:
            ApiError: 401/30 for a forged, malformed, expired or revoked token.
        """
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError.of(INVALID_TOKEN, "Token expired") from None
        except jwt.PyJWTError:
            raise ApiError.of(INVALID_TOKEN, "Invalid token") from None
        if not self._still_active(claims["sub"]):
            raise ApiError.of(INVALID_TOKEN, "Invalid token: its access key was revoked")
        return claims

    def _still_active(self, access_key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            checked = self._active.get(access_key)
        if checked is not None and now - checked < _KEY_CHECK_SECONDS:
            return True
        if not key_is_active(self.store, access_key):
            return False
        with self._lock:
            self._active[access_key] = now
        return True
