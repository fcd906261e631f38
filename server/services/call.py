"""One API call as the endpoints see it, and checked access to its request fields."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelbook import validate
from modelbook.server.envelope import MISSING_FIELDS, VALIDATION_ERROR, ApiError
from modelbook.store.sql import SqlStore

_LONG = 2**63


@dataclass
class Call:
    """The request of one endpoint call.

    Attributes:
        endpoint: ``service.action``.
        version: the API version the client asked for (``"2.23"``).
        data: the JSON body merged with the query string.
        store: the registry store.
        identity: the verified token's ``identity`` claim (empty for ``auth.login``).
        context: what the endpoint may need about the request and server: ``host`` (the
            Host header), ``clearml_client`` (the ClearML SDK's client header, if any),
            ``stored`` (the files server's :class:`~modelbook.server.stored.StoredIndex`).
    """

    endpoint: str
    version: str
    data: Any
    store: SqlStore
    identity: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    def require(self, name: str) -> Any:
        """The value of a required field."""
        if not isinstance(self.data, dict) or self.data.get(name) in (None, ""):
            raise ApiError.of(MISSING_FIELDS, f"missing required field: {name}", fields=[name])
        return self.data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default) if isinstance(self.data, dict) else default

    def string(self, name: str, required: bool = False) -> str | None:
        value = self.require(name) if required else self.get(name)
        if value is not None and not isinstance(value, str):
            raise _type_error(name, "a string", value)
        return value

    def boolean(self, name: str, default: bool | None = None) -> bool | None:
        value = self.get(name, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"  # from a query string
        if value is not None and not isinstance(value, bool):
            raise _type_error(name, "true or false", value)
        return value

    def integer(self, name: str, default: int | None = None) -> int | None:
        """A 64-bit integer (what the store's columns hold)."""
        value = self.get(name, default)
        if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value):
            value = int(value)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not -_LONG <= value < _LONG
        ):
            raise _type_error(name, "a 64-bit integer", value)
        return value

    def string_list(self, name: str) -> list[str] | None:
        """A list of strings; a single string is taken as a list of one."""
        value = self.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _type_error(name, "a list of strings", value)
        return value

    def dict_field(self, name: str) -> dict[str, Any] | None:
        value = self.get(name)
        if value is not None and not isinstance(value, dict):
            raise _type_error(name, "an object", value)
        return value


def _type_error(name: str, expected: str, value: Any) -> ApiError:
    shown = repr(value)
    shown = shown if len(shown) < 80 else shown[:77] + "..."
    return ApiError.of(VALIDATION_ERROR, f"field {name!r} must be {expected}, got {shown}")


def tag_filter(call: Call, name: str) -> list[str | None] | None:
    """A tag filter field (``tags`` / ``system_tags`` of ``*.get_all``): a list of terms,
    each a string or null (a single string is a list of one)."""
    value = call.get(name)
    if value is None or value == []:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(v is None or isinstance(v, str) for v in value):
        raise _type_error(name, "a list of tag filter terms (strings, or null)", value)
    return value


def tag_list(call: Call, name: str) -> list[str] | None:
    """A tags field to store: non-empty strings without control characters, as the Python
    API takes them (:func:`modelbook.validate.tags`); ``None`` when absent."""
    value = call.string_list(name)
    return None if value is None else validate.tags(value, f"field {name!r}")


def name_field(call: Call, field_name: str = "name", required: bool = False) -> str | None:
    """A name to store, by the Python API's rules (:func:`modelbook.validate.name`)."""
    value = call.string(field_name, required)
    return None if value is None else validate.name(value, f"field {field_name!r}")


Handler = Callable[[Call], Any]
