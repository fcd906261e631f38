"""The server's side of object ownership: files its files server holds that models use.

The store decides what may be deleted (:mod:`modelbook.store.objects`); this module applies
those decisions to the files root and keeps the files server from destroying bytes a model
references:

* a file a **published** model references cannot be overwritten or deleted (409 naming the
  model);
* a file an older, unpublished version references is **kept** when a new upload takes its
  name: it is moved to a version-specific name (``<folder>/<upload id>/<name>``, as
  modelbook's own clients name objects) and every model and version naming it is repointed,
  in one transaction, before the new bytes are renamed into place. The clearml SDK uploads
  the same file name on each ``update_weights``; history stays readable;
* objects the store dooms that live on this files server are deleted here, right after the
  transaction that doomed them; the others are returned for the client to delete.

A file is named by models through URIs ``http(s)://<host>/files/<path>`` (percent-quoted by
the clearml SDK, plain by modelbook's clients); both forms on the request's host are
recognised.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from modelbook.server.paths import UnsafePathError, resolve_client_path
from modelbook.server.stored import StoredIndex
from modelbook.store.sql import SqlStore


class ReferencedFileError(Exception):
    """The file is referenced by a model: the request would destroy its bytes."""

    def __init__(self, path: str, models: list[tuple[str, str, bool]], what: str) -> None:
        model_id, name, _ = models[0]
        more = f" and {len(models) - 1} more" if len(models) > 1 else ""
        super().__init__(
            f"cannot {what} {path!r}: model {model_id} ({name!r}){more} references it"
            + (" and is published (read-only)" if models[0][2] else "")
        )


class FilesObjects:
    """Object ownership for one files root.

    Args:
        store: the registry store.
        root: the files root folder.
        index: the files server's sha256/size index.
    """

    def __init__(self, store: SqlStore, root: Path, index: StoredIndex) -> None:
        self.store, self.root, self.index = store, Path(root).resolve(), index

    @staticmethod
    def uris(relative: str, host: str | None) -> list[str]:
        """The URIs under which models may name the file at ``relative`` on ``host``."""
        if not host:
            return []
        paths = dict.fromkeys([relative, quote(relative, safe="/")])
        return [f"{scheme}://{host}/files/{p}" for scheme in ("http", "https") for p in paths]

    def guard_delete(self, relative: str, host: str | None) -> None:
        """Raise :class:`ReferencedFileError` if a model references the file."""
        found = self.store.object_references(self.uris(relative, host))
        if found:
            raise ReferencedFileError(relative, found, "delete")

    def before_overwrite(self, target: Path, host: str | None) -> None:
        """Called before a new upload replaces ``target``: refuse if a published model
        references it, else move the referenced bytes aside and repoint their references."""
        if not target.is_file():
            return
        relative = target.relative_to(self.root).as_posix()
        uris = self.uris(relative, host)
        found = self.store.object_references(uris)
        if not found:
            return
        published = [m for m in found if m[2]]
        if published:
            raise ReferencedFileError(relative, published, "overwrite")
        upload_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        kept = target.parent / upload_id / target.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.link(target, kept)  # the same bytes under a second name; the upload replaces the first
        info = self.index.lookup(relative)
        if info is not None:
            self.index.record(kept, info.sha256, info.size)
        for uri in uris:
            parts = urlsplit(uri)
            folder, _, name = parts.path.rpartition("/")
            self.store.move_object(uri, f"{parts.scheme}://{parts.netloc}{folder}/{upload_id}/{name}")

    def local_path(self, uri: str, host: str | None) -> Path | None:
        """The file behind a URI of this files server (on ``host``), else None."""
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not host or parts.netloc != host:
            return None
        path = unquote(parts.path)
        if not path.startswith("/files/"):
            return None
        try:
            return resolve_client_path(self.root, path[len("/files/") :])
        except UnsafePathError:
            return None

    def delete_own(self, doomed: list[str], host: str | None) -> list[str]:
        """Delete the doomed objects held here and forget them; return the other URIs
        (on other storage: the client deletes those)."""
        gone, others = [], []
        for uri in doomed:
            path = self.local_path(uri, host)
            if path is None:
                others.append(uri)
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self.index.forget(path)
            with contextlib.suppress(OSError):  # the per-upload folder, when it is empty
                path.parent.rmdir()
            gone.append(uri)
        if gone:
            self.store.forget_objects(gone)
        return others
