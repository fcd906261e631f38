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
the clearml SDK, plain by modelbook's clients, under whatever host name the client used):
every form under any host is recognised by its decoded path.
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
    """The file is referenced by a model: the request would destroy its bytes.

    Example:
        >>> str(ReferencedFileError("p/m.pt", [("abc", "resnet", True)], "delete"))
        "cannot delete 'p/m.pt': model abc ('resnet') references it and is published (read-only)"
    """

    def __init__(self, path: str, models: list[tuple[str, str, bool]], what: str) -> None:
        model_id, name, _ = models[0]
        more = f" and {len(models) - 1} more" if len(models) > 1 else ""
        super().__init__(
            f"cannot {what} {path!r}: model {model_id} ({name!r}){more} references it"
            + (" and is published (read-only)" if models[0][2] else "")
        )


class FilesObjects:
    """Object ownership for one files root.

    A file is identified by its path under the root, whatever host name or quoting a model's
    URI uses for it: a reference is any model or unpruned-version URI ``http(s)://<any
    host>/files/<path>`` whose decoded path is the file's.

    Args:
        store: the registry store.
        root: the files root folder.
        index: the files server's sha256/size index.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> objects = FilesObjects(SqlStore("sqlite://"), root, StoredIndex(root))
        >>> objects.references("proj/task.1/models/m.pt")  # no model names it
        []
    """

    def __init__(self, store: SqlStore, root: Path, index: StoredIndex) -> None:
        self.store, self.root, self.index = store, Path(root).resolve(), index

    @staticmethod
    def _relative(uri: str) -> str | None:
        """The decoded path below ``/files/`` of a files-server URI, else None."""
        parts = urlsplit(uri)
        path = unquote(parts.path)
        if parts.scheme not in ("http", "https") or not path.startswith("/files/"):
            return None
        return path[len("/files/") :]

    def references(self, relative: str) -> list[tuple[str, str, bool, str]]:
        """``(model id, name, published, uri)`` of every reference to the file."""
        suffixes = [f"/files/{relative}", f"/files/{quote(relative, safe='/')}"]
        return [r for r in self.store.references_ending(suffixes)
                if self._relative(r[3]) == relative]  # fmt: skip

    def guard_delete(self, relative: str) -> None:
        """Raise :class:`ReferencedFileError` if a model references the file."""
        found = self.references(relative)
        if found:
            raise ReferencedFileError(relative, [r[:3] for r in found], "delete")

    def before_overwrite(self, target: Path, check_only: bool = False) -> None:
        """Called before a new upload replaces ``target``: refuse if a published model
        references it, else (unless ``check_only``: an upload of several files checks them
        all before any changes) keep the referenced bytes under a version-specific name and
        repoint every reference to them (one transaction)."""
        if not target.is_file():
            return
        relative = target.relative_to(self.root).as_posix()
        found = self.references(relative)
        if not found:
            return
        published = [r[:3] for r in found if r[2]]
        if published:
            raise ReferencedFileError(relative, published, "overwrite")
        if check_only:
            return
        upload_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        kept = target.parent / upload_id / target.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.link(target, kept)  # the same bytes under a second name; the upload replaces the first
        info = self.index.lookup(relative)
        if info is not None:
            self.index.record(kept, info.sha256, info.size)
        moves = {}
        for *_, uri in found:
            folder, _, name = uri.rpartition("/")
            moves[uri] = f"{folder}/{upload_id}/{name}"
        self.store.move_objects(moves)

    def _path(self, uri: str) -> Path | None:
        """The file of this root a files-server URI names, if there is one."""
        relative = self._relative(uri)
        try:
            path = resolve_client_path(self.root, relative) if relative else None
        except UnsafePathError:
            return None
        return path if path is not None and path.is_file() else None

    def delete_own(self, doomed: list[str]) -> list[str]:
        """Delete the doomed objects held here that nothing references under any name, and
        forget them; return the other URIs (on other storage: the client deletes those)."""
        gone, others = [], []
        for uri in doomed:
            path = self._path(uri)
            if path is None:
                others.append(uri)
                continue
            if not self.references(path.relative_to(self.root).as_posix()):
                path.unlink()
                self.index.forget(path)
                with contextlib.suppress(OSError):  # the per-upload folder, when it is empty
                    path.parent.rmdir()
            gone.append(uri)  # deleted, or one more name of a file another name still uses
        if gone:
            self.store.forget_objects(gone)
        return others
