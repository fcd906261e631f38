"""Helpers of the ownership tests (test_ownership*.py): the ``Place`` a test stores weights
to, and checks that no bytes a model still needs were lost."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import modelbook
from modelbook import Model, OutputModel
from modelbook.store import objects as ownership
from modelbook.store import schema

UPLOAD_TIMEOUT = 60


@dataclass
class Place:
    """One destination: its name, the task's ``output_uri`` and the live server, if any."""

    name: str
    output_uri: str | None
    server: Any = None

    @property
    def content_addressed(self) -> bool:
        """Identical bytes are one object (the embedded store's default blob folder)."""
        return self.name == "blobs"

    def engine(self) -> sa.Engine:
        """The registry's database (the embedded store's, or the server's)."""
        if self.server is None:
            return modelbook.config.get_backend().engine  # type: ignore[attr-defined]
        return sa.create_engine(self.server.db_url)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store(model: OutputModel, weights, content: bytes, name: str = "model.pt", **kw: Any) -> str:
    """Register ``content`` as the model's next version, synchronously; return its URI."""
    return model.update_weights(str(weights(name, content=content)), async_enable=False, **kw)


def read_version(model_id: str, version: int) -> bytes:
    path = Model(model_id).get_local_copy(version=version, raise_on_error=True)
    assert path is not None
    return Path(path).read_bytes()


def assert_nothing_lost(*model_ids: str, known: dict[str, str] | None = None) -> None:
    """Every unpruned version, and the current weights, of each model read back with their
    sha256 (``known``: ``{uri: sha256}`` for registrations that record none: ``register_uri``,
    ``import_model``, which has no versions)."""
    known = known or {}
    backend = modelbook.config.get_backend()
    for model_id in model_ids:
        versions = Model(model_id).versions
        assert not versions or not all(v.pruned for v in versions), model_id
        for v in (v for v in versions if not v.pruned):
            expected = v.sha256 or known[v.uri]
            assert sha(read_version(model_id, v.version)) == expected, (model_id, v)
        record = backend.get_model(model_id)
        current = Model(model_id).get_local_copy(raise_on_error=True)
        assert current is not None
        assert sha(Path(current).read_bytes()) == (record.sha256 or known[record.uri])


def exists(uri: str) -> bool:
    return modelbook.config.get_backend().driver_for(uri).exists(uri)


def settle() -> None:
    assert OutputModel.wait_for_uploads(timeout=UPLOAD_TIMEOUT) == []


def owned_unreferenced(place: Place) -> list[tuple[str, str]]:
    """``(uri, state)`` of the objects the registry owns that nothing references, or that
    are not live."""
    engine = place.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(schema.objects.c.uri, schema.objects.c.state).where(
                    schema.objects.c.owned.is_(True)
                )
            ).all()
            return [
                (uri, state)
                for uri, state in rows
                if state != "live" or not ownership.referenced(conn, uri)
            ]
    finally:
        if place.server is not None:
            engine.dispose()
