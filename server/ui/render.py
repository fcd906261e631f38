"""HTML building blocks: the page layout, tables, forms and formatted values.

Everything that comes from the store goes through :func:`esc` (``html.escape`` with quotes),
so a model named ``<script>`` shows as text. Pages are plain HTML and one stylesheet shipped
in the package (``static/ui.css``); no script, font or image is fetched from anywhere.

Example:
    >>> table(["name"], [[esc("<b>")]])
    '<table><thead><tr><th>name</th></tr></thead><tbody><tr><td>&lt;b&gt;</td></tr></tbody></table>'
    >>> size(1536)
    '1.5 KiB'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

#: Where the pages live, in ``modelbook server`` and ``modelbook ui`` alike.
PREFIX = "/ui"
#: What the pages may load: their own stylesheet only; forms post to themselves.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def esc(value: object) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return escape("" if value is None else str(value), quote=True)


def url(*segments: str) -> str:
    """A page's path: :data:`PREFIX` and the segments, each percent-quoted."""
    return PREFIX + "/" + "/".join(quote(s, safe="") for s in segments)


def when(value: datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS`` (UTC), '' for None."""
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def size(value: int | None) -> str:
    """A byte count for people (``1.5 KiB``)."""
    if value is None:
        return ""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return ""  # unreachable


def link(href: str, text: object, cls: str = "") -> str:
    classes = f' class="{cls}"' if cls else ""
    return f'<a href="{esc(href)}"{classes}>{esc(text)}</a>'


def badge(text: str, kind: str) -> str:
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    row_classes: Sequence[str] | None = None,
    cls: str = "",
) -> str:
    """A table; ``head`` is escaped here, the cells must already be HTML."""
    classes = list(row_classes or [])
    body = []
    for i, row in enumerate(rows):
        attr = f' class="{esc(classes[i])}"' if i < len(classes) and classes[i] else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    attr = f' class="{esc(cls)}"' if cls else ""
    return (f"<table{attr}><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table>")  # fmt: skip


def definitions(items: Iterable[tuple[str, str]]) -> str:
    """A ``<dl>``; the values must already be HTML."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + (
        "</dl>"
    )


def post_form(action: str, csrf: str, button: str, fields: dict[str, str] | None = None,
              inputs: str = "", cls: str = "inline") -> str:  # fmt: skip
    """A POST form carrying the session's CSRF token (and hidden ``fields``)."""
    hidden = "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
        for k, v in {"csrf": csrf, **(fields or {})}.items()
    )
    return (f'<form method="post" action="{esc(action)}" class="{esc(cls)}">{hidden}{inputs}'
            f'<button type="submit">{esc(button)}</button></form>')  # fmt: skip


def select(name: str, chosen: str, options: Iterable[tuple[str, str]], label: str) -> str:
    """A labelled ``<select>`` of ``(value, text)`` options."""
    opts = "".join(
        f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(t)}</option>'
        for v, t in options
    )
    return f'<label>{esc(label)} <select name="{esc(name)}">{opts}</select></label>'


def text_input(name: str, value: str, label: str, placeholder: str = "") -> str:
    return (f'<label>{esc(label)} <input type="text" name="{esc(name)}" value="{esc(value)}" '
            f'placeholder="{esc(placeholder)}"></label>')  # fmt: skip


def layout(title: str, body: str, *, user: str | None = None, csrf: str = "",
           notice: str = "", error: str = "", where: str = "") -> str:  # fmt: skip
    """A whole page: header (with log-out when someone is logged in), messages, body."""
    who = ""
    if user:
        who = (f'<span class="who">{esc(user)} '
               f"{post_form(url('logout'), csrf, 'Log out')}</span>")  # fmt: skip
    messages = ""
    if notice:
        messages += f'<p class="notice" role="status">{esc(notice)}</p>'
    if error:
        messages += f'<p class="error" role="alert">{esc(error)}</p>'
    place = f'<span class="where">{esc(where)}</span>' if where else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)} · modelbook</title><link rel="icon" href="data:,">'
        f'<link rel="stylesheet" href="{PREFIX}/static/ui.css"></head><body>'
        f'<header><a class="brand" href="{PREFIX}/">modelbook</a>{place}'
        f'<nav><a href="{PREFIX}/">Models</a></nav>{who}</header>'
        f"<main>{messages}{body}</main></body></html>"
    )
