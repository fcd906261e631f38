"""A task's reported scalars read back as series, whole or thinned for a plot."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelbook.errors import InvalidArgumentError
from modelbook.records import ScalarEvent
from modelbook.store.sql import SqlStore


@pytest.fixture(scope="module")
def store() -> SqlStore:
    return SqlStore("sqlite://")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    lengths=st.lists(st.integers(1, 400), min_size=1, max_size=3),
    max_points=st.integers(1, 120),
    gap=st.integers(1, 7),
)
def test_a_thinned_series_keeps_every_kth_point_and_the_last(
    store: SqlStore, lengths: list[int], max_points: int, gap: int
) -> None:
    task = store.create_task(name="t", project=None)
    events = [ScalarEvent("loss", f"v{s}", i * gap, float(i * 10 + s))
              for s, n in enumerate(lengths) for i in range(n)]  # fmt: skip
    store.add_scalars(task.id, events)
    whole = store.scalar_series(task.id)
    thinned = store.scalar_series(task.id, max_points=max_points)
    for s, n in enumerate(lengths):
        xs, ys = whole["loss"][f"v{s}"]
        assert xs == [i * gap for i in range(n)] and ys == [float(i * 10 + s) for i in range(n)]
        step = -(-n // max_points)  # every step-th point, then the last
        kept = sorted({*range(0, n, step), n - 1})
        assert thinned["loss"][f"v{s}"] == ([xs[i] for i in kept], [ys[i] for i in kept])
        assert len(kept) <= max_points + 1


def test_max_points_is_checked(store: SqlStore) -> None:
    task = store.create_task(name="t", project=None)
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(InvalidArgumentError, match="max_points must be an int >= 1"):
            store.scalar_series(task.id, max_points=bad)  # type: ignore[arg-type]
    assert store.scalar_series(task.id, max_points=5) == {}


def test_a_models_own_values_read_back_apart_from_its_tasks(store: SqlStore) -> None:
    task = store.create_task(name="t", project=None)
    model = store.create_model(name="m", project=None, task=task.id)
    store.add_scalars(task.id, [ScalarEvent("loss", "train", 0, 1.0)])
    store.add_model_scalars(model.id, [ScalarEvent("eval", "top1", i, i / 10) for i in range(5)])
    assert store.scalar_series(model_id=model.id, max_points=2) == {
        "eval": {"top1": ([0, 3, 4], [0.0, 0.3, 0.4])}  # every 3rd (5 / 2, rounded up), the last
    }
    assert store.scalar_series(task.id) == {"loss": {"train": ([0], [1.0])}}
    for both_or_neither in ({"task_id": task.id, "model_id": model.id}, {}):
        with pytest.raises(InvalidArgumentError, match="either a task id or model_id"):
            store.scalar_series(**both_or_neither)
