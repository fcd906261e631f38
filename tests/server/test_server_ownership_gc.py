"""``storage.gc`` on ``modelbook server``: stale partial uploads go, a dry run removes nothing."""

from __future__ import annotations

import os
import time
from typing import Any

import requests
from server_ownership_support import TIMEOUT, _put, _sha

from modelbook.server.testing import envelope_data, envelope_meta, live_server


# -- 4. storage.gc and partial uploads ------------------------------------------------------
def _login(srv) -> str:
    response = requests.get(
        f"{srv.api_host}/auth.login", auth=(srv.access_key, srv.secret_key), timeout=TIMEOUT
    )
    return envelope_data(response)["token"]


def test_gc_removes_stale_partial_uploads_and_dry_run_removes_nothing(tmp_path) -> None:
    with live_server(tmp_path / "srv") as srv:
        token = _login(srv)
        headers = {"Authorization": f"Bearer {token}"}

        def gc(**body: Any) -> dict[str, Any]:
            response = requests.post(
                f"{srv.api_host}/v2.23/storage.gc", json=body, headers=headers, timeout=TIMEOUT
            )
            return envelope_data(response)

        tmp_dir = srv.files_root / ".modelbook-tmp"
        stale, fresh = tmp_dir / "stale.part", tmp_dir / "fresh.part"
        other = tmp_dir / "stale.keep"  # not a partial upload
        for path in (stale, fresh, other):
            path.write_bytes(b"half an upload")
        hour_ago = time.time() - 3600
        for path in (stale, other):
            os.utime(path, (hour_ago, hour_ago))
        # a referenced file, and an object a writer announced and never referenced
        weights = os.urandom(64)
        ref_uri = _put(srv, headers, "gc/referenced.pt", weights)
        orphan_uri = f"{srv.files_host}/gc/orphan.pt"
        envelope_data(requests.post(
            f"{srv.api_host}/v2.23/storage.begin_write",
            json={"uri": orphan_uri, "sha256": _sha(b"orphan"), "size": 6},
            headers=headers, timeout=TIMEOUT,
        ))  # fmt: skip
        _put(srv, headers, "gc/orphan.pt", b"orphan")
        model_id = envelope_data(requests.post(
            f"{srv.api_host}/v2.23/models.create", json={"name": "gc", "ready": False},
            headers=headers,
            timeout=TIMEOUT,
        ))["id"]  # fmt: skip
        envelope_data(requests.post(
            f"{srv.api_host}/v2.23/models.add_version",
            json={"model": model_id, "uri": ref_uri, "sha256": _sha(weights), "size": 64},
            headers=headers, timeout=TIMEOUT,
        ))  # fmt: skip

        dry = gc(pending_grace=600, dry_run=True)
        assert dry["partials"] == ["stale.part"]
        assert all(p.exists() for p in (stale, fresh, other))
        assert (srv.files_root / "gc/orphan.pt").exists()

        young = gc(pending_grace=7200)  # nothing is that old
        assert young == {"doomed": [], "partials": []}
        assert all(p.exists() for p in (stale, fresh, other))
        assert (srv.files_root / "gc/orphan.pt").exists()

        done = gc(pending_grace=600)
        assert done["partials"] == ["stale.part"]
        assert not stale.exists() and fresh.exists() and other.exists()

        dry = gc(pending_grace=0, dry_run=True)
        assert dry["partials"] == ["fresh.part"] and dry["doomed"] == [orphan_uri]
        assert fresh.exists() and (srv.files_root / "gc/orphan.pt").exists()

        done = gc(pending_grace=0)
        assert done["partials"] == ["fresh.part"] and done["doomed"] == []  # deleted here
        assert not fresh.exists() and other.exists()
        assert not (srv.files_root / "gc/orphan.pt").exists()
        assert (srv.files_root / "gc/referenced.pt").read_bytes() == weights

        bad = requests.post(
            f"{srv.api_host}/v2.23/storage.gc", json={"pending_grace": -1}, headers=headers,
            timeout=TIMEOUT,
        )  # fmt: skip
        assert bad.status_code == 400 and envelope_meta(bad)["result_subcode"] == 12
