"""Model queries compiled to SQL: ClearML's filters as indexed conditions.

ClearML's tag filter is compiled bucket by bucket (any / all / none) to sub-queries on the
``model_tags`` index; :class:`~modelbook.store.tagfilter.TagFilter` is the Python reference
the tests compare these conditions against.

When a filter requires one tag (a one-tag any-of bucket, or any tag of an all-of bucket,
joined by AND to the rest), :func:`select_models` drives the query from that tag's rows in
``ix_model_tags_tag`` (kind, tag, model_seq) and orders by their ``model_seq``: newest first
is then a backward walk of the index that ``LIMIT`` stops after ``max_results`` matches,
instead of collecting every model with the tag and sorting them. The other tag tests become
per-row probes (``EXISTS`` on the primary key), never lists of every match.
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


#: A tag the query is driven from: (kind, tag); "u" = user tags, "s" = system tags.
Driver = tuple[str, str]


def tag_condition(
    f: TagFilter, kind: str, driven: str | None = None
) -> sa.ColumnElement[bool]:
    """The SQL condition of ``f`` on the tags of ``kind``.

    ``driven``: a tag the query already requires through its join (see
    :func:`driving_tag`); it is left out, and the other tags are probed per model.
    """
    mt, m = s.model_tags, s.models

    def has(tags: list[str]) -> sa.ColumnElement[bool]:
        return sa.exists().where(
            mt.c.model_seq == m.c.seq, mt.c.kind == kind, mt.c.tag.in_(tags)
        )

    def tagged(tags: list[str]) -> sa.ColumnElement[bool]:
        if driven is not None:  # the rows come from the tag index already: probe each
            return has(tags)
        # "seq IN (models with one of these tags)": the tag index can drive the search,
        # so a rare tag is found without walking every model of the project.
        return m.c.seq.in_(
            sa.select(mt.c.model_seq).where(mt.c.kind == kind, mt.c.tag.in_(tags))
        )

    any_of = [] if f.any_of == [driven] else f.any_of
    all_of = [t for t in f.all_of if t != driven]
    parts: list[sa.ColumnElement[bool]] = []
    if any_of:
        parts.append(tagged(any_of))
    if all_of:
        parts.append(sa.and_(*(tagged([t]) for t in all_of)))
    if f.none_of:
        parts.append(~has(f.none_of))
    if not parts:
        return sa.true()
    cond = sa.and_(*parts) if f.global_and else sa.or_(*parts)
    if f.allow_untagged:
        untagged = ~sa.exists().where(mt.c.model_seq == m.c.seq, mt.c.kind == kind)
        cond = sa.or_(cond, untagged)
    return cond


def driving_tag(q: ModelQuery) -> Driver | None:
    """The tag every match of ``q`` must carry, if its tag filters name one.

    That is a one-tag any-of bucket or the first tag of an all-of bucket, of a filter whose
    buckets are joined by AND (or that has one bucket) and that does not also accept untagged
    models; user tags are preferred to system tags.
    """
    for kind, terms in (("u", q.tags), ("s", q.system_tags)):
        if not terms:
            continue
        f = parse_tag_filter(terms)
        buckets = sum(1 for b in (f.any_of, f.all_of, f.none_of) if b)
        if f.allow_untagged or (buckets > 1 and not f.global_and):
            continue
        if len(f.any_of) == 1:
            return kind, f.any_of[0]
        if f.all_of:
            return kind, f.all_of[0]
    return None


def select_models(q: ModelQuery) -> sa.Select[Any]:
    """``SELECT models ... WHERE ... ORDER BY ...`` for ``q`` (no offset or limit).

    With a :func:`driving_tag` the models are joined to that tag's rows and ordered by their
    ``model_seq`` (equal to ``models.seq``: the same rows in the same order, one per model, as
    the primary key (model_seq, kind, tag) is unique), so a newest-first query walks the tag
    index backwards and stops at the limit.
    """
    m = s.models
    driver = driving_tag(q)
    if driver is None:
        return sa.select(m).where(*where(q)).order_by(*order(q.order_by))
    kind, tag = driver
    rows = s.model_tags.alias("driver")
    return (
        sa.select(m)
        .select_from(rows.join(m, m.c.seq == rows.c.model_seq))
        .where(rows.c.kind == kind, rows.c.tag == tag, *where(q, driver))
        .order_by(*order(q.order_by, seq=rows.c.model_seq))
    )


def where(q: ModelQuery, driver: Driver | None = None) -> list[sa.ColumnElement[bool]]:
    """The conditions of ``q``; ``driver``: a tag the query's join already requires."""
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
            driven = driver[1] if driver is not None and driver[0] == kind else None
            conds.append(tag_condition(parse_tag_filter(terms), kind, driven))
    return conds


def order(order_by: Sequence[str], seq: Any = None) -> list[Any]:
    """ORDER BY clauses; ``seq``: the column standing for ``models.seq`` (creation order)."""
    m = s.models.c
    seq = m.seq if seq is None else seq
    clauses: list[Any] = []
    for item in order_by or ["-created"]:
        desc = item.startswith("-")
        name = item.lstrip("-")
        if name not in _ORDERABLE:
            raise InvalidArgumentError(
                f"cannot order models by {name!r}; accepted: {sorted(_ORDERABLE)} "
                "(prefix '-' for descending)"
            )
        column = seq if name == "created" else getattr(m, name)
        clauses.append(column.desc() if desc else column.asc())
        if name == "created":  # unique: nothing after it can change the order
            return clauses
    clauses.append(seq.desc())
    return clauses
