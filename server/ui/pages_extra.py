"""The compare, task, log-in and error pages, as HTML.

Example:
    >>> from modelbook.server.ui.views import Comparison
    >>> html = compare_html(Comparison(["a", "b"], ["size", "sha256"],
    ...     [{"size": "1", "sha256": "x"}, {"size": "2", "sha256": "x"}], ["m1", "m2"]), False)
    >>> html.count('class="diff"')
    2
"""

from __future__ import annotations

from urllib.parse import urlencode

from modelbook.records import ModelRecord
from modelbook.server.ui.pages import status_badges, tag_list
from modelbook.server.ui.plots import line_plot, lines
from modelbook.server.ui.render import (
    PREFIX,
    definitions,
    esc,
    link,
    table,
    url,
    when,
)
from modelbook.server.ui.views import Comparison, TaskView


def compare_html(found: Comparison, only_differences: bool, query: str = "") -> str:
    """The body of the compare page: one column per version or model, differing rows
    marked (``tr.differs``, each cell ``td.diff``)."""
    head = "".join(
        f"<th>{link(url('models', model_id), title)}</th>"
        for title, model_id in zip(found.titles, found.links, strict=True)
    )
    body = []
    for row in found.rows:
        differs = found.differs(row)
        if only_differences and not differs:
            continue
        cell = ' class="diff"' if differs else ""
        cells = "".join(f"<td{cell}>{esc(column.get(row, ''))}</td>" for column in found.cells)
        marker = ' class="differs"' if differs else ""
        body.append(f'<tr{marker}><th scope="row">{esc(row)}</th>{cells}</tr>')
    toggle_query = (query.replace("&only_differences=1", "").replace("only_differences=1", "")
                    if only_differences else f"{query}&only_differences=1")  # fmt: skip
    toggle = link(f"{url('compare')}?{toggle_query.lstrip('&')}",
                  "show every row" if only_differences else "show only differences")
    count = sum(found.differs(r) for r in found.rows)
    return (
        f"<h1>Compare</h1><p>{count} of {len(found.rows)} rows differ (marked). {toggle}</p>"
        f'<table class="compare"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _models_table(entries: list[tuple[str, str, ModelRecord | None]]) -> str:
    if not entries:
        return "<p>None.</p>"
    rows = []
    for name, model_id, record in entries:
        if record is None:
            rows.append([esc(name), f"<code>{esc(model_id)}</code> (deleted)", "", ""])
            continue
        rows.append([esc(name), link(url("models", model_id), record.name),
                     status_badges(record), tag_list(record.tags)])  # fmt: skip
    return table(["Entry", "Model", "Status", "Tags"], rows)


def task_html(view: TaskView) -> str:
    """The body of the task page."""
    task = view.task
    facts = definitions([
        ("Id", f"<code>{esc(task.id)}</code>"), ("Project", esc(view.project or "")),
        ("Type", esc(task.type)), ("Status", esc(task.status)),
        ("Last iteration", esc(task.last_iteration)), ("Tags", tag_list(task.tags) or "none"),
        ("Created", esc(when(task.created))), ("Last update", esc(when(task.last_update))),
        ("Comment", esc(task.comment)),
    ])  # fmt: skip
    params = []
    for section, values in sorted(task.hyperparams.items()):
        rows = [[esc(k), f"<code>{esc(v)}</code>"] for k, v in sorted(values.items())]
        params.append(f"<h3>{esc(section)}</h3>" + table(["Name", "Value"], rows))
    plots = [
        line_plot(metric, lines(variants), x_label="iteration")
        for metric, variants in sorted(view.series.items())
    ]  # fmt: skip
    return (
        f"<h1>{esc(task.name)}</h1>{facts}<h2>Hyper-parameters</h2>"
        f"{''.join(params) or '<p>None.</p>'}<h2>Reported scalars</h2>"
        f'{"<section class=plots>" + "".join(plots) + "</section>" if plots else "<p>None.</p>"}'
        f"<h2>Input models</h2>{_models_table(view.inputs)}"
        f"<h2>Output models</h2>{_models_table(view.outputs)}"
    )


def login_html(fields: tuple[tuple[str, str, str], ...], next_path: str, hint: str) -> str:
    """The body of the log-in page (its form posts to ``/ui/login``)."""
    inputs = "".join(
        f'<label>{esc(label)} <input type="{esc(kind)}" name="{esc(name)}" required '
        f'autocomplete="{"current-password" if kind == "password" else "username"}"></label>'
        for name, label, kind in fields
    )
    action = f"{url('login')}?{urlencode({'next': next_path})}"
    return (
        f'<h1>Log in</h1><form method="post" action="{esc(action)}" class="login">{inputs}'
        f'<button type="submit">Log in</button></form><p class="hint">{esc(hint)}</p>'
    )


def error_html(message: str) -> str:
    """The body of an error page (the message says what was wrong and what is accepted)."""
    return f'<h1>Sorry</h1><p class="error">{esc(message)}</p><p>{link(PREFIX + "/", "Models")}</p>'
