"""ClearML name filters: a regular expression, usually an anchored escaped literal.

ClearML clients look names up with ``^<re.escape(name)>$``. Such a pattern is turned back
into the literal, so the store compares names exactly (an index lookup) instead of
scanning with a regular expression. Any other pattern must compile with RE2 (linear-time
matching: a pattern cannot make a request run for minutes).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from modelbook.errors import InvalidArgumentError
from modelbook.server.envelope import ApiError
from modelbook.store.patterns import compile_pattern

INVALID_REGEX = (400, 21)


def anchored_literal(pattern: str) -> str | None:
    """The literal an anchored escaped pattern matches exactly, or None.

    Example:
        >>> anchored_literal(r"^demo\\ one$")
        'demo one'
        >>> anchored_literal("^demo.*$") is None
        True
    """
    if len(pattern) < 2 or not pattern.startswith("^") or not pattern.endswith("$"):
        return None
    inner = pattern[1:-1]
    literal = re.sub(r"\\(.)", r"\1", inner, flags=re.S)
    return literal if re.escape(literal) == inner else None


def check_pattern(pattern: str) -> str:
    """A regular expression safe to hand to the store: RE2 can match it in linear time
    (:mod:`modelbook.store.patterns`).

    Raises:
        ApiError: 400/21 for a malformed, overly long or unsupported pattern.
    """
    try:
        compile_pattern(pattern)
    except InvalidArgumentError as exc:
        raise ApiError.of(INVALID_REGEX, str(exc)) from None
    return pattern


def name_search(pattern: str) -> Callable[[str], bool]:
    """A checked pattern (:func:`check_pattern`) as a test of a name."""
    matcher = compile_pattern(pattern)
    return lambda name: matcher.search(name) is not None


def name_matcher(pattern: str | None) -> tuple[str | None, str | None]:
    """``(exact_name, regex)`` for a ClearML ``name`` filter; at most one is set."""
    if not pattern:
        return None, None
    literal = anchored_literal(pattern)
    if literal is not None:
        return literal, None
    return None, check_pattern(pattern)
