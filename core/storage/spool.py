"""The upload spool: pending uploads kept on disk until they are stored and registered.

Each job is a folder ``<spool>/jobs/<job id>/`` holding ``job.json`` and, for weights, the
snapshot (``payload``). A job is either weights to store and register (``kind="weights"``) or
a registry call made while the registry was away (``kind="call"``, see
:mod:`modelbook.deferred`); jobs of one *chain* (one task) run in the order they were queued.

A job folder is built under a temporary name and renamed into ``jobs/``, so a job is either
complete or absent, even if the process dies while writing it. A worker holds ``flock`` on
the job's ``lock`` file while it works on it; the kernel drops the lock when a process dies,
so the next process resumes the job.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from modelbook.errors import UploadError
from modelbook.records import Metadata, metadata_item
from modelbook.storage.base import CHUNK, sha256_file


@dataclass
class Job:
    """One pending registration of weights for one model, or one deferred registry call.

    Attributes:
        chain: jobs of one chain (the task's local id) run strictly in queue order; a job
            waits while an older job of its chain is pending.
        kind: ``"weights"`` or ``"call"`` (then ``op`` and ``args`` name the call).
        destination: :meth:`~modelbook.storage.placement.Destination.to_json` of where the
            weights go (the storage layer names the object from it and the sha256).
        create: what the worker needs to create the model (jobs of modelbook 0.1 only;
            newer ones queue a ``create_model`` call before).
    """

    id: str
    model_key: str
    registry: str
    chain: str = ""
    kind: str = "weights"
    op: str = ""
    args: dict[str, Any] | None = None
    model_id: str | None = None
    create: dict[str, Any] | None = None
    destination: dict[str, Any] | None = None
    filename: str = ""
    register_uri: str | None = None
    sha256: str | None = None
    size: int | None = None
    iteration: int | None = None
    comment_prefix: str | None = None
    framework: str | None = None
    is_package: bool = False
    metadata: Metadata | None = None
    created: float = field(default_factory=time.time)
    attempts: int = 0
    last_error: str = ""
    #: The registry call adding this version was made (its answer may have been lost to a
    #: crash): a retry first looks whether the model already points at these weights.
    registering: bool = False

    @property
    def group(self) -> str:
        """The chain this job runs in (jobs written before chains: one per model)."""
        return self.chain or self.model_key

    @staticmethod
    def new_id() -> str:
        """Ids sort by creation time, so jobs run in the order they were queued."""
        return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        """A job as written by this or an earlier modelbook (unknown keys are ignored)."""
        data = dict(data)
        target, layout = data.pop("target_uri", None), data.pop("layout", None)
        if data.get("destination") is None and target:  # written by modelbook 0.1.0
            if layout == "content":
                data["destination"] = {"root": target, "layout": "content"}
            else:  # <root>/<project>/<task>.<id>/models/<file>: the same prefix, now + sha
                prefix = target.rsplit("/models/", 1)[0]
                data["destination"] = {"root": prefix, "layout": "clearml", "folder": "models"}
        if data.get("metadata"):  # modelbook 0.1.0 wrote {key: [value, type]}
            data["metadata"] = {
                k: metadata_item(k, *v) if isinstance(v, list) else v
                for k, v in data["metadata"].items()
            }
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Spool:
    """The spool folder of one modelbook home.

    Args:
        root: the folder (``$MODELBOOK_HOME/spool``).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.failed_dir = self.root / "failed"
        self.incoming_dir = self.root / "incoming"
        self.ids_dir = self.root / "models"  # local id -> registry id (named so since 0.1)
        for folder in (self.jobs_dir, self.failed_dir, self.incoming_dir, self.ids_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._sweep()

    def _sweep(self, max_age: float = 3600.0) -> None:
        """Remove snapshots a killed process left half-written (older than ``max_age``)."""
        cutoff = time.time() - max_age
        for leftover in [*self.root.glob(".*.partial"), *self.root.glob(".*.removed")]:
            try:
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                continue

    # -- writing jobs ---------------------------------------------------------------------
    def incoming_path(self, filename: str) -> Path:
        """A fresh path on the spool's file system for the caller to write weights to.

        ``update_weights`` moves a file found there into the spool instead of copying it.
        """
        folder = self.incoming_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder / filename

    def owns(self, path: Path) -> bool:
        return Path(path).absolute().is_relative_to(self.incoming_dir.absolute())

    def add(self, job: Job, source: Path | None, move: bool, hash_now: bool = False) -> Job:
        """Snapshot ``source`` (moved when ``move``, else copied) and write the job.

        With ``hash_now`` the job's sha256 is computed here (during the copy, or by reading
        the moved file); otherwise the worker computes it.

        Raises:
            UploadError: the snapshot could not be written (e.g. the disk is full); nothing
                is left behind.
        """
        building = self.root / f".{job.id}.partial"
        building.mkdir(parents=True)
        try:
            if source is not None:
                payload = building / "payload"
                if move:
                    _move(source, payload)
                    if hash_now:
                        job.sha256 = sha256_file(payload)[0]
                else:
                    digest = _copy(source, payload, hash_now)
                    job.sha256 = digest or job.sha256
                job.size = payload.stat().st_size
            (building / "lock").touch()
            _write_json(building / "job.json", asdict(job))
            os.replace(building, self.jobs_dir / job.id)
        except OSError as exc:
            shutil.rmtree(building, ignore_errors=True)
            if exc.errno == errno.ENOSPC:
                raise UploadError(
                    f"cannot snapshot {source} for upload: no space left in the spool "
                    f"{self.root} ({exc}); free disk space or move MODELBOOK_HOME",
                    transient=True,
                ) from exc
            raise UploadError(f"cannot snapshot {source} into {self.root}: {exc}") from exc
        if move and source is not None and self.owns(source):
            shutil.rmtree(source.parent, ignore_errors=True)
        return job

    def save(self, job: Job) -> None:
        """Rewrite a job's ``job.json`` (attempts, errors, discovered ids)."""
        folder = self.jobs_dir / job.id
        if folder.is_dir():
            _write_json(folder / "job.json", asdict(job))

    # -- reading jobs ---------------------------------------------------------------------
    def pending(self) -> list[Job]:
        """Every complete job in the spool, oldest first."""
        jobs = []
        try:
            folders = sorted(self.jobs_dir.iterdir())
        except FileNotFoundError:  # the home was removed
            return []
        for folder in folders:
            try:
                jobs.append(Job.from_json(json.loads((folder / "job.json").read_text())))
            except (OSError, ValueError, TypeError):
                continue  # being removed by another process, or not ours
        return jobs

    def payload(self, job: Job) -> Path:
        return self.jobs_dir / job.id / "payload"

    def busy(self, job: Job) -> bool:
        """Whether a process works on ``job`` now (holds its lock)."""
        try:
            fd = os.open(self.jobs_dir / job.id / "lock", os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # drops the lock taken to look
        return False

    # -- jobs given up on -------------------------------------------------------------------
    def failed(self) -> list[Job]:
        """The jobs given up on (kept in ``failed/``), oldest first."""
        jobs = []
        for folder in sorted(self.failed_dir.iterdir()):
            try:
                jobs.append(Job.from_json(json.loads((folder / "job.json").read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return jobs

    def requeue(self, job: Job) -> bool:
        """Move a failed job back into ``jobs/``, its attempts reset (its last error kept);
        False if it is no longer in ``failed/``."""
        folder = self.failed_dir / job.id
        if not (folder / "job.json").is_file():
            return False
        job.attempts = 0
        _write_json(folder / "job.json", asdict(job))
        (folder / "lock").touch()
        try:
            os.replace(folder, self.jobs_dir / job.id)
        except OSError:
            return False
        return True

    def failed_files(self, job: Job) -> list[Path]:
        """The bytes a failed job holds: its files but ``job.json`` and ``lock``."""
        folder = self.failed_dir / job.id
        own = {folder / "job.json", folder / "lock"}
        return sorted(p for p in folder.rglob("*") if p.is_file() and p not in own)

    def drop_failed(self, job: Job) -> int:
        """Delete a failed job (renamed away first, atomically); returns the bytes freed."""
        trash = self.root / f".{job.id}.removed"
        try:
            os.replace(self.failed_dir / job.id, trash)
        except OSError:
            return 0
        freed = sum(p.stat().st_size for p in trash.rglob("*") if p.is_file())
        shutil.rmtree(trash, ignore_errors=True)
        return freed

    @contextmanager
    def claim(self, job: Job) -> Iterator[bool]:
        """Lock the job for this process; yields False if another process holds it, or if
        the job is already gone."""
        try:  # no O_CREAT: a job being removed must not get a fresh lock file
            fd = os.open(self.jobs_dir / job.id / "lock", os.O_RDWR)
        except OSError:
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            yield (self.jobs_dir / job.id / "job.json").is_file()
        finally:
            os.close(fd)

    def remove(self, job: Job) -> None:
        """Delete a job: first renamed out of ``jobs/`` (atomic), then removed."""
        trash = self.root / f".{job.id}.removed"
        try:
            os.replace(self.jobs_dir / job.id, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def fail(self, job: Job) -> Path:
        """Move a job that cannot succeed to ``failed/`` (kept for inspection)."""
        target = self.failed_dir / job.id
        try:
            os.replace(self.jobs_dir / job.id, target)
            _write_json(target / "job.json", asdict(job))
        except OSError:
            shutil.rmtree(self.jobs_dir / job.id, ignore_errors=True)
        return target

    # -- local ids and the registry ids they became ----------------------------------------
    def remember(self, key: str, registry_id: str, registry: str) -> None:
        """Record that the local id ``key`` is ``registry_id`` in ``registry`` (durably)."""
        _write_json(self.ids_dir / key, {"id": registry_id, "registry": registry})

    def mapped(self, key: str, registry: str | None = None) -> str | None:
        """The registry id the local id ``key`` became (in ``registry``, when given)."""
        try:
            found = json.loads((self.ids_dir / key).read_text())
            if registry is not None and found.get("registry", registry) != registry:
                return None
            return str(found["id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _copy(src: Path, dest: Path, hash_it: bool = False) -> str | None:
    """Copy a file; with ``hash_it``, return its sha256, computed on the way."""
    digest = hashlib.sha256() if hash_it else None
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(CHUNK):
            if digest is not None:
                digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest() if digest is not None else None


def _move(src: Path, dest: Path) -> None:
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy(src, dest)
        src.unlink()
