"""Model queries compiled to SQL: ClearML's filters as indexed conditions.

ClearML's tag filter is compiled bucket by bucket (any / all / none) to sub-queries on the
``model_tags`` index; :class:`~modelbook.store.tagfilter.TagFilter` is the Python reference
the tests compare these conditions against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from modelbook.errors import InvalidArgumentError
from modelbook.records import ModelQuery
from modelbook.store import schema as s
from modelbook.store.tagfilter import TagFilter, parse_tag_filter

_ORDERABLE = {"created", "last_update", "name", "iteration", "framework", "ready", "id"}


def tag_condition(f: TagFilter, kind: str) -> sa.ColumnElement[bool]:
    mt, m = s.model_tags, s.models

    def has(tags: list[str]) -> sa.ColumnElement[bool]:
        return sa.exists().where(
            mt.c.model_seq == m.c.seq, mt.c.kind == kind, mt.c.tag.in_(tags)
        )

    def tagged(tags: list[str]) -> sa.ColumnElement[bool]:
        # "seq IN (models with one of these tags)": the tag index can drive the search,
        # so a rare tag is found without walking every model of the project.
        return m.c.seq.in_(
            sa.select(mt.c.model_seq).where(mt.c.kind == kind, mt.c.tag.in_(tags))
        )

    parts: list[sa.ColumnElement[bool]] = []
    if f.any_of:
        parts.append(tagged(f.any_of))
    if f.all_of:
        parts.append(sa.and_(*(tagged([t]) for t in f.all_of)))
    if f.none_of:
        parts.append(~has(f.none_of))
    if not parts:
        return sa.true()
    cond = sa.and_(*parts) if f.global_and else sa.or_(*parts)
    if f.allow_untagged:
        untagged = ~sa.exists().where(mt.c.model_seq == m.c.seq, mt.c.kind == kind)
        cond = sa.or_(cond, untagged)
    return cond

def where(q: ModelQuery) -> list[sa.ColumnElement[bool]]:
    m, md = s.models.c, s.model_metadata
    conds: list[sa.ColumnElement[bool]] = []
    if q.projects is not None:
        conds.append(m.project.in_(q.projects))
    if q.name is not None:
        conds.append(m.name == q.name)
    if q.name_pattern:
        conds.append(m.name.regexp_match(q.name_pattern))
    if q.ready is not None:
        conds.append(m.ready == q.ready)
    if q.uri is not None:
        conds.append(m.uri.in_(q.uri))
    if q.task is not None:
        conds.append(m.task == q.task)
    if q.ids is not None:
        conds.append(m.id.in_(q.ids))
    for key, value in (q.metadata or {}).items():
        conds.append(
            sa.exists().where(
                md.c.model_seq == m.seq, md.c.key == key, md.c.value == str(value)
            )
        )
    for kind, terms in (("u", q.tags), ("s", q.system_tags)):
        if terms:
            conds.append(tag_condition(parse_tag_filter(terms), kind))
    return conds

def order(order_by: Sequence[str]) -> list[Any]:
    m = s.models.c
    clauses: list[Any] = []
    for item in order_by or ["-created"]:
        desc = item.startswith("-")
        name = item.lstrip("-")
        if name not in _ORDERABLE:
            raise InvalidArgumentError(
                f"cannot order models by {name!r}; accepted: {sorted(_ORDERABLE)} "
                "(prefix '-' for descending)"
            )
        column = m.seq if name == "created" else getattr(m, name)
        clauses.append(column.desc() if desc else column.asc())
    clauses.append(m.seq.desc())
    return clauses
