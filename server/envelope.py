"""The ClearML reply envelope and error codes.

Every API reply is ``{"meta": {...}, "data": {...}}``; success is ``meta.result_code == 200``.
Errors carry the HTTP status in both the status line and ``result_code``, a subcode from
the ClearML server's ``errors.conf`` and a message. Ordinary errors are never answered with
429, 502, 503 or 509: ClearML's SDK retries those forever.

Example:
    >>> err = ApiError(400, 201, "Invalid model id")
    >>> body = envelope("models.get_by_id", "2.23", "2.23", {}, err.status, err.subcode, err.msg)
    >>> json.loads(body)["meta"]["result_subcode"]
    201
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from modelbook.errors import (
    InvalidArgumentError,
    ModelbookError,
    ModelNotFoundError,
    ModelPublishedError,
    NotFoundError,
    ProjectNotFoundError,
    StorageError,
    TaskNotFoundError,
)

# (status, subcode) pairs from the ClearML server's errors.conf.
NOT_SUPPORTED = (400, 1)
INVALID_VERSION = (400, 2)
INVALID_ID = (400, 10)
MISSING_FIELDS = (400, 11)
VALIDATION_ERROR = (400, 12)
FIELDS_CONFLICT = (400, 15)
INVALID_TASK_ID = (400, 101)
INVALID_TASK_STATUS = (400, 110)
INVALID_MODEL_ID = (400, 201)
MODEL_IS_READY = (400, 203)
INVALID_PROJECT_ID = (400, 401)
PROJECT_NOT_FOUND = (400, 403)
BAD_AUTH_TYPE = (401, 10)
NO_CREDENTIALS = (401, 20)
BAD_CREDENTIALS = (401, 21)
INVALID_CREDENTIALS = (401, 22)
INVALID_TOKEN = (401, 30)
#: A stored object is being deleted: write it again later (``error_data.transient``).
OBJECT_BUSY = (409, 0)
TOO_LARGE = (413, 0)
NO_ENDPOINT = (404, 0)
GENERAL_ERROR = (500, 0)

#: Statuses an ordinary error must never use (ClearML's SDK retries them endlessly).
RETRIED_BY_CLIENTS = frozenset({429, 502, 503, 509})


class ApiError(Exception):
    """An error answered to the client as an envelope.

    Args:
        status: HTTP status (also ``meta.result_code``).
        subcode: ``meta.result_subcode``.
        msg: ``meta.result_msg``; never holds secrets.
        error_data: ``meta.error_data``; modelbook puts the exception class here so its
            HTTP backend raises the same exception as the embedded store.
    """

    def __init__(
        self, status: int, subcode: int, msg: str, error_data: dict[str, Any] | None = None
    ) -> None:
        if status in RETRIED_BY_CLIENTS:
            raise ValueError(f"status {status} would make ClearML clients retry forever")
        super().__init__(msg)
        self.status, self.subcode, self.msg = status, subcode, msg
        self.error_data = error_data or {}

    @classmethod
    def of(cls, code: tuple[int, int], msg: str, **error_data: Any) -> ApiError:
        return cls(code[0], code[1], msg, error_data)


def from_modelbook_error(exc: ModelbookError) -> ApiError:
    """Translate an exception of the store into the ClearML error it corresponds to."""
    data: dict[str, Any] = {"modelbook_error": type(exc).__name__}
    if isinstance(exc, ModelNotFoundError):
        code = INVALID_MODEL_ID
        data["model_id"] = exc.model_id
    elif isinstance(exc, TaskNotFoundError):
        code = INVALID_TASK_ID
    elif isinstance(exc, ProjectNotFoundError):
        code = PROJECT_NOT_FOUND
    elif isinstance(exc, NotFoundError):
        code = INVALID_ID
    elif isinstance(exc, ModelPublishedError):
        code = MODEL_IS_READY
    elif isinstance(exc, InvalidArgumentError):
        code = VALIDATION_ERROR
    elif isinstance(exc, StorageError):  # the write conflicts with what is recorded
        code = OBJECT_BUSY if exc.transient else FIELDS_CONFLICT
        data["transient"] = exc.transient  # busy: the client tries again later
    else:
        code = GENERAL_ERROR
    return ApiError(code[0], code[1], str(exc), data)


def envelope(
    endpoint: str,
    requested_version: str,
    actual_version: str,
    data: Any,
    status: int = 200,
    subcode: int = 0,
    msg: str = "OK",
    error_data: dict[str, Any] | None = None,
) -> bytes:
    """Serialize one reply, ``{"meta": ..., "data": ...}``, as UTF-8 JSON."""
    request_id = uuid.uuid4().hex
    meta = {
        "id": request_id,
        "trx": request_id,
        "endpoint": {
            "name": endpoint,
            "requested_version": requested_version,
            "actual_version": actual_version,
        },
        "result_code": status,
        "result_subcode": subcode,
        "result_msg": msg,
        "error_stack": None,
        "error_data": error_data or {},
    }
    return json.dumps({"meta": meta, "data": data}, separators=(",", ":")).encode()
