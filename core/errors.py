"""The exceptions modelbook raises.

Every exception derives from :class:`ModelbookError`, so ``except ModelbookError`` catches
anything this library raises on purpose. Where ClearML raises ``ValueError`` for the same
mistake, the modelbook exception is also a ``ValueError``, so code written for ClearML keeps
working. The tree::

    ModelbookError
    ├── ConfigurationError           bad settings, missing optional dependency
    ├── InvalidArgumentError         a bad argument (also ValueError)
    │   ├── WeightsArgumentError     both / neither of weights_filename and register_uri
    │   ├── WeightsFileNotFoundError the weights file does not exist
    │   └── TagFilterError           an unknown tag operator, a dangling __$not
    ├── NotFoundError                (also ValueError)
    │   ├── ModelNotFoundError
    │   ├── TaskNotFoundError
    │   ├── ProjectNotFoundError
    │   └── NotRegisteredError       a local id whose record waits in the spool
    ├── ModelPublishedError          a published model refuses new weights (also ValueError)
    ├── ModelInUseError              removing a published or used model needs force (ValueError)
    ├── StorageError                 moving bytes failed (also ValueError, as in ClearML)
    │   ├── BlobCorruptedError       a stored file does not match its sha256
    │   └── UploadError              an upload could not be completed (or queued)
    ├── StatementTimeoutError        a query ran past the server's time budget
    └── RegistryError                the registry (server) answered with an error
"""

from __future__ import annotations

from collections.abc import Iterable


def _choices(values: Iterable[str], limit: int = 20) -> str:
    values = sorted(values)
    if not values:
        return "(none)"
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


class ModelbookError(Exception):
    """Root of every exception modelbook raises on purpose."""


class ConfigurationError(ModelbookError):
    """The configuration is invalid, or an optional dependency is missing."""


class InvalidArgumentError(ModelbookError, ValueError):
    """An argument has a value modelbook cannot accept."""


class WeightsArgumentError(InvalidArgumentError):
    """``update_weights`` needs exactly one of ``weights_filename`` and ``register_uri``."""

    def __init__(self, weights_filename: object, register_uri: object) -> None:
        if weights_filename is not None and register_uri is not None:
            what = (
                f"both weights_filename={weights_filename!r} and register_uri={register_uri!r} "
                "were given"
            )
        else:
            what = "neither weights_filename nor register_uri was given"
        super().__init__(
            f"update_weights takes exactly one of weights_filename (a local file to store) "
            f"or register_uri (an existing remote file to point at): {what}"
        )


class WeightsFileNotFoundError(InvalidArgumentError, FileNotFoundError):
    """The weights file passed to ``update_weights`` does not exist."""

    def __init__(self, path: object) -> None:
        super().__init__(
            f"weights file {str(path)!r} does not exist; pass the path of a file or a directory "
            "that exists on this machine, or register_uri= for a file that is already stored"
        )


class TagFilterError(InvalidArgumentError):
    """A tag filter uses an operator modelbook (and the ClearML server) does not know."""


class NotFoundError(ModelbookError, ValueError):
    """A record looked up by id or name does not exist."""


class ModelNotFoundError(NotFoundError):
    """No model has the given id."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(
            f"no model with id {model_id!r}; list existing models with `modelbook models ls` "
            "or Model.query_models()"
        )


class TaskNotFoundError(NotFoundError):
    """No task has the given id (or project and name)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"no task {what}; Task.init() creates one")


class ProjectNotFoundError(NotFoundError):
    """No project has the given name."""

    def __init__(self, name: str, existing: Iterable[str]) -> None:
        self.name = name
        super().__init__(
            f"No projects found when searching for `{name}`; "
            f"existing projects: {_choices(existing)}"
        )


class NotRegisteredError(NotFoundError):
    """A local id (``local-...``) whose task or model the registry has not received yet.

    Example:
        >>> error = NotRegisteredError("local-4f1e", "/home/me/.modelbook/spool")
        >>> isinstance(error, NotFoundError), "modelbook sync" in str(error)
        (True, True)
    """

    def __init__(self, local_id: str, spool: object) -> None:
        self.local_id = local_id
        super().__init__(
            f"{local_id!r} was created while the registry was away (or offline) and is not "
            f"registered yet; its calls wait in {spool}: run `modelbook sync` (or let any "
            "modelbook process with the registry reachable finish them), `modelbook uploads` "
            "lists them"
        )


class ModelPublishedError(ModelbookError, ValueError):
    """A published model is read-only: no new weights, design or labels."""

    def __init__(self, model_id: str | None, name: str | None, what: str) -> None:
        super().__init__(
            f"Model is published and cannot be changed: cannot {what} of model {model_id!r} "
            f"({name!r}). Published models are read-only; create a new OutputModel "
            "(or OutputModel(base_model_id=...)) for new weights"
        )


class ModelInUseError(ModelbookError, ValueError):
    """Removing this model needs ``force=True``: it is published, a task uses it as input,
    or the task that created it is published (ClearML's rules for ``models.delete``).

    Attributes:
        reason: "published", "in_use" or "task_published".

    Example:
        >>> ModelInUseError("model m1 is published: pass force to delete it", "published").reason
        'published'
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StorageError(ModelbookError, ValueError):
    """Moving bytes to or from a storage destination failed.

    Also a ``ValueError``: ClearML raises ``ValueError`` for these failures
    (``get_local_copy(raise_on_error=True)``, ``set_upload_destination``, ``Model.remove``).

    Attributes:
        transient: True when trying again later may succeed (network down, server busy,
            disk full); False when it cannot without a change (no permission, no bucket).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class BlobCorruptedError(StorageError):
    """A stored file does not match the sha256 recorded when it was stored."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"stored file {path!r} is corrupted: its sha256 is {actual}, but {expected} was "
            "recorded when it was stored. Re-register the weights (update_weights) or restore "
            "the file from a backup"
        )


class StatementTimeoutError(ModelbookError):
    """A database statement ran past the time budget a server gives each one, and was
    stopped (``modelbook server --request-timeout``).

    Attributes:
        budget: the budget, in seconds.

    Example:
        >>> StatementTimeoutError(30).budget
        30
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        super().__init__(
            f"the query ran past this server's time budget of {budget:g} s per database "
            "statement and was stopped (modelbook server --request-timeout); ask for less: a "
            "narrower filter, a simpler name pattern or fewer results per page"
        )


class RegistryError(ModelbookError):
    """The registry server answered a call with an error."""

    def __init__(
        self,
        endpoint: str,
        message: str,
        status: int | None = None,
        *,
        transient: bool | None = None,
    ) -> None:
        self.endpoint, self.message, self.status = endpoint, message, status
        #: True when trying again later may succeed: no answer, a 5xx, 408 or 429.
        self.transient = (
            transient
            if transient is not None
            else status is None or status >= 500 or status in (408, 429)
        )
        where = f" (HTTP {status})" if status else ""
        super().__init__(f"{endpoint} failed{where}: {message}")


class UploadError(StorageError):
    """An upload could not be completed (or could not be queued)."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised ``exc`` later may succeed."""
    if isinstance(exc, (StorageError, RegistryError)):
        return exc.transient
    return isinstance(exc, (OSError, TimeoutError, ConnectionError))


def check_choice(name: str, value: object, accepted: Iterable[str]) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is one of ``accepted``."""
    accepted = list(accepted)
    if value not in accepted:
        raise InvalidArgumentError(
            f"{name}={value!r} is not accepted; use one of {_choices(accepted)}"
        )
