"""Argument checks shared by Task and the model classes; each names what it accepts."""

from __future__ import annotations

import json
import math
import numbers
import operator
import os
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelbook.errors import InvalidArgumentError, StorageError, WeightsFileNotFoundError

#: The longest name or tag a registry keeps (the schema's column width, PostgreSQL's too).
MAX_NAME = 1024
#: The most UTF-8 bytes of a name, a tag, or a metadata key and value together: PostgreSQL
#: indexes them, and a B-tree entry holds at most 2704 bytes (longer ones would register in
#: the embedded store and fail on a team server).
MAX_INDEXED_BYTES = 2600
#: The longest weights URI (UTF-8 bytes) a registry indexes.
MAX_URI = 2048
#: The longest file name (UTF-8 bytes) a file system keeps.
MAX_FILE_NAME = 255
#: Integer ranges of the schema's columns: iterations are 32-bit (PostgreSQL ``integer``),
#: counts and label ids 64-bit.
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
#: How deeply a configuration or metadata value may nest lists and dicts.
MAX_DEPTH = 100

_JSON_ACCEPTED = "strings, finite numbers, booleans, None, and lists and dicts of them"


def _unicode_problem(value: str) -> str | None:
    """Why ``value`` is no text a database keeps (a NUL, a lone surrogate), or None."""
    if "\x00" in value:
        return f"it holds the NUL character at position {value.index(chr(0))}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        return f"it is not valid Unicode: a lone surrogate {bad!r} at position {exc.start}"
    return None


def _text_problem(value: str) -> str | None:
    """Why a name or tag cannot be stored as is, or None."""
    if len(value) > MAX_NAME:
        return f"it has {len(value)} characters; at most {MAX_NAME} are kept"
    bad = next((i for i, c in enumerate(value) if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        return f"it holds the control character {value[bad]!r} at position {bad}"
    problem = _unicode_problem(value)
    if problem:
        return problem
    size = len(value.encode("utf-8"))
    if size > MAX_INDEXED_BYTES:
        return f"it takes {size} bytes in UTF-8; at most {MAX_INDEXED_BYTES} are kept (indexed)"
    return None


def _shown(value: str) -> str:
    return f"{value[:40]!r}..." if len(value) > 40 else repr(value)


def name(value: Any, what: str = "name") -> str:
    """A name: a non-empty string of at most :data:`MAX_NAME` characters, none of them
    control characters (a NUL, a newline), which PostgreSQL or the UI cannot keep."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {value!r:.80}")
    problem = _text_problem(value)
    if problem:
        raise InvalidArgumentError(f"{what} {_shown(value)}: {problem}")
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
    for key, number in value.items():
        integer(number, f"labels[{key!r}]", INT64)
        problem = _unicode_problem(key)
        if problem:
            raise InvalidArgumentError(f"label name {_shown(key)}: {problem}")
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
        _check_json(config, "config_dict")
        return json.dumps(config, indent=2, sort_keys=False, allow_nan=False)
    if text is not None:
        return free_text(text, "config_text")
    return text


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """``value`` round-trips through JSON: dicts with string keys, lists, strings, finite
    numbers, booleans and None, nested at most :data:`MAX_DEPTH` deep; else an error naming
    the first key that does not."""
    if depth > MAX_DEPTH:
        raise InvalidArgumentError(
            f"{where[:200]} nests lists and dicts more than {MAX_DEPTH} deep; flatten it"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"{where} has the key {key!r}: keys must be strings")
            _check_json(key, f"{where} key", depth + 1)
            _check_json(item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, str):
        problem = _unicode_problem(value)
        if problem:
            raise InvalidArgumentError(f"{where} {_shown(value)}: {problem}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(f"{where} is {value!r}: numbers must be finite")
    elif not (value is None or isinstance(value, (bool, int, float))):
        raise InvalidArgumentError(
            f"{where} is a {type(value).__name__} ({value!r:.60}); accepted: {_JSON_ACCEPTED}"
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
    try:
        found = path.exists()
    except OSError as exc:  # a name too long for the file system, a loop of links
        raise InvalidArgumentError(
            f"weights_filename {_shown(str(weights))} cannot be a file on this machine: "
            f"{exc.strerror}; pass the path of the file you saved"
        ) from None
    if not found:
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
    return weights_uri(str(uri), "register_uri")


def integer(value: Any, what: str, bounds: tuple[int, int] = INT64) -> int:
    """An int within ``bounds`` (inclusive; numpy ints too, never a bool), as an ``int``.

    Example:
        >>> integer(3, "iteration", INT32)
        3
    """
    low, high = bounds
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or not low <= number <= high:
        accepted = "a non-negative int" if low == 0 else "an int"
        raise InvalidArgumentError(
            f"{what} must be {accepted} (at most {high}"
            + (f", at least {low}" if low else "") + f"), got {value!r:.60}"
        )
    return number


def free_text(value: Any, what: str) -> str:
    """Free text (a comment, a design): a string a database keeps (no NUL, valid Unicode)."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string, got {type(value).__name__} "
                                   f"{value!r:.60}")  # fmt: skip
    problem = _unicode_problem(value)
    if problem:
        raise InvalidArgumentError(f"{what} {_shown(value)}: {problem}")
    return value


def framework(value: Any) -> str | None:
    """A framework name ("PyTorch", "TensorFlow"...): a string of at most 128 characters."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise InvalidArgumentError(
            f"framework must be a name of at most 128 characters such as 'PyTorch', got "
            f"{value!r:.60}"
        )
    return name(value, "framework")


def file_name(value: Any, what: str = "target_filename") -> str:
    """A plain file name: no folder separators, not ``.`` or ``..``, at most
    :data:`MAX_FILE_NAME` UTF-8 bytes, no control characters."""
    checked = name(value, what)
    if "/" in checked or "\\" in checked or checked in (".", ".."):
        raise InvalidArgumentError(f"{what} must be a plain file name, got {checked!r}")
    size = len(checked.encode("utf-8"))
    if size > MAX_FILE_NAME:
        raise InvalidArgumentError(
            f"{what} {_shown(checked)} takes {size} bytes; file systems keep at most "
            f"{MAX_FILE_NAME}"
        )
    return checked


def weights_uri(value: Any, what: str = "weights_url") -> str:
    """A URI (or path) of weights stored elsewhere: a non-empty string without control
    characters, at most :data:`MAX_URI` UTF-8 bytes."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {value!r:.80}")
    bad = next((i for i, c in enumerate(value) if unicodedata.category(c) == "Cc"), None)
    problem = (f"it holds the control character {value[bad]!r} at position {bad}"
               if bad is not None else _unicode_problem(value))  # fmt: skip
    if problem is None and len(value.encode("utf-8")) > MAX_URI:
        problem = f"it takes {len(value.encode('utf-8'))} bytes; at most {MAX_URI} are kept"
    if problem:
        raise InvalidArgumentError(f"{what} {_shown(value)}: {problem}")
    return value


def metadata_key(key: Any) -> str:
    """A metadata key: a non-empty string of at most :data:`MAX_NAME` characters, without
    control characters.

    Example:
        >>> metadata_key("val_loss")
        'val_loss'
    """
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(
            f"metadata keys must be non-empty strings, got {type(key).__name__} {key!r:.80}"
        )
    problem = _text_problem(key)
    if problem:
        raise InvalidArgumentError(f"metadata key {_shown(key)}: {problem}")
    return key


def metadata_value(key: str, value: Any) -> Any:
    """A metadata value as ClearML's ``set_metadata`` takes it: a string, a finite number,
    a boolean, None, or a list, tuple or dict (string keys) of them; it is stored as its
    ``str()``, which with the key fits :data:`MAX_INDEXED_BYTES`.

    Raises:
        InvalidArgumentError: NaN or infinity, another type (a function, a set, bytes), or a
            value too long; the message names the key.

    Example:
        >>> metadata_value("val_loss", 0.25)
        0.25
    """
    where = f"metadata[{key!r:.60}]"
    if isinstance(value, numbers.Number) and not isinstance(value, (bool, int, float)):
        if not isinstance(value, numbers.Real):  # complex, Decimal
            raise InvalidArgumentError(
                f"{where} is a {type(value).__name__} ({value!r:.60}); accepted: {_JSON_ACCEPTED}"
            )
        number = float(value)  # numpy scalars
        if not math.isfinite(number):
            raise InvalidArgumentError(f"{where} is {number!r}: numbers must be finite")
        return value
    _check_json(value, where)
    try:
        size = len(str(value).encode("utf-8")) + len(key.encode("utf-8"))
    except ValueError:  # an int of more digits than Python converts
        raise InvalidArgumentError(f"{where} is an int too large to store") from None
    if size > MAX_INDEXED_BYTES:
        raise InvalidArgumentError(
            f"{where}: the key and the value take {size} bytes in UTF-8; at most "
            f"{MAX_INDEXED_BYTES} are kept together (the registry indexes them); store long "
            "values in the model's design (config_dict) or as a file"
        )
    return value


#: The most metadata keys one query filters by: each is a sub-query, and SQLite nests at most
#: 1 000 (the Python API and the server's ``models.get_all`` both hold to it).
MAX_METADATA_FILTERS = 100


def metadata_filter(values: Any) -> dict[str, Any]:
    """A metadata filter of a query: :func:`metadata`'s rules, at most
    :data:`MAX_METADATA_FILTERS` keys."""
    checked = metadata(values, "metadata filter")
    if len(checked) > MAX_METADATA_FILTERS:
        raise InvalidArgumentError(
            f"the metadata filter holds {len(checked)} keys; at most {MAX_METADATA_FILTERS} "
            "are accepted"
        )
    return checked


def metadata(values: Any, what: str = "metadata") -> dict[str, Any]:
    """``{key: value}`` or ``{key: {"value": ..., "type": ...}}`` (ClearML's shape), each key
    and value checked by :func:`metadata_key` and :func:`metadata_value`."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise InvalidArgumentError(
            f"{what} must be a dict of key to value, e.g. {{'val_loss': 0.25}}, got "
            f"{type(values).__name__} {values!r:.80}"
        )
    for key, item in values.items():
        metadata_key(key)
        if isinstance(item, Mapping):
            if "value" not in item:
                raise InvalidArgumentError(
                    f"{what}[{key!r}] must be a value, or a dict with 'value' (and optional "
                    f"'type'), got {item!r:.80}"
                )
            metadata_value(key, item["value"])
            kind = item.get("type")
            if kind is not None and not isinstance(kind, str):
                raise InvalidArgumentError(
                    f"{what}[{key!r}]['type'] must be a string such as 'float', got {kind!r:.40}"
                )
        else:
            metadata_value(key, item)
    return dict(values)
