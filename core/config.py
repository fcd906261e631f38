"""Where modelbook keeps its data and which backend it talks to.

Settings come, first match wins, from :func:`configure`, ``MODELBOOK_*`` environment
variables, ClearML's environment variables, and a ``clearml.conf``. With no API host set
anywhere, modelbook uses the embedded store in its home (``~/.modelbook`` or
``MODELBOOK_HOME``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from modelbook.backends.base import Backend

_lock = threading.Lock()
_settings: dict[str, Any] = {}
_backend: tuple[int, Backend] | None = None  # (pid, backend): a forked child opens its own

_ENV = {
    "api_host": ("MODELBOOK_API_HOST", "CLEARML_API_HOST"),
    "files_host": ("MODELBOOK_FILES_HOST", "CLEARML_FILES_HOST"),
    "access_key": ("MODELBOOK_API_ACCESS_KEY", "CLEARML_API_ACCESS_KEY"),
    "secret_key": ("MODELBOOK_API_SECRET_KEY", "CLEARML_API_SECRET_KEY"),
}


def configure(
    home: str | os.PathLike[str] | None = None,
    *,
    api_host: str | None = None,
    files_host: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    upload_timeout: float | None = None,
) -> None:
    """Choose the store for this process; call it before creating tasks or models.

    Args:
        home: folder of the embedded store (default ``MODELBOOK_HOME`` or ``~/.modelbook``).
        api_host: URL of a ``modelbook server`` or ClearML API server; selects the HTTP
            backend.
        files_host: URL of its files server (default: derived from ``api_host``).
        access_key: API access key.
        secret_key: API secret key.
        upload_timeout: how long ``Task.close()`` waits for pending uploads, in seconds
            (default ``MODELBOOK_UPLOAD_TIMEOUT`` or 300); what is left resumes later.

    Example:
        >>> import modelbook, tempfile
        >>> modelbook.configure(home=tempfile.mkdtemp())
    """
    global _backend
    with _lock:
        _settings.clear()
        given = {
            "home": home,
            "api_host": api_host,
            "files_host": files_host,
            "access_key": access_key,
            "secret_key": secret_key,
        }
        _settings.update({k: v for k, v in given.items() if v is not None})
        old, _backend = _backend, None
    if old is not None and old[0] == os.getpid():
        old[1].close()


def home() -> Path:
    """The folder of the embedded store, spool and download cache."""
    value = _settings.get("home") or os.environ.get("MODELBOOK_HOME") or "~/.modelbook"
    return Path(value).expanduser().absolute()


def upload_timeout() -> float:
    """Seconds ``Task.close()`` waits for pending uploads."""
    value = _settings.get("upload_timeout") or os.environ.get("MODELBOOK_UPLOAD_TIMEOUT") or 300
    return float(value)


def setting(name: str) -> str | None:
    """A connection setting from configure(), the environment, or clearml.conf."""
    if name in _settings:
        return _settings[name]
    for var in _ENV[name]:
        if os.environ.get(var):
            return os.environ[var]
    return _clearml_conf().get(name)


def _clearml_conf() -> dict[str, str]:
    path = Path(os.environ.get("CLEARML_CONFIG_FILE", "~/clearml.conf")).expanduser()
    if not path.is_file():
        return {}
    from modelbook.backends.http import read_clearml_conf

    return read_clearml_conf(path)


def get_backend() -> Backend:
    """The backend of this process, opened on first use."""
    global _backend
    with _lock:
        if _backend is None or _backend[0] != os.getpid():
            _backend = (os.getpid(), _open_backend())
            opened = _backend[1]
        else:
            return _backend[1]
    from modelbook import uploads

    uploads.resume(opened, home())  # finish what an earlier process left in the spool
    return opened


def _open_backend() -> Backend:
    api_host = setting("api_host")
    if api_host:
        from modelbook.backends.http import HttpBackend

        return HttpBackend(
            api_host=api_host,
            files_host=setting("files_host"),
            access_key=setting("access_key"),
            secret_key=setting("secret_key"),
        )
    from modelbook.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(home())
