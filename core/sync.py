"""Sending what waits in the spool: ``modelbook sync``, ``modelbook uploads`` (with
``retry`` and ``discard`` of failed jobs) and ``Task.import_offline_session``.

:func:`sync` runs the upload queue of this home until nothing waits for the configured
registry, offline mode or not, reporting progress; :func:`import_session` first adopts the
jobs of another spool (a home, a spool folder, or a zip of one, e.g. from an offline machine)
for the configured registry, each job once.

Example:
    >>> import modelbook, tempfile
    >>> modelbook.configure(home=tempfile.mkdtemp())
    >>> report = sync(timeout=5)
    >>> report.sent, report.left, report.summary()
    ([], [], 'nothing waits for the registry')
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from modelbook import config, uploads
from modelbook.errors import InvalidArgumentError
from modelbook.storage.local import to_uri
from modelbook.storage.spool import Job, Spool

Progress = Callable[[int, int], None]


@dataclass
class SyncReport:
    """What one :func:`sync` did.

    Attributes:
        sent: the jobs done, oldest first.
        left: the jobs still waiting for this registry (registry away, or the timeout).
        failed: jobs given up on during the sync (kept in ``spool/failed``).
        elsewhere: jobs waiting for other registries, by registry.
        ids: the registry id each local id created during the sync became.
        reason: why jobs are left, if they are.

    Example:
        >>> SyncReport(failed=["0001-ab"]).summary().endswith("1 failed (kept in spool/failed)")
        True
    """

    sent: list[Job] = field(default_factory=list)
    left: list[Job] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elsewhere: dict[str, int] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def summary(self) -> str:
        if not (self.sent or self.left or self.failed):
            return "nothing waits for the registry"
        ops = [j.op for j in self.sent if j.kind == "call"]
        parts = [
            f"sent {len(self.sent)} job(s): {ops.count('create_task')} task(s) and "
            f"{ops.count('create_model')} model(s) registered, "
            f"{sum(j.kind == 'weights' for j in self.sent)} version(s) of weights stored, "
            f"{len(ops) - ops.count('create_task') - ops.count('create_model')} other call(s)"
        ]
        if self.left:
            parts.append(f"{len(self.left)} left ({self.reason})")
        if self.failed:
            parts.append(f"{len(self.failed)} failed (kept in spool/failed)")
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {
            "sent": [_job_view(j) for j in self.sent], "left": [_job_view(j) for j in self.left],
            "failed": self.failed, "elsewhere": self.elsewhere, "ids": self.ids,
            "reason": self.reason, "summary": self.summary(),
        }  # fmt: skip


def _job_view(job: Job) -> dict:
    view = {k: v for k, v in asdict(job).items() if k in ("id", "registry", "kind", "attempts",
                                                            "last_error", "iteration", "size")}
    view["what"] = uploads.describe(job)
    view["created"] = datetime.fromtimestamp(job.created, timezone.utc).isoformat()
    return view


def waiting(home: Path | None = None) -> tuple[list[dict], list[dict]]:
    """The jobs waiting in the spool of ``home`` (any registry), and those given up on.

    Each view has ``state``: ``"pending"``, ``"in_progress"`` (a process holds it now) or
    ``"failed"`` (given up on; ``last_error`` says why).
    """
    spool = Spool((home or config.home()) / "spool")
    pending = [dict(_job_view(j), state="in_progress" if spool.busy(j) else "pending")
               for j in spool.pending()]  # fmt: skip
    return pending, [dict(_job_view(j), state="failed") for j in spool.failed()]


@dataclass
class SpoolChange:
    """What :func:`retry` or :func:`discard` did.

    Attributes:
        done: the job ids moved back to the queue (retry) or deleted (discard).
        skipped: ``{job id: why}`` for the jobs named but left as they are.
        unknown: ``{given id: why}`` for ids that name no job, or several.
        freed: bytes deleted from the spool (discard).

    Example:
        >>> SpoolChange(done=["0001-ab"], unknown={"zz": "no upload job"}).complete
        False
    """

    done: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    freed: int = 0

    @property
    def complete(self) -> bool:
        return not (self.skipped or self.unknown)


def _named(spool: Spool, refs: Sequence[str] | None,
           change: SpoolChange) -> tuple[list[Job], list[Job]]:  # fmt: skip
    """The failed and the pending jobs ``refs`` name (all failed jobs for None); a ref is a
    job id, or its start or end (e.g. the 8 hex digits after the dash) if only one has it."""
    failed, pending = spool.failed(), spool.pending()
    if refs is None:
        return failed, []
    jobs = {j.id: j for j in [*pending, *failed]}
    chosen: dict[str, Job] = {}
    for ref in refs:
        found = [ref] if ref in jobs else [i for i in jobs if _abbreviates(ref, i)]
        if len(found) == 1:
            chosen[found[0]] = jobs[found[0]]
        else:
            change.unknown[ref] = (
                f"names {len(found)} upload jobs; give more of the id" if found else
                f"no upload job {ref!r} in {spool.root}; `modelbook uploads` lists them"
            )  # fmt: skip
    failed_ids = {j.id for j in failed}
    return ([j for j in chosen.values() if j.id in failed_ids],
            [j for j in chosen.values() if j.id not in failed_ids])  # fmt: skip


def _abbreviates(ref: str, job_id: str) -> bool:
    return bool(ref) and (job_id.startswith(ref) or job_id.endswith(ref))


def retry(refs: Sequence[str] | None = None, home: Path | None = None) -> SpoolChange:
    """Move failed jobs (those ``refs`` name; all with None) back into the queue: the next
    modelbook process that reaches their registry, or ``modelbook sync``, runs them."""
    spool = Spool((home or config.home()) / "spool")
    change = SpoolChange()
    failed, pending = _named(spool, refs, change)
    for job in pending:
        change.skipped[job.id] = "already waiting in the queue"
    for job in failed:
        if spool.requeue(job):
            change.done.append(job.id)
        else:
            change.unknown[job.id] = "no longer failed (retried or discarded meanwhile)"
    return change


def discard(referenced: Callable[[str], bool], refs: Sequence[str] | None = None,
            home: Path | None = None) -> SpoolChange:  # fmt: skip
    """Delete failed jobs (those ``refs`` name; all with None) and the spool bytes they
    hold; never a pending job, and never a file a registered version references
    (``referenced(uri)``: the backend's :meth:`~modelbook.backends.base.Backend.is_referenced`)."""
    spool = Spool((home or config.home()) / "spool")
    change = SpoolChange()
    failed, pending = _named(spool, refs, change)
    for job in pending:
        change.skipped[job.id] = (
            "it has not failed: it waits for the registry (only failed jobs are discarded)"
        )
    for job in failed:
        used = [p for p in spool.failed_files(job) if referenced(to_uri(p))]
        if used:
            change.skipped[job.id] = f"a registered version references {used[0]}"
            continue
        change.freed += spool.drop_failed(job)
        change.done.append(job.id)
    return change


def sync(timeout: float | None = None, progress: Progress | None = None) -> SyncReport:
    """Send what waits in this home's spool for the configured registry, offline mode or not.

    Args:
        timeout: give up after this many seconds (what is left stays in the spool).
        progress: called with (done, total) as jobs finish.

    Returns:
        What was sent and what is left; it stops early when the registry does not answer.
    """
    queue = uploads.queue_for(config.get_backend(), config.home())
    report = SyncReport()
    for job in queue.spool.pending():
        if job.registry != queue.registry:
            report.elsewhere[job.registry] = report.elsewhere.get(job.registry, 0) + 1
    failed_before = set(os.listdir(queue.spool.failed_dir))
    done_before = len(queue.done)
    total = len(queue.pending())
    deadline = None if timeout is None else time.monotonic() + timeout
    queue.syncing = True
    try:
        left = queue.pending()
        while left:
            if progress is not None:
                progress(total - len(left), total)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                report.reason = f"still running after {timeout:.0f} s"
                break
            left = queue.wait(0.5 if remaining is None else min(0.5, remaining))
            if left and queue.reachable is False:
                report.reason = f"the registry at {_where(queue)} does not answer"
                break
        if progress is not None and total:
            progress(total - len(left), total)
    finally:
        queue.syncing = False
    report.sent = list(queue.done)[done_before:]
    report.left = left
    report.failed = sorted(set(os.listdir(queue.spool.failed_dir)) - failed_before)
    for job in report.sent:
        key = (job.args or {}).get("key")
        if key and queue.mapped(key):
            report.ids[key] = queue.mapped(key)  # type: ignore[assignment]
    return report


def _where(queue: uploads.UploadQueue) -> str:
    return getattr(queue.backend, "api_host", queue.registry)


def import_session(source: Path, timeout: float | None = None,
                   progress: Progress | None = None) -> str | None:  # fmt: skip
    """Adopt the jobs of the spool at ``source`` (a home, a spool folder, or a zip of one)
    for the configured registry, then :func:`sync`. Each job is imported once, however often
    this runs. Returns the registry id of the first task the session created, if any.

    Raises:
        InvalidArgumentError: ``source`` holds no modelbook spool.
    """
    with tempfile.TemporaryDirectory(prefix="modelbook-import-") as scratch:
        if source.is_file() and zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                archive.extractall(scratch)
            source = Path(scratch)
        root = next((c for c in (source, source / "spool", *source.glob("*/spool"))
                     if (c / "jobs").is_dir()), None)  # fmt: skip
        if root is None:
            raise InvalidArgumentError(
                f"{str(source)!r} holds no modelbook spool; pass a modelbook home, its spool "
                "folder (Task.get_offline_mode_folder()), or a zip of one"
            )
        first_task = _adopt_jobs(Spool(root))
    sync(timeout, progress)
    queue = uploads.queue_for(config.get_backend(), config.home())
    return queue.mapped(first_task) if first_task else None


def _adopt_jobs(source: Spool) -> str | None:
    """Copy the jobs of ``source`` into this home's spool, addressed to the configured
    registry; returns the local id of the first task they create."""
    queue = uploads.queue_for(config.get_backend(), config.home())
    ledger = queue.spool.root / "imported"
    seen = set(ledger.read_text().split()) if ledger.is_file() else set()
    first_task = None
    in_place = source.root.resolve() == queue.spool.root.resolve()
    for job in source.pending():
        if job.op == "create_task" and first_task is None:
            first_task = (job.args or {}).get("key")
        if job.id in seen or (not in_place and (queue.spool.jobs_dir / job.id).exists()):
            continue
        job.registry = queue.registry
        if in_place:
            source.save(job)  # this home's own spool: readdressed in place
        else:
            with source.claim(job) as mine:
                if not mine:  # sent (or being sent) by a process on that home: not ours now
                    continue
                building = queue.spool.root / f".{job.id}.partial"
                shutil.rmtree(building, ignore_errors=True)  # an import killed mid-copy left it
                shutil.copytree(source.jobs_dir / job.id, building)
                (building / "job.json").write_text(json.dumps(asdict(job)))
                os.replace(building, queue.spool.jobs_dir / job.id)
        with open(ledger, "a") as out:
            out.write(job.id + "\n")
    return first_task
