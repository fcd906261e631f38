"""The embedded backend: a SQLite store and a content-addressed blob folder in one home."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from modelbook.errors import ConfigurationError
from modelbook.records import GcResult
from modelbook.storage.local import sweep_partials, to_uri
from modelbook.store.sql import SqlStore


class EmbeddedBackend(SqlStore):
    """The default backend: zero set-up, one folder.

    Layout of the home folder::

        store.db            SQLite (WAL): projects, tasks, models, metadata, versions
        blobs/ab/<sha256>/<file name>   stored weights, content-addressed, never rewritten
        cache/              extracted packages and downloaded weights

    Args:
        home: the folder; created if missing.

    Example:
        >>> import tempfile
        >>> backend = EmbeddedBackend(Path(tempfile.mkdtemp()))
        >>> backend.default_destination().startswith("file://")
        True
    """

    kind = "embedded"
    default_layout = "content"

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigurationError(
                f"the modelbook home {self.home} is a file, not a folder; point MODELBOOK_HOME "
                "(or modelbook.configure(home=...)) at a folder"
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the modelbook home {self.home}: {exc.strerror}; choose a "
                "writable folder with MODELBOOK_HOME (or modelbook.configure(home=...))"
            ) from None
        store = self.home / "store.db"
        try:
            super().__init__(f"sqlite:///{store}")
        except sa.exc.DatabaseError as exc:
            raise ConfigurationError(_store_problem(store, exc)) from None

    @property
    def registry_id(self) -> str:
        return f"embedded:{self.home}"

    def default_destination(self) -> str:
        return to_uri(self.home / "blobs")

    def collect_garbage(self, pending_grace: float = 86400.0, dry_run: bool = False) -> GcResult:
        """Also removes the blob folder's temporary files that crashed copies left."""
        found = super().collect_garbage(pending_grace, dry_run)
        partials = sweep_partials(self.home / "blobs", pending_grace, dry_run)
        return GcResult(doomed=found.doomed, partials=[to_uri(p) for p in partials])


def _store_problem(store: Path, exc: Exception) -> str:
    """What went wrong opening the embedded store, and the fix."""
    message = str(getattr(exc, "orig", exc))
    if any(w in message for w in ("readonly", "read-only", "unable to open", "permission")):
        return (
            f"cannot write the modelbook store {store} ({message}); make its folder writable "
            f"(chmod u+w {store.parent}) or choose another home with MODELBOOK_HOME"
        )
    if any(w in message for w in ("not a database", "malformed", "corrupt")):
        return (
            f"the modelbook store {store} is damaged or not a SQLite database ({message}); "
            f"restore it from a backup, or move it aside (mv {store} {store}.bad) to start "
            "an empty one"
        )
    return f"cannot open the modelbook store {store}: {message}"
