"""The upload queue: stores weights and registers them in the background.

``OutputModel.update_weights`` snapshots the weights into the spool
(:mod:`modelbook.storage.spool`) and returns; a worker thread then, for each job in order:

1. creates the model record if the registry could not be reached before;
2. hashes the snapshot (unless that was done already), records the object it is about to
   write as the registry's (:mod:`modelbook.store.objects`), and stores it under the name
   its destination gives those bytes (:mod:`modelbook.storage.placement`), unless an
   object of that name (which holds the sha256) is already there;
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
from modelbook.records import ModelRecord
from modelbook.storage import StoredObject, sha256_file
from modelbook.storage.placement import Destination
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

    def wait(self, timeout: float | None, model_key: str | None = None) -> list[Job]:
        """Wait until no job (of the model ``model_key``, if given) is pending or ``timeout``
        seconds passed; return those left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.kick()
        with self._cond:
            while True:
                left = [j for j in self.pending() if model_key in (None, j.model_key)]
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
        stored = StoredObject(job.register_uri, "", 0) if job.register_uri else self._store(job)
        self.backend.add_model_version(
            model_id,
            uri=stored.uri,
            sha256=stored.sha256 or None,
            size=stored.size if stored.sha256 else None,
            iteration=job.iteration,
            comment=comment,
            framework=job.framework if not record.framework else None,
            is_package=job.is_package,
            metadata=job.metadata or None,
            owned=not job.register_uri,
        )

    # -- the one creator of output models -------------------------------------------------
    def create_model(self, key: str, spec: Mapping[str, Any]) -> ModelRecord:
        """Create an output model from ``spec`` (``fields``, ``task``, ``entry``), connect it
        to its task (which takes the model's design and labels if it has none) and remember
        it under ``key`` for the jobs that wait for it."""
        from modelbook.task import connect_model

        record = self.backend.create_model(**spec["fields"])
        connect_model(self.backend, spec["task"], "output", spec["entry"], record.id,
                      record.design, record.labels)  # fmt: skip
        self._model_ids[key] = record.id
        self.spool.remember_model(key, record.id)
        return record

    def _create(self, job: Job) -> str:
        if not job.create:
            raise UploadError(f"upload job {job.id} names no model and cannot create one")
        job.model_id = self.create_model(job.model_key, job.create).id
        self.spool.save(job)
        return job.model_id

    def _store(self, job: Job) -> StoredObject:
        """Store the snapshot where its destination names it; the object is recorded as the
        registry's before a byte is written, and an object already at that name (named by
        the sha256 or by this job) holds these very bytes: nothing moves again."""
        if job.destination is None or not job.filename:
            raise UploadError(f"upload job {job.id} has no destination", transient=False)
        payload = self.spool.payload(job)
        if job.sha256 is None:
            job.sha256, job.size = sha256_file(payload)
            self.spool.save(job)
        uri = Destination.from_json(job.destination).object_uri(job.sha256, job.filename, job.id)
        self.backend.begin_object_write(uri, job.sha256, job.size)
        driver = self.backend.driver_for(uri)
        if driver.exists(uri):
            return StoredObject(uri, job.sha256, job.size or 0)
        stored = driver.put(payload, uri, sha256=job.sha256, move=True)
        if stored.sha256 != job.sha256 or stored.size != job.size:
            raise StorageError(
                f"stored {uri} does not match its snapshot (sha256 {stored.sha256} vs "
                f"{job.sha256}, size {stored.size} vs {job.size}); retrying",
                transient=True,
            )
        return stored


def _is_registry_error(exc: BaseException) -> bool:
    from modelbook.errors import RegistryError

    return isinstance(exc, RegistryError)
