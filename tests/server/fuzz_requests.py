"""Hypothesis strategies of requests to ``modelbook server``: API calls and files-server calls.

Half the requests are clean (a well-typed body sent as a client would, to reach the handlers'
deeper code); the others are bent in every way: wrong types, null, odd strings and numbers,
huge lists, deep nesting, unknown fields, raw garbage, other content types, methods, versions
and credentials. Ids come from :class:`Pools`, the records that exist on the server now.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
from typing import Any, Protocol

from fuzz_endpoints import Shape, endpoint_fields
from hypothesis import strategies as st

from modelbook.server.api import LOGIN
from modelbook.server.app import _API_METHODS
from modelbook.server.services import ENDPOINTS


class Pools(Protocol):
    """What the strategies draw from: ids of existing ``models`` / ``tasks`` / ``projects``,
    stored files, the session token and the access key."""

    ids: dict[str, list[str]]
    files: list[str]
    token: str
    access_key: str


# -- values ----------------------------------------------------------------------------------
EDGE_INTS = [0, 1, -1, 2**31, -(2**31), 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1,
             2**64, 10**30]  # fmt: skip
ODD_NUMBERS = [1.5, -0.0, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf]
ODD_STRINGS = ["", " ", "NaN", "Infinity", "-inf", "1e309", "null", "true", "12", "-7",
               "9" * 25, "\x00", "a\nb", "\ud800", "é ✓ \U0001d518", "(a+)+$", "^.*$", "[", "^x$",
               "'; DROP TABLE models; --", "../../etc/passwd", "%2e%2e/x", "-created",
               "x" * 300, "y" * 1100, "nonexistent-id-0000"]  # fmt: skip
HUGE = [["t"] * 3000, list(range(3000)), {f"k{i}": i for i in range(1000)}]

scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EDGE_INTS), st.integers(-5, 50),
    st.sampled_from(ODD_NUMBERS), st.sampled_from(ODD_STRINGS), st.text(max_size=12),
)  # fmt: skip


def rarely(n: int) -> st.SearchStrategy[bool]:
    """True once in ``n`` draws (Hypothesis favours small integers: ``integers(0, n) == 0``
    would be true far more often)."""
    return st.sampled_from([False] * (n - 1) + [True])


def _json(words: list[str]) -> st.SearchStrategy[Any]:
    """Any JSON value, keys and strings often from ``words``."""
    return _json_of(tuple(words))


@functools.cache  # one strategy object per vocabulary: Hypothesis validates each object once
def _json_of(words: tuple[str, ...]) -> st.SearchStrategy[Any]:
    keys = st.one_of(st.sampled_from(words or ["x"]), st.text(max_size=6))
    leaves = st.one_of(scalars, st.sampled_from(words or ["x"]))
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=5,
    )


def _ref(pools: Pools, kind: str) -> st.SearchStrategy[str]:
    """An id that exists now (the pools change as requests create and delete)."""
    return st.integers(0, 5).map(lambda i: (pools.ids[kind] or ["none"])[
        i % max(1, len(pools.ids[kind]))])  # fmt: skip


def _ids_for(pools: Pools, name: str) -> st.SearchStrategy[str] | None:
    kinds = {"model": "models", "task": "tasks", "project": "projects"}
    found = max(kinds, key=name.rfind)  # the last word wins: new_task_project is a project
    if found in name:
        return _ref(pools, kinds[found])
    if name in ("id", "ids", "uris", "uri", "parent"):
        return st.one_of(_ref(pools, "models"), _ref(pools, "tasks"))
    return None


def typed_values(pools: Pools, name: str, kind: str, words: list[str],
                 choices: list[str]) -> st.SearchStrategy[Any]:  # fmt: skip
    """Values of a request field's kind (ids of existing records for id-like fields, the
    values the handler compares it with), most of them valid, some at the edges."""
    ids = _ids_for(pools, name)
    word = st.sampled_from(words or ["x"])
    text = st.one_of(word, word, word, st.sampled_from(ODD_STRINGS), st.text(max_size=16))
    if ids is not None:
        text = st.one_of(ids, ids, ids, text)
    if choices:
        text = st.one_of(*[st.sampled_from(choices)] * 4, text)
    structured = _json(words)
    typed: dict[str, st.SearchStrategy[Any]] = {
        "string": text,
        "int": st.one_of(st.integers(-3, 100), st.sampled_from(EDGE_INTS),
                         st.sampled_from(["5", "-3", str(2**63), "1.5", "abc"])),
        "bool": st.one_of(*[st.booleans()] * 4, st.sampled_from(["true", "false", "yes", 0, 1])),
        "strings": st.one_of(st.lists(text, max_size=4), text),
        "tags": st.one_of(st.lists(st.one_of(
            text, st.none(), st.sampled_from(["-x", "__$not", "__$all", "__$or"])), max_size=4),
            text),
        "object": st.dictionaries(word, structured, max_size=4),
        "any": st.one_of(st.dictionaries(word, structured, max_size=4),
                         st.lists(st.dictionaries(word, structured, max_size=4), max_size=3),
                         structured),
    }  # fmt: skip
    if kind == "any" and ids is not None:
        return st.one_of(ids, st.lists(ids, max_size=3), typed["any"])
    return typed[kind]


def wrong_values(words: list[str]) -> st.SearchStrategy[Any]:
    """Anything at all: other types, null, huge lists, odd strings and numbers."""
    return _wrong_of(tuple(words))


@functools.cache
def _wrong_of(words: tuple[str, ...]) -> st.SearchStrategy[Any]:
    anything = _json_of(words)
    return st.one_of(anything, anything, anything, st.none(), st.sampled_from(HUGE))


def _event(pools: Pools, words: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    kinds = ["training_stats_scalar", "plot", "log", "training_stats_vector", "bogus", ""]
    typed = {
        "type": st.sampled_from(kinds), "task": st.one_of(_ref(pools, "tasks"),
                                                          _ref(pools, "models")),
        "model": _ref(pools, "models"), "model_event": st.booleans(),
        "allow_locked": st.booleans(), "metric": st.text(max_size=8),
        "variant": st.sampled_from(["v", "x" * 300, ""]),
        "iter": st.one_of(st.integers(-3, 10), st.sampled_from(EDGE_INTS)),
        "timestamp": st.one_of(st.integers(0, 2**41), st.sampled_from(EDGE_INTS + ODD_NUMBERS)),
        "value": st.one_of(st.floats(allow_nan=True), st.sampled_from(EDGE_INTS)),
        "plot_str": st.one_of(st.just("{}"), st.text(max_size=8)),
        "msg": st.text(max_size=12), "level": st.sampled_from(["info", "ERROR", "nope"]),
    }  # fmt: skip
    wrong = wrong_values(words)
    required = {k: st.one_of(v, v, wrong) for k in ("type", "task") for v in [typed.pop(k)]}
    optional = {k: st.one_of(v, v, v, v, wrong) for k, v in typed.items()}
    return st.fixed_dictionaries(required, optional=optional)


def api_requests(pools: Pools, endpoint: str) -> st.SearchStrategy[dict[str, Any]]:
    """Requests to an API endpoint: method, path version, headers, query and raw body."""
    fields, required, choices, words = endpoint_fields(ENDPOINTS[endpoint]) if (
        endpoint in ENDPOINTS) else Shape({}, frozenset(), {}, [])  # fmt: skip
    typed = {n: typed_values(pools, n, k, words, choices.get(n, []))
             for n, k in sorted(fields.items())}  # fmt: skip
    wrong = wrong_values(words)
    full = st.fixed_dictionaries(typed)
    sparse = st.fixed_dictionaries({}, optional={n: st.one_of(v, wrong) for n, v in typed.items()})
    mutated = _mutated(full, st.sampled_from(sorted(typed) or ["x"]), wrong)
    bodies: st.SearchStrategy[Any] = st.one_of(mutated, mutated, mutated, sparse)
    clean: st.SearchStrategy[Any] = st.fixed_dictionaries(
        {n: v for n, v in typed.items() if n in required},
        optional={n: v for n, v in typed.items() if n not in required})  # fmt: skip
    if endpoint.startswith("events.add"):
        clean = events = st.lists(_event(pools, words), max_size=4)
        bodies = st.one_of(events, events, bodies, st.builds(lambda e, b: {**b, "requests": e},
                                                             events, bodies))  # fmt: skip
    unknown = st.dictionaries(st.text(max_size=8), _json(words), max_size=2)
    names = st.sampled_from(sorted(fields) or ["x"])
    query = st.one_of(st.none(), st.none(), st.none(), st.dictionaries(
        names, st.sampled_from([s for s in ODD_STRINGS if s != "\ud800"]), max_size=2))
    return _api_request(pools, endpoint, clean, bodies, unknown, names, query, _json(words))


@st.composite
def _mutated(draw: st.DrawFn, full: st.SearchStrategy[dict[str, Any]],
             names: st.SearchStrategy[str], wrong: st.SearchStrategy[Any]) -> dict[str, Any]:
    """Every field well typed, then up to two of them dropped or replaced by anything."""
    body = draw(full)
    for _ in range(draw(st.integers(0, 2))):
        name = draw(names)
        if draw(st.booleans()):
            body.pop(name, None)
        else:
            body[name] = draw(wrong)
    return body


@st.composite
def _api_request(draw: st.DrawFn, pools: Pools, endpoint: str,
                 clean: st.SearchStrategy[Any], bodies: st.SearchStrategy[Any],
                 unknown: st.SearchStrategy[dict[str, Any]], names: st.SearchStrategy[str],
                 query: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]
                 ) -> dict[str, Any]:  # fmt: skip
    """Half the requests are clean (a well-typed body, sent as a client would) to reach the
    handlers' deeper code; the others are bent in every way."""
    if not draw(st.booleans()):
        body = draw(clean)
        return {"method": "POST", "path": f"/v2.23/{endpoint}", "data": json.dumps(body).encode(),
                "headers": {"Authorization": f"Bearer {pools.token}",
                            "Content-Type": "application/json"}, "params": None}  # fmt: skip
    body = draw(bodies)
    if isinstance(body, dict) and draw(st.booleans()):
        body.update(draw(unknown))
    shape = draw(st.sampled_from(["json"] * 8 + ["deep", "garbage", "other"]))
    content_type = "application/json"
    if shape == "json":
        raw = json.dumps(body).encode()
        if isinstance(body, list) and draw(st.booleans()):  # JSON lines
            raw = b"\n".join(json.dumps(item).encode() for item in body)
            content_type = "application/json-lines"
    elif shape == "deep":
        depth = draw(st.sampled_from([300, 900, 990, 5000, 200_000]))
        name = draw(names)
        nest = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        raw = f'{{"{name}": {nest[0] * depth}1{nest[1] * depth}}}'.encode()
    elif shape == "garbage":
        raw = draw(st.one_of(st.binary(max_size=64), st.sampled_from(
            [b"{", b"[1,2", b"null", b"123", b'"s"', b"\xff\xfe{}", b"{'a': 1}", b"NaN",
             b'{"a": 1} trailing', b"[" * 50])))  # fmt: skip
    else:
        raw = json.dumps(draw(anything)).encode()
    if draw(rarely(10)):
        content_type = draw(st.sampled_from(["text/plain", "application/x-www-form-urlencoded",
                                             "multipart/form-data", "", "application/json-lines"]))
    headers = {"Authorization": f"Bearer {pools.token}", "Content-Type": content_type}
    if draw(rarely(20)):
        headers["Authorization"] = draw(st.sampled_from(
            ["", "Bearer", "Bearer x.y.z", "Basic Zm9vOmJhcg==", pools.token]))  # fmt: skip
    version = draw(st.sampled_from(["2.23"] * 16 + [None, "2.9", "2.8", "3.0", "x", "2.999999"]))
    return {
        "method": draw(st.sampled_from(["POST"] * 5 + [m for m in _API_METHODS if m != "POST"])),
        "path": f"/v{version}/{endpoint}" if version else f"/{endpoint}",
        "headers": headers, "data": raw,
        "params": draw(query),
    }  # fmt: skip


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode("utf-8", "surrogatepass")).decode()


@st.composite
def login_requests(draw: st.DrawFn, pools: Pools) -> dict[str, Any]:
    request = draw(api_requests(pools, LOGIN))
    request["headers"]["Authorization"] = draw(st.one_of(
        st.builds(_basic, st.sampled_from([pools.access_key, "", "nobody"]),
                  st.text(max_size=20)),
        st.sampled_from(["", "Basic", "Basic !!!", "Basic " + "A" * 5000, "Bearer x"]),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30),
    ))  # fmt: skip
    return request


# -- the files server ------------------------------------------------------------------------
SEGMENTS = st.one_of(
    st.text(alphabet="abcxyz019-_.", min_size=1, max_size=10),
    st.sampled_from(["..", ".", "%2e%2e", "%252e%252e", ".modelbook-meta", ".modelbook-tmp",
                     "a" * 300, "%00", "%0a", "C:", "a\\b", "é", "fuzz", "seed.bin", "x%2fy"]),
)  # fmt: skip


SAFE_SEGMENTS = st.text(alphabet="abcxyz019-_", min_size=1, max_size=8)


def _path(pools: Pools, clean: bool = False) -> st.SearchStrategy[str]:
    existing = st.integers(0, 19).map(
        lambda i: pools.files[i % len(pools.files)] if pools.files else "fuzz")
    safe = st.lists(SAFE_SEGMENTS, min_size=1, max_size=3).map("/".join)
    if clean:
        return st.one_of(safe, safe, existing)
    made = st.lists(SEGMENTS, min_size=1, max_size=4).map("/".join)
    return st.one_of(existing, existing, made, safe, st.sampled_from(["", "/", "a//b", "fuzz/"]),
                     st.builds(lambda p, s: f"{p}/{s}", existing, SEGMENTS))  # fmt: skip


def _sha256_header(draw: st.DrawFn, content: bytes) -> str | None:
    sha = draw(st.sampled_from([None, None, "right", "0" * 64, "zz"]))
    return hashlib.sha256(content).hexdigest() if sha == "right" else sha


@st.composite
def files_requests(draw: st.DrawFn, pools: Pools, method: str) -> dict[str, Any]:
    """A request to the files server; half of them clean (safe paths, well-formed uploads)."""
    clean = not draw(st.booleans())
    path = draw(_path(pools, clean))
    if clean and method == "POST":  # the folder the parts go to
        path = draw(st.one_of(st.just(""), st.lists(SAFE_SEGMENTS, max_size=2).map("/".join)))
    headers = {"Authorization": f"Bearer {pools.token}"}
    if not clean and draw(rarely(20)):
        headers["Authorization"] = draw(st.sampled_from(["", "Bearer nope", "Basic eDp5"]))
    data = b""
    if method == "POST":
        parts = draw(st.lists(st.tuples(_path(pools, clean), st.binary(max_size=32)),
                              min_size=int(clean), max_size=3))  # fmt: skip
        boundary = "fuzzboundary"
        chunks = []
        for name, content in parts:
            kind = "file" if clean else draw(st.sampled_from(["file", "file", "field", "quoted"]))
            disposition = {"file": f'form-data; name="{name}"; filename="{name}"',
                           "field": f'form-data; name="{name}"',
                           "quoted": f'form-data; name="{name}\\""; filename="x\r\ny"'}[kind]
            chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode(
                "utf-8", "surrogatepass") + content + b"\r\n")  # fmt: skip
        data = b"".join(chunks) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        shape = "ok" if clean else draw(st.sampled_from(["ok", "truncated", "no-boundary", "json"]))
        if shape == "truncated":
            data = data[: draw(st.integers(0, len(data)))]
        elif shape == "no-boundary":
            headers["Content-Type"] = "multipart/form-data"
        elif shape == "json":
            headers["Content-Type"], data = "application/json", b'{"a": 1}'
        sha = _sha256_header(draw, parts[0][1] if parts else b"")
        if clean and len(parts) > 1:
            sha = None
    elif method == "PUT":
        data = draw(st.binary(max_size=64))
        sha = _sha256_header(draw, data)
        trailer = draw(st.sampled_from([None, None, "sha256", "md5"]))
        if trailer is not None:
            headers["X-Modelbook-Trailer"] = trailer
            data += draw(st.sampled_from([hashlib.sha256(data).hexdigest().encode(), b"0" * 64,
                                          b"short"]))  # fmt: skip
    if method in ("POST", "PUT") and sha is not None:
        headers["X-Modelbook-Sha256"] = sha
    return {"method": method, "path": path, "headers": headers, "data": data}
