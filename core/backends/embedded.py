"""The embedded backend: a SQLite store and a content-addressed blob folder in one home."""

from __future__ import annotations

from pathlib import Path

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
        self.home.mkdir(parents=True, exist_ok=True)
        super().__init__(f"sqlite:///{self.home / 'store.db'}")

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
