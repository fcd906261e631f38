"""Tag filters with the ClearML server's semantics (``models.get_all(tags=[...])``).

The server does not parse a boolean expression: it sorts every term into one of three
buckets and joins the buckets with one global operator.

* A plain list is any-of: ``["a", "b"]`` means a or b.
* ``-x`` excludes x, but only before the first operator or after ``__$nop``:
  ``["a", "-b"]`` means a and not b.
* ``__$all`` / ``__$and`` switch the context to AND, ``__$any`` / ``__$or`` to OR;
  ``__$not`` negates the next tag; ``__$nop`` resets to OR and re-enables ``-``.
* Terms land in buckets by (context, include): (OR, +) → ``any``, (AND, +) → ``all``,
  (any context, -) → ``none``. The buckets are joined by the first operator of the list
  if it starts with one, else by AND.
* ``None`` in the list means "or has no tags at all".

Example:
    >>> f = parse_tag_filter(["__$all", "a", "b", "__$not", "c"])
    >>> f.global_and, f.all_of, f.none_of
    (True, ['a', 'b'], ['c'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from modelbook.errors import TagFilterError

_OPERATORS = {"__$all": True, "__$and": True, "__$any": False, "__$or": False}
_NOT, _RESET = "__$not", "__$nop"


@dataclass
class TagFilter:
    """The parsed buckets of a tag filter.

    A model matches when ``combine(has any of any_of, has all of all_of, has none of none_of)``
    holds, with ``combine`` = AND if ``global_and`` else OR over the non-empty buckets, or
    when ``allow_untagged`` and the model has no tags.
    """

    any_of: list[str] = field(default_factory=list)
    all_of: list[str] = field(default_factory=list)
    none_of: list[str] = field(default_factory=list)
    global_and: bool = True
    allow_untagged: bool = False

    @property
    def empty(self) -> bool:
        return not (self.any_of or self.all_of or self.none_of)

    def matches(self, tags: Sequence[str]) -> bool:
        """Evaluate the filter on one tag list (the reference semantics; SQL mirrors it)."""
        have = set(tags)
        if self.allow_untagged and not have:
            return True
        checks = []
        if self.any_of:
            checks.append(bool(have.intersection(self.any_of)))
        if self.all_of:
            checks.append(have.issuperset(self.all_of))
        if self.none_of:
            checks.append(not have.intersection(self.none_of))
        if not checks:
            return True
        return all(checks) if self.global_and else any(checks)


def parse_tag_filter(terms: Sequence[str | None]) -> TagFilter:
    """Sort the terms of a ClearML tag list into buckets.

    Raises:
        TagFilterError: an unknown ``__$`` operator, a ``__$not`` with no tag after it,
            a bare ``-``, or a term that is not a string.
    """
    if isinstance(terms, str):
        terms = [terms]
    result = TagFilter()
    global_and: bool | None = None
    context_and = False
    legacy_minus = True
    negate_next = False
    for term in terms:
        if term is None:
            negate_next = False
            result.allow_untagged = True
            continue
        if not isinstance(term, str):
            raise TagFilterError(f"tag filter terms must be strings or None, got {term!r}")
        if term == _RESET:
            negate_next, context_and, legacy_minus = False, False, True
            continue
        if term.startswith("__$"):
            if negate_next:
                raise TagFilterError(f"a tag is expected after '__$not', got operator {term!r}")
            if term == _NOT:
                negate_next = True
                continue
            if term not in _OPERATORS:
                raise TagFilterError(
                    f"unknown tag operator {term!r}; accepted operators: "
                    "'__$all', '__$and', '__$any', '__$or', '__$not', '__$nop'"
                )
            context_and = _OPERATORS[term]
            legacy_minus = False
            if global_and is None:
                global_and = context_and
            continue
        if global_and is None:
            global_and = True
        include = True
        if negate_next:
            include, negate_next = False, False
        elif legacy_minus and term.startswith("-"):
            term = term[1:]
            if not term:
                raise TagFilterError("a tag is expected after the exclude prefix '-'")
            include = False
        bucket = (
            result.none_of if not include else (result.all_of if context_and else result.any_of)
        )
        if term not in bucket:
            bucket.append(term)
    if negate_next:
        raise TagFilterError("a tag is expected after '__$not' at the end of the tag filter")
    result.global_and = True if global_and is None else global_and
    return result
