"""A cookie-keeping client of a UI application called in-process (no socket)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from modelbook.server.ui.testing import Answer, call

FORM = "application/x-www-form-urlencoded"


class Browser:
    """Keeps the session cookie an answer sets, and finds CSRF tokens in pages."""

    def __init__(self, app: Any) -> None:
        self.app, self.cookie = app, ""

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**({"cookie": self.cookie} if self.cookie else {}), **(extra or {})}

    def _keep(self, answer: Answer) -> Answer:
        setting = answer.headers.get("set-cookie", "")
        if setting:
            self.cookie = setting.split(";", 1)[0]
        return answer

    def get(self, target: str) -> Answer:
        return self._keep(call(self.app, "GET", target, self._headers()))

    def post(self, target: str, form: dict[str, str], headers: dict[str, str] | None = None
             ) -> Answer:  # fmt: skip
        body = urlencode(form).encode()
        return self._keep(call(self.app, "POST", target,
                               self._headers({"content-type": FORM, **(headers or {})}), body))

    def csrf(self, target: str) -> str:
        page = self.get(target)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        return found[1]


def model_names(html: str) -> list[str]:
    """The names in a models page's table, in order (as the page shows them, escaped)."""
    return re.findall(r'class="model-link">([^<]*)</a>', html)


def error_of(html: str) -> str:
    found = re.search(r'class="error"[^>]*>([^<]*)<', html)
    return found[1] if found else ""
