"""Argument checks shared by Task and the model classes; each names what it accepts."""

from __future__ import annotations

import json
import math
import os
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelbook.errors import InvalidArgumentError, StorageError, WeightsFileNotFoundError

#: The longest name or tag a registry keeps (the schema's column width, PostgreSQL's too).
MAX_NAME = 1024


def _text_problem(value: str) -> str | None:
    """Why a name or tag cannot be stored as is, or None."""
    if len(value) > MAX_NAME:
        return f"it has {len(value)} characters; at most {MAX_NAME} are kept"
    bad = next((i for i, c in enumerate(value) if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        return f"it holds the control character {value[bad]!r} at position {bad}"
    return None


def name(value: Any, what: str = "name") -> str:
    """A name: a non-empty string of at most :data:`MAX_NAME` characters, none of them
    control characters (a NUL, a newline), which PostgreSQL or the UI cannot keep."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {value!r:.80}")
    problem = _text_problem(value)
    if problem:
        raise InvalidArgumentError(f"{what} {value[:40]!r}...: {problem}" if len(value) > 40
                                   else f"{what} {value!r}: {problem}")  # fmt: skip
    return value


def tags(value: Any, what: str = "tags", allow_none_terms: bool = False) -> list[Any]:
    """A list of non-empty strings (``None`` terms too, for tag filters)."""
    if value is None:
        return []
    if isinstance(value, str):
        raise InvalidArgumentError(
            f"{what} must be a list of strings, got the string {value!r}; did you mean [{value!r}]?"
        )
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise InvalidArgumentError(
            f"{what} must be a list of strings, got {type(value).__name__} {value!r:.80}"
        )
    items = list(value)
    bad = [t for t in items
           if not (isinstance(t, str) and t) and not (allow_none_terms and t is None)]
    if bad:
        raise InvalidArgumentError(
            f"{what} must be a list of non-empty strings, but {bad!r} "
            f"{'is' if len(bad) == 1 else 'are'} not; got {items!r:.200}"
        )
    for tag in items:
        problem = _text_problem(tag) if isinstance(tag, str) else None
        if problem:
            raise InvalidArgumentError(f"tag {tag[:40]!r} in {what}: {problem}")
    return items


def labels(value: Any) -> dict[str, int]:
    """A label enumeration ``{str: int}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(
            f"labels must be a dict of label name to int id, e.g. {{'cat': 0, 'dog': 1}}; "
            f"got {type(value).__name__} {value!r}"
        )
    bad = {
        k: v
        for k, v in value.items()
        if not isinstance(k, str) or not isinstance(v, int) or isinstance(v, bool)
    }
    if bad:
        raise InvalidArgumentError(
            "labels must map str names to int ids, e.g. {'cat': 0, 'dog': 1}; these entries "
            f"are not str -> int: {bad!r}"
        )
    return dict(value)


def config_text(text: str | None, config: Mapping[str, Any] | None) -> str | None:
    """The design text from ``config_text`` or ``config_dict`` (at most one of them)."""
    if text is not None and config is not None:
        raise InvalidArgumentError(
            "pass either config_text or config_dict, not both "
            "(config_dict is stored as its JSON text, which is HOCON too)"
        )
    if config is not None:
        if not isinstance(config, Mapping):
            raise InvalidArgumentError(f"config_dict must be a dict, got {type(config).__name__}")
        _check_config(config, "config_dict")
        return json.dumps(config, indent=2, sort_keys=False)
    if text is not None and not isinstance(text, str):
        raise InvalidArgumentError(f"config_text must be a string, got {type(text).__name__}")
    return text


def _check_config(value: Any, where: str) -> None:
    """``value`` round-trips through JSON: dicts with string keys, lists, strings, finite
    numbers, booleans and None; else an error naming the first key that does not."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"{where} has the key {key!r}: keys must be strings")
            _check_config(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_config(item, f"{where}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(f"{where} is {value!r}: numbers must be finite")
    elif not (value is None or isinstance(value, (str, bool, int, float))):
        raise InvalidArgumentError(
            f"{where} is a {type(value).__name__} ({value!r:.60}); accepted: strings, finite "
            "numbers, booleans, None, and lists and dicts of them"
        )


def config_dict(text: str) -> dict[str, Any]:
    """Parse a design text as ClearML does: HOCON (JSON is HOCON too), with pyhocon.

    Raises:
        InvalidArgumentError: the text is not HOCON (a ``ValueError``, as in ClearML).
    """
    if not text:
        return {}
    try:
        value = json.loads(text)  # what modelbook writes: no parser needed
        return value if isinstance(value, dict) else {"design": value}
    except ValueError:
        pass
    from pyhocon import ConfigFactory, HOCONConverter
    from pyhocon.exceptions import ConfigException
    from pyparsing import ParseBaseException

    try:
        tree = ConfigFactory.parse_string(text)
        return dict(json.loads(HOCONConverter.to_json(tree)))
    except ParseBaseException as exc:
        raise InvalidArgumentError(
            f"could not parse the configuration text as HOCON (or JSON) at line {exc.lineno}, "
            f"column {exc.column}: {exc.msg}"
        ) from exc
    except ConfigException as exc:  # substitutions, includes
        raise InvalidArgumentError(f"could not parse the configuration text: {exc}") from exc


def weights_path(weights: str | os.PathLike[str] | None) -> Path:
    """The weights file or folder handed to ``update_weights``, refused when it cannot be
    what the caller means: an empty path, ``.`` or the working directory, ``/``, the user's
    home, or a folder holding the modelbook home (the store itself).

    Raises:
        InvalidArgumentError: one of those.
        WeightsFileNotFoundError: the path does not exist.
    """
    from modelbook import config

    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"weights_filename must be a path (str or os.PathLike), got "
            f"{type(weights).__name__} {weights!r}"
        )
    if weights is None or not str(weights).strip():
        raise InvalidArgumentError(
            f"weights_filename must name a weights file or folder, got {weights!r}; "
            "pass the path of the file you saved (e.g. 'model.pt')"
        )
    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsFileNotFoundError(path)
    if path.is_dir():
        resolved, store = path.resolve(), config.home().resolve()
        refused = {Path("/"): "the root folder", Path.home().resolve(): "your home folder",
                   Path.cwd().resolve(): "the working directory"}  # fmt: skip
        why = refused.get(resolved) or (
            "a folder holding the modelbook store" if store.is_relative_to(resolved) else None
        )
        if why:
            raise InvalidArgumentError(
                f"refusing to package {str(weights)!r}: it is {why} ({resolved}); pass the "
                "weights file, or a folder that holds only the model (a save_pretrained "
                "folder, a checkpoint folder)"
            )
    return path


def destination(uri: str) -> str:
    """Validate a weights destination and return it conformed (``file://`` for paths)."""
    from modelbook.storage import driver_for, scheme_of
    from modelbook.storage.local import to_path, to_uri

    if not isinstance(uri, str):
        raise InvalidArgumentError(f"destination must be a string URI, got {uri!r}")
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        path = to_path(uri)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".modelbook-write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"Could not set destination uri to: {uri} [Check write permissions]: {exc}"
            ) from exc
        return to_uri(path).rstrip("/")
    driver_for(uri)  # raises for schemes no driver handles
    return uri.rstrip("/")


def register_uri(uri: Any) -> str:
    """A ``register_uri`` for ``update_weights``: a URI (``s3://``, ``https://``,
    ``file://``) or a local path, as a non-empty string."""
    if not isinstance(uri, (str, os.PathLike)) or not str(uri).strip():
        raise InvalidArgumentError(
            f"register_uri must be a URI or a path (a non-empty string), got {uri!r}; e.g. "
            "'s3://bucket/models/model.pt' or '/data/models/model.pt'"
        )
    return str(uri)
