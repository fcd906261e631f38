"""``InputModel``: a registered model a task uses, found by id or by name / project / tags."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbook import config, validate
from modelbook.errors import NotFoundError
from modelbook.frameworks import Framework
from modelbook.model import BaseModel, Model
from modelbook.records import ARCHIVED_TAG, PACKAGE_TAG, ModelQuery, ModelRecord
from modelbook.storage import scheme_of
from modelbook.storage.local import to_uri

if TYPE_CHECKING:
    from modelbook.task import Task

log = logging.getLogger("modelbook")


class InputModel(Model):
    """A registered model that a task uses, found by id or by name / project / tags.

    Args:
        model_id: the model's id; when given, the other arguments are ignored.
        name: exact model name.
        project: project name.
        tags: ClearML tag filter.
        only_published: only published models.

    Raises:
        NotFoundError: nothing matches name / project / tags.

    Example:
        >>> import modelbook, tempfile
        >>> modelbook.configure(home=tempfile.mkdtemp())
        >>> _ = InputModel.import_model(weights_url="https://example.com/w.pt", name="resnet")
        >>> InputModel(name="resnet").url
        'https://example.com/w.pt'
    """

    def __init__(
        self,
        model_id: str | None = None,
        name: str | None = None,
        project: str | None = None,
        tags: Sequence[str] | None = None,
        only_published: bool = False,
    ) -> None:
        record = None
        if model_id is None:
            found = Model.query_models(
                project_name=project,
                model_name=name,
                tags=tags,
                only_published=only_published,
                max_results=1,
            )
            if not found:
                raise NotFoundError(
                    f"Could not locate model with project={project!r} name={name!r} "
                    f"tags={tags!r} published={only_published}"
                )
            model_id, record = found[0].id, found[0]._record
        super().__init__(model_id, record)

    @classmethod
    def import_model(
        cls,
        weights_url: str,
        config_text: str | None = None,
        config_dict: dict | None = None,
        label_enumeration: Mapping[str, int] | None = None,
        name: str | None = None,
        project: str | None = None,
        tags: list[str] | None = None,
        comment: str | None = None,
        is_package: bool = False,
        create_as_published: bool = False,
        framework: str | None = None,
    ) -> InputModel:
        """Register weights that already exist at ``weights_url`` (nothing is copied).

        If a non-archived model already points at exactly this URL, that model is returned
        and every other argument is ignored (ClearML's rule).
        """
        from modelbook.task import Task

        validate.weights_uri(weights_url, "weights_url")
        name = validate.name(name, "model name") if name is not None else None
        comment = validate.free_text(comment, "comment") if comment is not None else None
        framework = validate.framework(framework)
        project = validate.name(project, "project") if project is not None else None
        design = validate.config_text(config_text, config_dict)
        labels = validate.labels(label_enumeration)
        tag_list = validate.tags(tags)
        url = weights_url if scheme_of(weights_url) else to_uri(weights_url)
        existing = cls.load_model(url)
        if existing is not None:
            log.info("A model with uri %s already exists. Selecting it", url)
            return existing
        backend = config.get_backend()
        task = Task.current_task()
        fields: dict[str, Any] = {"name": name, "comment": comment or "", "project": None}
        if task is not None:
            fields["comment"] = f"Imported by task id: {task.id}" + (
                f"\n{comment}" if comment else ""
            )
            fields["project"] = task.project
            fields["name"] = name or f"Imported by {task.name}"
        if project is not None:
            fields["project"] = backend.get_or_create_project(project).id
        record = backend.create_model(
            **fields,
            uri=url,
            tags=tag_list,
            system_tags=[PACKAGE_TAG] if is_package else [],
            design=design or "",
            labels=labels,
            framework=framework or Framework.infer(url),
            ready=bool(create_as_published),
        )
        return cls(record.id)

    @classmethod
    def load_model(cls, weights_url: str, load_archived: bool = False) -> InputModel | None:
        """The newest model registered with exactly this URL, or None."""
        url = weights_url if scheme_of(weights_url) else to_uri(weights_url)
        query = ModelQuery(
            uri=[url], system_tags=None if load_archived else [f"-{ARCHIVED_TAG}"], limit=1
        )
        found = config.get_backend().query_models(query)
        return cls(found[0].id) if found else None

    @classmethod
    def empty(
        cls,
        config_text: str | None = None,
        config_dict: dict | None = None,
        label_enumeration: Mapping[str, int] | None = None,
    ) -> InputModel:
        """A placeholder input model (id "empty") that only carries a design and labels."""
        model = cls.__new__(cls)
        BaseModel.__init__(model)
        model._id = "empty"
        model._record = ModelRecord(
            id="empty",
            name="empty",
            design=validate.config_text(config_text, config_dict) or "",
            labels=validate.labels(label_enumeration),
        )
        return model

    def connect(
        self, task: Task, name: str | None = None, ignore_remote_overrides: bool = False
    ) -> None:
        """Register this model as an input of ``task``, under ``name`` (default: the stem of
        its URL). The task takes the model's design and labels if it has none."""
        record = self._data()
        entry = name or (Path(record.uri).stem if record.uri else "") or "Input Model"
        task._connect_model(self, "input", entry, record.design, record.labels)
        self._connected_task = task.id
