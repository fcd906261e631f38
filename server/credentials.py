"""API credentials: access keys with scrypt-hashed secrets, kept in the store's settings.

A secret is shown once, when it is created, and stored only as
``scrypt$<n>$<r>$<p>$<salt>$<hash>``. Checking a wrong key costs as much as checking a
right one, so timing does not reveal which access keys exist.

Example:
    >>> from modelbook.store.sql import SqlStore
    >>> store = SqlStore("sqlite://")
    >>> cred = create_credentials(store, user="ci")
    >>> verify_credentials(store, cred.access_key, cred.secret_key).user
    'ci'
    >>> verify_credentials(store, cred.access_key, "wrong") is None
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

_PREFIX = "server.credential."
_INDEX = "server.credential_index"
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]{8,128}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_DUMMY_HASH: str | None = None


class SettingsStore(Protocol):
    def get_setting(self, key: str) -> str | None: ...
    def set_setting(self, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class Credentials:
    """A new access key and its secret, as shown to the operator once."""

    access_key: str
    secret_key: str
    user: str


@dataclass(frozen=True)
class Identity:
    """Who a verified access key belongs to."""

    access_key: str
    user: str


def hash_secret(secret: str) -> str:
    """Hash a secret with scrypt and a random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + f"{b64(salt).decode()}${b64(digest).decode()}"


def check_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches a hash made by :func:`hash_secret` (constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(
            secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=32,
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


def _new_access_key() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


def _index(store: SettingsStore) -> list[str]:
    return json.loads(store.get_setting(_INDEX) or "[]")


def create_credentials(
    store: SettingsStore,
    user: str = "modelbook",
    access_key: str | None = None,
    secret_key: str | None = None,
) -> Credentials:
    """Create an access key (random unless given) and store its hashed secret.

    Args:
        store: the server's store.
        user: a name for whoever uses the key (shown in the token's identity).
        access_key / secret_key: set both to import existing ClearML credentials.

    Raises:
        ValueError: a malformed or already existing access key, or a secret shorter than
            16 characters.
    """
    access_key = access_key or _new_access_key()
    secret_key = secret_key or secrets.token_urlsafe(36)
    if not _KEY_RE.match(access_key):
        raise ValueError("access keys are 8-128 characters of A-Z, a-z, 0-9, '_' and '-'")
    if len(secret_key) < 16:
        raise ValueError("secret keys must be at least 16 characters long")
    if store.get_setting(_PREFIX + access_key) is not None:
        raise ValueError(f"access key {access_key} already exists")
    record = {
        "secret_hash": hash_secret(secret_key),
        "user": user,
        "created": datetime.now(timezone.utc).isoformat(),
    }
    store.set_setting(_PREFIX + access_key, json.dumps(record))
    store.set_setting(_INDEX, json.dumps([*_index(store), access_key]))
    return Credentials(access_key=access_key, secret_key=secret_key, user=user)


def list_credentials(store: SettingsStore) -> list[dict[str, str]]:
    """The active access keys with their user and creation time (never the hashes)."""
    result = []
    for key in _index(store):
        raw = store.get_setting(_PREFIX + key)
        if raw:
            record = json.loads(raw)
            result.append({"access_key": key, "user": record["user"], "created": record["created"]})
    return result


def revoke_credentials(store: SettingsStore, access_key: str) -> bool:
    """Disable an access key; tokens issued for it stop working within a minute."""
    if not _KEY_RE.match(access_key) or store.get_setting(_PREFIX + access_key) in (None, ""):
        return False
    store.set_setting(_PREFIX + access_key, "")
    store.set_setting(_INDEX, json.dumps([k for k in _index(store) if k != access_key]))
    return True


def key_is_active(store: SettingsStore, access_key: str) -> bool:
    """Whether the access key exists and was not revoked."""
    return bool(_KEY_RE.match(access_key) and store.get_setting(_PREFIX + access_key))


def has_credentials(store: SettingsStore) -> bool:
    return bool(_index(store))


def verify_credentials(store: SettingsStore, access_key: str, secret_key: str) -> Identity | None:
    """The identity of a valid access key / secret pair, else None."""
    global _DUMMY_HASH
    raw = store.get_setting(_PREFIX + access_key) if _KEY_RE.match(access_key) else None
    if not raw:
        _DUMMY_HASH = _DUMMY_HASH or hash_secret(secrets.token_urlsafe(16))
        check_secret(secret_key, _DUMMY_HASH)  # same cost as a real check
        return None
    record = json.loads(raw)
    if not check_secret(secret_key, record["secret_hash"]):
        return None
    return Identity(access_key=access_key, user=record["user"])
