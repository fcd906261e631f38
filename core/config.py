"""Where modelbook keeps its data and which backend it talks to.

Settings come, first match wins, from :func:`configure`, ``MODELBOOK_*`` environment
variables, ClearML's environment variables, and a ``clearml.conf``. With no API host set
anywhere, modelbook uses the embedded store in its home (``~/.modelbook`` or
``MODELBOOK_HOME``).
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from modelbook.backends.base import Backend

_lock = threading.Lock()
_settings: dict[str, Any] = {}
_backend: tuple[int, Backend] | None = None  # (pid, backend): a forked child opens its own
_offline: bool | None = None  # set_offline(); None: MODELBOOK_OFFLINE decides

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
            "upload_timeout": _seconds("upload_timeout", upload_timeout),
        }
        _settings.update({k: v for k, v in given.items() if v is not None})
        old, _backend = _backend, None
    if old is not None and old[0] == os.getpid():
        old[1].close()


def set_offline(offline: bool) -> None:
    """Keep every registry call of this process local (``Task.set_offline``): tasks and
    models get local ids, weights and calls wait in the spool until ``modelbook sync``."""
    global _offline
    _offline = bool(offline)


def offline() -> bool:
    """Whether offline mode is on: :func:`set_offline`, else ``MODELBOOK_OFFLINE=1``."""
    if _offline is not None:
        return _offline
    return os.environ.get("MODELBOOK_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def home() -> Path:
    """The folder of the embedded store, spool and download cache."""
    value = _settings.get("home") or os.environ.get("MODELBOOK_HOME") or "~/.modelbook"
    return Path(value).expanduser().absolute()


def upload_timeout() -> float:
    """Seconds ``Task.close()`` waits for pending uploads."""
    if _settings.get("upload_timeout") is not None:
        return float(_settings["upload_timeout"])
    from_env = _seconds("MODELBOOK_UPLOAD_TIMEOUT", os.environ.get("MODELBOOK_UPLOAD_TIMEOUT"))
    return 300.0 if from_env is None else from_env


def _seconds(name: str, value: object) -> float | None:
    """A number of seconds >= 0 from an argument or an environment variable, or None."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not seconds >= 0 or seconds == float("inf"):
        from modelbook.errors import ConfigurationError

        raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return seconds


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


# -- clearml.conf ---------------------------------------------------------------------------
_CONF_KEYS = {
    "api.api_server": "api_host",
    "api.files_server": "files_host",
    "api.credentials.access_key": "access_key",
    "api.credentials.secret_key": "secret_key",
}


class _ConfReader:
    """A small reader for the HOCON that ``clearml-init`` writes."""

    _BARE_END = re.compile(r"\n|,|}|]|\s#|\s//")

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.found = text, 0, {}  # type: ignore[var-annotated]

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self._peek()
            if char in " \t\r" or (newlines and char in "\n,"):
                self.pos += 1
            elif char == "#" or self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def _string(self) -> str:
        match = re.compile(r'"(?:[^"\\]|\\.)*"').match(self.text, self.pos)
        if not match:
            self.pos = len(self.text)
            return ""
        self.pos = match.end()
        return json.loads(match.group())

    def _skip_array(self) -> None:
        depth = 0
        while self.pos < len(self.text):
            char = self._peek()
            if char == '"':
                self._string()
                continue
            depth += {"[": 1, "]": -1}.get(char, 0)
            self.pos += 1
            if depth == 0:
                return

    def read_object(self, prefix: str) -> None:
        while True:
            self._skip(newlines=True)
            char = self._peek()
            if not char or char == "}":
                self.pos += 1
                return
            if char == '"':
                key = self._string()
            else:
                match = re.compile(r"[A-Za-z0-9_.\-]+").match(self.text, self.pos)
                if not match:
                    self.pos += 1
                    continue
                key, self.pos = match.group(), match.end()
            self._skip(newlines=False)
            if self._peek() in (":", "="):
                self.pos += 1
                self._skip(newlines=False)
            char = self._peek()
            if char == "{":
                self.pos += 1
                self.read_object(f"{prefix}{key}.")
            elif char == "[":
                self._skip_array()
            elif char == '"':
                self.found[prefix + key] = self._string()
            else:
                end = self._BARE_END.search(self.text, self.pos)
                stop = end.start() if end else len(self.text)
                self.found[prefix + key] = self.text[self.pos : stop].strip()
                self.pos = stop


def read_clearml_conf(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read the connection settings of a ``clearml.conf`` (HOCON).

    Understands what ``clearml-init`` writes: nested ``api { ... }`` blocks, dotted keys,
    ``:`` or ``=``, quoted or bare values (bare URLs included), ``#`` and ``//`` comments.
    Arrays and other sections are skipped.

    Returns:
        Any of ``api_host``, ``files_host``, ``access_key``, ``secret_key`` found.

    Example:
        >>> import tempfile
        >>> conf = Path(tempfile.mkdtemp()) / "clearml.conf"
        >>> _ = conf.write_text('api { api_server: http://h:8008  # the API\\n'
        ...     ' credentials { "access_key" = "AK", secret_key: "SK" } }')
        >>> sorted(read_clearml_conf(conf).items())
        [('access_key', 'AK'), ('api_host', 'http://h:8008'), ('secret_key', 'SK')]
    """
    reader = _ConfReader(Path(path).read_text(encoding="utf-8", errors="replace"))
    while reader.pos < len(reader.text):
        reader.read_object("")
    return {
        name: str(reader.found[key]) for key, name in _CONF_KEYS.items() if reader.found.get(key)
    }
