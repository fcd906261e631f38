"""The registry verbs a real ClearML server can carry: the HTTP backend's ClearML mode.

:class:`~modelbook.backends.http.HttpBackend` asks ``server.info`` once; a server that does
not name itself modelbook is taken as ClearML's, and the verbs below replace those that use
modelbook's extensions. Only endpoints and fields of the real server's schema are sent
(checked in the tests by the strict-ClearML harness):

* what ClearML's model document has no field for (sha256, size, the version counter, the
  version history) is kept in the model's metadata under ``modelbook:`` keys, written
  together with the new ``uri`` in one ``models.edit``, and hidden from the user's metadata;
  the hash is trusted only while ``modelbook:uri`` equals the model's ``uri``;
* models are created with ``ready: false`` and a placeholder ``uri`` (the server requires
  one) until their first weights;
* hyper-parameters merge through ``tasks.edit_hyper_params``, the model design through
  ``tasks.edit_configuration``; counting pages through ``get_all`` with ``only_fields``;
  archiving through ``archive_many`` / ``unarchive_many``;
* the server is never asked to delete a file (``delete_external_artifacts: false``); with no
  record of which objects modelbook wrote, nothing is doomed on such a server: pruning marks
  versions, it frees no bytes, and ``gc`` finds nothing.

Example:
    >>> hidden = {"modelbook:sha256": {"key": "modelbook:sha256", "value": "ab", "type": "str"}}
    >>> user_metadata({**hidden, "acc": {"key": "acc", "value": "0.9", "type": "float"}})
    {'acc': {'key': 'acc', 'value': '0.9', 'type': 'float'}}
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from modelbook.errors import InvalidArgumentError, ModelInUseError, ModelPublishedError
from modelbook.records import (
    ARCHIVED_TAG,
    PACKAGE_TAG,
    GcResult,
    Metadata,
    ModelQuery,
    ModelRecord,
    ModelVersionRecord,
    PruneResult,
    metadata_item,
)
from modelbook.wire import (
    configuration_doc,
    hyperparams_doc,
    iso,
    metadata_doc,
    metadata_items,
    model_record,
    version_record,
)

if TYPE_CHECKING:
    from modelbook.backends.http import HttpBackend

PREFIX = "modelbook:"
#: The uri of a model that has no weights yet (ClearML requires one).
PLACEHOLDER_URI = "modelbook://no-weights-yet"
#: The name of a model created without one (the server requires a name).
UNNAMED = "Imported model"
#: The real server refuses shorter project, task and model names.
MIN_NAME = 3
PAGE = 500


def user_metadata(metadata: Metadata) -> Metadata:
    """The metadata without modelbook's own ``modelbook:`` entries."""
    return {k: v for k, v in metadata.items() if not k.startswith(PREFIX)}


def check_name(name: object, what: str) -> None:
    if isinstance(name, str) and len(name.strip()) < MIN_NAME:
        raise InvalidArgumentError(
            f"{what} {name!r} is too short for a ClearML server, which needs names of at least "
            f"{MIN_NAME} characters"
        )


def clearml_files_host(api_host: str) -> str:
    """Where a ClearML server's files server is when none is configured, as its SDK derives
    it: ``api.`` becomes ``files.`` in the host name, else the port becomes 8081.

    Example:
        >>> clearml_files_host("https://api.clear.example.com")
        'https://files.clear.example.com'
        >>> clearml_files_host("http://10.0.0.5:8008")
        'http://10.0.0.5:8081'
    """
    parts = urlsplit(api_host)
    host = parts.hostname or ""
    if host.startswith("api."):
        netloc = parts.netloc.replace(host, "files." + host[len("api.") :], 1)
    else:
        netloc = f"{host}:8081"
    return urlunsplit((parts.scheme, netloc, "", "", ""))


def _value(metadata: Metadata, key: str) -> str | None:
    item = metadata.get(PREFIX + key)
    return item["value"] if item else None


def record_of(doc: dict[str, Any]) -> ModelRecord:
    """A model document of a ClearML server as modelbook's record."""
    record = model_record(doc)
    meta = record.metadata
    trusted = _value(meta, "uri") == record.uri  # the hash belongs to these weights
    size = _value(meta, "size")
    return dataclasses.replace(
        record,
        uri=None if record.uri == PLACEHOLDER_URI else record.uri,
        sha256=_value(meta, "sha256") if trusted else None,
        size=int(size) if trusted and size else None,
        iteration=int(_value(meta, "iteration") or 0) or record.iteration,
        version=int(_value(meta, "version") or 0),
        metadata=user_metadata(meta),
    )


def _versions(meta: Metadata) -> list[dict[str, Any]]:
    try:
        return list(json.loads(_value(meta, "versions") or "[]"))
    except ValueError:
        return []


class ClearmlVerbs:
    """The verbs of :class:`HttpBackend` that differ on a ClearML server.

    Example:
        >>> from modelbook.backends.http import HttpBackend
        >>> verbs = ClearmlVerbs(HttpBackend(api_host="http://h:8008", access_key="k",
        ...                                  secret_key="s"))
        >>> verbs.collect_garbage()  # no record of objects there: nothing is ever doomed
        GcResult(doomed=[], partials=[])
    """

    def __init__(self, backend: HttpBackend) -> None:
        self.be = backend

    def _call(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.be.client.call(endpoint, body)

    def _doc(self, model_id: str) -> dict[str, Any]:
        return self._call("models.get_by_id", {"model": model_id})["model"]

    # -- tasks --------------------------------------------------------------------------
    def update_task_extras(self, task_id: str, fields: dict[str, Any]) -> None:
        """What ``tasks.edit`` would replace wholesale, merged instead; what it lacks, skipped."""
        params = fields.pop("hyperparams", None)
        if params:
            items = hyperparams_doc(
                {s: {k: str(v) for k, v in p.items()} for s, p in params.items()},
                schema_fields=False,
            )
            flat = [dict(item, section=section) for section, values in items.items()
                    for item in values.values()]  # fmt: skip
            self._call("tasks.edit_hyper_params", {
                "task": task_id, "hyperparams": flat, "replace_hyperparams": "none", "force": True,
            })  # fmt: skip
        if "model_config" in fields:
            section = configuration_doc(fields.pop("model_config"), schema_fields=False)
            self._call("tasks.edit_configuration", {
                "task": task_id, "configuration": list(section.values()), "force": True,
            })  # fmt: skip
        fields.pop("last_iteration", None)  # the server raises it from reported events only

    # -- models -------------------------------------------------------------------------
    def create_model(self, fields: dict[str, Any]) -> ModelRecord:
        fields = dict(fields, name=fields.get("name") or UNNAMED)  # the server requires one
        check_name(fields["name"], "model name")
        body = {k: v for k, v in fields.items() if k not in ("sha256", "size", "id", "iteration")}
        body.setdefault("uri", PLACEHOLDER_URI)
        if "design" in body:
            body["design"] = {"design": body["design"] or ""}
        if body.get("metadata"):
            body["metadata"] = metadata_doc(body["metadata"])
        else:
            body.pop("metadata", None)
        model_id = self._call("models.create", {k: v for k, v in body.items() if v is not None})
        return self.get_model(model_id["id"])

    def get_model(self, model_id: str) -> ModelRecord:
        return record_of(self._doc(model_id))

    def update_model(self, model_id: str, fields: dict[str, Any]) -> ModelRecord:
        add, remove = fields.pop("add_system_tags", None), fields.pop("remove_system_tags", None)
        for tags, endpoint in ((add, "models.archive_many"), (remove, "models.unarchive_many")):
            if tags and ARCHIVED_TAG in tags:
                self._call(endpoint, {"ids": [model_id]})
            other = [t for t in tags or [] if t != ARCHIVED_TAG]
            if other:
                current = set(self._doc(model_id).get("system_tags") or [])
                changed = current | set(other) if tags is add else current - set(other)
                fields["system_tags"] = sorted(changed)
        if fields.get("ready") is True:  # publishing is its own call there
            del fields["ready"]
            self._call("models.set_ready", {"model": model_id, "publish_task": False})
        body = {k: v for k, v in fields.items() if k not in ("sha256", "size")}
        if "design" in body:
            body["design"] = {"design": body["design"] or ""}
        if body:
            self._call("models.edit", {**body, "model": model_id})
        return self.get_model(model_id)

    def add_model_version(self, model_id: str, **version: Any) -> ModelRecord:
        """The new uri and everything that describes it, in one ``models.edit``."""
        doc = self._doc(model_id)
        if doc.get("ready"):  # published: read-only here too
            raise ModelPublishedError(model_id, doc.get("name", ""), "update the weights")
        meta = metadata_doc(doc.get("metadata") or {})
        history = _versions(meta)
        number = int(_value(meta, "version") or 0) + 1
        snapshot = {**user_metadata(meta), **(version.get("metadata") or {})}
        history.append({
            "version": number, "uri": version["uri"], "sha256": version.get("sha256"),
            "size": version.get("size"), "iteration": version.get("iteration"),
            "created": iso(datetime.now(timezone.utc)), "comment": version.get("comment") or "",
            "metadata": snapshot,
        })  # fmt: skip
        ours = {"uri": version["uri"], "sha256": version.get("sha256") or "",
                "size": version.get("size"), "iteration": version.get("iteration"),
                "version": number, "versions": json.dumps(history)}  # fmt: skip
        own = {PREFIX + k: metadata_item(PREFIX + k, "" if v is None else v, "str")
               for k, v in ours.items()}  # fmt: skip
        merged = {**snapshot, **own}
        body: dict[str, Any] = {"model": model_id, "uri": version["uri"], "metadata": merged}
        if version.get("iteration") is not None:
            body["iteration"] = int(version["iteration"])
        for key in ("comment", "framework"):
            if version.get(key):
                body[key] = version[key]
        tags = list(doc.get("system_tags") or [])
        if version.get("is_package") and PACKAGE_TAG not in tags:
            body["system_tags"] = [*tags, PACKAGE_TAG]
        self._call("models.edit", body)
        return self.get_model(model_id)

    def list_model_versions(self, model_id: str) -> list[ModelVersionRecord]:
        meta = metadata_doc(self._doc(model_id).get("metadata") or {})
        return [version_record(dict(v, model=model_id)) for v in _versions(meta)]

    def set_model_metadata(self, model_id: str, items: Metadata, replace: bool) -> ModelRecord:
        if replace:  # keep modelbook's own entries
            ours = {k: v for k, v in metadata_doc(self._doc(model_id).get("metadata") or {}).items()
                    if k.startswith(PREFIX)}  # fmt: skip
            items = {**items, **ours}
        self._call("models.add_or_update_metadata", {
            "model": model_id, "metadata": metadata_items(items), "replace_metadata": replace,
        })  # fmt: skip
        return self.get_model(model_id)

    def query_body(self, body: dict[str, Any], query: ModelQuery) -> dict[str, Any]:
        """A ``models.get_all`` body of the modelbook dialect, in the real server's terms."""
        for key, value in (body.pop("metadata", None) or {}).items():
            body[f"metadata.{key}.value"] = [str(value)]
        if body.pop("name_pattern", None) and query.name is not None:
            body["name"] = query.name_pattern  # the pattern narrows; the exact name is rechecked
        return body

    def count_models(self, body: dict[str, Any]) -> int:
        count, page = 0, 0
        while True:
            found = self._call("models.get_all", {**body, "only_fields": ["id"], "page": page,
                                                  "page_size": PAGE}).get("models", [])  # fmt: skip
            count += len(found)
            if len(found) < PAGE:
                return count
            page += 1

    def delete_model(self, model_id: str, force: bool = True) -> list[str]:
        """Delete the record; the server never deletes the weights (no ownership known)."""
        if not force and self._doc(model_id).get("ready"):  # the server lets it go: we don't
            raise ModelInUseError(f"model {model_id} is published: pass force to delete it",
                                  "published")  # fmt: skip
        self._call("models.delete", {"model": model_id, "force": force,
                                     "delete_external_artifacts": False})  # fmt: skip
        return []

    def prune_versions(self, model_id: str, keep_last: int, dry_run: bool) -> PruneResult:
        """Mark versions pruned by the store's rule (never the current or the best one);
        no bytes are freed on a ClearML server."""
        from modelbook.store.objects import choose_prunable

        doc = self._doc(model_id)
        if doc.get("ready"):  # published: read-only here too
            raise ModelPublishedError(model_id, doc.get("name", ""), "prune the versions")
        meta = metadata_doc(doc.get("metadata") or {})
        history = _versions(meta)
        records = [version_record(dict(v, model=model_id)) for v in history]
        pruned, kept = choose_prunable(records, doc.get("uri"), keep_last)
        if pruned and not dry_run:
            for v in history:
                v["pruned"] = v.get("pruned") or v["version"] in pruned
            item = metadata_item(PREFIX + "versions", json.dumps(history), "str")
            self._call("models.add_or_update_metadata", {
                "model": model_id, "metadata": metadata_items({item["key"]: item}),
            })  # fmt: skip
        return PruneResult(pruned=pruned, doomed=[], kept=kept)

    def is_referenced(self, uri: str) -> bool:
        found = self._call("models.get_all", {"uri": [uri], "only_fields": ["id"]})
        return bool(found.get("models"))

    @staticmethod
    def collect_garbage() -> GcResult:
        return GcResult(doomed=[], partials=[])
