"""The models page's query: filters from the URL, compiled by the store's query layer
(:func:`modelbook.store.query.where`), and keyset paging on an indexed order.

A page is found in two indexed steps: the ids of the next ``size + 1`` models after the
cursor (``WHERE <filters> AND (key, seq) < (:key, :seq) ORDER BY key, seq LIMIT n``: no
OFFSET, so page 2 000 costs what page 1 costs), then their records through the store's own
verb (``query_models(ids=...)``, one batched read of their metadata). The cursor names the
last row shown: ``after`` in the URL, opaque to people.

Example:
    >>> f = ModelFilter.from_params({"tags": "best, -old", "published": "yes"})
    >>> f.terms(), f.query(None).ready
    (['best', '-old'], True)
    >>> ModelFilter.from_params({"sort": "size"})
    Traceback (most recent call last):
      ...
    modelbook.errors.InvalidArgumentError: cannot sort models by 'size'; accepted: -created, \
created, name, -name, -last_update, last_update, -iteration, iteration, -versions, versions
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

from modelbook.errors import InvalidArgumentError, ProjectNotFoundError
from modelbook.records import ARCHIVED_TAG, ModelQuery, ModelRecord, ProjectRecord
from modelbook.store import schema as s
from modelbook.store.query import where
from modelbook.store.sql import SqlStore
from modelbook.store.tagfilter import parse_tag_filter

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Matching models counted at most: past it the page says "500+" (counting every match of
#: a broad filter over 100 000 models would cost more than the page itself).
COUNT_CAP = 500

#: The orders offered, with what the page calls them; ``-`` is descending.
SORTS = {
    "-created": "newest first", "created": "oldest first", "name": "name, A to Z",
    "-name": "name, Z to A", "-last_update": "last updated first",
    "last_update": "least recently updated first", "-iteration": "highest iteration first",
    "iteration": "lowest iteration first", "-versions": "most versions first",
    "versions": "fewest versions first",
}  # fmt: skip
_CHOICES = {
    "published": ("", "yes", "no"),
    "archived": ("no", "yes", "all"),
}


def _sort_column(name: str) -> Any:
    m = s.models.c
    columns = {
        "created": m.seq, "name": m.name, "last_update": m.last_update,
        "iteration": sa.func.coalesce(m.iteration, -1), "versions": m.version,
    }  # fmt: skip
    return columns[name.lstrip("-")]


@dataclass(frozen=True)
class ModelFilter:
    """What the models page shows, as its URL says.

    Attributes:
        project: a project name ('' for all).
        tags: comma-separated tags; a model with any of them matches, ``-tag`` excludes.
        published: ``yes`` / ``no`` / '' (both).
        archived: ``no`` (hide archived, the default) / ``yes`` (only archived) / ``all``.
        name: text the name contains (any case).
        sort: a key of :data:`SORTS`.
        after: the cursor of the row before this page ('' for the first page).
        size: rows per page (1 to :data:`MAX_PAGE_SIZE`).

    Example:
        >>> ModelFilter(project="vision", sort="name").link(after="abc")
        '?project=vision&sort=name&after=abc'
    """

    project: str = ""
    tags: str = ""
    published: str = ""
    archived: str = "no"
    name: str = ""
    sort: str = "-created"
    after: str = ""
    size: int = PAGE_SIZE
    cursor: tuple[Any, int] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ModelFilter:
        """The filter of a query string.

        Raises:
            InvalidArgumentError: a value the page does not accept (the message says which
                values it does).
        """
        values: dict[str, Any] = {
            k: params.get(k, "").strip() for k in ("project", "tags", "name", "after")
        }
        for key, accepted in _CHOICES.items():
            value = params.get(key, accepted[0])
            if value not in accepted:
                raise InvalidArgumentError(
                    f"{key} must be one of {', '.join(repr(a) for a in accepted)}, got {value!r}"
                )
            values[key] = value
        sort = params.get("sort", "-created")
        if sort not in SORTS:
            raise InvalidArgumentError(
                f"cannot sort models by {sort!r}; accepted: {', '.join(SORTS)}"
            )
        size_text = params.get("size", str(PAGE_SIZE))
        if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
            raise InvalidArgumentError(
                f"size must be a whole number from 1 to {MAX_PAGE_SIZE}, got {size_text!r}"
            )
        found = cls(**values, sort=sort, size=int(size_text))
        parse_tag_filter(found.terms())  # raises TagFilterError for a bare '-'
        cursor = decode_cursor(found.after, sort) if found.after else None
        return replace(found, cursor=cursor)

    def terms(self) -> list[str]:
        """The tag filter terms (ClearML's: any of the plain ones, none of the ``-`` ones)."""
        return [t.strip() for t in self.tags.split(",") if t.strip()]

    def query(self, project_id: str | None) -> ModelQuery:
        """The store query of these filters (no order or paging: :func:`models_page` adds
        the keyset)."""
        archived = {"no": [f"-{ARCHIVED_TAG}"], "yes": [ARCHIVED_TAG], "all": None}
        return ModelQuery(
            projects=[project_id] if project_id else None,
            tags=self.terms() or None,
            system_tags=archived[self.archived],
            ready={"yes": True, "no": False}.get(self.published),
            name_pattern=f"(?i){re.escape(self.name)}" if self.name else None,
        )

    def link(self, **changes: Any) -> str:
        """The query string of this filter with ``changes`` (defaults left out)."""
        chosen = replace(self, **changes)
        default = ModelFilter()
        keys = ("project", "tags", "published", "archived", "name", "sort", "after", "size")
        pairs = [(k, getattr(chosen, k)) for k in keys if getattr(chosen, k) != getattr(default, k)]
        return "?" + urlencode(pairs) if pairs else "?"


def encode_cursor(key: Any, seq: int) -> str:
    """The opaque ``after`` of a row: its sort key and sequence number."""
    value = key.isoformat() if isinstance(key, datetime) else key
    raw = json.dumps([value, seq], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, sort: str) -> tuple[Any, int]:
    """The sort key and sequence number of a cursor made by :func:`encode_cursor`.

    Raises:
        InvalidArgumentError: the cursor was not made for this order (or is damaged).
    """
    problem = InvalidArgumentError(
        f"the page cursor 'after={text[:40]}' is damaged or belongs to another order; "
        "open the first page (without 'after')"
    )
    try:
        value, seq = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        raise problem from None
    name = sort.lstrip("-")
    kinds = {"created": int, "versions": int, "iteration": int, "name": str, "last_update": str}
    if not isinstance(seq, int) or type(value) is not kinds[name]:
        raise problem
    if name == "last_update":
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError:
            raise problem from None
    return value, seq


@dataclass(frozen=True)
class ModelsPage:
    """One page of the models table.

    Attributes:
        models: the rows, in order.
        next_after: the cursor of the next page, None on the last page.
        total: how many models match the filters, counted up to :data:`COUNT_CAP` + 1.
        projects: every project (for the filter's choices and the project column).

    Example:
        >>> ModelsPage([], None, 501, []).total_text
        '500+ models'
    """

    models: list[ModelRecord]
    next_after: str | None
    total: int
    projects: list[ProjectRecord]

    @property
    def total_text(self) -> str:
        """``"12 models"``, or ``"500+ models"`` past the cap."""
        shown = f"{COUNT_CAP}+" if self.total > COUNT_CAP else str(self.total)
        return f"{shown} model{'' if self.total == 1 else 's'}"

    @property
    def project_names(self) -> dict[str, str]:
        return {p.id: p.name for p in self.projects}


def models_page(store: SqlStore, chosen: ModelFilter) -> ModelsPage:
    """The page of models ``chosen`` describes.

    Raises:
        ProjectNotFoundError: no project has the chosen name.
    """
    projects = store.list_projects()
    project_id = None
    if chosen.project:
        project_id = next((p.id for p in projects if p.name == chosen.project), None)
        if project_id is None:
            raise ProjectNotFoundError(chosen.project, [p.name for p in projects])
    query = chosen.query(project_id)
    m = s.models.c
    key = _sort_column(chosen.sort)
    descending = chosen.sort.startswith("-")
    conditions = where(query)
    if chosen.cursor is not None:
        value, seq = chosen.cursor
        if key is m.seq:
            conditions.append(m.seq < seq if descending else m.seq > seq)
        else:
            row, bound = sa.tuple_(key, m.seq), sa.tuple_(sa.literal(value), sa.literal(seq))
            conditions.append(row < bound if descending else row > bound)
    order = [key.desc(), m.seq.desc()] if descending else [key.asc(), m.seq.asc()]
    if key is m.seq:
        order = order[:1]
    stmt = (
        sa.select(m.id, m.seq, key.label("sort_key"))
        .where(*conditions).order_by(*order).limit(chosen.size + 1)
    )  # fmt: skip
    matching = sa.select(m.seq).where(*where(query)).limit(COUNT_CAP + 1).subquery()
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
        total = conn.execute(sa.select(sa.func.count()).select_from(matching)).scalar() or 0
    shown = rows[: chosen.size]
    found = {r.id: r for r in store.query_models(ModelQuery(ids=[r.id for r in shown]))}
    models = [found[r.id] for r in shown if r.id in found]  # one may have been deleted since
    next_after = None
    if len(rows) > chosen.size:
        last = shown[-1]
        next_after = encode_cursor(last.sort_key, last.seq)
    return ModelsPage(models, next_after, total, projects)
