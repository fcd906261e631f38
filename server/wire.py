"""``only_fields`` projections of ClearML documents, as the server's ``get_*`` calls answer.

The documents themselves (records <-> ClearML documents) are :mod:`modelbook.wire`, which
the HTTP client shares.
"""

from __future__ import annotations

from typing import Any


def project_fields(doc: dict[str, Any], only_fields: list[str] | None) -> dict[str, Any]:
    """Keep only the listed fields (dotted paths reach into objects); ``id`` always stays.

    Example:
        >>> project_fields({"id": "1", "a": {"b": 1, "c": 2}, "d": 3}, ["a.b"])
        {'id': '1', 'a': {'b': 1}}
    """
    if not only_fields:
        return doc
    result: dict[str, Any] = {"id": doc.get("id")}
    for path in only_fields:
        if not isinstance(path, str) or not path:
            continue
        keys = path.split(".")
        source: Any = doc
        for key in keys:
            if not isinstance(source, dict) or key not in source:
                break
            source = source[key]
        else:
            target = result
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = source
    return result
