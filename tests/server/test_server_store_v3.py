"""Schema versions 3 and 4 of the store: reported scalars, ClearML documents and reports,
and the migration of a version 2 store (on PostgreSQL: test_server_postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from migration_scenario import check_migrated, make_v2_store

from modelbook.errors import InvalidArgumentError, TaskNotFoundError
from modelbook.records import ScalarEvent
from modelbook.store.sql import SqlStore


@pytest.fixture
def store(tmp_path) -> Iterator[SqlStore]:
    opened = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.close()


def test_v2_store_migrates_keeping_its_data(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'v2.db'}"
    check_migrated(url, make_v2_store(url))


def test_scalars_read_back_as_series_and_statistics(store: SqlStore) -> None:
    task = store.create_task(name="train", project=None)
    values = [0.9, 0.4, 0.6, 0.2]
    events = [ScalarEvent("loss", "train", i, v, timestamp=1000 + i) for i, v in enumerate(values)]
    events.append(ScalarEvent(":monitor:machine", "cpu", 500, 12.0))  # seconds, not iterations
    assert store.add_scalars(task.id, events) == 5
    assert store.scalar_series(task.id)["loss"] == {"train": ([0, 1, 2, 3], values)}
    assert store.get_task(task.id).last_iteration == 3
    stats = store.last_scalars(task.id)["loss"]["train"]
    assert (stats.last, stats.last_iteration, stats.first, stats.count) == (0.2, 3, 0.9, 4)
    assert (stats.min, stats.min_iteration, stats.max, stats.max_iteration) == (0.2, 3, 0.9, 0)

    # reported again for an iteration: the value is replaced, the statistics count it
    store.add_scalars(task.id, [ScalarEvent("loss", "train", 1, 0.1, timestamp=2000)])
    assert store.scalar_series(task.id)["loss"]["train"] == ([0, 1, 2, 3], [0.9, 0.1, 0.6, 0.2])
    stats = store.last_scalars(task.id)["loss"]["train"]
    assert (stats.last, stats.min, stats.min_iteration, stats.count) == (0.2, 0.1, 1, 5)
    assert store.last_scalars_of([task.id, "other"]).keys() == {task.id}


def test_model_scalars_are_kept_apart(store: SqlStore) -> None:
    task = store.create_task(name="t", project=None)
    model = store.create_model(name="m")
    store.add_scalars(task.id, [ScalarEvent("acc", "val", 1, 0.5, model=model.id)])
    store.add_model_scalars(model.id, [ScalarEvent("acc", "val", 1, 0.7)])
    assert [e.value for e in store.scalar_events(model_id=model.id)] == [0.7]
    assert [(e.value, e.model) for e in store.scalar_events(task.id)] == [(0.5, model.id)]
    assert store.delete_scalars(task.id) == 1 and store.last_scalars(task.id) == {}
    assert [e.value for e in store.scalar_events(model_id=model.id)] == [0.7]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (ScalarEvent("loss", "train", 1, float("nan")), "value must be a finite number"),
        (ScalarEvent("x" * 256, "train", 1, 1.0), "metric must be a string of at most 255"),
        (ScalarEvent("loss", "train", 1.5, 1.0), "iteration must be a 64-bit integer"),  # type: ignore[arg-type]
        ("loss", "must be a ScalarEvent"),
    ],
)
def test_malformed_scalars_are_refused_naming_the_field(store: SqlStore, event, message) -> None:
    task = store.create_task(name="t", project=None)
    good = ScalarEvent("loss", "train", 0, 1.0)
    with pytest.raises(InvalidArgumentError, match=f"scalar event 1: {message}"):
        store.add_scalars(task.id, [good, event])
    assert store.scalar_series(task.id) == {}  # nothing of the batch was stored
    with pytest.raises(TaskNotFoundError):
        store.add_scalars("no-such-task", [good])
