"""``modelbook models get`` and ``modelbook models compare``: a version's weights, and
versions side by side.

``get`` downloads through ``Model.get_local_copy`` (verified against the sha256 recorded
when the weights were stored) and, with ``-o``, copies them where asked, hashing the copy
again. ``compare`` puts two to four models or versions (``ID@VERSION``) in columns and marks
the rows that differ.

Example:
    >>> compare_rows([{"iteration": 1, "metrics": {"loss": 0.5}},
    ...               {"iteration": 2, "metrics": {"loss": 0.5}}])
    [('iteration', [1, 2], True), ('metrics/loss', [0.5, 0.5], False)]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from modelbook import config
from modelbook.cli_common import OK, emit, human_size, print_table, resolve_model
from modelbook.errors import BlobCorruptedError, InvalidArgumentError, NotFoundError
from modelbook.model import Model
from modelbook.records import ModelRecord, ModelVersionRecord
from modelbook.storage import sha256_file
from modelbook.storage.base import CHUNK


def _version(record: ModelRecord, versions: list[ModelVersionRecord],
             number: int) -> ModelVersionRecord:  # fmt: skip
    found = next((v for v in versions if v.version == number), None)
    if found is None:
        raise NotFoundError(
            f"model {record.id!r} ({record.name!r}) has no version {number}; its versions: "
            f"{', '.join(str(v.version) for v in versions) or '(none yet)'}"
        )
    return found


def _copy_verified(source: Path, target: Path, expected: str | None) -> str:
    """Copy the file ``source`` to ``target`` atomically; returns the copy's sha256, which
    must be ``expected`` when given (else nothing is left at ``target``)."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    digest = hashlib.sha256()
    try:
        with open(source, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
        if expected and digest.hexdigest() != expected:
            raise BlobCorruptedError(str(source), expected, digest.hexdigest())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()


def _target(output: str, name: str) -> Path:
    """Where ``-o`` puts a download named ``name``: into ``output`` if it is a folder."""
    path = Path(output).expanduser()
    if path.is_dir():
        return path / name
    if not path.parent.is_dir():
        raise InvalidArgumentError(
            f"-o {output}: the folder {str(path.parent)!r} does not exist; pass an existing "
            "folder, or a file path in one"
        )
    return path


def _get(args: argparse.Namespace) -> int:
    model = Model(resolve_model(args.id))
    record = config.get_backend().get_model(model.id)
    if args.version is None:
        if not record.uri:
            raise NotFoundError(f"model {record.id!r} ({record.name!r}) has no weights yet")
        uri, expected = record.uri, record.sha256
        version, iteration = record.version or None, record.iteration
    else:
        found = _version(record, model.versions, args.version)
        if found.pruned:
            raise NotFoundError(
                f"version {found.version} of model {record.id!r} was pruned (retention): its "
                "record is kept, its weights were deleted; `modelbook models show` lists the "
                "versions that still have weights"
            )
        uri, expected, version, iteration = found.uri, found.sha256, found.version, found.iteration
    local = Path(model.get_local_copy(raise_on_error=True, version=args.version) or "")
    sha256 = expected
    if args.output:
        name = PurePosixPath(unquote(urlsplit(uri).path)).name or local.name
        if local.is_dir():  # a package: its extracted folder, named as the zip was
            name = name.removesuffix(".zip")
        local, sha256 = _write_output(local, args.output, name, expected)
    elif not sha256 and local.is_file():
        sha256 = sha256_file(local)[0]
    data = {"id": record.id, "name": record.name, "version": version, "iteration": iteration,
            "path": str(local), "url": uri, "sha256": sha256,
            "size": local.stat().st_size if local.is_file() else None,
            "verified": bool(expected)}  # fmt: skip
    emit(args, data, lambda: print(local))
    return OK


def _write_output(
    local: Path, output: str, name: str, expected: str | None
) -> tuple[Path, str | None]:
    """Copy the download (a file, or a package's folder) where ``-o`` says (into it as
    ``name`` if it is a folder); returns the path written and the sha256 of the copy (of the
    package's zip, for a folder)."""
    target = Path(output)
    try:
        target = _target(output, name)
        if local.is_dir():  # a package: its extracted folder
            shutil.copytree(local, target, dirs_exist_ok=True)
            return target.absolute(), expected
        return target.absolute(), _copy_verified(local, target, expected)
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot write {str(target)!r} (-o {output}): {exc.strerror or exc}; pass a file "
            "or folder you can write to"
        ) from exc


def _parse_ref(ref: str) -> tuple[str, int | None]:
    model_id, at, number = ref.rpartition("@")
    if not at:
        return ref, None
    if not model_id or not number.isdigit():
        raise InvalidArgumentError(
            f"{ref!r} is not ID or ID@VERSION (a version number, e.g. 4a1e9f@3)"
        )
    return model_id, int(number)


def _number(value: str) -> float | str:
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _item(ref: str) -> dict[str, Any]:
    """One column of ``compare``: a model's current weights or one of its versions."""
    model_id, number = _parse_ref(ref)
    backend = config.get_backend()
    record = backend.get_model(resolve_model(model_id))
    meta = {k: v["value"] for k, v in record.metadata.items()}
    item: dict[str, Any] = {
        "ref": ref, "id": record.id, "name": record.name, "version": record.version or None,
        "iteration": record.iteration, "created": None, "published": record.ready,
        "tags": record.tags, "sha256": record.sha256, "size": record.size, "url": record.uri,
        "labels": record.labels,
    }  # fmt: skip
    versions = backend.list_model_versions(record.id)
    if number is None:  # the current weights: the model's metadata as it is now
        version = next((v for v in versions if v.version == record.version), None)
    else:
        version = _version(record, versions, number)
        meta = {k: v["value"] for k, v in version.metadata.items()}
    if version is not None:
        item.update(version=version.version, iteration=version.iteration, sha256=version.sha256,
                    size=version.size, url=version.uri,
                    created=version.created.isoformat())  # fmt: skip
    metrics = {k[8:]: _number(v) for k, v in meta.items() if k.startswith("metrics/")}
    if meta.get("monitor") and "monitor_value" in meta:
        metrics.setdefault(meta["monitor"], _number(meta["monitor_value"]))
    item["metrics"] = dict(sorted(metrics.items()))
    item["metadata"] = {k: v for k, v in sorted(meta.items()) if not k.startswith("metrics/")}
    return item


#: The rows of ``compare``, in order; then ``metrics/<name>`` and ``metadata/<key>``.
FIELDS = ("id", "name", "version", "iteration", "created", "published", "tags", "sha256",
          "size", "url", "labels")  # fmt: skip


def compare_rows(items: list[dict[str, Any]]) -> list[tuple[str, list[Any], bool]]:
    """``(field, values, differ)`` per row of ``compare``, for the fields the items have."""
    rows = [(f, [i.get(f) for i in items]) for f in FIELDS if any(f in i for i in items)]
    for group in ("metrics", "metadata"):
        keys = sorted({k for i in items for k in i.get(group, {})})
        rows += [(f"{group}/{k}", [i.get(group, {}).get(k) for i in items]) for k in keys]
    return [(name, values, any(v != values[0] for v in values)) for name, values in rows]


def _cell(field: str, value: Any) -> str:
    if value is None:
        return "-"
    if field == "sha256":
        return str(value)[:12]
    if field == "size":
        return human_size(value)
    if isinstance(value, (list, dict)):
        text = ",".join(map(str, value)) if isinstance(value, list) else json.dumps(value)
        return text if value else "-"
    return str(value)


def _compare(args: argparse.Namespace) -> int:
    if not 2 <= len(args.refs) <= 4:
        raise InvalidArgumentError(
            f"compare takes 2 to 4 models or versions (ID or ID@VERSION), got {len(args.refs)}"
        )
    items = [_item(ref) for ref in args.refs]
    rows = compare_rows(items)
    different = [name for name, _, differ in rows if differ]
    data = {"items": items, "different": different}

    def table() -> None:
        lines = [["", "FIELD", *(i["ref"] for i in items)]]
        lines += [["*" if differ else "", name, *(_cell(name, v) for v in values)]
                  for name, values, differ in rows if name != "url"]  # fmt: skip
        print_table(lines)
        print(f"* {len(different)} field(s) differ")

    emit(args, data, table)
    return OK


Verb = Callable[..., argparse.ArgumentParser]


def add_version_commands(verbs: Any, verb: Verb) -> None:
    """Register ``models get`` and ``models compare`` (``verb`` adds one models command)."""
    get = verb("get", _get, "download a version's weights, check their sha256, print the path")
    get.add_argument("--version", type=int, metavar="N",
                     help="that version (models show lists them; default: the current weights)")
    get.add_argument("-o", "--output", metavar="PATH",
                     help="copy them there (a file, or into a folder); default: the cache")
    compare = verb("compare", _compare, "show 2 to 4 models or versions side by side",
                   with_id=False)  # fmt: skip
    compare.add_argument("refs", nargs="+", metavar="ID[@VERSION]",
                         help="a model (its current weights) or one version of it")
