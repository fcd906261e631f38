"""Regular expressions from clients, matched in linear time (RE2), or refused.

ClearML clients filter names with regular expressions. Python's ``re`` backtracks: a
pattern such as ``(a+)+$`` over a long name runs for minutes and holds a core. Every pattern a
client sends is compiled here with RE2 (``google-re2``, part of ``modelbook[server]``), whose
matching time is linear in the text; what RE2 does not support (backreferences,
lookarounds) is refused with a message saying so. SQLite's ``REGEXP`` is registered with the
same engine (:func:`register_sqlite_regexp`); PostgreSQL runs its own (``~``) under the
request's statement timeout.

Example:
    >>> matcher = compile_pattern(r"^resnet-\\d+$")
    >>> bool(matcher.search("resnet-50")), bool(matcher.search("resnet-x"))
    (True, False)
    >>> try:
    ...     compile_pattern(r"(a)\\1")
    ... except InvalidArgumentError as refused:
    ...     print(str(refused).split(": ")[1])
    invalid escape sequence
"""

from __future__ import annotations

import functools
import re
from typing import Any, Protocol

from modelbook.errors import InvalidArgumentError

#: The longest pattern accepted.
MAX_PATTERN = 1024
#: The largest count in ``{n}``, ``{n,m}``: PostgreSQL's limit (RE_DUP_MAX), so a pattern that
#: works on one store works on every store.
MAX_REPEAT = 255
_COUNTS = re.compile(r"(?<!\\)\{(\d+)(?:,(\d*))?\}")


class Matcher(Protocol):
    """A compiled pattern (RE2's or, without it, Python's).

    Example:
        >>> compile_pattern("^a").search("abc") is not None
        True
    """

    def search(self, text: str) -> Any: ...


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Matcher:
    """``pattern`` compiled for linear-time matching.

    Raises:
        InvalidArgumentError: too long, malformed, or beyond RE2's syntax.
    """
    if not isinstance(pattern, str):
        raise InvalidArgumentError(f"a name pattern must be a string, got {pattern!r}")
    if len(pattern) > MAX_PATTERN:
        raise InvalidArgumentError(
            f"regular expression of {len(pattern)} characters; at most {MAX_PATTERN}"
        )
    for counts in _COUNTS.finditer(pattern):
        if max(int(n) for n in counts.groups() if n) > MAX_REPEAT:
            raise InvalidArgumentError(
                f"regular expression {pattern!r}: repeat count {counts.group(0)} is over "
                f"{MAX_REPEAT}, the largest every store accepts"
            )
    try:
        import re2
    except ImportError:  # the embedded store never gets client patterns
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise InvalidArgumentError(f"malformed regular expression {pattern!r}: {exc}") from None
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        why = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise InvalidArgumentError(
            f"regular expression {pattern!r} is not supported: {why} (modelbook matches "
            "names in linear time, with RE2 syntax: no backreferences or lookarounds)"
        ) from None


def _regexp(pattern: str | None, text: str | None) -> bool | None:
    if pattern is None or text is None:
        return None
    try:
        return compile_pattern(pattern).search(text) is not None
    except InvalidArgumentError:
        return False  # refused before the query by the caller; never a crash mid-query


def register_sqlite_regexp(dbapi_connection: Any) -> None:
    """SQLite's ``REGEXP`` (SQLAlchemy's ``regexp_match``) with the linear-time engine."""
    dbapi_connection.create_function("regexp", 2, _regexp, deterministic=True)
