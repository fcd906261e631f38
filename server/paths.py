"""Path safety for the files server: every client path resolves inside the files root.

A client path is refused when it, or any further percent-decoding of it, holds a ``..``
or ``.`` segment, an empty segment, a backslash, a NUL or other control character, a drive
letter, or a segment starting with ``.modelbook`` (the server's own temporary files). After
that, the resolved path (symbolic links followed) must still be inside the root.

Example:
    >>> root = Path("/srv/files")
    >>> resolve_client_path(root, "/proj/task.1/models/m.pt").as_posix()
    '/srv/files/proj/task.1/models/m.pt'
    >>> try:
    ...     resolve_client_path(root, "p/%2e%2e/%2e%2e/etc/passwd")
    ... except UnsafePathError as exc:
    ...     print(exc)
    path 'p/%2e%2e/%2e%2e/etc/passwd' is not allowed: it has a '..' segment
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

#: Prefix of names the server uses for itself inside the root; clients cannot use it.
RESERVED_PREFIX = ".modelbook"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


#: The longest folder or file name kept (file systems allow 255 bytes; the index adds a suffix).
MAX_SEGMENT = 240


class UnsafePathError(ValueError):
    """A client path that could leave the files root or touch the server's own files."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"path {path[:300]!r} is not allowed: {why}")


def _check_form(original: str, path: str) -> None:
    if "\\" in path:
        raise UnsafePathError(original, "it has a backslash")
    if _CONTROL.search(path):
        raise UnsafePathError(original, "it has a NUL or control character")
    if _DRIVE.match(path):
        raise UnsafePathError(original, "it has a drive letter")
    for segment in path.split("/"):
        if segment in ("..", "."):
            raise UnsafePathError(original, f"it has a {segment!r} segment")
        if segment == "":
            raise UnsafePathError(original, "it has an empty segment (absolute or '//')")
        if segment.startswith(RESERVED_PREFIX):
            raise UnsafePathError(original, f"names starting with {RESERVED_PREFIX!r} are reserved")
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT:
            raise UnsafePathError(
                original, f"a folder or file name is longer than {MAX_SEGMENT} bytes"
            )


def relative_client_path(path: str) -> str:
    """Validate a client path (one leading ``/`` allowed) and return it without the ``/``.

    Raises:
        UnsafePathError: the path is empty, absolute beyond its leading slash, or unsafe.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePathError(str(path), "it is empty")
    relative = path[1:] if path.startswith("/") else path
    if not relative:
        raise UnsafePathError(path, "it names the root folder")
    if len(relative) > 4096:
        raise UnsafePathError(path, "it is longer than 4096 characters")
    decoded = relative
    for _ in range(4):  # percent-encoded (and double-encoded) variants
        _check_form(path, decoded)
        again = unquote(decoded)
        if again == decoded:
            break
        decoded = again
    else:
        raise UnsafePathError(path, "it is percent-encoded too many times")
    return relative


def resolve_client_path(root: Path, path: str) -> Path:
    """The absolute path of a client path inside ``root``.

    Raises:
        UnsafePathError: the path is unsafe or resolves outside the root.
    """
    relative = relative_client_path(path)
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or target == base:
        raise UnsafePathError(path, "it resolves outside the files root")
    return target
