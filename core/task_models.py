"""The task's side of its models: entries, labels and model design (ClearML's names).

Mixed into :class:`~modelbook.task.Task`: what a task records about the models it loads
and produces, apart from the task's life cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbook import uploads, validate
from modelbook.errors import InvalidArgumentError, ModelNotFoundError
from modelbook.input_model import InputModel
from modelbook.model import BaseModel, Model
from modelbook.records import ModelQuery, TaskRecord

if TYPE_CHECKING:
    from modelbook.backends.base import Backend


class ModelList(list):
    """A list of models that can also be indexed by task entry name (``models["best"]``)."""

    def __init__(self, items: Sequence[tuple[str, Model]]) -> None:
        super().__init__(model for _, model in items)
        self._by_name = dict(items)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._by_name[key]
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._by_name)

    def get(self, key: str, default: Any = None) -> Model | None:
        return self._by_name.get(key, default)


class TaskModels(dict):
    """``{"input": ModelList, "output": ModelList}``, also readable as ``.input`` / ``.output``."""

    @property
    def input(self) -> ModelList:
        return self["input"]

    @property
    def output(self) -> ModelList:
        return self["output"]


class _ModelEntries:
    """Model entries, labels and design of a task; :class:`~modelbook.task.Task` has them."""

    _be: Backend

    # provided by Task
    @property
    def id(self) -> str:
        raise NotImplementedError

    @property
    def name(self) -> str:
        raise NotImplementedError

    def _data(self) -> TaskRecord:
        raise NotImplementedError

    def _fresh(self) -> TaskRecord:
        raise NotImplementedError

    def _update(self, **fields: Any) -> None:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    def _queue(self) -> uploads.UploadQueue:
        raise NotImplementedError

    def _registry_id(self) -> str | None:
        raise NotImplementedError

    @property
    def _chain(self) -> str:
        raise NotImplementedError

    _record: TaskRecord | None

    # -- labels and design ----------------------------------------------------------------
    def get_labels_enumeration(self) -> dict[str, int]:
        return dict(self._data().labels)

    def set_model_label_enumeration(self, enumeration: Mapping[str, int] | None = None) -> None:
        self._update(labels=validate.labels(enumeration))

    def connect_label_enumeration(self, enumeration: Mapping[str, int]) -> dict[str, int]:
        """Set the task's label enumeration ``{label: int}``; returns it (its models
        created from now on take it)."""
        checked = validate.labels(enumeration)
        self._update(labels=checked)
        return dict(checked)

    def set_model_config(
        self, config_text: str | None = None, config_dict: Mapping[str, Any] | None = None
    ) -> None:
        """Set the task's model design (its models created from now on take it)."""
        self._update(model_config=validate.config_text(config_text, config_dict) or "")

    def get_model_config_text(self) -> str:
        return self._data().model_config

    def get_model_config_dict(self) -> dict[str, Any]:
        """The model design parsed as ClearML does (HOCON; JSON is HOCON too)."""
        return validate.config_dict(self._data().model_config)

    # -- entries --------------------------------------------------------------------------
    def _connect_model(
        self, model: BaseModel, kind: str, entry: str, design: str, labels: dict[str, int]
    ) -> None:
        if kind == "input":  # a closed task still takes output models (see Task.connect)
            self._check_open()
        args = {"task": self.id, "kind": kind, "entry": entry, "model": model.id,
                "design": design, "labels": labels}  # fmt: skip
        record = self._queue().call(self._chain, "connect_model", args)
        if record is not None:
            self._record = record

    def set_input_model(
        self,
        model_id: str | None = None,
        model_name: str | None = None,
        update_task_design: bool = True,
        update_task_labels: bool = True,
        name: str | None = None,
    ) -> None:
        """Use a registered model as an input of this task, by id or by name (the newest
        published model of that name).

        Args:
            update_task_design: the task takes the model's design if it has none.
            update_task_labels: the task takes the model's labels if it has none.
            name: the task's entry for it; default: the stem of the weights file name.
        """
        if model_id is None and not model_name:
            raise InvalidArgumentError("Expected one of [model_id, model_name]")
        if not model_id:
            found = Model.query_models(model_name=str(model_name), only_published=True,
                                       max_results=1)  # fmt: skip
            if not found:
                raise ModelNotFoundError(f"no published model is named {model_name!r}")
            model_id = found[0].id
        model = InputModel(model_id)
        record = model._data()
        entry = name or (Path(record.uri).stem if record.uri else "") or "Input Model"
        design = record.design if update_task_design else ""
        self._connect_model(model, "input", entry, design,
                            record.labels if update_task_labels else {})  # fmt: skip

    def update_output_model(
        self,
        model_path: str,
        name: str | None = None,
        comment: str | None = None,
        tags: Sequence[str] | None = None,
        model_name: str | None = None,
        iteration: int | None = None,
        auto_delete_file: bool = True,
    ) -> str:
        """Register a weights file as a **new** output model of this task; returns its URI.

        The model is named ``model_name``, else "<task name> - <name>", else the task name;
        its task entry is ``name``, else the file's stem.
        """
        from modelbook.output_model import OutputModel

        model = OutputModel(
            task=self,  # type: ignore[arg-type]  # a Task
            name=model_name or (f"{self.name} - {name}" if name else self.name),
            tags=tags,
            comment=comment,
        )
        model.connect(self, name or Path(model_path).stem)  # type: ignore[arg-type]
        return model.update_weights(
            weights_filename=model_path, iteration=iteration, auto_delete_file=auto_delete_file
        )

    def get_models(self) -> TaskModels:
        """``{"input": [...], "output": [...]}``; each list is also indexable by entry name."""
        record = self._fresh()
        if self._registry_id() is None:  # nothing of it is registered yet
            return TaskModels(input=ModelList([]), output=ModelList([]))
        inputs = [(e.name, Model(e.model)) for e in record.input_models]
        names = {e.model: e.name for e in record.output_models}
        created = (
            self._be.query_models(ModelQuery(task=self._registry_id(), order_by=["created"]))
            if self._queue().online() else []
        )
        ids = list(dict.fromkeys([m.id for m in created] + [e.model for e in record.output_models]))
        outputs = [(names.get(mid, f"Output Model #{i}"), Model(mid)) for i, mid in enumerate(ids)]
        return TaskModels(input=ModelList(inputs), output=ModelList(outputs))

    @property
    def models(self) -> TaskModels:
        return self.get_models()

    @property
    def input_models_id(self) -> dict[str, str]:
        """``{entry name: model id}`` of the task's input models."""
        return {e.name: e.model for e in self._fresh().input_models}

    @property
    def output_models_id(self) -> dict[str, str]:
        """``{entry name: model id}`` of the task's output models."""
        return {e.name: e.model for e in self._fresh().output_models}
