"""What the files server stored: sha256 and size per file, kept beside the files root.

Each stored file ``<root>/<path>`` gets ``<root>/.modelbook-meta/<path>.json`` holding its
sha256, size and modification time, written when an upload completes. When a ClearML client
later points a model at that file (``models.edit(uri=...)``), the server records it as a
model version with that sha256 and size, without reading the file again.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "m.pt").write_bytes(b"abc")
    3
    >>> index = StoredIndex(root)
    >>> index.record(root / "m.pt", "ba7816bf", 3)
    >>> index.lookup("m.pt").size
    3
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelbook.server.paths import RESERVED_PREFIX, UnsafePathError, resolve_client_path

META_DIR = RESERVED_PREFIX + "-meta"


@dataclass(frozen=True)
class StoredFile:
    path: Path
    sha256: str
    size: int


class StoredIndex:
    """The sha256 and size of files the files server stored under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.meta_root = self.root / META_DIR

    def _meta_path(self, target: Path) -> Path:
        return self.meta_root / (target.relative_to(self.root).as_posix() + ".json")

    def record(self, target: Path, sha256: str, size: int) -> None:
        """Remember a file just stored (atomically; a failure only loses the shortcut)."""
        meta = self._meta_path(target)
        meta.parent.mkdir(parents=True, exist_ok=True)
        tmp = meta.with_name(f".{meta.name}.{uuid.uuid4().hex[:8]}")
        stat = target.stat()
        tmp.write_text(json.dumps({"sha256": sha256, "size": size, "mtime_ns": stat.st_mtime_ns}))
        os.replace(tmp, meta)

    def forget(self, target: Path) -> None:
        self._meta_path(target).unlink(missing_ok=True)

    def lookup(self, relative: str) -> StoredFile | None:
        """The stored file at ``relative`` if the index still describes it exactly."""
        try:
            target = resolve_client_path(self.root, relative)
            info = json.loads(self._meta_path(target).read_text())
            stat = target.stat()
        except (UnsafePathError, OSError, ValueError):
            return None
        if stat.st_size != info.get("size") or stat.st_mtime_ns != info.get("mtime_ns"):
            return None
        return StoredFile(path=target, sha256=info["sha256"], size=info["size"])

    def lookup_url(self, uri: str, host: str | None) -> StoredFile | None:
        """The stored file a ``http(s)://<host>/files/<path>`` URI of this server names."""
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not host or parts.netloc != host:
            return None
        path = unquote(parts.path)
        if not path.startswith("/files/"):
            return None
        return self.lookup(path[len("/files/") :])
