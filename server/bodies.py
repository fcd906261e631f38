"""Checks of a parsed API request body, before any endpoint sees it.

* **Nesting**: at most :data:`MAX_DEPTH` levels of arrays and objects. ClearML's documents
  need a handful; a deeper body would only reach the store to fail there (serializing it
  again overflows the stack).
* **Text**: every string and key must be encodable as UTF-8. JSON can carry a lone
  surrogate (``"\\ud800"``), which neither SQLite, PostgreSQL nor the regular-expression
  engine accept.

Example:
    >>> check_body({"name": "resnet", "tags": ["a"]}, b"")
    >>> try:
    ...     check_body({"name": "\\ud800"}, b'{"name": "\\\\ud800"}')
    ... except ApiError as exc:
    ...     print(exc.msg)
    field 'name' holds a lone surrogate ('\\ud800'): text must be valid Unicode
"""

from __future__ import annotations

import re
from typing import Any

from modelbook.server.envelope import VALIDATION_ERROR, ApiError

#: The deepest nesting of arrays and objects a request body may have.
MAX_DEPTH = 64
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _where(path: list[str | int]) -> str:
    shown = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return repr(shown[:200] or "the body")


def check_body(data: Any, raw: bytes) -> None:
    """Refuse a body nested deeper than :data:`MAX_DEPTH` or holding text that is not
    valid Unicode (``raw`` is the body as sent: only one with a surrogate escape is
    searched for lone surrogates).

    Raises:
        ApiError: 400/12 naming the field.
    """
    texts = bool(_SURROGATE_ESCAPE.search(raw))
    if texts and isinstance(data, str) and not _encodable(data):
        raise _not_unicode([], data, "the body")
    if not isinstance(data, (dict, list)):
        return
    stack: list[tuple[dict[str, Any] | list[Any], list[str | int]]] = [(data, [])]
    while stack:
        container, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise ApiError.of(
                VALIDATION_ERROR,
                f"the request body is nested too deeply at {_where(path)}: at most "
                f"{MAX_DEPTH} levels of arrays and objects are accepted",
            )
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in items:
            if texts and isinstance(key, str) and not _encodable(key):
                raise _not_unicode(path, key, "a key")
            if isinstance(item, (dict, list)):
                stack.append((item, [*path, key]))
            elif texts and isinstance(item, str) and not _encodable(item):
                raise _not_unicode([*path, key], item, f"field {_where([*path, key])}")


def _not_unicode(path: list[str | int], text: str, what: str) -> ApiError:
    bad = next(c for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    where = f"a key of {_where(path)}" if what == "a key" else what
    return ApiError.of(
        VALIDATION_ERROR,
        f"{where} holds a lone surrogate ({bad!r}): text must be valid Unicode",
    )
