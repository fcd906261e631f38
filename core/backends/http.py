"""The HTTP backend: the registry verbs over ClearML's REST protocol.

:class:`HttpBackend` talks to a ``modelbook server`` (or, for the ClearML calls, a ClearML
server) through one choke point, :class:`~modelbook.backends.api_client.ApiClient`, which
owns the session, retries, authentication and the mapping of failures onto modelbook
exceptions (see :mod:`modelbook.backends.api_client`).

Records travel as ClearML documents (:mod:`modelbook.wire`); modelbook's own fields
(``sha256``, ``size``, ``version``) ride along as extra document fields, and versions use the
modelbook endpoints ``models.add_version`` / ``models.get_versions`` (see docs/server.md).

Example:
    >>> backend = HttpBackend(
    ...     api_host="http://127.0.0.1:8008", access_key="KEY", secret_key="SECRET"
    ... )
    >>> backend.default_destination()
    'http://127.0.0.1:8008/files'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

from modelbook.backends.api_client import ApiClient
from modelbook.backends.base import Backend
from modelbook.backends.clearml import ClearmlVerbs, check_name, clearml_files_host, record_of
from modelbook.errors import ConfigurationError, InvalidArgumentError
from modelbook.records import (
    GcResult,
    Metadata,
    ModelQuery,
    ModelRecord,
    ModelVersionRecord,
    ProjectRecord,
    PruneResult,
    ReportEvent,
    ScalarEvent,
    ScalarStats,
    TaskRecord,
)
from modelbook.storage import StorageDriver, scheme_of
from modelbook.wire import (
    SCALAR_EVENT,
    configuration_doc,
    hyperparams_doc,
    metadata_items,
    model_record,
    project_record,
    report_event_docs,
    report_events_of,
    scalar_event_docs,
    scalar_events_of,
    scalar_stats_of,
    task_record,
    version_record,
)

#: Fields ``Backend.update_model`` accepts (the store's list, checked before any call).
MODEL_FIELDS = frozenset(
    {"name", "project", "task", "comment", "tags", "system_tags", "framework", "design",
     "labels", "uri", "ready", "iteration", "parent", "sha256", "size"}
)  # fmt: skip
TASK_FIELDS = frozenset(
    {"name", "project", "type", "comment", "tags", "system_tags", "status",
     "output_destination", "labels", "model_config", "hyperparams", "last_iteration"}
)  # fmt: skip
_STATUS_ENDPOINTS = {
    "created": "tasks.reset",
    "in_progress": "tasks.started",
    "stopped": "tasks.stopped",
    "completed": "tasks.completed",
    "failed": "tasks.failed",
    "published": "tasks.publish",
    "closed": "tasks.close",
}


def _check_url(name: str, url: str | None) -> str:
    if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigurationError(
            f"{name} must be an http:// or https:// URL such as http://127.0.0.1:8008, got {url!r}"
        )
    return url.rstrip("/")


def _exact(name: str) -> str:
    """ClearML's exact-name filter: an anchored, escaped regular expression."""
    return f"^{re.escape(name)}$"


class HttpBackend(Backend):
    """The registry verbs over HTTP, against a ``modelbook server``.

    Args:
        api_host: the API server, e.g. ``http://10.0.0.5:8008``.
        files_host: the files server; default ``<api_host>/files`` on a modelbook server, and
            on a ClearML server what its SDK derives (``api.`` -> ``files.`` in the host
            name, else port 8081).
        access_key / secret_key: API credentials (``modelbook server create-credentials``).

    Raises:
        ConfigurationError: a malformed URL or missing credentials (checked here, before
            any request; the first request logs in).

    Example:
        >>> backend = HttpBackend(api_host="http://127.0.0.1:8008", access_key="K", secret_key="S")
        >>> backend.kind
        'http'
    """

    kind = "http"

    def __init__(
        self,
        api_host: str,
        files_host: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        self.api_host = _check_url("api_host", api_host)
        self._files_host = _check_url("files_host", files_host) if files_host else None
        if not access_key or not secret_key:
            raise ConfigurationError(
                f"the registry at {self.api_host} needs credentials: set access_key and "
                "secret_key (modelbook.configure, MODELBOOK_API_ACCESS_KEY / "
                "MODELBOOK_API_SECRET_KEY, or CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY); "
                "`modelbook server create-credentials` makes a pair"
            )
        self.client = ApiClient(self.api_host, access_key, secret_key)
        self._dialect: str | None = None
        self._clearml_verbs: ClearmlVerbs | None = None

    def __repr__(self) -> str:
        return f"HttpBackend(api_host={self.api_host!r}, files_host={self.files_host!r})"

    def _call(self, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.client.call(endpoint, body)

    @property
    def files_host(self) -> str:
        """The files server: as configured, else the server's own (see the class)."""
        if self._files_host:
            return self._files_host
        if self._dialect == "clearml":
            return clearml_files_host(self.api_host)
        return f"{self.api_host}/files"

    @property
    def dialect(self) -> str:
        """``"modelbook"`` or ``"clearml"``: what the server speaks, asked once
        (``server.info``: a modelbook server names itself and its extensions there)."""
        if self._dialect is None:
            info = self._call("server.info", {})
            self._dialect = "modelbook" if info.get("modelbook") else "clearml"
        return self._dialect

    @property
    def _clearml(self) -> ClearmlVerbs | None:
        """The ClearML-mode verbs (:mod:`modelbook.backends.clearml`) on a ClearML server."""
        if self.dialect != "clearml":
            return None
        if self._clearml_verbs is None:
            self._clearml_verbs = ClearmlVerbs(self)
        return self._clearml_verbs

    # -- projects -------------------------------------------------------------------------
    def find_project(self, name: str) -> ProjectRecord | None:
        found = self._call("projects.get_all", {"name": _exact(name), "search_hidden": True})
        docs = [d for d in found.get("projects", []) if d.get("name") == name]
        return project_record(docs[0]) if docs else None

    def get_or_create_project(self, name: str) -> ProjectRecord:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"project name must be a non-empty string, got {name!r}")
        if self._clearml:
            check_name(name, "project name")
        found = self.find_project(name)
        if found is not None:
            return found
        project_id = self._call("projects.create", {"name": name, "description": ""})["id"]
        return self.get_project(project_id)

    def get_project(self, project_id: str) -> ProjectRecord:
        return project_record(self._call("projects.get_by_id", {"project": project_id})["project"])

    def list_projects(self) -> list[ProjectRecord]:
        found = self._call("projects.get_all", {"order_by": ["name"], "search_hidden": True})
        return sorted((project_record(d) for d in found.get("projects", [])), key=lambda p: p.name)

    # -- tasks ----------------------------------------------------------------------------
    def create_task(
        self,
        *,
        name: str,
        project: str | None,
        type: str = "training",
        tags: list[str] | None = None,
        comment: str = "",
        output_destination: str | None = None,
        system_tags: list[str] | None = None,
    ) -> TaskRecord:
        if self._clearml:
            check_name(name, "task name")
        body: dict[str, Any] = {"name": name, "type": type, "comment": comment or ""}
        if project is not None:
            body["project"] = project
        if tags:
            body["tags"] = list(tags)
        if system_tags:
            body["system_tags"] = list(system_tags)
        if output_destination is not None:
            body["output_dest"] = output_destination
        data = self._call("tasks.create", body)
        return task_record(data["task"]) if "task" in data else self.get_task(data["id"])

    def get_task(self, task_id: str) -> TaskRecord:
        return task_record(self._call("tasks.get_by_id", {"task": task_id})["task"])

    def find_tasks(self, *, project: str | None, name: str) -> list[TaskRecord]:
        body = {"project": [project], "name": _exact(name), "order_by": ["-created"]}
        docs = self._call("tasks.get_all", body).get("tasks", [])
        return [task_record(d) for d in docs if d.get("name") == name]

    def update_task(self, task_id: str, **fields: Any) -> TaskRecord:
        unknown = set(fields) - TASK_FIELDS
        if unknown:
            raise InvalidArgumentError(
                f"unknown task fields {sorted(unknown)}; accepted: "
                f"{sorted(TASK_FIELDS - {'hyperparams', 'last_iteration'})}"
            )
        status = fields.pop("status", None)
        if self._clearml:
            self._clearml.update_task_extras(task_id, fields)
        body: dict[str, Any] = {"task": task_id, "force": True}
        for name in ("name", "comment", "type", "tags", "system_tags", "project"):
            if name in fields:
                body[name] = fields[name]
        if "output_destination" in fields:
            body["output_dest"] = fields["output_destination"] or ""
        if "labels" in fields:
            body["execution"] = {"model_labels": dict(fields["labels"] or {})}
        if "model_config" in fields:
            body["configuration"] = configuration_doc(fields["model_config"], schema_fields=False)
        if fields.get("hyperparams"):
            values = {
                section: {k: str(v) for k, v in p.items()}
                for section, p in fields["hyperparams"].items()
            }
            body["hyperparams"] = hyperparams_doc(values, schema_fields=False)
        if fields.get("last_iteration") is not None:
            body["last_iteration"] = int(fields["last_iteration"])
        data: dict[str, Any] = {}
        if len(body) > 2:
            data = self._call("tasks.edit", body)
        if status is not None:
            endpoint = _STATUS_ENDPOINTS.get(status)
            if endpoint is None:
                raise InvalidArgumentError(
                    f"status={status!r} is not accepted; use one of {sorted(_STATUS_ENDPOINTS)}"
                )
            body = {"task": task_id, "force": True}
            if endpoint == "tasks.reset":  # ClearML would delete its output models otherwise
                body["delete_output_models"] = False
            data = self._call(endpoint, body)
        return task_record(data["task"]) if "task" in data else self.get_task(task_id)

    def set_task_model(self, task_id: str, kind: str, name: str, model_id: str) -> TaskRecord:
        if kind not in ("input", "output"):
            raise InvalidArgumentError(f"task model kind must be 'input' or 'output', got {kind!r}")
        body = {"task": task_id, "type": kind, "name": name, "model": model_id}
        data = self._call("tasks.add_or_update_model", body)
        return task_record(data["task"]) if "task" in data else self.get_task(task_id)

    # -- models ---------------------------------------------------------------------------
    @staticmethod
    def _model_body(fields: dict[str, Any]) -> dict[str, Any]:
        body = dict(fields)
        if "design" in body:
            body["design"] = {"design": body["design"] or ""}
        if "metadata" in body:
            body["metadata"] = metadata_items(body["metadata"] or {})
        return body

    def create_model(self, **fields: Any) -> ModelRecord:
        unknown = set(fields) - MODEL_FIELDS - {"metadata", "id"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown model fields {sorted(unknown)}; accepted: {sorted(MODEL_FIELDS)}"
            )
        fields.setdefault("ready", False)  # ClearML servers publish new models by default
        if self._clearml:
            return self._clearml.create_model(fields)
        data = self._call("models.create", self._model_body(fields))
        return model_record(data["model"]) if "model" in data else self.get_model(data["id"])

    def get_model(self, model_id: str) -> ModelRecord:
        if self._clearml:
            return self._clearml.get_model(model_id)
        return model_record(self._call("models.get_by_id", {"model": model_id})["model"])

    def update_model(self, model_id: str, **fields: Any) -> ModelRecord:
        unknown = set(fields) - MODEL_FIELDS - {"add_system_tags", "remove_system_tags"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown model fields {sorted(unknown)}; accepted: {sorted(MODEL_FIELDS)}"
            )
        if self._clearml:
            return self._clearml.update_model(model_id, dict(fields))
        data = self._call("models.edit", {**self._model_body(fields), "model": model_id})
        return model_record(data["model"]) if "model" in data else self.get_model(model_id)

    def add_model_version(
        self,
        model_id: str,
        *,
        uri: str,
        sha256: str | None,
        size: int | None,
        iteration: int | None,
        comment: str | None = None,
        framework: str | None = None,
        is_package: bool = False,
        metadata: Metadata | None = None,
        owned: bool = True,
    ) -> ModelRecord:
        if self._clearml:
            return self._clearml.add_model_version(
                model_id, uri=uri, sha256=sha256, size=size, iteration=iteration,
                comment=comment, framework=framework, metadata=metadata, is_package=is_package,
            )  # fmt: skip
        body = {
            "model": model_id, "uri": uri, "sha256": sha256, "size": size,
            "iteration": iteration, "comment": comment, "framework": framework,
            "is_package": is_package, "metadata": metadata_items(metadata) if metadata else None,
            "owned": owned,
        }  # fmt: skip
        data = self._call("models.add_version", {k: v for k, v in body.items() if v is not None})
        return model_record(data["model"])

    def list_model_versions(self, model_id: str) -> list[ModelVersionRecord]:
        if self._clearml:
            return self._clearml.list_model_versions(model_id)
        data = self._call("models.get_versions", {"model": model_id})
        return [version_record(d) for d in data.get("versions", [])]

    @staticmethod
    def _query_body(query: ModelQuery) -> dict[str, Any]:
        body: dict[str, Any] = {"order_by": list(query.order_by or ["-created"])}
        if query.projects is not None:
            body["project"] = list(query.projects)
        if query.name is not None:
            body["name"] = _exact(query.name)
            if query.name_pattern:
                body["name_pattern"] = query.name_pattern
        elif query.name_pattern:
            body["name"] = query.name_pattern
        for key, value in (
            ("tags", query.tags), ("system_tags", query.system_tags), ("ready", query.ready),
            ("uri", query.uri), ("task", None if query.task is None else [query.task]),
            ("id", query.ids),
            ("metadata", query.metadata),
        ):  # fmt: skip
            if value is not None:
                body[key] = value
        if query.limit is not None and query.limit > 0 and query.offset % query.limit == 0:
            body["page"], body["page_size"] = query.offset // query.limit, query.limit
        else:
            if query.offset:
                body["offset"] = query.offset
            if query.limit is not None:
                body["size"] = query.limit
        return body

    def query_models(self, query: ModelQuery) -> list[ModelRecord]:
        body = self._query_body(query)
        if self._clearml:
            body = self._clearml.query_body(body, query)
            docs = self._call("models.get_all", body).get("models", [])
            found = [record_of(d) for d in docs]
            return [r for r in found if query.name is None or r.name == query.name]
        docs = self._call("models.get_all", body).get("models", [])
        return [model_record(d) for d in docs]

    def count_models(self, query: ModelQuery) -> int:
        body = self._query_body(query)
        for key in ("page", "page_size", "offset", "size"):
            body.pop(key, None)
        if self._clearml:
            return self._clearml.count_models(self._clearml.query_body(body, query))
        return int(self._call("models.count", body)["count"])

    def delete_model(
        self, model_id: str, delete_objects: bool = True, force: bool = True
    ) -> list[str]:
        if self._clearml:
            return self._clearml.delete_model(model_id, force)
        body = {"model": model_id, "force": force, "delete_external_artifacts": delete_objects}
        return list(self._call("models.delete", body).get("doomed") or [])

    # -- reported scalars (ClearML's events) -----------------------------------------------
    def _add_events(self, owner: str, events: Sequence[ScalarEvent], model: bool) -> int:
        if not events:
            return 0
        docs = scalar_event_docs(owner, events, model)
        return int(self.client.call("events.add_batch", lines=docs).get("added") or 0)

    def add_scalars(self, task_id: str, events: Sequence[ScalarEvent]) -> int:
        return self._add_events(task_id, events, model=False)

    def add_model_scalars(self, model_id: str, events: Sequence[ScalarEvent]) -> int:
        return self._add_events(model_id, events, model=True)

    def scalar_events(
        self, task_id: str | None = None, *, model_id: str | None = None
    ) -> list[ScalarEvent]:
        """Every stored value, through ``events.get_task_events`` pages."""
        if (task_id is None) == (model_id is None):
            raise InvalidArgumentError("pass either a task id or model_id=, not both or neither")
        body: dict[str, Any] = {"task": task_id or model_id, "event_type": SCALAR_EVENT,
                                "batch_size": 5000, "model_events": model_id is not None}
        return scalar_events_of(self._pages("events.get_task_events", body, "events"))

    def add_reports(
        self, task_id: str | None, events: Sequence[ReportEvent], *, model_id: str | None = None
    ) -> int:
        if not events:
            return 0
        docs = report_event_docs(task_id or model_id or "", events, model=task_id is None)
        return int(self.client.call("events.add_batch", lines=docs).get("added") or 0)

    def reports(
        self, task_id: str | None, kind: str, *, model_id: str | None = None
    ) -> list[ReportEvent]:
        """Plots through ``events.get_task_plots`` pages; text (of tasks only: ClearML
        keeps no model log) through ``events.get_task_log``."""
        if kind == "text":
            if task_id is None:
                return []
            body = {"task": task_id, "batch_size": 10000, "order": "asc"}
            return report_events_of(self._call("events.get_task_log", body).get("events") or [])
        body = {"task": task_id or model_id, "iters": 100000, "model_events": task_id is None}
        return report_events_of(self._pages("events.get_task_plots", body, "plots"))

    def _pages(self, endpoint: str, body: dict[str, Any], key: str) -> list[dict[str, Any]]:
        """Every item of a ``scroll_id``-paged ``events.*`` answer."""
        docs: list[dict[str, Any]] = []
        while True:
            page = self._call(endpoint, body)
            docs += page.get(key) or []
            if not page.get("returned") or len(docs) >= int(page.get("total") or 0):
                return docs
            body = {**body, "scroll_id": page.get("scroll_id")}

    def last_scalars(self, task_id: str) -> dict[str, dict[str, ScalarStats]]:
        body = {"id": [task_id], "only_fields": ["id", "last_metrics"]}
        docs = self._call("tasks.get_all", body).get("tasks") or []
        return scalar_stats_of(docs[0].get("last_metrics") or {}) if docs else {}

    # -- ownership of stored objects (the server applies modelbook.store.objects) ---------
    def prune_versions(self, model_id: str, keep_last: int, dry_run: bool = False) -> PruneResult:
        if self._clearml:
            return self._clearml.prune_versions(model_id, keep_last, dry_run)
        body = {"model": model_id, "keep_last": keep_last, "dry_run": dry_run}
        data = self._call("models.prune_versions", body)
        return PruneResult(
            pruned=[int(v) for v in data.get("pruned") or []],
            doomed=list(data.get("doomed") or []),
            kept={int(k): str(v) for k, v in (data.get("kept") or {}).items()},
        )

    def begin_object_write(self, uri: str, sha256: str | None, size: int | None) -> None:
        if self._clearml:
            return  # no record of objects on a ClearML server: nothing is ever doomed there
        self._call("storage.begin_write", {"uri": uri, "sha256": sha256, "size": size})

    def collect_garbage(self, pending_grace: float = 86400.0, dry_run: bool = False) -> GcResult:
        if self._clearml:
            return self._clearml.collect_garbage()
        data = self._call("storage.gc", {"pending_grace": pending_grace, "dry_run": dry_run})
        return GcResult(doomed=list(data.get("doomed") or []),
                        partials=list(data.get("partials") or []))  # fmt: skip

    def is_referenced(self, uri: str) -> bool:
        if self._clearml:
            return self._clearml.is_referenced(uri)
        return bool(self._call("storage.referenced", {"uri": uri}).get("referenced"))

    def forget_objects(self, uris: list[str]) -> None:
        if uris and not self._clearml:
            self._call("storage.forget", {"uris": list(uris)})

    def set_model_metadata(
        self, model_id: str, items: Metadata, replace: bool = False
    ) -> ModelRecord:
        if self._clearml:
            return self._clearml.set_model_metadata(model_id, items, bool(replace))
        body = {
            "model": model_id,
            "metadata": metadata_items(items),
            "replace_metadata": bool(replace),
        }
        data = self._call("models.add_or_update_metadata", body)
        return model_record(data["model"]) if "model" in data else self.get_model(model_id)

    # -- storage --------------------------------------------------------------------------
    def default_destination(self) -> str:
        return self.files_host

    def reachable(self) -> bool:
        return self.client.reachable()

    def fail_fast(self) -> AbstractContextManager[None]:
        return self.client.fail_fast()

    def driver_for(self, uri: str) -> StorageDriver:
        """The files server's driver with this backend's token for URIs under its files
        host; anonymous reads for other http(s) URIs; the usual drivers otherwise."""
        if scheme_of(uri) not in ("http", "https"):
            return super().driver_for(uri)
        from modelbook.storage.http import HttpFilesDriver

        if uri == self.files_host or uri.startswith(self.files_host + "/"):
            # a modelbook server takes raw uploads; asked when the first upload starts
            raw = lambda: self.dialect == "modelbook"  # noqa: E731
            return HttpFilesDriver(self.files_host, self.client, raw_upload=raw)
        return HttpFilesDriver(None, None)
