"""The improvement rule, with plain numbers: no framework needed."""

from __future__ import annotations

import math
import pickle
import warnings

import pytest

from modelbook.errors import InvalidArgumentError, ModelbookError
from modelbook.integrations.monitor import (
    MetricNotFoundError,
    Monitor,
    MonitorWarning,
    Reason,
    as_scalar,
    resolve_mode,
)

NAN, INF = float("nan"), float("inf")


def run(monitor: Monitor, values: list[float]) -> list[bool]:
    return [monitor.update({monitor.monitor: v}, step=i).improved for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("mode", "values", "expected", "best"),
    [
        ("min", [3.0, 2.0, 2.5, 1.0], [True, True, False, True], 1.0),
        ("max", [0.1, 0.3, 0.2, 0.4], [True, True, False, True], 0.4),
        ("min", [1.0, 2.0, 3.0], [True, False, False], 1.0),  # never improving
        ("max", [3.0, 2.0, 1.0], [True, False, False], 3.0),
    ],
)
def test_min_and_max(mode, values, expected, best):
    m = Monitor("score", mode=mode)
    assert run(m, values) == expected
    assert m.best == best


def test_nan_first_value_never_becomes_best():
    m = Monitor("val_loss")
    with pytest.warns(MonitorWarning, match=r"'val_loss' is nan at step 0"):
        assert run(m, [NAN, 0.5, 0.4, NAN, 0.45]) == [False, True, True, False, False]
    assert m.best == 0.4 and m.best_step == 2


@pytest.mark.parametrize(("mode", "bad"), [("min", -INF), ("max", INF), ("min", INF)])
def test_inf_is_never_best(mode, bad):
    m = Monitor("score", mode=mode)
    with pytest.warns(MonitorWarning, match="non-finite"):
        assert run(m, [1.0, bad, 1.0]) == [True, False, False]
    assert m.best == 1.0
    assert m.check({"score": bad}).reason is Reason.NOT_FINITE


def test_min_delta_needs_a_strictly_larger_gain():
    m = Monitor("val_loss", min_delta=0.25)
    # 0.75 is exactly 0.25 below 1.0: not more than min_delta
    assert run(m, [1.0, 0.75, 0.5, 0.375]) == [True, False, True, False]
    assert m.best == 0.5
    up = Monitor("acc", mode="max", min_delta=0.25)
    assert run(up, [0.25, 0.5, 0.625]) == [True, False, True]


def test_ties_keep_the_earliest_best():
    m = Monitor("acc", mode="max")
    assert run(m, [0.5, 0.5, 0.5]) == [True, False, False]
    assert (m.best, m.best_step) == (0.5, 0)
    assert m.check({"acc": 0.5}).reason is Reason.NOT_IMPROVED


def test_missing_key_skips_with_one_warning_listing_available_keys():
    m = Monitor("val_acc", mode="max")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d1 = m.update({"loss": 1.0, "val_loss": 2.0}, step=3)
        d2 = m.update({"loss": 0.5}, step=4)
    assert d1.reason is Reason.MISSING and not d1.improved and d2.reason is Reason.MISSING
    assert len(caught) == 1
    assert issubclass(caught[0].category, MonitorWarning)
    text = str(caught[0].message)
    assert "'val_acc'" in text and "'loss', 'val_loss'" in text and "step 3" in text
    assert m.best is None and not m.seen
    # then it appears: the first finite value is best
    assert m.update({"val_acc": 0.1}).improved


def test_never_reported_metric_raises_a_clear_error():
    m = Monitor("val_acc", mode="max")
    with pytest.warns(MonitorWarning):
        m.update({"loss": 1.0, "val_loss": 2.0})
    with pytest.raises(MetricNotFoundError) as info:
        m.raise_if_never_seen()
    assert isinstance(info.value, ModelbookError)
    assert "'val_acc' was never reported" in str(info.value)
    assert "'loss', 'val_loss'" in str(info.value)
    # seen once (even as NaN) is enough: that is a different problem, already warned about
    n = Monitor("val_loss")
    with pytest.warns(MonitorWarning):
        n.update({"val_loss": NAN})
    n.raise_if_never_seen()


def test_values_that_are_not_one_number_are_skipped():
    class Scalar:
        def __float__(self) -> float:
            return 0.25

    m = Monitor("val_loss")
    with pytest.warns(MonitorWarning, match="not a single number"):
        assert m.update({"val_loss": [1.0, 2.0]}).reason is Reason.NOT_SCALAR
    assert m.update({"val_loss": "0.1"}).reason is Reason.NOT_SCALAR
    assert m.update({"val_loss": Scalar()}).improved and m.best == 0.25
    assert as_scalar(3) == 3.0 and as_scalar(None) is None and as_scalar(True) == 1.0


def test_mode_is_never_guessed():
    assert resolve_mode("val_loss", None) == "min"
    assert resolve_mode("eval_loss", None) == "min"
    assert resolve_mode("loss", None) == "min"
    for name in ("val_acc", "eval_perplexity", "val_mae", "train_loss"):
        with pytest.raises(InvalidArgumentError, match="mode is required"):
            Monitor(name)
    with pytest.raises(InvalidArgumentError, match="'auto'"):
        Monitor("val_loss", mode="auto")
    with pytest.raises(InvalidArgumentError, match="min_delta"):
        Monitor("val_loss", min_delta=-0.1)
    with pytest.raises(InvalidArgumentError, match="min_delta"):
        Monitor("val_loss", min_delta=NAN)


def test_state_round_trip_is_keyed_by_monitor_and_mode():
    m = Monitor("acc", mode="max")
    run(m, [0.5, 0.75])
    state = pickle.loads(pickle.dumps(m.state_dict()))
    fresh = Monitor("acc", mode="max")
    assert fresh.load_state_dict(state)
    assert (fresh.best, fresh.best_step, fresh.seen) == (0.75, 1, True)
    assert not fresh.update({"acc": 0.7}).improved
    other = Monitor("acc", mode="min")
    assert not other.load_state_dict(state) and other.best is None
    assert not Monitor("val_acc", mode="max").load_state_dict(state)


def test_seed_adopts_only_a_better_best():
    m = Monitor("val_loss")
    run(m, [1.0])
    assert not m.seed(2.0) and m.best == 1.0
    assert not m.seed(NAN) and not m.seed(None)
    assert m.seed(0.5, step=7) and (m.best, m.best_step) == (0.5, 7)
    assert not m.update({"val_loss": 0.75}).improved


def test_decisions_replayed_on_another_rank_give_the_same_state():
    leader, follower = Monitor("val_loss", min_delta=0.125), Monitor("val_loss", min_delta=0.125)
    for i, v in enumerate([NAN, 2.0, 1.5, 1.0, 1.0, INF]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MonitorWarning)
            decision = leader.update({"val_loss": v}, step=i)
        follower.apply(pickle.loads(pickle.dumps(decision)))
    assert follower.state_dict() == leader.state_dict()
    assert leader.best == 1.0 and leader.best_step == 3
    assert math.isfinite(follower.best)


@pytest.mark.parametrize("bad", ["0.1", -0.1, float("nan"), True, None])
def test_min_delta_must_be_a_finite_non_negative_number(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"min_delta must be a finite number >= 0"):
        Monitor("val_loss", min_delta=bad)  # type: ignore[arg-type]
