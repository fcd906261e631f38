"""Metadata values read back as their types, as ClearML's ``cast_basic_type`` does.

Example:
    >>> cast_value("(1, 'a')", "tuple"), cast_value("3", "int"), cast_value("true", "bool")
    ((1, 'a'), 3, True)
"""

from __future__ import annotations

import ast
import json
import logging
from typing import Any

log = logging.getLogger("modelbook")

_CONTAINERS: dict[str, type] = {"list": list, "tuple": tuple, "dict": dict}


def _yaml(text: str) -> Any:
    """ClearML's last resort, where PyYAML is installed."""
    try:
        import yaml
    except ImportError as exc:
        raise ValueError("no YAML reader") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from exc


def _container(value: str, kind: type) -> Any:
    """``value`` read back as ``kind`` the way ClearML does: JSON, else the Python text
    ``str()`` wrote (``(1, 'a')``), else YAML of its items in brackets (``[a, b]``)."""
    bracketed = "[" + value.lstrip("[(").rstrip("])") + "]"
    readers: list[Any] = [json.loads, ast.literal_eval, lambda _: ast.literal_eval(bracketed)]
    if kind is not dict:
        readers.append(lambda _: _yaml(bracketed))
    for read in readers:
        try:
            return kind(read(value))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
    log.warning("could not cast metadata %r to %s; returning it as a string", value,
                kind.__name__)  # fmt: skip
    return value


def cast_value(value: str, v_type: str) -> Any:
    """A metadata value as its type (ClearML's ``cast_basic_type``)."""
    base = (v_type or "").split("/")[0].strip().lower()
    if base in _CONTAINERS:
        return _container(value, _CONTAINERS[base])
    if base == "bool":
        return value.strip().lower() in ("true", "1", "yes", "y", "on")
    if base in ("int", "float"):
        try:
            return int(value) if base == "int" else float(value)
        except ValueError:
            return value
    if value == "" and base in ("none", ""):
        return None
    return value
