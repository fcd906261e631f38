"""The upload queue: stores weights and registers them in the background.

``OutputModel.update_weights`` snapshots the weights into the spool
(:mod:`modelbook.storage.spool`) and returns; a worker thread then, for each job in order:

1. creates the model record if the registry could not be reached before;
2. hashes the snapshot (unless that was done already) and stores it at the destination,
   unless the destination already holds exactly these bytes (dedupe by sha256);
3. checks that what was stored has the snapshot's size and sha256;
4. only then moves the model to the new weights, in one registry call (two-phase: a
   failed transfer leaves the previous version in place).

Transient failures (network, server 5xx, disk full) are retried with backoff for as long as
the process lives; jobs survive exit and crashes in the spool, and the next process that
opens the same home resumes them. A permanent failure (4xx, missing bucket) is reported
once and the job is moved to ``spool/failed``. Latest wins: a newer job for a model drops
that model's older jobs that have not started.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelbook.backends.base import Backend
from modelbook.errors import (
    ModelNotFoundError,
    StorageError,
    UploadError,
    is_transient,
)
from modelbook.storage import StoredObject, driver_for, sha256_file
from modelbook.storage.local import copy_hashed, to_path, to_uri
from modelbook.storage.spool import Job, Spool

log = logging.getLogger("modelbook")

_queues: dict[tuple[int, str], UploadQueue] = {}
_queues_lock = threading.Lock()


def queue_for(backend: Backend, home: Path) -> UploadQueue:
    """The upload queue of this process for ``backend`` (started on first use)."""
    key = (os.getpid(), backend.registry_id)
    with _queues_lock:
        queue = _queues.get(key)
        if queue is None or queue.backend is not backend:
            queue = _queues[key] = UploadQueue(backend, Spool(home / "spool"))
        return queue


def resume(backend: Backend, home: Path) -> None:
    """Start working on jobs an earlier process left in the spool, if there are any."""
    spool_dir = home / "spool" / "jobs"
    if spool_dir.is_dir() and any(spool_dir.iterdir()):
        queue_for(backend, home).kick()


def _backoff(attempts: int) -> float:
    return min(60.0, 0.5 * 2 ** min(attempts, 8)) * random.uniform(0.8, 1.2)


class UploadQueue:
    """Pending uploads of one process for one registry; a single worker thread runs them.

    Args:
        backend: the registry the jobs are committed to.
        spool: where jobs wait on disk.
    """

    def __init__(self, backend: Backend, spool: Spool) -> None:
        self.backend = backend
        self.spool = spool
        self.registry = backend.registry_id
        self._cond = threading.Condition()
        self._retry_at: dict[str, float] = {}
        self._model_ids: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        #: False after the registry failed with a transient error, until it answers again.
        self.registry_reachable = True

    # -- the caller's side ----------------------------------------------------------------
    def submit(self, job: Job, source: Path | None, move: bool, hash_now: bool, wait: bool) -> Job:
        """Snapshot the weights, queue the job, and drop older waiting jobs of its model.

        With ``wait``, run it now in the calling thread and raise if it fails.
        """
        job = self.spool.add(job, source, move, hash_now)
        self._drop_older(job)
        if wait:
            with self.spool.claim(job) as mine:
                if not mine:
                    raise UploadError(f"upload job {job.id} is held by another process")
                try:
                    self._process(job)
                finally:
                    self.spool.remove(job)
            return job
        self.kick()
        return job

    def _drop_older(self, job: Job) -> None:
        for older in self.spool.pending():
            if older.model_key != job.model_key or older.id >= job.id:
                continue
            with self.spool.claim(older) as waiting:
                if waiting:  # not started anywhere: the newer job supersedes it
                    self.spool.remove(older)
                    log.info(
                        "dropped queued weights of model %s (iteration %s): newer weights "
                        "arrived before they were stored",
                        older.model_id or older.model_key,
                        older.iteration,
                    )

    def model_id(self, key: str) -> str | None:
        """The registry id of a model created by the worker, if it was created."""
        return self._model_ids.get(key) or self.spool.model_id(key)

    def pending(self) -> list[Job]:
        return [j for j in self.spool.pending() if j.registry == self.registry]

    def wait(self, timeout: float | None) -> list[Job]:
        """Wait until no job is pending or ``timeout`` seconds passed; return those left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.kick()
        with self._cond:
            while True:
                left = self.pending()
                remaining = None if deadline is None else deadline - time.monotonic()
                if not left or (remaining is not None and remaining <= 0):
                    return left
                self._cond.wait(timeout=0.2 if remaining is None else min(0.2, remaining))

    def kick(self) -> None:
        """Make sure the worker runs and looks at the spool now."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="modelbook-uploads", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    # -- the worker -----------------------------------------------------------------------
    def _run(self) -> None:
        while self.spool.jobs_dir.is_dir():  # a home that was removed ends the worker
            try:
                self._round()
            except Exception as exc:  # the worker must outlive any one bad round
                log.error("upload worker: %s: %s", type(exc).__name__, exc)
                time.sleep(1.0)

    def _round(self) -> None:
        """Attempt every job that is due, or sleep until one is (or a kick)."""
        jobs = self.pending()
        now = time.monotonic()
        ready = [j for j in jobs if self._retry_at.get(j.id, 0.0) <= now]
        if not ready:
            next_try = min((self._retry_at.get(j.id, now) for j in jobs), default=now + 5)
            with self._cond:
                self._cond.notify_all()
                self._cond.wait(timeout=max(0.05, min(5.0, next_try - now)))
            return
        for job in ready:
            self._attempt(job)
        with self._cond:
            self._cond.notify_all()

    def _attempt(self, job: Job) -> None:
        with self.spool.claim(job) as mine:
            if not mine:  # another process works on it (or it is done): look again later
                self._retry_at[job.id] = time.monotonic() + 0.5
                return
            try:
                self._process(job)
            except Exception as exc:  # every failure is classified and reported, never lost
                self._failed(job, exc)
            else:
                self.spool.remove(job)
                self._retry_at.pop(job.id, None)

    def _failed(self, job: Job, exc: Exception) -> None:
        job.attempts += 1
        job.last_error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ModelNotFoundError) or not is_transient(exc):
            where = self.spool.fail(job)
            log.error(
                "giving up on the weights of model %s (iteration %s): %s; the snapshot is kept "
                "in %s",
                job.model_id or job.model_key,
                job.iteration,
                exc,
                where,
            )
            return
        if _is_registry_error(exc):
            self.registry_reachable = False
        delay = _backoff(job.attempts)
        self._retry_at[job.id] = time.monotonic() + delay
        self.spool.save(job)
        if job.attempts == 1 or job.attempts % 10 == 0:
            log.warning(
                "could not store the weights of model %s (iteration %s), attempt %d: %s; "
                "retrying in %.0f s (training goes on; the weights wait in %s)",
                job.model_id or job.model_key,
                job.iteration,
                job.attempts,
                exc,
                delay,
                self.spool.root,
            )

    def _process(self, job: Job) -> None:
        log.debug("pid %d processing job %s (iteration %s)", os.getpid(), job.id, job.iteration)
        model_id = job.model_id or self.model_id(job.model_key) or self._create(job)
        record = self.backend.get_model(model_id)
        self.registry_reachable = True
        comment = f"{job.comment_prefix}{record.comment}" if job.comment_prefix else None
        metadata = {k: (v[0], v[1]) for k, v in (job.metadata or {}).items()} or None
        if job.register_uri:
            stored = StoredObject(job.register_uri, "", 0)
        else:
            stored = self._store(job, record.sha256, record.uri)
        self.backend.add_model_version(
            model_id,
            uri=stored.uri,
            sha256=stored.sha256 or None,
            size=stored.size if stored.sha256 else None,
            iteration=job.iteration,
            comment=comment,
            framework=job.framework if not record.framework else None,
            is_package=job.is_package,
            metadata=metadata,
        )

    def _create(self, job: Job) -> str:
        if not job.create:
            raise UploadError(f"upload job {job.id} names no model and cannot create one")
        fields: dict[str, Any] = dict(job.create["fields"])
        record = self.backend.create_model(**fields)
        self.backend.set_task_model(job.create["task"], "output", job.create["entry"], record.id)
        self._model_ids[job.model_key] = record.id
        self.spool.remember_model(job.model_key, record.id)
        job.model_id = record.id
        self.spool.save(job)
        return record.id

    def _store(self, job: Job, current_sha: str | None, current_uri: str | None) -> StoredObject:
        payload = self.spool.payload(job)
        if job.sha256 is None:
            job.sha256 = sha256_file(payload)[0]
            self.spool.save(job)
        if job.layout == "content":
            return _store_content(payload, to_path(job.target_uri or ""), job)
        target = job.target_uri or ""
        driver = driver_for(target)
        if current_sha == job.sha256 and current_uri == target and driver.exists(target):
            return StoredObject(target, job.sha256, job.size or 0)  # same bytes: nothing moves
        stored = driver.put(payload, target, sha256=job.sha256)
        if stored.sha256 != job.sha256 or stored.size != job.size:
            raise StorageError(
                f"stored {target} does not match its snapshot (sha256 {stored.sha256} vs "
                f"{job.sha256}, size {stored.size} vs {job.size}); retrying",
                transient=True,
            )
        return stored


def _store_content(payload: Path, root: Path, job: Job) -> StoredObject:
    """Move a snapshot into the content-addressed blob folder (same file system)."""
    final = root / job.sha256[:2] / job.sha256 / job.filename  # type: ignore[index]
    if not (final.is_file() and final.stat().st_size == job.size):
        with open(payload, "rb") as fh:
            os.fsync(fh.fileno())
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(payload, final)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy_hashed(payload, final)  # the spool is on another file system
    return StoredObject(to_uri(final), job.sha256 or "", job.size or 0)


def _is_registry_error(exc: BaseException) -> bool:
    from modelbook.errors import RegistryError

    return isinstance(exc, RegistryError)


def metadata_items(metadata: Mapping[str, Any] | None) -> dict[str, list[str]] | None:
    """``{key: value}`` or ``{key: {"value", "type"}}`` as ``{key: [value, type]}``."""
    if not metadata:
        return None
    items: dict[str, list[str]] = {}
    for key, value in metadata.items():
        if isinstance(value, Mapping):
            items[str(key)] = [str(value.get("value")), str(value.get("type", "str"))]
        else:
            kind = {bool: "bool", int: "int", float: "float"}.get(type(value), "str")
            items[str(key)] = [str(value), kind]
    return items
