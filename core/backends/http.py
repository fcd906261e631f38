"""The HTTP backend: the registry verbs over ClearML's REST protocol.

It talks to a ``modelbook server`` (or, for the ClearML calls, a ClearML server) through
one choke point, :class:`ApiClient`:

* one ``requests.Session`` per process, with urllib3 ``Retry`` on connection failures and
  on 408/429/502/503/504 answers (bounded: 5 tries, back-off capped at 10 s);
* ClearML authentication: ``auth.login`` with HTTP Basic credentials gives a JWT, renewed
  6 minutes before it expires and once after a 401;
* every failure becomes a modelbook exception carrying the endpoint and the server's
  message: :class:`~modelbook.errors.RegistryError`, or for unknown ids
  :class:`~modelbook.errors.ModelNotFoundError` / :class:`~modelbook.errors.TaskNotFoundError`
  (a modelbook server also names the store's own exception, which is raised again here, so
  both backends fail the same way).

Records travel as ClearML documents; modelbook's own fields (``sha256``, ``size``,
``version``) ride along as extra document fields, and versions use the modelbook endpoints
``models.add_version`` / ``models.get_versions`` (see docs/server.md).

Example:
    >>> backend = HttpBackend(
    ...     api_host="http://127.0.0.1:8008", access_key="KEY", secret_key="SECRET"
    ... )
    >>> backend.default_destination()
    'http://127.0.0.1:8008/files'
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from modelbook import errors
from modelbook.backends.base import Backend
from modelbook.errors import (
    ConfigurationError,
    InvalidArgumentError,
    ModelNotFoundError,
    RegistryError,
    TaskNotFoundError,
)
from modelbook.records import (
    ModelQuery,
    ModelRecord,
    ModelVersionRecord,
    ProjectRecord,
    TaskModelEntry,
    TaskRecord,
)

if TYPE_CHECKING:
    import requests

#: The API version modelbook speaks (the highest the clearml 2.1.12 SDK knows).
API_VERSION = "2.23"
#: Renew the token this many seconds before it expires (ClearML's SDK uses the same).
REFRESH_BEFORE = 360
#: (connect, read) timeouts of API calls, in seconds.
TIMEOUT = (10.0, 120.0)
RETRY_STATUSES = (408, 429, 502, 503, 504)

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
#: Exceptions a modelbook server names in ``meta.error_data`` that are raised again here.
_REBUILDABLE = (
    "InvalidArgumentError", "TagFilterError", "NotFoundError", "TaskNotFoundError",
    "ProjectNotFoundError", "ModelPublishedError",
)  # fmt: skip

_session_lock = threading.Lock()
_sessions: dict[tuple[int, bool], requests.Session] = {}


def shared_session(replayable: bool = True) -> requests.Session:
    """This process's ``requests.Session`` (a forked child makes its own).

    Args:
        replayable: True for requests whose body urllib3 can send again, which get retries
            on 408/429/502/503/504 answers; False for streamed uploads, which are retried
            only when the connection could not be made (nothing was sent yet).
    """
    key = (os.getpid(), replayable)
    with _session_lock:
        session = _sessions.get(key)
        if session is None:
            import requests
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            retry = Retry(
                total=5, connect=5, read=0, other=0, status=5 if replayable else 0,
                backoff_factor=0.5, backoff_max=10, allowed_methods=None,
                status_forcelist=RETRY_STATUSES if replayable else (),
                raise_on_status=False, respect_retry_after_header=True,
            )  # fmt: skip
            session = requests.Session()
            adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=16)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            for stale in [k for k in _sessions if k[0] != key[0]]:
                del _sessions[stale]  # inherited from the parent over fork; never closed here
            _sessions[key] = session
        return session


def _token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without checking the signature (as ClearML does)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _rebuild(name: str, message: str) -> errors.ModelbookError:
    """The modelbook exception ``name`` with exactly the server's message."""
    cls = getattr(errors, name)
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    return exc


def _check_url(name: str, url: str | None) -> str:
    if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigurationError(
            f"{name} must be an http:// or https:// URL such as http://127.0.0.1:8008, got {url!r}"
        )
    return url.rstrip("/")


class ApiClient:
    """Calls ClearML API endpoints: the single place where modelbook makes API requests.

    Args:
        api_host: the API server's base URL.
        access_key / secret_key: API credentials.
        timeout: ``(connect, read)`` seconds.
        files_host: the files server this client's token is for; the files-server driver
            finds the client by it once a log-in succeeded.
    """

    def __init__(
        self,
        api_host: str,
        access_key: str,
        secret_key: str,
        timeout: tuple[float, float] = TIMEOUT,
        files_host: str | None = None,
    ) -> None:
        self.api_host, self.timeout, self.files_host = api_host, timeout, files_host
        self._auth = (access_key, secret_key)
        self._token: str | None = None
        self._expires: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the secret
        return f"ApiClient({self.api_host!r}, access_key={self._auth[0]!r})"

    # -- tokens ---------------------------------------------------------------------------
    def token(self, renew: bool = False) -> str:
        """A valid token, logging in when there is none or it expires within 6 minutes."""
        with self._lock:
            stale = self._expires is not None and self._expires - time.time() < REFRESH_BEFORE
            if renew or self._token is None or stale:
                self._token = self._login()
                self._expires = _token_expiry(self._token)
                if self.files_host:
                    _files_hosts[self.files_host] = self
            return self._token

    def _login(self) -> str:
        endpoint = "auth.login"
        response = self._send("GET", f"{self.api_host}/{endpoint}", endpoint, auth=self._auth)
        meta, data = self._decode(endpoint, response)
        if response.status_code != 200 or not isinstance(data.get("token"), str):
            raise RegistryError(
                endpoint,
                f"log-in refused: {meta.get('result_msg') or response.reason}; check the access "
                "and secret keys (modelbook server create-credentials makes new ones)",
                response.status_code,
            )
        return data["token"]

    # -- calls ----------------------------------------------------------------------------
    def _send(self, method: str, url: str, endpoint: str, **kwargs: Any) -> requests.Response:
        import requests

        kwargs.setdefault("timeout", self.timeout)
        try:
            return shared_session().request(method, url, **kwargs)
        except requests.RequestException as exc:
            raise RegistryError(
                endpoint, f"cannot reach {self.api_host}: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _decode(endpoint: str, response: requests.Response) -> tuple[dict, dict]:
        try:
            body = response.json()
            meta, data = body["meta"], body.get("data")
        except (ValueError, KeyError, TypeError):
            text = response.text[:300].strip() or response.reason
            raise RegistryError(
                endpoint, f"not a ClearML API answer: {text}", response.status_code
            ) from None
        return meta or {}, data if isinstance(data, dict) else {}

    def call(self, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call ``endpoint`` with a JSON body and return the reply's ``data``.

        Raises:
            ModelNotFoundError / TaskNotFoundError: the call named an unknown id.
            RegistryError: any other failure, with the server's message.
        """
        url = f"{self.api_host}/v{API_VERSION}/{endpoint}"
        body = body or {}
        response = None
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.token(renew=attempt > 0)}"}
            response = self._send("POST", url, endpoint, json=body, headers=headers)
            if response.status_code != 401:
                break
        assert response is not None
        meta, data = self._decode(endpoint, response)
        if meta.get("result_code", response.status_code) == 200 and response.status_code == 200:
            return data
        raise self._error(endpoint, response.status_code, meta, body)

    @staticmethod
    def _error(endpoint: str, status: int, meta: dict, body: dict) -> errors.ModelbookError:
        code, sub = meta.get("result_code", status), meta.get("result_subcode")
        message = str(meta.get("result_msg") or f"HTTP {status}")
        extra = meta.get("error_data") or {}
        name = extra.get("modelbook_error") if isinstance(extra, dict) else None
        if name == "ModelNotFoundError" or (code, sub) == (400, 201):
            return ModelNotFoundError(str(extra.get("model_id") or body.get("model") or ""))
        if name in _REBUILDABLE:
            return _rebuild(name, message)
        if (code, sub) == (400, 101):
            return TaskNotFoundError(f"with id {body.get('task')!r}")
        return RegistryError(endpoint, message, status)


# -- documents -> records -------------------------------------------------------------------
def _dt(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def project_record(doc: dict[str, Any]) -> ProjectRecord:
    return ProjectRecord(
        id=doc["id"],
        name=doc.get("name") or "",
        created=_dt(doc.get("created")),  # type: ignore[arg-type]
        default_output_destination=doc.get("default_output_destination"),
    )


def _entries(items: Any) -> list[TaskModelEntry]:
    return [TaskModelEntry(i["name"], i["model"]) for i in items or [] if isinstance(i, dict)]


def task_record(doc: dict[str, Any]) -> TaskRecord:
    execution = doc.get("execution") or {}
    general = (doc.get("configuration") or {}).get("General") or {}
    hyperparams = {
        section: {name: str((item or {}).get("value") or "") for name, item in params.items()}
        for section, params in (doc.get("hyperparams") or {}).items()
    }
    models = doc.get("models") or {}
    return TaskRecord(
        id=doc["id"],
        name=doc.get("name") or "",
        project=doc.get("project"),
        type=doc.get("type") or "training",
        status=doc.get("status") or "created",
        comment=doc.get("comment") or "",
        tags=list(doc.get("tags") or []),
        system_tags=list(doc.get("system_tags") or []),
        created=_dt(doc.get("created")),
        last_update=_dt(doc.get("last_update")),
        output_destination=(doc.get("output") or {}).get("destination"),
        hyperparams=hyperparams,
        labels=dict(execution.get("model_labels") or {}),
        model_config=str(general.get("value") or ""),
        last_iteration=int(doc.get("last_iteration") or 0),
        input_models=_entries(models.get("input")),
        output_models=_entries(models.get("output")),
    )


def model_record(doc: dict[str, Any]) -> ModelRecord:
    design = doc.get("design")
    if isinstance(design, dict):
        design = design.get("design", json.dumps(design) if design else "")
    iteration = doc.get("iteration", doc.get("last_iteration"))
    return ModelRecord(
        id=doc["id"],
        name=doc.get("name") or "",
        project=doc.get("project"),
        task=doc.get("task"),
        comment=doc.get("comment") or "",
        tags=list(doc.get("tags") or []),
        system_tags=list(doc.get("system_tags") or []),
        framework=doc.get("framework"),
        design=str(design or ""),
        labels=dict(doc.get("labels") or {}),
        uri=doc.get("uri"),
        ready=bool(doc.get("ready")),
        created=_dt(doc.get("created")),
        last_update=_dt(doc.get("last_update")),
        iteration=iteration,
        parent=doc.get("parent"),
        metadata={k: dict(v) for k, v in (doc.get("metadata") or {}).items()},
        sha256=doc.get("sha256"),
        size=doc.get("size"),
        version=int(doc.get("version") or 0),
    )


def version_record(doc: dict[str, Any]) -> ModelVersionRecord:
    return ModelVersionRecord(
        model=doc["model"],
        version=int(doc["version"]),
        uri=doc["uri"],
        sha256=doc.get("sha256"),
        size=doc.get("size"),
        iteration=doc.get("iteration"),
        created=_dt(doc.get("created")),  # type: ignore[arg-type]
        comment=doc.get("comment") or "",
        metadata={k: dict(v) for k, v in (doc.get("metadata") or {}).items()},
    )


def _exact(name: str) -> str:
    """ClearML's exact-name filter: an anchored, escaped regular expression."""
    return f"^{re.escape(name)}$"


def _metadata_items(items: dict[str, Any]) -> list[dict[str, str]]:
    result = []
    for key, item in items.items():
        value, type_ = item if isinstance(item, tuple) else (item["value"], item["type"])
        result.append({"key": str(key), "value": str(value), "type": str(type_)})
    return result


# -- the backend ----------------------------------------------------------------------------
#: files host -> client, for the files-server storage driver's authentication.
_files_hosts: dict[str, ApiClient] = {}


def client_for_files_url(url: str) -> ApiClient | None:
    """The API client whose files host serves ``url`` (longest prefix), or None."""
    matches = [h for h in _files_hosts if url == h or url.startswith(h + "/")]
    return _files_hosts[max(matches, key=len)] if matches else None


class HttpBackend(Backend):
    """The registry verbs over HTTP, against a ``modelbook server``.

    Args:
        api_host: the API server, e.g. ``http://10.0.0.5:8008``.
        files_host: the files server; default ``<api_host>/files`` (a modelbook server's).
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
        self.files_host = _check_url("files_host", files_host or f"{self.api_host}/files")
        if not access_key or not secret_key:
            raise ConfigurationError(
                f"the registry at {self.api_host} needs credentials: set access_key and "
                "secret_key (modelbook.configure, MODELBOOK_API_ACCESS_KEY / "
                "MODELBOOK_API_SECRET_KEY, or CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY); "
                "`modelbook server create-credentials` makes a pair"
            )
        self.client = ApiClient(self.api_host, access_key, secret_key, files_host=self.files_host)
        current = _files_hosts.get(self.files_host)
        if current is None or current._token is None:
            _files_hosts[self.files_host] = self.client

    def __repr__(self) -> str:
        return f"HttpBackend(api_host={self.api_host!r}, files_host={self.files_host!r})"

    def _call(self, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.client.call(endpoint, body)

    # -- projects -------------------------------------------------------------------------
    def find_project(self, name: str) -> ProjectRecord | None:
        found = self._call("projects.get_all", {"name": _exact(name), "search_hidden": True})
        docs = [d for d in found.get("projects", []) if d.get("name") == name]
        return project_record(docs[0]) if docs else None

    def get_or_create_project(self, name: str) -> ProjectRecord:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"project name must be a non-empty string, got {name!r}")
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
    ) -> TaskRecord:
        body: dict[str, Any] = {"name": name, "type": type, "comment": comment or ""}
        if project is not None:
            body["project"] = project
        if tags:
            body["tags"] = list(tags)
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
        body: dict[str, Any] = {"task": task_id, "force": True}
        for name in ("name", "comment", "type", "tags", "system_tags", "project"):
            if name in fields:
                body[name] = fields[name]
        if "output_destination" in fields:
            body["output_dest"] = fields["output_destination"] or ""
        if "labels" in fields:
            body["execution"] = {"model_labels": dict(fields["labels"] or {})}
        if "model_config" in fields:
            body["configuration"] = {
                "General": {"name": "General", "value": fields["model_config"]}
            }
        if fields.get("hyperparams"):
            body["hyperparams"] = {
                section: {k: {"section": section, "name": k, "value": str(v)} for k, v in p.items()}
                for section, p in fields["hyperparams"].items()
            }
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
            data = self._call(endpoint, {"task": task_id, "force": True})
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
            body["metadata"] = _metadata_items(body["metadata"] or {})
        return body

    def create_model(self, **fields: Any) -> ModelRecord:
        unknown = set(fields) - MODEL_FIELDS - {"metadata", "id"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown model fields {sorted(unknown)}; accepted: {sorted(MODEL_FIELDS)}"
            )
        data = self._call("models.create", self._model_body(fields))
        return model_record(data["model"]) if "model" in data else self.get_model(data["id"])

    def get_model(self, model_id: str) -> ModelRecord:
        return model_record(self._call("models.get_by_id", {"model": model_id})["model"])

    def update_model(self, model_id: str, **fields: Any) -> ModelRecord:
        unknown = set(fields) - MODEL_FIELDS - {"add_system_tags", "remove_system_tags"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown model fields {sorted(unknown)}; accepted: {sorted(MODEL_FIELDS)}"
            )
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
        metadata: dict[str, tuple[str, str]] | None = None,
    ) -> ModelRecord:
        body = {
            "model": model_id, "uri": uri, "sha256": sha256, "size": size,
            "iteration": iteration, "comment": comment, "framework": framework,
            "is_package": is_package, "metadata": _metadata_items(metadata) if metadata else None,
        }  # fmt: skip
        data = self._call("models.add_version", {k: v for k, v in body.items() if v is not None})
        return model_record(data["model"])

    def list_model_versions(self, model_id: str) -> list[ModelVersionRecord]:
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
            ("uri", query.uri), ("task", query.task), ("id", query.ids),
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
        docs = self._call("models.get_all", self._query_body(query)).get("models", [])
        return [model_record(d) for d in docs]

    def count_models(self, query: ModelQuery) -> int:
        body = self._query_body(query)
        for key in ("page", "page_size", "offset", "size"):
            body.pop(key, None)
        return int(self._call("models.count", body)["count"])

    def delete_model(self, model_id: str) -> None:
        self._call("models.delete", {"model": model_id, "force": True})

    def set_model_metadata(
        self, model_id: str, items: dict[str, tuple[str, str]], replace: bool = False
    ) -> ModelRecord:
        body = {
            "model": model_id,
            "metadata": _metadata_items(items),
            "replace_metadata": bool(replace),
        }
        data = self._call("models.add_or_update_metadata", body)
        return model_record(data["model"]) if "model" in data else self.get_model(model_id)

    # -- storage --------------------------------------------------------------------------
    def default_destination(self) -> str:
        return self.files_host

    def close(self) -> None:
        if _files_hosts.get(self.files_host) is self.client:
            del _files_hosts[self.files_host]


# -- clearml.conf ---------------------------------------------------------------------------
_CONF_KEYS = {
    "api.api_server": "api_host",
    "api.files_server": "files_host",
    "api.credentials.access_key": "access_key",
    "api.credentials.secret_key": "secret_key",
}


class _ConfReader:
    """A small reader for the HOCON that ``clearml-init`` writes."""

    _BARE_END = re.compile(r"\n|,|}|]|\s#|\s//")

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.found = text, 0, {}  # type: ignore[var-annotated]

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self._peek()
            if char in " \t\r" or (newlines and char in "\n,"):
                self.pos += 1
            elif char == "#" or self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def _string(self) -> str:
        match = re.compile(r'"(?:[^"\\]|\\.)*"').match(self.text, self.pos)
        if not match:
            self.pos = len(self.text)
            return ""
        self.pos = match.end()
        return json.loads(match.group())

    def _skip_array(self) -> None:
        depth = 0
        while self.pos < len(self.text):
            char = self._peek()
            if char == '"':
                self._string()
                continue
            depth += {"[": 1, "]": -1}.get(char, 0)
            self.pos += 1
            if depth == 0:
                return

    def read_object(self, prefix: str) -> None:
        while True:
            self._skip(newlines=True)
            char = self._peek()
            if not char or char == "}":
                self.pos += 1
                return
            if char == '"':
                key = self._string()
            else:
                match = re.compile(r"[A-Za-z0-9_.\-]+").match(self.text, self.pos)
                if not match:
                    self.pos += 1
                    continue
                key, self.pos = match.group(), match.end()
            self._skip(newlines=False)
            if self._peek() in (":", "="):
                self.pos += 1
                self._skip(newlines=False)
            char = self._peek()
            if char == "{":
                self.pos += 1
                self.read_object(f"{prefix}{key}.")
            elif char == "[":
                self._skip_array()
            elif char == '"':
                self.found[prefix + key] = self._string()
            else:
                end = self._BARE_END.search(self.text, self.pos)
                stop = end.start() if end else len(self.text)
                self.found[prefix + key] = self.text[self.pos : stop].strip()
                self.pos = stop


def read_clearml_conf(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read the connection settings of a ``clearml.conf`` (HOCON).

    Understands what ``clearml-init`` writes: nested ``api { ... }`` blocks, dotted keys,
    ``:`` or ``=``, quoted or bare values (bare URLs included), ``#`` and ``//`` comments.
    Arrays and other sections are skipped.

    Returns:
        Any of ``api_host``, ``files_host``, ``access_key``, ``secret_key`` found.

    Example:
        >>> import tempfile
        >>> conf = Path(tempfile.mkdtemp()) / "clearml.conf"
        >>> _ = conf.write_text('api { api_server: http://h:8008  # the API\\n'
        ...     ' credentials { "access_key" = "AK", secret_key: "SK" } }')
        >>> sorted(read_clearml_conf(conf).items())
        [('access_key', 'AK'), ('api_host', 'http://h:8008'), ('secret_key', 'SK')]
    """
    reader = _ConfReader(Path(path).read_text(encoding="utf-8", errors="replace"))
    while reader.pos < len(reader.text):
        reader.read_object("")
    return {
        name: str(reader.found[key]) for key, name in _CONF_KEYS.items() if reader.found.get(key)
    }
