"""The strict-ClearML harness: ``modelbook server --clearml-strict`` on 127.0.0.1 behind a
:class:`~.gate.SchemaGate`, so a client passes only if it speaks what a real ClearML server
takes (see docs/server.md, "The strict-ClearML harness")."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytest.importorskip("starlette")
from modelbook.server.testing import LiveServer, running_server

from .gate import SchemaGate


@dataclass
class StrictSite:
    server: LiveServer
    gate: SchemaGate

    @property
    def api_host(self) -> str:
        return self.gate.url


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[StrictSite]:
    """A strict server behind the schema gate; the test fails on any schema violation."""
    with running_server(tmp_path / "server", extra_args=["--clearml-strict"]) as server:
        gate = SchemaGate(urlsplit(server.api_host).port or 80)
        try:
            yield StrictSite(server, gate)
        finally:
            gate.close()
        assert not gate.violations, "\n".join(gate.violations)
