"""Where weights go: the one rule that names every stored object.

A :class:`Destination` is a root (a folder, ``file://``, a files server, ``s3://``) and a
layout. Every object gets a name of its own, so no two versions share a URI unless their
bytes are identical, and a retried upload lands on the same URI:

* ``content`` (the embedded store's blob folder): ``<root>/<sha[:2]>/<sha>/<file name>``:
  identical bytes are stored once;
* ``clearml`` (every explicit destination): ClearML's prefix, so ClearML tools can browse it,
  then the upload's id, which sorts by time: ``<root>/<project>/<task name>.<task
  id>/models/<upload id>/<file name>``. It is known before the bytes are hashed, so
  ``update_weights`` returns it without reading the file on the training thread.

The user's file name is kept last: loaders look at extensions.

"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelbook.errors import InvalidArgumentError

LAYOUTS = ("content", "clearml")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_UPLOAD_ID = re.compile(r"^[0-9]{1,20}-[0-9a-f]{4,32}$")


def is_object_path(path: Path) -> bool:
    """Whether a local file is named like a stored object (its folder is a sha256 or an
    upload id): such a file belongs to a registry and is copied, never moved, when handed
    in (``get_local_copy`` hands out local objects in place)."""
    folder = Path(path).parent.name
    return bool(_DIGEST.match(folder) or _UPLOAD_ID.match(folder))


@dataclass(frozen=True)
class Destination:
    """A root URI and the layout of the objects under it.

    Args:
        root: the destination folder's URI, no trailing slash.
        layout: ``"content"`` or ``"clearml"``.
        folder: for ``clearml``, ``<project>/<task name>.<task id>/models``.

    Example:
        >>> d = Destination.for_task("s3://bucket/prefix/", "clearml", "vision", "run", "abc")
        >>> d.object_uri(None, "model.pt", "0001-ab12")
        's3://bucket/prefix/vision/run.abc/models/0001-ab12/model.pt'
        >>> Destination("file:///m/blobs", "content").object_uri("ab" * 32, "w.pt", "0001-ab12")
        'file:///m/blobs/ab/abababababababababababababababababababababababababababababababab/w.pt'
    """

    root: str
    layout: str
    folder: str = ""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InvalidArgumentError(f"layout={self.layout!r} is not one of {LAYOUTS}")

    @classmethod
    def for_task(
        cls, root: str, layout: str, project: str, task_name: str, task_id: str
    ) -> Destination:
        """The destination of a task's output models under ``root``."""
        folder = f"{project}/{task_name[:128]}.{task_id}/models" if layout == "clearml" else ""
        return cls(root.rstrip("/"), layout, folder)

    @property
    def needs_digest(self) -> bool:
        """Whether :meth:`object_uri` needs the sha256 (content-addressed layout)."""
        return self.layout == "content"

    def object_uri(self, sha256: str | None, filename: str, upload_id: str) -> str:
        """The URI of the object one upload (``upload_id``) of ``filename`` stores."""
        if not filename or "/" in filename or not _UPLOAD_ID.match(upload_id or ""):
            raise InvalidArgumentError(
                f"an object needs a plain file name and an upload id, got {filename!r} and "
                f"{upload_id!r}"
            )
        if self.layout == "clearml":
            return f"{self.root}/{self.folder}/{upload_id}/{filename}"
        if not sha256 or not _DIGEST.match(sha256):
            raise InvalidArgumentError(f"the content layout needs a sha256, got {sha256!r}")
        return f"{self.root}/{sha256[:2]}/{sha256}/{filename}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Destination:
        return cls(str(data["root"]), str(data["layout"]), str(data.get("folder") or ""))
