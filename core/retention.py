"""Deleting stored bytes: removing models, pruning versions, collecting garbage.

The store decides which objects may go (:mod:`modelbook.store.objects`: only objects the
registry wrote, only once nothing references them, in the transaction that drops the last
reference); this module deletes their bytes *after* that decision committed, through the
registry's storage drivers, and then forgets them. A deletion that fails leaves the object
doomed: :func:`collect` (``modelbook gc``) tries it again. Nothing else in modelbook deletes
stored objects.

Example:
    >>> import modelbook, tempfile, pathlib
    >>> modelbook.configure(home=tempfile.mkdtemp())
    >>> task = modelbook.Task.init(project_name="docs", task_name="retention")
    >>> model = modelbook.OutputModel(task=task)
    >>> for step in range(3):
    ...     w = pathlib.Path(tempfile.mkdtemp()) / "w.pt"
    ...     _ = w.write_bytes(bytes([step]) * 10)
    ...     _ = model.update_weights(str(w), iteration=step, async_enable=False)
    >>> report = prune(config.get_backend(), model.id, keep_last=1)
    >>> report.pruned, [v.pruned for v in model.versions]
    ([1, 2], [True, True, False])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from modelbook import config
from modelbook.backends.base import Backend
from modelbook.errors import StorageError
from modelbook.records import GcResult, PruneResult

log = logging.getLogger("modelbook")


@dataclass(frozen=True)
class Deleted:
    """What a deletion removed, and what it could not (retried by ``modelbook gc``).

    Example:
        >>> Deleted(removed=["file:///b/w.pt"], failed={"s3://x/w.pt": "timed out"}).failed
        {'s3://x/w.pt': 'timed out'}
    """

    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def delete_doomed(backend: Backend, uris: list[str]) -> Deleted:
    """Delete the bytes of doomed objects, then forget them; failures stay doomed."""
    removed: list[str] = []
    failed: dict[str, str] = {}
    for uri in uris:
        try:
            backend.driver_for(uri).delete(uri)
        except (StorageError, OSError) as exc:
            failed[uri] = str(exc)
            log.warning("could not delete %s (modelbook gc retries it): %s", uri, exc)
            continue
        removed.append(uri)
    if removed:
        backend.forget_objects(removed)
    return Deleted(removed, failed)


def remove_model(
    backend: Backend, model_id: str, delete_weights: bool = True, force: bool = True
) -> Deleted:
    """Delete a model record; delete the bytes it alone referenced when ``delete_weights``
    (else they are disowned: kept, and never deleted by modelbook). Without ``force``, a
    published or used model is refused (:class:`~modelbook.errors.ModelInUseError`)."""
    doomed = backend.delete_model(model_id, delete_objects=delete_weights, force=force)
    return delete_doomed(backend, doomed)


@dataclass(frozen=True)
class PruneReport(PruneResult):
    """:class:`PruneResult`, plus the objects whose deletion failed.

    Example:
        >>> PruneReport(pruned=[1], doomed=["file:///b/w.pt"]).failed
        {}
    """

    failed: dict[str, str] = field(default_factory=dict)


def prune(backend: Backend, model_id: str, keep_last: int, dry_run: bool = False) -> PruneReport:
    """Prune all but the newest ``keep_last`` versions of a model (never its current
    weights, its best version, or bytes something else references; refused for a published
    model) and delete the bytes nothing references any more."""
    result = backend.prune_versions(model_id, keep_last, dry_run=dry_run)
    deleted = Deleted() if dry_run else delete_doomed(backend, result.doomed)
    return PruneReport(result.pruned, result.doomed, result.kept, failed=deleted.failed)


def collect(
    backend: Backend | None = None, pending_grace: float = 86400.0, dry_run: bool = False
) -> tuple[GcResult, Deleted]:
    """``modelbook gc``: delete every object the registry owns that nothing references
    (doomed objects whose deletion failed, unfinished uploads older than
    ``pending_grace`` seconds) and the temporary files of crashed uploads."""
    backend = backend or config.get_backend()
    found = backend.collect_garbage(pending_grace, dry_run=dry_run)
    deleted = Deleted() if dry_run else delete_doomed(backend, found.doomed)
    return found, deleted
