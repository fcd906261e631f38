"""A real headless Chromium (the system's, driven by Playwright; nothing downloaded) through
the pages of ``modelbook ui`` and of a live ``modelbook server``: log in, filter, open a model,
one plotted point per version, download a version and compare its sha256, publish, compare
two versions, open the task. One browser for the module; each page's screenshot is saved
under ``$MODELBOOK_TEST_ARTIFACTS`` (default ``tests/artifacts/ui/``). About 15-25 s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from ui_process import chromium_path, modelbook_ui
from ui_seed import STEPS, Seeded, seed

from modelbook.backends.embedded import EmbeddedBackend
from modelbook.server.testing import live_server

pytestmark = pytest.mark.embedded_only  # each test runs its own registry
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need: pip install -c constraints.txt playwright"
)
CHROMIUM = chromium_path()
if CHROMIUM is None:
    pytest.skip(
        "no Chromium binary (apt-get install chromium, or set MODELBOOK_CHROMIUM)",
        allow_module_level=True,
    )

WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              timeout=WAIT_MS)  # fmt: skip
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def _check_session_cookie(page: Any) -> None:
    cookies = {c["name"]: c for c in page.context.cookies()}
    cookie = cookies["modelbook_ui"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"


def walk_through(page: Any, seeded: Seeded, shots: Path, name: str) -> None:
    """The scenario, from the models page of a logged-in browser."""

    def shot(step: str) -> None:
        page.screenshot(path=str(shots / f"{name}-{step}.png"), full_page=True)

    assert page.locator("h1").inner_text() == "Models"
    shot("1-models")
    page.select_option("select[name=project]", "vision")
    page.fill("input[name=tags]", "best, -old")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**tags=best**")
    assert page.locator("a.model-link").all_inner_texts() == ["resnet18"]
    shot("2-filtered")

    page.click("a.model-link")
    page.wait_for_url(f"**/ui/models/{seeded.model}")
    plot = page.locator("figure.plot").first
    assert "val_loss" in plot.locator("figcaption").inner_text()
    points = plot.locator("circle.point")
    assert points.count() == len(STEPS) == page.locator("tr.version").count()
    boxes = [points.nth(i).bounding_box() for i in range(points.count())]
    assert all(b is not None and b["width"] > 0 for b in boxes)  # drawn, and visible
    assert [b["x"] for b in boxes] == sorted(b["x"] for b in boxes)  # one per version, in order
    assert len({round(b["x"]) for b in boxes}) == len(STEPS)
    shot("3-model")

    with page.expect_download() as info:
        page.click(f"a[href='/ui/models/{seeded.model}/versions/2/download']")
    download = info.value
    assert download.failure() is None and download.suggested_filename.endswith(".pt")
    assert hashlib.sha256(Path(download.path()).read_bytes()).hexdigest() == seeded.sha256[2]

    page.click("button:text-is('Publish')")
    page.wait_for_url("**done=published")
    assert page.locator("h1 .badge.published").count() == 1
    assert page.locator("button:text-is('Publish')").count() == 0
    shot("4-published")

    page.check(f"input[name=v][value='{seeded.model}:1']")
    page.check(f"input[name=v][value='{seeded.model}:4']")
    page.click("button:text-is('Compare selected versions')")
    page.wait_for_url("**/ui/compare?**")
    differing = page.locator("tr.differs th").all_inner_texts()
    assert {"sha256", "metric value", "version"} <= set(differing)
    assert "model" not in differing
    assert page.locator("td.diff").count() == 2 * len(differing)
    shot("5-compare")

    page.click("th >> a >> nth=0")  # back to the model, then to the task that made it
    page.click(f"a[href='/ui/tasks/{seeded.train_task}']")
    assert page.locator("figure.plot polyline").count() >= 1
    assert page.locator("text=batch_size").count() == 1
    shot("6-task")


def test_the_embedded_ui_in_chromium(page: Any, tmp_path: Path, artifacts: Path) -> None:
    home = tmp_path / "home"
    seeded = seed(home)
    with modelbook_ui(home) as url:
        base = url.split("/ui/")[0]
        page.goto(f"{base}/ui/")
        assert page.url.startswith(f"{base}/ui/login")  # no session yet: the log-in form
        page.goto(url)  # the printed URL logs in and drops the token from the address
        assert page.url == f"{base}/ui/"
        _check_session_cookie(page)
        walk_through(page, seeded, artifacts, "embedded")
    store = EmbeddedBackend(home)
    try:
        assert store.get_model(seeded.model).ready
    finally:
        store.close()


def test_a_servers_ui_in_chromium(page: Any, tmp_path: Path, artifacts: Path) -> None:
    with live_server(tmp_path / "server") as server:
        seeded = seed(tmp_path / "client", server)
        page.goto(f"{server.api_host}/")
        assert "/ui/login" in page.url
        page.fill("input[name=access_key]", server.access_key)
        page.fill("input[name=secret_key]", "not the secret at all")
        page.click("form.login button")
        assert "wrong access key or secret key" in page.locator("p.error").inner_text()
        page.fill("input[name=access_key]", server.access_key)
        page.fill("input[name=secret_key]", server.secret_key)
        page.click("form.login button")
        page.wait_for_url(f"{server.api_host}/ui/")
        _check_session_cookie(page)
        walk_through(page, seeded, artifacts, "server")
        login = requests.get(f"{server.api_host}/auth.login", timeout=10,
                             auth=(server.access_key, server.secret_key))  # fmt: skip
        token = login.json()["data"]["token"]
        model = requests.post(f"{server.api_host}/models.get_by_id", json={"model": seeded.model},
                              headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip
        assert model.json()["data"]["model"]["ready"] is True  # published through the API's rules
