"""The model of expected state for test_api_state_machine.py: argument pools, expectations."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from modelbook import OutputModel, Task
from modelbook.errors import InvalidArgumentError as Invalid
from modelbook.errors import ModelPublishedError as Published

PROJECTS = ["proj", "other"]
WEIGHTS = [b"alpha " * 20, b"beta " * 9, b"gamma"]
FILE_NAMES = ["model.pt", "w.bin", "模型.pt"]


#: (value, accepted): what the public rules must accept (True) or refuse (False).
Pool = list[tuple[Any, bool]]
NAMES: Pool = [("m1", True), ("m2", True), ("模型 ✓", True), ("", False), ("   ", False),
               ("a\x00b", False), ("two\nlines", False), ("x" * 1025, False), (5, False),
               ("\ud800", False), ("字" * 900, False)]  # fmt: skip
TAGS: Pool = [(None, True), (["t1"], True), (["t1", "t2"], True), (["t2", "t2"], True),
              ("t1", False), (5, False), ([""], False), (["t1", 3], False), (["a\tb"], False),
              ([None], False)]  # fmt: skip
LABELS: Pool = [(None, True), ({"cat": 0}, True), ({"cat": 1, "dog": 2}, True),
                ({"cat": "0"}, False), ({"cat": True}, False), ({"cat": 2**70}, False),
                ({1: 1}, False), (5, False), ([("cat", 1)], False)]  # fmt: skip
#: (config_text, config_dict, accepted)
DESIGNS: list[tuple[Any, Any, bool]] = [
    (None, None, True), ("net { depth = 2 }", None, True), (None, {"lr": 0.1}, True),
    (None, {"layers": [1, 2], "opt": {"name": "adam", "eps": None}}, True),
    (None, {"fn": print}, False), (None, {"s": {1, 2}}, False), (None, {"lr": math.nan}, False),
    (None, {"lr": [1, math.inf]}, False), (None, {1: "x"}, False), (None, 5, False),
    (None, json.loads('{"a":' * 150 + "1" + "}" * 150), False),  # nested 150 deep
    (5, None, False), ("a\x00b", None, False), ("x", {"a": 1}, False),
    (None, {"k": "\ud800"}, False),
]  # fmt: skip
META_KEYS: Pool = [("k1", True), ("k2", True), ("键", True), ("", False), (5, False),
                   (None, False), ("a\x00", False), ("k" * 1025, False),
                   (("a",), False)]  # fmt: skip
META_VALUES: Pool = [(0.25, True), (3, True), ("x", True), (True, True), (None, True),
                     ([1, 2], True), ((1, "a"), True), ({"k": 1}, True), (-0.0, True),
                     (math.nan, False), (math.inf, False), (-math.inf, False), (print, False),
                     ({1, 2}, False), (b"x", False), ([math.nan], False), ({"a": {1}}, False),
                     ("a\x00", False), ("x" * 3000, False), (1j, False)]  # fmt: skip
V_TYPES = ["float", "int", "str", None, "weird", 5, ["list"]]
ITERATIONS: Pool = [(None, True), (0, True), (7, True), (-1, True), (2**31 - 1, True),
                    ("3", False), (True, False), (2**40, False), (1.5, False)]  # fmt: skip
TARGETS: Pool = [(None, True), ("renamed.pt", True), ("a/b.pt", False), ("..", False),
                 ("a\x00.pt", False), ("x" * 300, False), (5, False)]  # fmt: skip
UPLOAD_METADATA: Pool = [(None, True), ({"epoch": 3, "acc": 0.5}, True),
                         ({"m": {"value": "0.1", "type": "float"}}, True), (5, False),
                         ({"acc": math.nan}, False), ({"": 1}, False)]  # fmt: skip
COUNTS: Pool = [(None, True), (0, True), (1, True), (5, True), (-1, False), (True, False),
                (2**70, False), ("3", False), (1.0, False)]  # fmt: skip
KEEP: Pool = [(0, True), (1, True), (2, True), (-1, False), (True, False), ("1", False),
              (None, False)]  # fmt: skip
QUERY_TAGS: Pool = [(None, True), (["t1"], True), (["-t1"], True),
                    (["__$all", "t1", "t2"], True), (["__$bogus"], False), (5, False),
                    ([""], False)]  # fmt: skip
#: The expected result of each accepted tag filter of QUERY_TAGS, given a model's tags.
TAG_FILTERS: dict[Any, Callable[[list[str]], bool]] = {
    None: lambda tags: True, ("t1",): lambda tags: "t1" in tags,
    ("-t1",): lambda tags: "t1" not in tags, ("__$all", "t1", "t2"): {"t1", "t2"}.issubset,
}  # fmt: skip


def pool(values: list[tuple[Any, ...]], one_in: int = 8) -> st.SearchStrategy[Any]:
    """An entry of ``values`` (``(..., accepted)``): a refused one in ``one_in`` draws, so
    that a call of several arguments is often accepted as a whole."""
    good = [v for v in values if v[-1]]
    bad = [v for v in values if not v[-1]] or good
    return st.integers(1, one_in).flatmap(lambda i: st.sampled_from(bad if i == 1 else good))


def _design(text: Any, config_dict: Any) -> str | None:
    """The design text the API stores for accepted ``config_text`` / ``config_dict``."""
    return json.dumps(config_dict, indent=2) if config_dict is not None else text


def _refusal(args_ok: bool, published: bool) -> Any:
    """What a call changing a model's weights, design or labels raises when refused."""
    if not args_ok:
        return (Invalid, Published) if published else Invalid
    return Published


@dataclass
class Expected:
    """What the store must hold for one model."""

    seq: int  # creation order: queries and URL reuse pick the newest
    name: str | None  # None: an anonymous import, its name not compared
    project: str | None
    tags: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    design: str = ""
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    uri: str | None = None
    sha256: str | None = None
    versions: int = 0
    published: bool = False
    archived: bool = False
    frozen: tuple[Any, ...] | None = None  # what publishing froze

    def weights(self) -> tuple[Any, ...]:
        return self.uri, self.sha256, self.design, dict(self.labels), self.versions


@dataclass
class TaskState:
    task: Task
    project: str
    labels: dict[str, int] = field(default_factory=dict)
    design: str = ""
    closed: bool = False


@dataclass
class Handle:
    """An ``OutputModel`` of the test and, until it is created, what it is created as."""

    model: OutputModel
    owner: TaskState
    name: str
    tags: list[str]
    labels: dict[str, int] | None
    design: str | None
    id: str | None = None
    connected: bool = False  # its task has an entry for it (made with its first weights)
    #: The entry's name (its first weights' file name, less the suffix) and when it was made:
    #: a later model connected under the same name takes the entry over (ClearML's rule).
    entry: str = ""
    connected_at: int = 0
