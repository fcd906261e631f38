"""The upload queue: stores weights and makes deferred registry calls in the background.

``OutputModel.update_weights`` snapshots the weights into the spool
(:mod:`modelbook.storage.spool`) and returns; registry calls that could not be made when
they were asked for wait there too (:mod:`modelbook.deferred`). A worker thread runs the
jobs of each chain (one task) strictly in queue order; for weights it:

1. finds the model (a local id is resolved to the registry id its creation was given);
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
once and the job is moved to ``spool/failed``. Latest wins: a newer weights job for a model
drops that model's older weights jobs that have not started.

Reachability: the queue knows whether the registry answers. Once it does not, callers on the
training thread stop calling it (:meth:`UploadQueue.call` defers instead) and the worker
probes it with backoff (one cheap request, no retries) until it answers again. In offline
mode (``Task.set_offline(True)``, ``MODELBOOK_OFFLINE=1``) nothing is sent until
``modelbook sync``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from modelbook import config, deferred
from modelbook.backends.base import Backend
from modelbook.errors import (
    ModelbookError,
    ModelNotFoundError,
    NotRegisteredError,
    RegistryError,
    StorageError,
    UploadError,
    is_transient,
)
from modelbook.storage import StoredObject, sha256_file
from modelbook.storage.placement import Destination
from modelbook.storage.spool import Job, Spool
from modelbook.threads import run_in_background

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


def _backoff(attempts: int, cap: float = 60.0) -> float:
    return min(cap, 0.5 * 2 ** min(attempts, 8)) * random.uniform(0.8, 1.2)


#: Longest pause between two probes of a registry that does not answer, in seconds.
PROBE_CAP = 10.0


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
        self._ids: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        #: None until asked; False after the registry did not answer, until it does again.
        self.reachable: bool | None = None
        self._probe_at = 0.0
        self._probes = 0
        self._gone_at = float("-inf")  # monotonic time the registry last failed to answer
        #: How many times the registry stopped answering (one log line per outage).
        self.outages = 0
        self._told: object = None  # the outage (or "offline") that report_left logged
        #: True while ``modelbook sync`` drains the queue: offline mode does not hold it.
        self.syncing = False
        #: The latest jobs done, oldest first (``modelbook sync`` summarises them).
        self.done: deque[Job] = deque(maxlen=10_000)

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
            if older.kind != "weights" or older.model_key != job.model_key or older.id >= job.id:
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

    def mapped(self, key: str) -> str | None:
        """The registry id the local id ``key`` became, if it was registered."""
        found = self._ids.get(key) or self.spool.mapped(key, self.registry)
        if found:
            self._ids[key] = found
        return found

    def resolve(self, ref: str) -> str:
        """The registry id for ``ref``: itself, or what the local id ``ref`` became.

        Raises:
            NotRegisteredError: ``ref`` is a local id not registered yet.
        """
        if not deferred.is_local(ref):
            return ref
        found = self.mapped(ref)
        if found is None:
            raise NotRegisteredError(ref, self.spool.root)
        return found

    def remember(self, key: str, registry_id: str) -> None:
        self._ids[key] = registry_id
        self.spool.remember(key, registry_id, self.registry)

    def pending(self) -> list[Job]:
        return [j for j in self.spool.pending() if j.registry == self.registry]

    # -- registry calls ---------------------------------------------------------------------
    def offline(self) -> bool:
        """Offline mode is on (and no ``modelbook sync`` overrides it)."""
        return config.offline() and not self.syncing

    def online(self) -> bool:
        """Whether the caller may call the registry now: not offline, and the registry
        answers (asked once per process, then known from the calls and the worker's probes)."""
        if self.offline():
            return False
        if self.reachable is None:
            if not self.backend.reachable():
                self.mark_unreachable("no answer")
                return False
            self.reachable = True
        return self.reachable

    def waiting_calls(self, chain: str) -> bool:
        """Whether deferred calls of ``chain`` still wait in the spool."""
        return any(j.kind == "call" and j.group == chain for j in self.pending())

    def call(self, chain: str, op: str, args: dict[str, Any], model_key: str = "") -> Any:
        """Make the registry call ``op`` (see :mod:`modelbook.deferred`) now, or, when the
        registry is away, offline mode is on or earlier calls of ``chain`` still wait, queue
        it behind them. Returns the call's record, or None when it was queued.

        Raises:
            ModelbookError: the registry refused the call (not a transient failure).
        """
        if self.online() and not self.waiting_calls(chain):
            try:
                with self.backend.fail_fast():
                    record = deferred.run(self.backend, self.resolve, op, args)
            except ModelbookError as exc:
                if not is_transient(exc):
                    raise
                self.mark_unreachable(exc)
            else:
                if args.get("key") and record is not None:
                    self.remember(args["key"], record.id)
                return record
        job = Job(id=Job.new_id(), model_key=model_key, registry=self.registry, chain=chain,
                  kind="call", op=op, args=args)  # fmt: skip
        self.spool.add(job, None, move=False)
        self.kick()
        return None

    def mark_unreachable(self, why: object = None) -> None:
        """The registry did not answer: callers defer, the worker probes with backoff. The
        first time of an outage, one warning says so (with ``why``)."""
        if self.reachable is not False:
            self.outages += 1
            log.warning(
                "the registry (%s) is unreachable%s; registry calls and weights wait in %s and "
                "are sent when it answers (training goes on)", self.registry,
                f" ({why})" if why else "", self.spool.root,
            )  # fmt: skip
        self.reachable = False
        self._gone_at = time.monotonic()
        self._probe_at = time.monotonic() + _backoff(self._probes, PROBE_CAP)
        self._probes += 1

    def wait(self, timeout: float | None, model_key: str | None = None) -> list[Job]:
        """Wait until no job (of the model ``model_key``, if given) is pending or ``timeout``
        seconds passed; return those left.

        Returns early, with what is left, in offline mode, and when the registry is away:
        it is probed once more at once, and if it still does not answer the jobs stay in the
        spool for a later process or ``modelbook sync``.
        """
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        if self.reachable is False:
            self._probe_at = 0.0
        self.kick()
        with self._cond:
            while True:
                left = [j for j in self.pending() if model_key in (None, j.model_key)]
                remaining = None if deadline is None else deadline - time.monotonic()
                if not left or (remaining is not None and remaining <= 0):
                    return left
                if self.offline() or (self.reachable is False and self._gone_at > started):
                    return left
                self._cond.wait(timeout=0.2 if remaining is None else min(0.2, remaining))

    def report_left(self, left: list[Job], timeout: float | None) -> None:
        """Log the jobs a wait left pending: a warning, or information when the registry is
        away and this outage (or offline mode) was already reported."""
        if not left:
            return
        away = not self.online()
        why = (
            "the registry is away or offline mode is on; `modelbook sync` or the next "
            "modelbook process sends them" if away
            else f"still pending after {timeout} s; they resume in the background or later"
        )  # fmt: skip
        said = "offline" if self.offline() else self.outages  # once per outage
        level = logging.INFO if away and self._told == said else logging.WARNING
        self._told = said if away else None
        log.log(level, "%d job(s) wait in %s (%s): %s", len(left), self.spool.root, why,
                "; ".join(describe(j) for j in left[:5]))  # fmt: skip

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
        run_in_background()
        while self.spool.jobs_dir.is_dir():  # a home that was removed ends the worker
            try:
                self._round()
            except Exception as exc:  # the worker must outlive any one bad round
                log.error("upload worker: %s: %s", type(exc).__name__, exc)
                time.sleep(1.0)

    def _round(self) -> None:
        """Attempt the first job of every chain that is due, and the jobs behind it while
        they succeed; or sleep until one is due (or a kick)."""
        jobs = [] if self.offline() else self.pending()
        now = time.monotonic()
        if jobs and self.reachable is False:
            if now < self._probe_at or not self.backend.reachable():
                if now >= self._probe_at:
                    self.mark_unreachable()
                self._sleep(self._probe_at - now)
                return
            self.reachable, self._probes = True, 0
            self._retry_at.clear()
        blocked: set[str] = set()  # chains whose first job is not done: the rest waits
        attempted = False
        for job in jobs:
            if job.group in blocked:
                continue
            if self._retry_at.get(job.id, 0.0) > now:
                blocked.add(job.group)
                continue
            attempted = True
            if not self._attempt(job):
                blocked.add(job.group)
            if self.reachable is False:
                break  # the registry went away: probe before trying anything else
        if not attempted:
            next_try = min((self._retry_at.get(j.id, now) for j in jobs), default=now + 5)
            self._sleep(next_try - now)
            return
        with self._cond:
            self._cond.notify_all()

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            self._cond.notify_all()
            self._cond.wait(timeout=max(0.05, min(5.0, seconds)))

    def _attempt(self, job: Job) -> bool:
        """Run ``job``; True when it is done (and removed from the spool)."""
        with self.spool.claim(job) as mine:
            if not mine:  # another process works on it (or it is done): look again later
                self._retry_at[job.id] = time.monotonic() + 0.5
                return False
            try:
                self._process(job)
            except Exception as exc:  # every failure is classified and reported, never lost
                self._failed(job, exc)
                return job.id not in self._retry_at  # a permanent failure left the chain
            self.spool.remove(job)
            self._retry_at.pop(job.id, None)
            self.done.append(job)
            return True

    def _failed(self, job: Job, exc: Exception) -> None:
        job.attempts += 1
        job.last_error = f"{type(exc).__name__}: {exc}"
        self._retry_at.pop(job.id, None)
        if isinstance(exc, ModelNotFoundError) or not is_transient(exc):
            where = self.spool.fail(job)
            log.error("giving up on %s: %s; the job is kept in %s", describe(job), exc, where)
            return
        if isinstance(exc, RegistryError):
            self.mark_unreachable(exc)
            self._retry_at[job.id] = 0.0  # retried as soon as a probe finds the registry
            self.spool.save(job)
            return
        delay = _backoff(job.attempts)
        self._retry_at[job.id] = time.monotonic() + delay
        self.spool.save(job)
        if job.attempts == 1 or job.attempts % 10 == 0:
            log.warning(
                "could not %s, attempt %d: %s; retrying in %.0f s (training goes on; the job "
                "waits in %s)", describe(job), job.attempts, exc, delay, self.spool.root,
            )  # fmt: skip

    def _process(self, job: Job) -> None:
        log.debug("pid %d processing job %s (%s)", os.getpid(), job.id, job.op or job.iteration)
        if job.kind == "call":
            record = deferred.run(self.backend, self.resolve, job.op, job.args or {})
            if (job.args or {}).get("key") and record is not None:
                self.remember(job.args["key"], record.id)  # type: ignore[index]
            return
        model_id = self._model_of(job)
        record = self.backend.get_model(model_id)
        comment = f"{job.comment_prefix}{record.comment}" if job.comment_prefix else None
        stored = StoredObject(job.register_uri, "", 0) if job.register_uri else self._store(job)
        committed = (record.uri, record.iteration) == (stored.uri, job.iteration)
        if committed and (job.attempts or job.registering):
            return  # an earlier attempt was committed, and only its answer was lost
        if not job.registering:  # a process killed past this point leaves the mark behind
            job.registering = True
            self.spool.save(job)
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

    def _model_of(self, job: Job) -> str:
        """The registry id of the job's model (created here for jobs of modelbook 0.1)."""
        found = job.model_id or self.mapped(job.model_key)
        if found:
            return found
        if not job.create:
            return self.resolve(job.model_key)
        args = {"key": job.model_key, **job.create}
        job.model_id = deferred.create_model(self.backend, self.resolve, args).id
        self.remember(job.model_key, job.model_id)
        self.spool.save(job)
        return job.model_id

    def _store(self, job: Job) -> StoredObject:
        """Store the snapshot where its destination names it; the object is recorded as the
        registry's before a byte is written, and an object already at that name (named by
        the sha256 or by this job) holds these very bytes: nothing moves again."""
        if job.destination is None or not job.filename:
            raise UploadError(f"upload job {job.id} has no destination", transient=False)
        payload = self.spool.payload(job)
        destination = Destination.from_json(job.destination)
        if job.sha256 is None and destination.needs_digest:  # the digest names the object
            self._hash(job, payload)
        uri = destination.object_uri(job.sha256, job.filename, job.id)
        driver = self.backend.driver_for(uri)
        if job.sha256 is None and not driver.hashes_in_transit:
            self._hash(job, payload)
        # the object is the registry's before a byte is written (its digest, when known)
        self.backend.begin_object_write(uri, job.sha256, job.size)
        if driver.exists(uri):
            if job.sha256 is None:  # an earlier attempt stored it and lost the answer
                self._hash(job, payload)
                self.backend.begin_object_write(uri, job.sha256, job.size)  # checks its bytes
            return StoredObject(uri, job.sha256 or "", job.size or 0)
        stored = driver.put(payload, uri, sha256=job.sha256, move=True)
        if job.sha256 is None:  # hashed while it was sent: read once
            job.sha256, job.size = stored.sha256, stored.size
            self.spool.save(job)
        if stored.sha256 != job.sha256 or stored.size != job.size:
            raise StorageError(
                f"stored {uri} does not match its snapshot (sha256 {stored.sha256} vs "
                f"{job.sha256}, size {stored.size} vs {job.size}); retrying",
                transient=True,
            )
        return stored

    def _hash(self, job: Job, payload: Path) -> None:
        job.sha256, job.size = sha256_file(payload)
        self.spool.save(job)


def describe(job: Job) -> str:
    """What a job does, in a few words (for logs and ``modelbook uploads``)."""
    if job.kind == "call":
        return deferred.describe(job.op, job.args or {})
    return f"store the weights of model {job.model_id or job.model_key} (iteration {job.iteration})"
