"""Registered models: ``Model``, any model by id (``InputModel`` and ``OutputModel`` build on it).

Both are lazy handles: constructing one sends nothing; the first property read fetches the
record, and later reads use that snapshot until :meth:`BaseModel.reload`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbook import config, validate
from modelbook.backends.base import Backend
from modelbook.casting import cast_value
from modelbook.errors import (
    BlobCorruptedError,
    InvalidArgumentError,
    ModelbookError,
    ModelPublishedError,
    ProjectNotFoundError,
    StorageError,
)
from modelbook.localcopy import extract_package, local_copy
from modelbook.records import (
    ARCHIVED_TAG,
    PACKAGE_TAG,
    ModelQuery,
    ModelRecord,
    ModelVersionRecord,
    metadata_item,
)
from modelbook.reporting import ModelReports
from modelbook.storage import StoredObject

if TYPE_CHECKING:
    from modelbook.retention import PruneReport

log = logging.getLogger("modelbook")

_METADATA_TYPES = {"float", "int", "bool", "str", "basestring", "list", "tuple", "dict"}


class BaseModel(ModelReports):
    """What every model handle offers: properties, metadata, publish, archive, weights."""

    def __init__(self, backend: Backend | None = None) -> None:
        self._backend = backend
        self._record: ModelRecord | None = None
        self._connected_task: str | None = None  # the task it is connected to, if any

    # -- plumbing -------------------------------------------------------------------------
    @property
    def _be(self) -> Backend:
        if self._backend is None:
            self._backend = config.get_backend()
        return self._backend

    @property
    def id(self) -> str | None:
        raise NotImplementedError

    def _data(self) -> ModelRecord:
        if self._record is None:
            if self.id is None:
                raise InvalidArgumentError("this OutputModel has no weights or record yet")
            from modelbook import uploads  # a local id: the registry id it became

            registry_id = uploads.queue_for(self._be, config.home()).resolve(self.id)
            self._record = self._be.get_model(registry_id)
        return self._record

    def _model_id(self) -> str:
        """The id of the record, for calls that change it."""
        return self._data().id

    def _set(self, **fields: Any) -> None:
        self._record = self._be.update_model(self._model_id(), **fields)

    def _set_metadata(self, items: dict[str, dict[str, str]], replace: bool) -> None:
        self._record = self._be.set_model_metadata(self._model_id(), items, replace=replace)

    def _report_target(self) -> tuple[str, Callable[[], str]]:
        model_id = self._model_id()
        return f"model:{model_id}", lambda: model_id

    def _registered_id(self) -> str | None:
        return self.id

    def reload(self) -> None:
        """Fetch the record again (properties serve a snapshot until then)."""
        self._record = None
        self._data()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id!r}>"

    # -- properties -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._data().name

    @name.setter
    def name(self, value: str) -> None:
        self._set(name=validate.name(value, "model name"))

    @property
    def comment(self) -> str:
        return self._data().comment

    @comment.setter
    def comment(self, value: str) -> None:
        self._set(comment=validate.free_text(value or "", "comment"))

    @property
    def tags(self) -> list[str]:
        return list(self._data().tags)

    @tags.setter
    def tags(self, value: Sequence[str]) -> None:
        self._set(tags=validate.tags(value))

    @property
    def system_tags(self) -> list[str]:
        return list(self._data().system_tags)

    @system_tags.setter
    def system_tags(self, value: Sequence[str]) -> None:
        self._set(system_tags=validate.tags(value, "system_tags"))

    @property
    def project(self) -> str | None:
        """The project **id** (as in ClearML)."""
        return self._data().project

    @project.setter
    def project(self, value: str) -> None:
        self._set(project=validate.name(value, "project (a project id)"))

    @property
    def task(self) -> str | None:
        """Id of the task this model is connected to; else of the task that created it."""
        return self._connected_task or self._data().task

    @property
    def original_task(self) -> str | None:
        return self._data().task

    @property
    def framework(self) -> str | None:
        return self._data().framework

    @property
    def labels(self) -> dict[str, int]:
        return dict(self._data().labels)

    @property
    def config_text(self) -> str:
        return self._data().design

    @property
    def config_dict(self) -> dict[str, Any]:
        return validate.config_dict(self.config_text)

    @property
    def url(self) -> str | None:
        return self._data().uri

    @property
    def published(self) -> bool:
        return self._data().ready

    @property
    def archived(self) -> bool:
        return self._data().archived

    @property
    def created(self) -> datetime | None:
        return self._data().created

    @property
    def last_update(self) -> datetime | None:
        return self._data().last_update

    @property
    def iteration(self) -> int | None:
        return self._data().iteration

    @property
    def archived_tag(self) -> str:
        return ARCHIVED_TAG

    @property
    def versions(self) -> list[ModelVersionRecord]:
        """Every registration of weights for this model, oldest first (modelbook only)."""
        return self._be.list_model_versions(self._model_id())

    # -- lifecycle ------------------------------------------------------------------------
    def publish(self) -> None:
        """Mark the model published (read-only weights, design and labels). Idempotent."""
        self._model_id()
        if not self._data().ready:
            self._set(ready=True)

    def archive(self) -> None:
        """Hide the model from queries (``include_archived=False``) and URL reuse."""
        self._set(add_system_tags=[ARCHIVED_TAG])

    def unarchive(self) -> None:
        self._set(remove_system_tags=[ARCHIVED_TAG])

    def _known(self) -> ModelRecord:
        """The record as last seen, fetched only if never seen (no refresh, no I/O after)."""
        return self._record if self._record is not None else self._data()

    def _check_not_published(self, what: str) -> None:
        if self.id is not None and self._known().ready:
            raise ModelPublishedError(self.id, self._known().name, what)

    # -- metadata -------------------------------------------------------------------------
    def set_metadata(self, key: str, value: Any, v_type: str | None = None) -> bool:
        """Add or update one metadata entry; ``v_type`` is one of float, int, bool, str,
        list, tuple, dict (anything else is stored as "None", as ClearML does)."""
        key = validate.metadata_key(key)
        validate.metadata_value(key, value)
        kind = v_type if isinstance(v_type, str) and v_type in _METADATA_TYPES else "None"
        items = {key: metadata_item(key, value, kind)}
        self._set_metadata(items, replace=False)
        return True

    def get_metadata(self, key: str) -> str | None:
        item = self._data().metadata.get(validate.metadata_key(key))
        return item["value"] if item else None

    def get_metadata_casted(self, key: str) -> Any:
        item = self._data().metadata.get(validate.metadata_key(key))
        return cast_value(item["value"], item["type"]) if item else None

    def get_all_metadata(self) -> dict[str, dict[str, str]]:
        return {k: dict(v) for k, v in self._data().metadata.items()}

    def get_all_metadata_casted(self) -> dict[str, Any]:
        return {k: cast_value(v["value"], v["type"]) for k, v in self._data().metadata.items()}

    def set_all_metadata(
        self, metadata: Mapping[str, Mapping[str, Any]], replace: bool = True
    ) -> bool:
        """Set many entries at once: ``{key: {"value": ..., "type": ...}}``; ``replace``
        drops every key not given."""
        items = {}
        for key, item in validate.metadata(metadata).items():
            if not isinstance(item, Mapping) or "value" not in item:
                raise InvalidArgumentError(
                    f"metadata[{key!r}] must be a dict with 'value' (and optional 'type'), "
                    f"got {item!r}"
                )
            items[str(key)] = metadata_item(key, item["value"], str(item.get("type")))
        self._set_metadata(items, replace=replace)
        return True

    # -- weights --------------------------------------------------------------------------
    def _stored(self, version: int | None) -> StoredObject:
        """The current weights, or those of ``version`` (a modelbook extension)."""
        record = self._data()
        if version is None:
            if not record.uri:
                raise StorageError(f"model {record.id!r} ({record.name!r}) has no weights yet")
            return StoredObject(record.uri, record.sha256 or "", record.size or 0)
        versions = {v.version: v for v in self.versions}
        found = versions.get(version) if isinstance(version, int) else None
        if found is None:
            raise InvalidArgumentError(
                f"model {record.id!r} has no version {version!r}; its versions: "
                f"{sorted(versions) or '(none yet)'}"
            )
        if found.pruned:
            raise StorageError(
                f"version {version} of model {record.id!r} was pruned (retention): its record "
                "is kept, its weights were deleted"
            )
        return StoredObject(found.uri, found.sha256 or "", found.size or 0)

    def get_weights(
        self,
        raise_on_error: bool = False,
        force_download: bool = False,
        extract_archive: bool = False,
        *,
        version: int | None = None,
    ) -> str | None:
        """A local path to the weights, verified against their sha256.

        Returns None when the weights cannot be fetched, unless ``raise_on_error``. Corrupted
        weights always raise :class:`BlobCorruptedError`.

        Args:
            version: modelbook extension: the weights of that version (see
                :attr:`versions`) instead of the current ones, verified the same way.
        """
        try:
            stored = self._stored(version)
            path = local_copy(stored, self._be.driver_for(stored.uri), config.home() / "cache",
                              force_download)  # fmt: skip
            if extract_archive and path.suffix == ".zip":
                key = stored.sha256 or f"{self.id}-{Path(stored.uri).name}"
                return str(extract_package(path, config.home() / "cache", key))
            return str(path)
        except BlobCorruptedError:
            raise
        except (StorageError, OSError) as exc:
            if raise_on_error:
                raise StorageError(str(exc)) from exc
            log.warning("could not get the weights of model %s: %s", self.id, exc)
            return None

    def get_weights_package(
        self,
        return_path: bool = False,
        raise_on_error: bool = False,
        force_download: bool = False,
        extract_archive: bool = True,
        *,
        version: int | None = None,
    ) -> str | list[Path] | None:
        """The extracted folder of a package model (``return_path``) or its top entries."""
        if PACKAGE_TAG not in self._data().system_tags:
            raise InvalidArgumentError(
                f"Model is not packaged: model {self.id!r} holds a single file; "
                "use get_local_copy() or get_weights()"
            )
        folder = self.get_weights(raise_on_error, force_download, extract_archive, version=version)
        if folder is None or not extract_archive:
            return folder
        return folder if return_path else sorted(Path(folder).glob("*"))

    def prune_versions(self, keep_last: int, dry_run: bool = False) -> PruneReport:
        """Delete the weights of all but the newest ``keep_last`` versions (modelbook only).

        Never removes the current weights, the best version by the monitored metric recorded
        on the versions, or bytes another model or version still references; a pruned
        version keeps its record (``pruned=True``). A published model refuses.

        Raises:
            ModelPublishedError: the model is published.
        """
        from modelbook import retention

        keep_last = validate.integer(keep_last, "keep_last", (0, validate.INT64[1]))
        return retention.prune(self._be, self._model_id(), keep_last, dry_run=dry_run)


class Model(BaseModel):
    """An existing model, by id.

    Args:
        model_id: the model's id.

    Example:
        >>> import modelbook, tempfile
        >>> modelbook.configure(home=tempfile.mkdtemp())
        >>> from modelbook import InputModel
        >>> m = InputModel.import_model(weights_url="https://example.com/w.pt", name="demo")
        >>> Model(m.id).name
        'demo'
    """

    def __init__(self, model_id: str, _record: ModelRecord | None = None) -> None:
        super().__init__()
        if not isinstance(model_id, str) or not model_id:
            raise InvalidArgumentError(f"model_id must be a non-empty string, got {model_id!r}")
        self._id = model_id
        self._record = _record

    @property
    def id(self) -> str:
        return self._id

    def get_local_copy(
        self,
        extract_archive: bool | None = None,
        raise_on_error: bool = False,
        force_download: bool = False,
        *,
        version: int | None = None,
    ) -> str | None:
        """A local path to the weights: the file, or for a package the extracted folder.

        The file is checked against the sha256 recorded when it was stored; a mismatch
        raises :class:`~modelbook.errors.BlobCorruptedError`. The path may be the stored
        object itself (local destinations): read it, do not change it.

        Args:
            version: modelbook extension: a version number from :attr:`versions`; its
                weights, verified the same way (a pruned version raises or returns None).
        """
        if PACKAGE_TAG in self._data().system_tags:
            return self.get_weights_package(  # type: ignore[return-value]
                return_path=True,
                raise_on_error=raise_on_error,
                force_download=force_download,
                extract_archive=extract_archive is not False,
                version=version,
            )
        return self.get_weights(raise_on_error, force_download, bool(extract_archive),
                                version=version)  # fmt: skip

    @classmethod
    def query_models(
        cls,
        project_name: str | None = None,
        model_name: str | None = None,
        tags: Sequence[str | None] | None = None,
        only_published: bool = False,
        include_archived: bool = False,
        max_results: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Model]:
        """Models matching all the given filters, **newest created first** (by creation
        time, as ClearML's code does; its docstring says last update).

        Args:
            project_name: exact project name; its sub-projects are not included.
            model_name: exact, case-sensitive model name.
            tags: ClearML tag filter: plain tags are any-of, ``-tag`` excludes, and the
                ``__$all`` / ``__$any`` / ``__$not`` / ``__$nop`` operators work as on the
                ClearML server (see :mod:`modelbook.store.tagfilter`).
            only_published: only published models.
            include_archived: include archived models.
            max_results: at most this many.
            metadata: ``{key: value}`` exact matches.

        Raises:
            ProjectNotFoundError: no project has that name (the message lists those that do).
            TagFilterError: the tag filter uses an unknown operator.
        """
        backend = config.get_backend()
        projects = None
        if project_name is not None:
            project_name = validate.name(project_name, "project_name")
            project = backend.find_project(project_name)
            if project is None:
                raise ProjectNotFoundError(project_name, [p.name for p in backend.list_projects()])
            projects = [project.id]
        if max_results is not None:
            max_results = validate.integer(max_results, "max_results", (0, validate.INT64[1]))
        if model_name is not None and not isinstance(model_name, str):
            raise InvalidArgumentError(f"model_name must be a string, got {model_name!r:.80}")
        wanted = validate.metadata_filter(metadata)
        query = ModelQuery(
            projects=projects,
            name=validate.name(model_name, "model_name") if model_name else None,
            tags=validate.tags(tags, allow_none_terms=True) or None,
            system_tags=None if include_archived else [f"-{ARCHIVED_TAG}"],
            ready=True if only_published else None,
            metadata={k: str(v) for k, v in wanted.items()} or None,
            limit=max_results,
        )
        return [cls(r.id, r) for r in backend.query_models(query)]

    @classmethod
    def remove(
        cls,
        model: str | BaseModel,
        delete_weights_file: bool = True,
        force: bool = False,
        raise_on_errors: bool = False,
    ) -> bool:
        """Delete a model record and, with ``delete_weights_file``, the stored objects that
        only it referenced.

        Only objects modelbook itself wrote are ever deleted: weights registered from
        elsewhere (``register_uri``, ``import_model``) are never touched, and an object
        another model or version still references stays. With ``delete_weights_file=False``
        the model's own objects are kept for good (never deleted later either).

        Without ``force``, a model that is published, that a task uses as input, or whose
        task is published is kept (as ``models.delete`` does on ClearML).

        Returns False if the record was deleted but a file could not be (it stays doomed;
        ``modelbook gc`` retries), if the model does not exist or was kept, unless
        ``raise_on_errors`` (then a ``ValueError``: a ``ModelbookError`` saying why).
        """
        from modelbook import retention

        backend = config.get_backend()
        model_id = model if isinstance(model, str) else getattr(model, "id", None)
        try:
            if not isinstance(model, (str, BaseModel)) or not model_id:
                raise InvalidArgumentError(
                    f"Model.remove needs a model id or a Model, got {model!r}"
                )
            deleted = retention.remove_model(backend, str(model_id), delete_weights_file,
                                             force=force)  # fmt: skip
            if deleted.failed:
                raise StorageError(
                    "model deleted, but not all its files: "
                    + "; ".join(f"{u}: {e}" for u, e in deleted.failed.items())
                )
        except (ModelbookError, OSError) as exc:
            if raise_on_errors:
                raise
            log.warning("could not remove model %s: %s", model_id, exc)
            return False
        return True
