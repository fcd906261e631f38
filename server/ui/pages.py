"""The models page and the model page, as HTML (data from :mod:`.queries` and :mod:`.views`).

Example:
    >>> from modelbook.records import ModelRecord
    >>> from modelbook.server.ui.queries import ModelFilter, ModelsPage
    >>> html = models_html(ModelsPage([ModelRecord("abc", "<b>resnet</b>")], None, 1, []),
    ...                    ModelFilter())
    >>> "&lt;b&gt;resnet&lt;/b&gt;" in html and "<b>resnet" not in html
    True
"""

from __future__ import annotations

from modelbook.records import ModelRecord
from modelbook.server.ui.plots import line_plot, lines
from modelbook.server.ui.queries import SORTS, ModelFilter, ModelsPage
from modelbook.server.ui.render import (
    PREFIX,
    badge,
    definitions,
    esc,
    link,
    post_form,
    select,
    size,
    table,
    text_input,
    url,
    when,
)
from modelbook.server.ui.views import ModelView, meta, monitored

#: Versions listed per page of the model page's versions table (every version is plotted).
VERSIONS_PAGE = 50


def status_badges(model: ModelRecord) -> str:
    shown = badge("published", "published") if model.ready else badge("draft", "draft")
    return shown + (badge("archived", "archived") if model.archived else "")


def tag_list(tags: list[str]) -> str:
    return " ".join(badge(t, "tag") for t in tags)


def _filters(chosen: ModelFilter, page: ModelsPage) -> str:
    projects = [("", "all projects")] + [(p.name, p.name) for p in page.projects]
    fields = "".join([
        select("project", chosen.project, projects, "Project"),
        text_input("tags", chosen.tags, "Tags", "best, -old"),
        text_input("name", chosen.name, "Name contains"),
        select("published", chosen.published, [("", "any"), ("yes", "published"),
                                               ("no", "draft")], "Published"),
        select("archived", chosen.archived, [("no", "hide archived"), ("yes", "only archived"),
                                             ("all", "show archived")], "Archived"),
        select("sort", chosen.sort, SORTS.items(), "Sort"),
    ])  # fmt: skip
    size_field = (f'<input type="hidden" name="size" value="{chosen.size}">'
                  if chosen.size != ModelFilter().size else "")  # fmt: skip
    return (f'<form method="get" action="{PREFIX}/" class="filters" role="search">{fields}'
            f'{size_field}<button type="submit">Filter</button> '
            f'{link(PREFIX + "/", "Clear")}</form>')  # fmt: skip


def models_html(page: ModelsPage, chosen: ModelFilter) -> str:
    """The body of the models page."""
    names = page.project_names
    rows = []
    for m in page.models:
        metric, value = monitored(m)
        shown = "" if value is None else f"{esc(metric)} = {esc(repr(value))}"
        rows.append([
            f'<input type="checkbox" name="m" value="{esc(m.id)}" aria-label="compare '
            f'{esc(m.name)}">',
            link(url("models", m.id), m.name, "model-link"),
            esc(names.get(m.project or "", "")), tag_list(m.tags), esc(m.framework or ""),
            status_badges(m), f'<span class="num">{m.version}</span>',
            f'<span class="num">{shown}</span>',
            f'<span class="num">{esc("" if m.iteration is None else m.iteration)}</span>',
            esc(when(m.last_update)),
        ])  # fmt: skip
    head = ["", "Name", "Project", "Tags", "Framework", "Status", "Versions", "Metric",
            "Iteration", "Last update"]  # fmt: skip
    paging = []
    if chosen.after:
        paging.append(link(PREFIX + "/" + chosen.link(after=""), "First page"))
    if page.next_after:
        paging.append(link(PREFIX + "/" + chosen.link(after=page.next_after), "Next page",
                           "next"))  # fmt: skip
    count = f'<p class="count">{page.total_text} match; {len(page.models)} shown</p>'
    listing = (
        table(head, rows, cls="models") if rows else '<p class="empty">No model matches.</p>'
    )
    return (
        f"<h1>Models</h1>{_filters(chosen, page)}{count}"
        f'<form method="get" action="{url("compare")}" class="compare">{listing}'
        f'<p><button type="submit">Compare selected (2 to 4)</button></p></form>'
        f'<nav class="paging">{" ".join(paging)}</nav>'
    )


def _actions(view: ModelView, csrf: str) -> str:
    model = view.model
    base = url("models", model.id)
    parts = []
    if not model.ready:
        parts.append(post_form(base + "/publish", csrf, "Publish"))
    if model.archived:
        parts.append(post_form(base + "/unarchive", csrf, "Unarchive"))
    else:
        parts.append(post_form(base + "/archive", csrf, "Archive"))
    parts.append(post_form(
        base + "/tags/add", csrf, "Add tag",
        inputs='<input type="text" name="tag" required maxlength="255" placeholder="new tag" '
        'aria-label="new tag">',
    ))  # fmt: skip
    return '<div class="actions">' + "".join(parts) + "</div>"


def _tags(view: ModelView, csrf: str) -> str:
    base = url("models", view.model.id)
    return " ".join(
        '<span class="tag-edit">' + badge(t, "tag")
        + post_form(base + "/tags/remove", csrf, "remove", {"tag": t}, cls="inline remove-tag")
        + "</span>"
        for t in view.model.tags
    ) or "none"  # fmt: skip


def _plots(view: ModelView) -> str:
    parts = []
    for metric, values in view.series.items():
        tips = [f"v{v}: {metric} = {y!r}" for v, y in values]
        parts.append(line_plot(
            f"{metric} over the versions" + (" (monitored)" if metric == view.monitor else ""),
            {metric: values}, points=True, x_label="version", tooltips={metric: tips},
            highlight={metric: float(view.best)} if metric == view.monitor and view.best else None,
        ))  # fmt: skip
    for metric, variants in view.scalars.items():
        parts.append(line_plot(f"{metric} (reported on the model)", lines(variants),
                               x_label="iteration"))  # fmt: skip
    return '<section class="plots">' + "".join(parts) + "</section>" if parts else ""


def _versions(view: ModelView, before: int | None) -> str:
    """The newest :data:`VERSIONS_PAGE` versions (older than ``before``, if given), newest
    first, with links to the older and the newest ones."""
    model = view.model
    older = [v for v in reversed(view.versions) if before is None or v.version < before]
    shown = older[:VERSIONS_PAGE]
    pages = []
    if before is not None:
        pages.append(link(url("models", model.id) + "#versions", "Newest versions"))
    if len(older) > len(shown):
        pages.append(link(f"{url('models', model.id)}?before={shown[-1].version}#versions",
                          "Older versions", "older"))  # fmt: skip
    rows, classes = [], []
    for v in shown:
        marks = badge("best", "best") if v.version == view.best else ""
        marks += badge("pruned", "pruned") if v.pruned else ""
        marks += badge("current", "current") if v.uri == model.uri else ""
        download = "" if v.pruned else link(
            url("models", model.id, "versions", str(v.version), "download"), "download",
            "download",
        )  # fmt: skip
        rows.append([
            f'<input type="checkbox" name="v" value="{esc(model.id)}:{v.version}" '
            f'aria-label="compare version {v.version}">',
            f"v{v.version} {marks}", esc("" if v.iteration is None else v.iteration),
            esc(meta(v.metadata, "monitor_value") or ""), esc(meta(v.metadata, "epoch") or ""),
            f'<span title="{esc(v.size)} bytes">{esc(size(v.size))}</span>',
            f'<code class="sha">{esc(v.sha256 or "")}</code>', esc(when(v.created)), download,
        ])  # fmt: skip
        classes.append("version")
    head = ["", "Version", "Iteration", view.monitor or "Metric", "Epoch", "Size", "sha256",
            "Stored at", ""]  # fmt: skip
    listing = table(head, rows, classes, cls="versions") if rows else "<p>No versions yet.</p>"
    if shown:
        listing = (f'<p class="count">versions {shown[-1].version} to {shown[0].version} of '
                   f"{len(view.versions)}</p>{listing}")  # fmt: skip
    paging = f'<nav class="paging">{" ".join(pages)}</nav>' if pages else ""
    return (f'<h2 id="versions">Versions</h2><form method="get" action="{url("compare")}">'
            f"{listing}{paging}"
            '<p><button type="submit">Compare selected versions</button></p></form>')  # fmt: skip


def _lineage(view: ModelView) -> str:
    made = (link(url("tasks", view.producer.id), view.producer.name) if view.producer
            else esc(view.model.task or "none"))  # fmt: skip
    used = ", ".join(link(url("tasks", t.id), t.name) for t in view.users) or "none"
    return ('<h2>Lineage</h2>'
            + definitions([("Made by task", made), ("Used as input by", used)]))  # fmt: skip


def model_html(view: ModelView, csrf: str, before: int | None = None) -> str:
    """The body of the model page; its versions table lists those older than ``before``."""
    model = view.model
    monitor, value = monitored(model)
    facts = definitions([
        ("Id", f"<code>{esc(model.id)}</code>"), ("Project", esc(view.project or "")),
        ("Framework", esc(model.framework or "")), ("Tags", _tags(view, csrf)),
        ("Versions", str(model.version)),
        ("Iteration", esc("" if model.iteration is None else model.iteration)),
        ("Monitored metric", esc(f"{monitor} = {value!r}" if monitor and value is not None
                                 else monitor or "")),
        ("Weights", f'<code class="uri">{esc(model.uri or "")}</code>'),
        ("sha256", f'<code class="sha">{esc(model.sha256 or "")}</code>'),
        ("Size", esc(size(model.size))), ("Created", esc(when(model.created))),
        ("Last update", esc(when(model.last_update))),
        ("Comment", f'<span class="comment">{esc(model.comment)}</span>'),
    ])  # fmt: skip
    metadata = table(["Key", "Value", "Type"], [
        [esc(k), esc(item.get("value", "")), esc(item.get("type", ""))]
        for k, item in model.metadata.items()
    ], cls="metadata") if model.metadata else "<p>None.</p>"  # fmt: skip
    labels = table(["Label", "Value"], [
        [esc(k), esc(v)] for k, v in sorted(model.labels.items(), key=lambda kv: kv[1])
    ]) if model.labels else "<p>None.</p>"  # fmt: skip
    design = f"<pre>{esc(model.design)}</pre>" if model.design else "<p>None.</p>"
    return (
        f"<h1>{esc(model.name)} {status_badges(model)}</h1>{_actions(view, csrf)}{facts}"
        f"{_plots(view)}{_versions(view, before)}{_lineage(view)}<h2>Metadata</h2>{metadata}"
        f"<h2>Labels</h2>{labels}<h2>Design</h2>{design}"
    )
