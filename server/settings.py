"""The server's settings: where it keeps data, how big requests may be, how long tokens live.

Settings travel to uvicorn worker processes as JSON in one environment variable, so a
multi-worker server has exactly the configuration the command line gave.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from modelbook.errors import ConfigurationError

#: Environment variable carrying the JSON settings to worker processes.
SETTINGS_ENV = "MODELBOOK_SERVER_SETTINGS"

MIB = 1024 * 1024
GIB = 1024 * MIB
#: Longest ``--request-timeout`` accepted, in seconds (a day).
MAX_REQUEST_TIMEOUT = 86400.0


def default_home() -> Path:
    """The server's data folder: ``MODELBOOK_SERVER_HOME`` or ``~/.modelbook/server``."""
    value = os.environ.get("MODELBOOK_SERVER_HOME") or "~/.modelbook/server"
    return Path(value).expanduser().absolute()


def normalize_db_url(url: str) -> str:
    """Accept the plain ``postgresql://`` form and use the psycopg 3 driver for it.

    Example:
        >>> normalize_db_url("postgresql://u@127.0.0.1:5432/mb")
        'postgresql+psycopg://u@127.0.0.1:5432/mb'
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class ServerSettings:
    """Everything a server process needs to know.

    Attributes:
        db_url: SQLAlchemy URL of the store.
        files_root: folder the files server reads and writes; nothing outside it is touched.
        token_ttl: lifetime of issued tokens, in seconds.
        max_request_size: largest API request body, in bytes (ClearML's SDK sends event
            batches up to 15 MB).
        max_upload_size: largest files-server upload body, in bytes.
        public_url: how clients reach this server (used in messages only).
        clearml_strict: answer as a real ClearML server does: modelbook's extension
            endpoints are off and ClearML's defaults apply (a harness for clients; see
            :mod:`modelbook.server.dialect`).
        request_timeout: the time budget of each database statement a request runs, in
            seconds; a statement past it is stopped and the request answered 400 (see
            :func:`modelbook.store.engine.make_engine`).

    Example:
        >>> s = ServerSettings(db_url="sqlite://", files_root=Path("/tmp/f"))
        >>> ServerSettings.from_json(s.to_json()) == s
        True
    """

    db_url: str
    files_root: Path
    token_ttl: int = 24 * 3600
    max_request_size: int = 64 * MIB
    max_upload_size: int = 256 * GIB
    public_url: str | None = None
    clearml_strict: bool = False
    request_timeout: float = 30.0
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.token_ttl < 600:
            raise ConfigurationError(
                f"token lifetime must be at least 600 s (ClearML clients renew tokens 360 s "
                f"before they expire), got {self.token_ttl}"
            )
        if self.max_request_size < MIB:
            raise ConfigurationError(
                f"max request size must be at least 1 MiB, got {self.max_request_size}"
            )
        if self.max_upload_size < MIB:
            raise ConfigurationError(
                f"max upload size must be at least 1 MiB, got {self.max_upload_size}"
            )
        budget = self.request_timeout
        if (
            isinstance(budget, bool)
            or not isinstance(budget, (int, float))
            or not math.isfinite(budget)
            or not 0 < budget <= MAX_REQUEST_TIMEOUT
        ):
            raise ConfigurationError(
                f"request timeout must be a number of seconds above 0 and at most "
                f"{MAX_REQUEST_TIMEOUT:g}, got {budget!r}"
            )

    def to_json(self) -> str:
        values = asdict(self)
        values["files_root"] = str(self.files_root)
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        values = json.loads(text)
        values["files_root"] = Path(values["files_root"])
        return cls(**values)

    @classmethod
    def from_env(cls) -> ServerSettings:
        """The settings a parent process put in :data:`SETTINGS_ENV`."""
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise ConfigurationError(
                f"{SETTINGS_ENV} is not set; start the server with `modelbook server`"
            )
        return cls.from_json(text)
