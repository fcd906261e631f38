"""The UI's pages and actions over the embedded store, called in-process (no browser): the
session and CSRF checks, filters, escaping, plots, downloads, actions, compare, the task page
and keyset paging (about 3 s in all)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from ui_client import Browser, error_of, model_names
from ui_seed import XSS, Seeded, expected_order, paging_models, seed

from modelbook.records import to_metadata
from modelbook.server.ui.mount import embedded_ui
from modelbook.server.ui.queries import SORTS
from modelbook.storage.local import to_uri

pytestmark = pytest.mark.embedded_only  # the UI reads its own store; no ClearML server here

TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Seeded]]:
    home = tmp_path_factory.mktemp("ui-home")
    seeded = seed(home)
    app, store = embedded_ui(home, TOKEN)
    yield app, store, seeded
    store.close()


@pytest.fixture
def browser(ui: tuple[Any, Any, Seeded]) -> Browser:
    client = Browser(ui[0])
    assert client.get(f"/ui/?token={TOKEN}").status == 303
    return client


def test_every_page_and_action_needs_a_session(ui: tuple[Any, Any, Seeded]) -> None:
    app, _, seeded = ui
    anonymous = Browser(app)
    for target in ("/ui/", f"/ui/models/{seeded.model}", f"/ui/tasks/{seeded.train_task}",
                   f"/ui/models/{seeded.model}/versions/1/download", "/ui/compare?m=a&m=b"):
        answer = anonymous.get(target)
        assert answer.status == 303, target
        assert answer.headers["location"] == f"/ui/login?next={quote(target, safe='')}"
    refused = anonymous.post(f"/ui/models/{seeded.model}/publish", {"csrf": "x"})
    assert refused.status == 403
    assert anonymous.get("/ui/?token=wrong").status == 401
    anonymous.cookie = "modelbook_ui=9999999999.forged.signature"
    assert anonymous.get("/ui/").status == 303


def test_the_token_sets_a_strict_http_only_cookie_and_leaves_the_url(
    ui: tuple[Any, Any, Seeded],
) -> None:
    client = Browser(ui[0])
    answer = client.get(f"/ui/models/x?token={TOKEN}&keep=1")
    assert answer.status == 303 and answer.headers["location"] == "/ui/models/x?keep=1"
    flags = [f.strip() for f in answer.headers["set-cookie"].split(";")]
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(flags)
    assert "Secure" not in flags  # plain http on 127.0.0.1
    assert client.get("/ui/").status == 200
    form = Browser(ui[0])
    logged = form.post("/ui/login?next=/ui/tasks/t", {"token": TOKEN})
    assert logged.status == 303 and logged.headers["location"] == "/ui/tasks/t"
    elsewhere = Browser(ui[0]).post("/ui/login?next=//evil.example/", {"token": TOKEN})
    assert elsewhere.headers["location"] == "/ui/"
    assert Browser(ui[0]).post("/ui/login", {"token": "nope"}).status == 401


def test_pages_carry_security_headers_and_the_css_ships_in_the_package(browser: Browser) -> None:
    page = browser.get("/ui/")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "same-origin"  # "no-referrer" makes Origin null
    assert re.fullmatch(r"app;dur=\d+\.\d", page.headers["server-timing"])
    assert "http://" not in page.text and "https://" not in page.text  # nothing external
    assert 'src="' not in page.text  # no script, no image: the tables read without JavaScript
    css = Browser(browser.app).get("/ui/static/ui.css")  # no session needed
    assert css.status == 200 and b"table.compare" in css.body
    assert browser.get("/ui/static/other.js").status == 404


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("project=vision", ["resnet18"]),  # legacy is archived: hidden by default
        ("project=vision&archived=yes", ["legacy"]),
        ("project=vision&archived=all&sort=name", ["legacy", "resnet18"]),
        ("tags=old", ["mobilenet"]),
        ("project=edge&tags=-old", [XSS]),
        ("tags=best,old&sort=name", ["mobilenet", "resnet18"]),
        ("name=NET&sort=name", ["mobilenet", "resnet18"]),
        ("published=yes", []),
    ],
)
def test_filters(browser: Browser, query: str, names: list[str]) -> None:
    page = browser.get(f"/ui/?{query}")
    assert page.status == 200, error_of(page.text)
    assert model_names(page.text) == [n.replace("<", "&lt;").replace(">", "&gt;") for n in names]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("project=nope", "existing projects: 'edge', 'vision'"),
        ("tags=-", "a tag is expected after the exclude prefix"),
        ("sort=size", "cannot sort models by 'size'; accepted: -created"),
        ("published=maybe", "published must be one of '', 'yes', 'no'"),
        ("size=0", "size must be a whole number from 1 to 200"),
        ("after=garbage", "open the first page"),
    ],
)
def test_bad_filters_say_what_is_accepted(browser: Browser, query: str, message: str) -> None:
    page = browser.get(f"/ui/?{query}")
    assert page.status in (400, 404)
    assert message in error_of(page.text).replace("&#x27;", "'")


def test_names_are_escaped(browser: Browser) -> None:
    page = browser.get("/ui/?project=edge")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>" not in page.text


def test_the_model_page(browser: Browser, ui: tuple[Any, Any, Seeded]) -> None:
    seeded = ui[2]
    page = browser.get(f"/ui/models/{seeded.model}").text
    plots = page.split('<figure class="plot">')[1:]
    assert "val_loss over the versions (monitored)" in plots[0]
    assert re.findall(r'data-x="(\d+)"', plots[0]) == ["1", "2", "3", "4"]
    assert re.findall(r'data-y="([\d.]+)"', plots[0]) == ["0.9", "0.6", "0.5", "0.41"]
    assert plots[0].count('class="point best"') == 1  # v4: the lowest val_loss
    assert "val_acc over the versions" in plots[1] and plots[1].count("<circle") == 4
    assert page.count('<tr class="version">') == 4
    for version, sha in seeded.sha256.items():
        assert sha in page and f"/versions/{version}/download" in page
    assert f'href="/ui/tasks/{seeded.train_task}"' in page  # made by
    assert f'href="/ui/tasks/{seeded.finetune_task}"' in page  # used by
    assert "metrics/val_acc" in page and "PyTorch" in page
    assert browser.get("/ui/models/nope").status == 404


def test_a_download_streams_the_versions_bytes(
    browser: Browser, ui: tuple[Any, Any, Seeded]
) -> None:
    seeded = ui[2]
    for version in (1, 3):
        answer = browser.get(f"/ui/models/{seeded.model}/versions/{version}/download")
        assert answer.status == 200
        assert hashlib.sha256(answer.body).hexdigest() == seeded.sha256[version]
        assert answer.headers["x-modelbook-sha256"] == seeded.sha256[version]
        assert answer.headers["content-disposition"].startswith("attachment;")
    missing = browser.get(f"/ui/models/{seeded.model}/versions/9/download")
    assert missing.status == 404 and "it has versions 1, 2, 3, 4" in error_of(missing.text)


def test_actions_check_csrf_and_follow_the_apis_rules(
    browser: Browser, ui: tuple[Any, Any, Seeded], tmp_path: Path
) -> None:
    store = ui[1]
    model = store.create_model(name="act", project=None)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    store.add_model_version(model.id, uri=to_uri(weights), sha256=None, size=7, iteration=1,
                            owned=False)  # fmt: skip
    base = f"/ui/models/{model.id}"
    csrf = browser.csrf(base)
    assert browser.post(f"{base}/publish", {"csrf": "forged"}).status == 403
    foreign = browser.post(f"{base}/publish", {"csrf": csrf}, {"origin": "http://evil.example"})
    assert foreign.status == 403 and not store.get_model(model.id).ready
    done = browser.post(f"{base}/publish", {"csrf": csrf})
    assert done.status == 303 and done.headers["location"] == f"{base}?done=published"
    assert store.get_model(model.id).ready
    assert "now read-only" in browser.get(done.headers["location"]).text
    again = browser.post(f"{base}/publish", {"csrf": csrf})
    assert again.status == 400 and "already published" in error_of(again.text)
    assert browser.post(f"{base}/tags/add", {"csrf": csrf, "tag": "prod"}).status == 303
    assert browser.post(f"{base}/tags/add", {"csrf": csrf, "tag": "-x"}).status == 400
    assert browser.post(f"{base}/archive", {"csrf": csrf}).status == 303
    record = store.get_model(model.id)
    assert record.tags == ["prod"] and record.archived  # as the API allows on a published model
    assert browser.post(f"{base}/tags/remove", {"csrf": csrf, "tag": "nope"}).status == 400
    assert browser.post(f"{base}/tags/remove", {"csrf": csrf, "tag": "prod"}).status == 303
    assert browser.post(f"{base}/unarchive", {"csrf": csrf}).status == 303
    assert browser.post(f"{base}/rename", {"csrf": csrf}).status == 400
    record = store.get_model(model.id)
    assert record.tags == [] and not record.archived and record.ready
    assert "Publish</button>" not in browser.get(base).text
    assert browser.post("/ui/logout", {"csrf": csrf}).status == 303
    assert browser.get(base).status == 303  # the cookie is gone


def test_compare_marks_what_differs(browser: Browser, ui: tuple[Any, Any, Seeded]) -> None:
    seeded = ui[2]
    page = browser.get(f"/ui/compare?v={seeded.model}:1&v={seeded.model}:4").text
    rows = re.findall(r'<tr( class="differs")?><th scope="row">([^<]+)</th>', page)
    differs = {name for mark, name in rows if mark}
    assert {"sha256", "metric value", "iteration", "version"} <= differs
    assert {"model", "metric"} <= {name for _, name in rows} - differs
    assert page.count('class="diff"') == 2 * len(differs)
    only = browser.get(f"/ui/compare?v={seeded.model}:1&v={seeded.model}:4&only_differences=1")
    assert '<th scope="row">model</th>' not in only.text and "sha256" in only.text
    models = browser.get(f"/ui/compare?m={seeded.model}&m={seeded.other}").text
    assert "resnet18" in models and "mobilenet" in models and 'class="diff"' in models
    for query, message in [
        (f"m={seeded.model}", "compare takes 2 to 4"),
        ("&".join(f"m={seeded.model}" for _ in range(5)), "got 5"),
        (f"v={seeded.model}:x&v={seeded.model}:1", "<model id>:<version number>"),
        (f"v={seeded.model}:9&v={seeded.model}:1", "has no version 9"),
    ]:
        answer = browser.get(f"/ui/compare?{query}")
        shown = error_of(answer.text).replace("&lt;", "<").replace("&gt;", ">")
        assert answer.status == 400 and message in shown, shown


def test_the_task_page(browser: Browser, ui: tuple[Any, Any, Seeded]) -> None:
    seeded = ui[2]
    page = browser.get(f"/ui/tasks/{seeded.train_task}").text
    assert "batch_size" in page and "<code>32</code>" in page
    assert "<figcaption>loss</figcaption>" in page and "<polyline" in page
    assert f'href="/ui/models/{seeded.model}"' in page
    tune = browser.get(f"/ui/tasks/{seeded.finetune_task}").text
    inputs = tune.split("<h2>Input models</h2>")[1].split("<h2>Output models</h2>")[0]
    assert f'href="/ui/models/{seeded.model}"' in inputs
    assert browser.get("/ui/tasks/nope").status == 404


def _walk(browser: Browser, query: str) -> list[str]:
    seen: list[str] = []
    target: str | None = f"/ui/?{query}"
    while target:
        page = browser.get(target)
        assert page.status == 200, error_of(page.text)
        seen += re.findall(r'href="/ui/models/([0-9a-f]+)" class="model-link"', page.text)
        nxt = re.search(r'<a href="([^"]+)" class="next">', page.text)
        target = nxt[1].replace("&amp;", "&") if nxt else None
    return seen


def test_keyset_paging_visits_every_model_once_in_order(
    browser: Browser, ui: tuple[Any, Any, Seeded]
) -> None:
    made = paging_models(ui[1])
    for sort in SORTS:
        walked = _walk(browser, f"project=paging&size=5&sort={quote(sort)}")
        assert walked == expected_order(made, sort), sort


def test_the_model_page_plots_the_models_own_reported_scalars(
    browser: Browser, ui: tuple[Any, Any, Seeded]
) -> None:
    from modelbook.records import ScalarEvent

    store = ui[1]
    model = store.create_model(name="reported", project=None,
                               metadata=to_metadata({"monitor": "acc"}))  # fmt: skip
    store.add_model_scalars(model.id, [ScalarEvent("eval", "top1", i, 0.1 * i) for i in range(3)])
    page = browser.get(f"/ui/models/{model.id}").text
    assert "eval (reported on the model)" in page and "No versions yet." in page


def test_a_long_model_lists_its_versions_a_page_at_a_time_and_plots_them_all(
    browser: Browser, ui: tuple[Any, Any, Seeded]
) -> None:
    from modelbook.server.ui.pages import VERSIONS_PAGE
    from modelbook.server.ui.plots import MAX_MARKS

    store, count = ui[1], MAX_MARKS + 57
    model = store.create_model(name="long", project=None)
    for n in range(1, count + 1):  # val_loss falls to v(count - 10), then rises
        loss = abs(n - (count - 10)) / count
        metadata = to_metadata({"monitor": "val_loss", "monitor_mode": "min",
                                "monitor_value": loss})  # fmt: skip
        store.add_model_version(model.id, uri=f"file:///nowhere/long/{n}", sha256=None, size=1,
                                iteration=n, owned=False, metadata=metadata)  # fmt: skip
    listed: list[int] = []
    target: str | None = f"/ui/models/{model.id}"
    while target:
        page = browser.get(target)
        assert page.status == 200, error_of(page.text)
        rows = [int(v) for v in re.findall(r'aria-label="compare version (\d+)"', page.text)]
        assert 0 < len(rows) <= VERSIONS_PAGE and rows == sorted(rows, reverse=True)
        listed += rows
        assert f"versions {rows[-1]} to {rows[0]} of {count}" in page.text
        # every page plots every version: thinned circles, the best one always among them
        plot = page.text.split('<figure class="plot">')[1]
        assert MAX_MARKS <= plot.count("<circle") <= MAX_MARKS + 1  # + the best, if not kept
        best = re.search(r'class="point best"[^>]*data-x="(\d+)"', plot)
        assert best and int(best[1]) == count - 10
        older = re.search(r'<a href="([^"]+)" class="older">', page.text)
        target = older[1] if older else None
        if target:
            assert target.endswith(f"?before={rows[-1]}#versions")
    assert listed == list(range(count, 0, -1))  # each version once, newest first
    assert "Newest versions" in browser.get(f"/ui/models/{model.id}?before=3").text
    for bad in ("0", "1", "x", "-2", "²"):
        refused = browser.get(f"/ui/models/{model.id}?before={quote(bad)}")
        assert refused.status == 400 and "version number &gt;= 2" in error_of(refused.text), bad
