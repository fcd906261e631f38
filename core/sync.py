"""Sending what waits in the spool: ``modelbook sync``, ``modelbook uploads`` and
``Task.import_offline_session``.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from modelbook import config, uploads
from modelbook.errors import InvalidArgumentError
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
    return view


def waiting(home: Path | None = None) -> tuple[list[dict], list[dict]]:
    """The jobs waiting in the spool of ``home`` (any registry), and those given up on."""
    spool = Spool((home or config.home()) / "spool")
    failed = []
    for folder in sorted(spool.failed_dir.iterdir()):
        try:
            failed.append(_job_view(Job.from_json(json.loads((folder / "job.json").read_text()))))
        except (OSError, ValueError, TypeError):
            continue
    return [_job_view(j) for j in spool.pending()], failed


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
