"""Ownership of stored objects: which bytes the registry wrote, and when they may go.

The rules, decided here and nowhere else:

* Every object the registry writes is recorded (``objects``: uri, sha256, size) *before* its
  bytes are written (state ``pending``) and becomes ``live`` in the transaction that makes a
  model or version reference it. An object the registry did not write (``register_uri``,
  ``import_model``, anything recorded before ownership was tracked) is recorded with
  ``owned = False`` and is never deleted, whatever the caller asks.
* An object is *referenced* while a model's current weights or an unpruned version name it.
* An owned object becomes ``doomed`` in the same transaction that drops its last reference;
  its bytes are deleted only after that commits (:mod:`modelbook.retention`), and the row is
  forgotten once they are gone. A crash in between leaves a doomed row that ``gc`` retries.
* A doomed object is never referenced again: a writer that needs its URI gets a transient
  error, retries, and re-writes the bytes once the deletion is through.

All functions take an open write transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from modelbook.errors import InvalidArgumentError, ModelPublishedError, StorageError
from modelbook.records import GcResult, ModelVersionRecord, PruneResult
from modelbook.store import schema as s

#: A ``doomed`` row older than this is taken to be left by a deleter that died.
ABANDONED_AFTER = timedelta(minutes=10)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _row(conn: sa.Connection, uri: str) -> sa.Row | None:
    return conn.execute(sa.select(s.objects).where(s.objects.c.uri == uri)).first()


def referenced(
    conn: sa.Connection, uri: str, ignoring: tuple[int, list[int]] | None = None
) -> bool:
    """Whether a model's current weights or an unpruned version name ``uri``; ``ignoring``
    ``(model seq, versions)`` counts those versions as pruned already (a dry run)."""
    m, mv = s.models, s.model_versions
    by_model = sa.select(m.c.seq).where(m.c.uri == uri).limit(1)
    by_version = sa.select(mv.c.model_seq).where(mv.c.uri == uri, mv.c.pruned.is_(False))
    if ignoring is not None:
        seq, versions = ignoring
        by_version = by_version.where(~((mv.c.model_seq == seq) & mv.c.version.in_(versions)))
    return bool(conn.execute(by_model).first() or conn.execute(by_version.limit(1)).first())


def _insert(
    conn: sa.Connection, uri: str, sha256: str | None, size: int | None, owned: bool, state: str
) -> None:
    stamp = _now()
    conn.execute(
        sa.insert(s.objects).values(
            uri=uri, sha256=sha256, size=size, owned=owned, state=state,
            created=stamp, updated=stamp,
        )
    )  # fmt: skip


def _check_same_bytes(row: sa.Row, sha256: str | None) -> None:
    if row.sha256 and sha256 and row.sha256 != sha256:
        raise StorageError(
            f"{row.uri} is recorded with sha256 {row.sha256}, not {sha256}: versions never "
            "share a URI unless their bytes are identical"
        )


def _busy(uri: str) -> StorageError:
    return StorageError(
        f"{uri} is being deleted (nothing references it any more); the write is retried "
        "once the deletion is through",
        transient=True,
    )


def begin_write(conn: sa.Connection, uri: str, sha256: str | None, size: int | None) -> None:
    """Record that the registry is about to write ``uri`` (state ``pending``).

    Raises:
        StorageError: ``uri`` holds an object the registry did not write (never
            overwritten), or other bytes than ``sha256``, or is being deleted (transient).
    """
    row, stamp = _row(conn, uri), _now()
    if row is None:
        _insert(conn, uri, sha256, size, owned=True, state="pending")
        return
    if not row.owned:
        if sha256 and row.sha256 == sha256:
            return  # these very bytes, kept for good: referenced again, never rewritten
        raise StorageError(
            f"refusing to write {uri}: an object the registry did not write is stored there "
            "(registered with register_uri or import_model); choose another destination"
        )
    _check_same_bytes(row, sha256)
    if row.state == "doomed" and stamp - _aware(row.updated) < ABANDONED_AFTER:
        raise _busy(uri)
    # pending again: a writer is about to reference it, so losing its other references
    # must not doom it meanwhile (gc collects it after the grace period if the writer died)
    conn.execute(
        sa.update(s.objects).where(s.objects.c.uri == uri).values(state="pending", updated=stamp)
    )


def reference(
    conn: sa.Connection, uri: str, sha256: str | None, size: int | None, owned: bool
) -> None:
    """Record that a model or version now references ``uri`` (state ``live``).

    ``owned`` says whether the registry wrote it; an object recorded as foreign stays
    foreign, and one recorded as the registry's stays the registry's.

    Raises:
        StorageError: the object is being deleted (transient: write it again), or the URI
            is recorded with other bytes.
    """
    row = _row(conn, uri)
    if row is None:
        _insert(conn, uri, sha256, size, owned=owned, state="live")
        return
    if row.state == "doomed":
        raise _busy(uri)
    _check_same_bytes(row, sha256)
    conn.execute(
        sa.update(s.objects)
        .where(s.objects.c.uri == uri)
        .values(state="live", updated=_now(), sha256=row.sha256 or sha256, size=row.size or size)
    )


def doom_unreferenced(
    conn: sa.Connection, uris: Iterable[str], ignoring: tuple[int, list[int]] | None = None
) -> list[str]:
    """Mark the owned, live objects among ``uris`` that nothing references any more as
    doomed; return them (their bytes may be deleted once this transaction commits). A
    pending object (a writer is about to reference it) is left to gc. With ``ignoring``
    nothing is changed: the objects that pruning those versions would doom are returned."""
    doomed = []
    for uri in dict.fromkeys(u for u in uris if u):
        row = _row(conn, uri)
        if row is None or not row.owned or row.state != "live":
            continue
        if referenced(conn, uri, ignoring):
            continue
        if ignoring is None:
            where = s.objects.c.uri == uri
            conn.execute(sa.update(s.objects).where(where).values(state="doomed", updated=_now()))
        doomed.append(uri)
    return doomed


def disown(conn: sa.Connection, uris: Iterable[str]) -> None:
    """Record the owned objects among ``uris`` as not the registry's: kept for good, even
    when other models reference them and later let go."""
    o = s.objects
    for uri in dict.fromkeys(u for u in uris if u):
        conn.execute(
            sa.update(o).where(o.c.uri == uri, o.c.state != "doomed").values(owned=False)
        )


def garbage(conn: sa.Connection, pending_grace: timedelta, dry_run: bool) -> list[str]:
    """Owned objects nothing references: doomed ones whose deletion did not finish, live
    ones whose last reference went, pending ones older than ``pending_grace`` (a writer
    that died). Unless ``dry_run``, they are marked doomed; returns their URIs."""
    o = s.objects
    cutoff = _now() - pending_grace
    rows = conn.execute(
        sa.select(o.c.uri, o.c.state, o.c.updated).where(o.c.owned.is_(True)).order_by(o.c.uri)
    ).all()
    found = []
    for uri, state, updated in rows:
        if state == "pending" and _aware(updated) > cutoff:
            continue
        if state != "doomed" and referenced(conn, uri):
            continue
        found.append(uri)
    if found and not dry_run:
        for start in range(0, len(found), 500):
            chunk = found[start : start + 500]
            conn.execute(
                sa.update(o).where(o.c.uri.in_(chunk)).values(state="doomed", updated=_now())
            )
    return found


def forget(conn: sa.Connection, uris: Iterable[str]) -> None:
    """Drop the rows of doomed objects whose bytes are gone."""
    o = s.objects
    for uri in dict.fromkeys(uris):
        conn.execute(sa.delete(o).where(o.c.uri == uri, o.c.state == "doomed"))


def references_ending(
    conn: sa.Connection, suffixes: Iterable[str]
) -> list[tuple[str, str, bool, str]]:
    """``(model id, model name, published, uri)`` for every current or unpruned-version URI
    ending with one of ``suffixes`` (a files server's path under any host name)."""
    m, mv = s.models, s.model_versions
    found: dict[tuple[str, str], tuple[str, str, bool, str]] = {}
    for suffix in dict.fromkeys(suffixes):
        escaped = suffix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        current = conn.execute(
            sa.select(m.c.id, m.c.name, m.c.ready, m.c.uri).where(
                m.c.uri.like(f"%{escaped}", escape="\\")
            )
        ).all()
        versions = conn.execute(
            sa.select(m.c.id, m.c.name, m.c.ready, mv.c.uri)
            .join(mv, mv.c.model_seq == m.c.seq)
            .where(mv.c.uri.like(f"%{escaped}", escape="\\"), mv.c.pruned.is_(False))
        ).all()
        for row in [*current, *versions]:
            found[(row[0], row[3])] = (row[0], row[1], bool(row[2]), row[3])
    return list(found.values())


def move_references(conn: sa.Connection, old: str, new: str) -> None:
    """Point every model, version and the object record naming ``old`` at ``new`` (the
    same bytes, moved by the files server so that a new upload can take the old name)."""
    m, mv, o = s.models, s.model_versions, s.objects
    conn.execute(sa.update(m).where(m.c.uri == old).values(uri=new))
    conn.execute(sa.update(mv).where(mv.c.uri == old).values(uri=new))
    row = _row(conn, old)
    if row is not None:
        conn.execute(sa.delete(o).where(o.c.uri == old))
        conn.execute(
            sa.insert(o).values(
                uri=new, sha256=row.sha256, size=row.size, owned=row.owned, state="live",
                created=row.created, updated=_now(),
            )
        )  # fmt: skip


def _number(text: object) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def best_version(versions: list[ModelVersionRecord]) -> int | None:
    """The version with the best monitored value, by the monitor and mode recorded on the
    newest version that has one (metadata ``monitor``, ``monitor_mode``,
    ``monitor_value``); the earliest wins a tie. None when no version records a monitor."""

    def meta(v: ModelVersionRecord, key: str) -> str | None:
        return (v.metadata.get(key) or {}).get("value")

    monitored = [v for v in versions if meta(v, "monitor") and meta(v, "monitor_mode")]
    if not monitored:
        return None
    monitor, mode = meta(monitored[-1], "monitor"), meta(monitored[-1], "monitor_mode")
    best: tuple[float, int] | None = None
    for v in monitored:
        value = _number(meta(v, "monitor_value"))
        if (meta(v, "monitor"), meta(v, "monitor_mode")) != (monitor, mode) or value is None:
            continue
        score = value if mode == "max" else -value
        if best is None or score > best[0]:
            best = (score, v.version)
    return best[1] if best else None


def choose_prunable(
    versions: list[ModelVersionRecord], current_uri: str | None, keep_last: int
) -> tuple[list[int], dict[int, str]]:
    """Which versions retention may prune: all but the newest ``keep_last`` unpruned ones,
    except the current weights and the best version. Returns ``(prunable, {kept: why})``."""
    live = [v for v in versions if not v.pruned]
    older = live[: max(len(live) - keep_last, 0)]
    best = best_version(live)
    prunable, kept = [], {}
    for v in older:
        if v.uri == current_uri:
            kept[v.version] = "the model's current weights"
        elif v.version == best:
            kept[v.version] = "the best version by the monitored metric"
        else:
            prunable.append(v.version)
    return prunable, kept


class ObjectVerbs:
    """The store's ownership verbs (see :class:`~modelbook.backends.base.Backend`), each one
    transaction; mixed into :class:`~modelbook.store.sql.SqlStore`.

    Example:
        >>> from modelbook.store.sql import SqlStore
        >>> store = SqlStore("sqlite://")
        >>> store.begin_object_write("file:///out/01-ab12/w.pt", "ab" * 32, 3)  # before writing
        >>> store.collect_garbage(pending_grace=0).doomed  # nothing ever referenced it
        ['file:///out/01-ab12/w.pt']
    """

    _write: Callable[[], AbstractContextManager[sa.Connection]]
    _read: Callable[[], AbstractContextManager[sa.Connection]]
    _model_row: Callable[..., Any]
    _versions: Callable[[sa.Connection, Any], list[ModelVersionRecord]]

    def prune_versions(self, model_id: str, keep_last: int, dry_run: bool = False) -> PruneResult:
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise InvalidArgumentError(f"keep_last must be an int >= 0, got {keep_last!r}")
        mv = s.model_versions
        with self._write() as conn:
            row = self._model_row(conn, model_id, lock=True)
            if row.ready:
                raise ModelPublishedError(model_id, row.name, "prune the versions")
            versions = self._versions(conn, row)
            prunable, kept = choose_prunable(versions, row.uri, keep_last)
            if dry_run or not prunable:  # what pruning would doom, changing nothing
                uris = [v.uri for v in versions if v.version in prunable]
                doomed = doom_unreferenced(conn, uris, ignoring=(row.seq, prunable))
                return PruneResult(pruned=prunable, doomed=doomed if dry_run else [], kept=kept)
            conn.execute(
                sa.update(mv)
                .where(mv.c.model_seq == row.seq, mv.c.version.in_(prunable))
                .values(pruned=True)
            )
            uris = [v.uri for v in versions if v.version in prunable]
            return PruneResult(pruned=prunable, doomed=doom_unreferenced(conn, uris),
                               kept=kept)  # fmt: skip

    def begin_object_write(self, uri: str, sha256: str | None, size: int | None) -> None:
        with self._write() as conn:
            begin_write(conn, uri, sha256, size)

    def collect_garbage(self, pending_grace: float = 86400.0, dry_run: bool = False) -> GcResult:
        with self._write() as conn:
            return GcResult(doomed=garbage(conn, timedelta(seconds=pending_grace), dry_run))

    def forget_objects(self, uris: list[str]) -> None:
        with self._write() as conn:
            forget(conn, uris)

    def is_referenced(self, uri: str) -> bool:
        with self._read() as conn:
            return referenced(conn, uri)

    def references_ending(self, suffixes: list[str]) -> list[tuple[str, str, bool, str]]:
        with self._read() as conn:
            return references_ending(conn, suffixes)

    def move_objects(self, moves: dict[str, str]) -> None:
        """Repoint every model, version and object record naming a key at its value, in
        one transaction."""
        with self._write() as conn:
            for old, new in moves.items():
                move_references(conn, old, new)
