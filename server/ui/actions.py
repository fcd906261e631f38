"""What the UI's forms change, through the store's verbs and with the API's rules.

* ``publish``: refused when the model is already published (as ``models.set_ready``);
  a published model then refuses new weights, design and labels (the store enforces it).
* ``archive`` / ``unarchive``: the ``archived`` system tag (as ``models.archive`` and
  ``models.unarchive_many``).
* ``tags/add`` / ``tags/remove``: one user tag (as ``models.edit(tags=...)``).

Example:
    >>> from modelbook.store.sql import SqlStore
    >>> store = SqlStore("sqlite://")
    >>> model = store.create_model(name="m", project=None)
    >>> apply(store, model.id, "tags/add", "best"), store.get_model(model.id).tags
    ('tag-added', ['best'])
    >>> apply(store, model.id, "publish", "")
    'published'
    >>> apply(store, model.id, "publish", "")
    Traceback (most recent call last):
      ...
    modelbook.errors.InvalidArgumentError: model 'm' is already published; a model is \
published once (models.set_ready answers the same)
"""

from __future__ import annotations

from modelbook.errors import InvalidArgumentError, NotFoundError
from modelbook.records import ARCHIVED_TAG, ModelVersionRecord
from modelbook.store.sql import SqlStore

#: What the model page says after each action (``?done=<code>``).
NOTICES = {
    "published": "Published: the weights, design and labels of this model are now read-only.",
    "archived": "Archived: the model is hidden from the models list unless you show archived.",
    "unarchived": "Unarchived.",
    "tag-added": "Tag added.",
    "tag-removed": "Tag removed.",
    "tag-kept": "The model already has that tag.",
}
ACTIONS = ("publish", "archive", "unarchive", "tags/add", "tags/remove")
MAX_TAG = 255


class VersionPrunedError(NotFoundError):
    """Retention pruned the version: its record stays, its bytes are gone (HTTP 410).

    Example:
        >>> isinstance(VersionPrunedError("version 1 was pruned"), NotFoundError)
        True
    """


def _check_tag(tag: str) -> str:
    tag = tag.strip()
    if not tag or len(tag) > MAX_TAG or tag.startswith(("-", "__$")) or "," in tag:
        raise InvalidArgumentError(
            f"a tag must be 1 to {MAX_TAG} characters, without commas, and not start with '-' "
            f"or '__$' (tag filters use them), got {tag[:80]!r}"
        )
    return tag


def apply(store: SqlStore, model_id: str, action: str, tag: str) -> str:
    """Apply one action; the notice code to show.

    Raises:
        InvalidArgumentError: an unknown action, a bad tag, or publishing a published model;
        ModelNotFoundError: no model has this id.
    """
    model = store.get_model(model_id)
    if action == "publish":
        if model.ready:
            raise InvalidArgumentError(
                f"model {model.name!r} is already published; a model is published once "
                "(models.set_ready answers the same)"
            )
        store.update_model(model.id, ready=True)
        return "published"
    if action in ("archive", "unarchive"):
        change = "add_system_tags" if action == "archive" else "remove_system_tags"
        store.update_model(model.id, **{change: [ARCHIVED_TAG]})
        return f"{action}d"
    if action == "tags/add":
        tag = _check_tag(tag)
        if tag in model.tags:
            return "tag-kept"
        store.update_model(model.id, tags=[*model.tags, tag])
        return "tag-added"
    if action == "tags/remove":
        if tag not in model.tags:
            raise InvalidArgumentError(
                f"model {model.name!r} has no tag {tag[:80]!r}; its tags: {model.tags}"
            )
        store.update_model(model.id, tags=[t for t in model.tags if t != tag])
        return "tag-removed"
    raise InvalidArgumentError(f"unknown action {action!r}; accepted: {', '.join(ACTIONS)}")


def find_version(store: SqlStore, model_id: str, number: int) -> ModelVersionRecord:
    """Version ``number`` of a model whose bytes are still kept.

    Raises:
        NotFoundError: no such model or version; VersionPrunedError: retention pruned it.
    """
    versions = store.list_model_versions(model_id)
    found = next((v for v in versions if v.version == number), None)
    if found is None:
        raise NotFoundError(
            f"model {model_id} has no version {number}; it has versions "
            f"{', '.join(str(v.version) for v in versions) or '(none)'}"
        )
    if found.pruned:
        raise VersionPrunedError(
            f"version {number} of model {model_id} was pruned by retention: its bytes are "
            "gone; download an unpruned version"
        )
    return found
