"""Which fields each endpoint of ``modelbook server`` reads, found in its handler's source.

The fuzz (``test_server_fuzz.py``) sends every endpoint the fields its handler (and every server
function it calls) reads through :class:`~modelbook.server.services.call.Call`'s accessors,
typed as the accessor reads them, with the values the handler compares them with: derived
from the code, so a new endpoint or field is fuzzed without a hand list that can drift.

Example:
    >>> from modelbook.server.services import ENDPOINTS
    >>> shape = endpoint_fields(ENDPOINTS["tasks.add_or_update_model"])
    >>> shape.fields["iteration"], sorted(shape.required), shape.choices["type"]
    ('int', ['model', 'name', 'task', 'type'], ['input', 'output'])
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
import types
from collections.abc import Callable
from typing import Any, NamedTuple

_CALL_KINDS = {"require": "any", "get": "any", "string": "string", "boolean": "bool",
               "integer": "int", "string_list": "strings", "dict_field": "object"}  # fmt: skip
_HELPER_KINDS = {"tag_filter": "tags", "tag_list": "strings"}
_WORD = re.compile(r"[A-Za-z_][\w.\-]{0,39}")


def _resolve(node: ast.expr, scope: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        owner = scope.get(node.value.id)
        return getattr(owner, node.attr, None) if isinstance(owner, types.ModuleType) else None
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list, frozenset, set, dict)):
        return sorted(v for v in value if isinstance(v, str))
    return []


def _loop_values(tree: ast.AST, scope: dict[str, Any]) -> dict[int, list[str]]:
    """``for name in ("a", "b")`` (or a module constant): what each use of ``name`` in the
    loop's body may hold (by the use's node id)."""
    found: dict[int, list[str]] = {}
    for node in ast.walk(tree):  # outer loops first: an inner loop's values win
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
            if isinstance(node.iter, (ast.Tuple, ast.List)):
                values = [e.value for e in node.iter.elts if isinstance(e, ast.Constant)]
            else:
                values = _strings(_resolve(node.iter, scope))
            for use in ast.walk(ast.Module(body=node.body, type_ignores=[])):
                if isinstance(use, ast.Name) and use.id == node.target.id:
                    found[id(use)] = [v for v in values if isinstance(v, str)]
    return found


def _names_of(arg: ast.expr, loops: dict[int, list[str]], params: dict[str, set[Any]]
              ) -> list[str]:  # fmt: skip
    """The field names an accessor's argument may hold: a constant, a loop's values, or
    what the function's callers pass for that parameter (and its default)."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if id(arg) in loops:
        return loops[id(arg)]
    if isinstance(arg, ast.Name):
        return sorted(v for v in params.get(arg.id, ()) if isinstance(v, str))
    return []


def _true(arg: ast.expr | None, params: dict[str, set[Any]]) -> bool:
    if isinstance(arg, ast.Constant):
        return arg.value is True
    return isinstance(arg, ast.Name) and True in params.get(arg.id, ())


@functools.cache
def _tree(function: Callable[..., Any]) -> ast.AST:
    return ast.parse(textwrap.dedent(inspect.getsource(function)))


_UNKNOWN = object()


def _server_function(value: Any) -> bool:
    return isinstance(value, types.FunctionType) and value.__module__.startswith(
        "modelbook.server")  # fmt: skip


def _reachable(handler: Callable[..., Any]) -> dict[Any, dict[str, set[Any]]]:
    """Every server function the handler reaches, with the constants each of its parameters
    may hold: its default and what its call sites pass (``name_field(call, "new_name")``)."""
    bound: dict[Any, dict[str, set[Any]]] = {}
    calls: list[tuple[Any, ast.Call]] = []
    stack: list[Any] = [handler]
    while stack:
        function = stack.pop()
        if function in bound or not _server_function(function):
            continue
        bound[function] = {name: {p.default} for name, p in inspect.signature(
            function).parameters.items() if isinstance(p.default, (str, bool))}  # fmt: skip
        for node in ast.walk(_tree(function)):
            if isinstance(node, ast.Call):
                target = _resolve(node.func, function.__globals__)
                if _server_function(target):
                    stack.append(target)
                    calls.append((target, node))
    for target, node in calls:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords):  # fmt: skip
            continue
        values = [a.value if isinstance(a, ast.Constant) else _UNKNOWN for a in node.args]
        keywords = {k.arg: k.value.value if isinstance(k.value, ast.Constant) else _UNKNOWN
                    for k in node.keywords if k.arg}  # fmt: skip
        try:
            arguments = inspect.signature(target).bind_partial(*values, **keywords).arguments
        except TypeError:
            continue
        for name, value in arguments.items():
            if value is not _UNKNOWN and isinstance(value, (str, bool)):
                bound[target].setdefault(name, set()).add(value)
    return bound


def _choices(tree: ast.AST, scope: dict[str, Any]) -> dict[str, list[str]]:
    """The values a handler compares a field with: ``kind = call.string("type")``, then
    ``kind not in ("input", "output")`` (or a module constant)."""
    assigned: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            value = node.value.values[0] if isinstance(node.value, ast.BoolOp) else node.value
            if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                    and value.func.attr in _CALL_KINDS and value.args
                    and isinstance(value.args[0], ast.Constant)):  # fmt: skip
                assigned[node.targets[0].id] = str(value.args[0].value)
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and (
                node.left.id in assigned):  # fmt: skip
            for right in node.comparators:
                if isinstance(right, (ast.Tuple, ast.List, ast.Set)):
                    values = [e.value for e in right.elts if isinstance(e, ast.Constant)]
                else:
                    values = [right.value] if isinstance(right, ast.Constant) else _strings(
                        _resolve(right, scope))  # fmt: skip
                found.setdefault(assigned[node.left.id], []).extend(
                    v for v in values if isinstance(v, str))  # fmt: skip
    return found


class Shape(NamedTuple):
    """What an endpoint reads: ``fields`` (name: kind), ``required`` fields, ``choices``
    (the values a field is compared with) and ``words`` (the short string constants of its
    code: event types, modes, nested keys)."""

    fields: dict[str, str]
    required: frozenset[str]
    choices: dict[str, list[str]]
    words: list[str]


@functools.cache
def endpoint_fields(handler: Callable[..., Any]) -> Shape:
    """The :class:`Shape` of an endpoint: the request fields its handler (and every server
    function it calls) reads with ``Call``'s accessors, and what it compares them with."""
    fields: dict[str, str] = {}
    required: set[str] = set()
    choices: dict[str, list[str]] = {}
    words: set[str] = set()
    for function, params in _reachable(handler).items():
        scope, tree = function.__globals__, _tree(function)
        loops = _loop_values(tree, scope)
        for name, values in _choices(tree, scope).items():
            choices[name] = sorted({*choices.get(name, []), *values})
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                words.update(w for w in [node.value] if _WORD.fullmatch(w))
            elif isinstance(node, ast.Name) and node.id.isupper():  # EVENT_TYPES, LOG_LEVELS
                words.update(w for w in _strings(_resolve(node, scope)) if _WORD.fullmatch(w))
            if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In):
                right = node.comparators[0]
                if isinstance(right, ast.Attribute) and right.attr == "data":
                    for name in _names_of(node.left, loops, params):
                        fields.setdefault(name, "any")
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and func.value.id == "call" and func.attr in _CALL_KINDS and node.args):
                flag = next((k.value for k in node.keywords if k.arg == "required"), None)
                if flag is None and func.attr == "string" and len(node.args) > 1:
                    flag = node.args[1]  # Call.string(name, required)
                needed = func.attr == "require" or _true(flag, params)
                for name in _names_of(node.args[0], loops, params):  # fmt: skip
                    if fields.get(name, "any") == "any":
                        fields[name] = _CALL_KINDS[func.attr]
                    if needed:
                        required.add(name)
            elif isinstance(func, ast.Name) and func.id in _HELPER_KINDS and len(node.args) > 1:
                for name in _names_of(node.args[1], loops, params):
                    fields[name] = _HELPER_KINDS[func.id]
    return Shape(fields, frozenset(required), choices, sorted(words))
