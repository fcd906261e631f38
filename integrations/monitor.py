"""Decide whether a reported metric is an improvement: the one rule the three callbacks share.

No framework is imported here. The Lightning, Keras and transformers callbacks hand a plain
``{name: value}`` mapping to :meth:`Monitor.update` and act on the :class:`Decision`.

The rule:

* ``mode`` is ``"min"`` or ``"max"``. It is never guessed from a name: it may be left out only
  for the losses frameworks document as minimised (``loss``, ``val_loss``, ``eval_loss``).
* The first finite value is an improvement. After it, a value improves when it beats the best
  by *more* than ``min_delta``; a tie is not an improvement, so the earliest best stays.
* NaN and +/-inf are never best.
* A missing key skips the step, with one warning that lists the keys that were reported.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from modelbook.errors import ConfigurationError, InvalidArgumentError

__all__ = [
    "LOSS_METRICS",
    "Decision",
    "MetricNotFoundError",
    "Monitor",
    "MonitorWarning",
    "Reason",
    "as_scalar",
    "resolve_mode",
]

#: Metric names whose direction the frameworks document as "lower is better".
LOSS_METRICS = frozenset({"loss", "val_loss", "eval_loss"})


class MonitorWarning(UserWarning):
    """A reported metric could not be used (missing, not finite, not a number)."""


class MetricNotFoundError(ConfigurationError, KeyError):
    """Training ended and the monitored metric was never reported."""

    def __init__(self, monitor: str, available: list[str]) -> None:
        self.monitor, self.available = monitor, available
        shown = ", ".join(repr(k) for k in available) or "(no metrics at all)"
        super().__init__(
            f"the monitored metric {monitor!r} was never reported during training, so no model "
            f"was registered. Reported metrics: {shown}. Pass monitor= one of them (and check that "
            "validation runs)"
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Reason(str, Enum):
    """Why a step was, or was not, an improvement."""

    IMPROVED = "improved"
    NOT_IMPROVED = "not_improved"
    NOT_FINITE = "not_finite"
    MISSING = "missing"
    NOT_SCALAR = "not_scalar"


@dataclass(frozen=True)
class Decision:
    """The outcome of one check; small and picklable so one rank can broadcast it.

    Attributes:
        reason: why this is (or is not) an improvement.
        value: the monitored value as a float, or None when missing or not a number.
        previous: the best value before this step (None before the first finite value).
        step: the step the metrics were reported at, as given by the caller.
        available: the metric names that were reported (for messages).
    """

    reason: Reason
    value: float | None
    previous: float | None
    step: int | None = None
    available: tuple[str, ...] = ()

    @property
    def improved(self) -> bool:
        return self.reason is Reason.IMPROVED


def as_scalar(value: Any) -> float | None:
    """``value`` as a float when it is one number (int, float, numpy or 0-d tensor), else None."""
    if isinstance(value, (str, bytes)) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a multi-element tensor
        return None


def resolve_mode(monitor: str, mode: str | None) -> str:
    """Return ``mode``, or ``"min"`` for a documented loss; raise when it cannot be known.

    Raises:
        InvalidArgumentError: ``mode`` is not "min"/"max", or is None for a metric whose
            direction no framework documents.
    """
    if mode is None:
        if monitor in LOSS_METRICS:
            return "min"
        raise InvalidArgumentError(
            f"mode is required for monitor={monitor!r}: pass mode='min' if lower is better or "
            f"mode='max' if higher is better (it defaults to 'min' only for {sorted(LOSS_METRICS)})"
        )
    if mode not in ("min", "max"):
        raise InvalidArgumentError(f"mode={mode!r} is not accepted; use 'min' or 'max'")
    return mode


class Monitor:
    """Tracks the best value of one metric.

    Args:
        monitor: the metric name to watch.
        mode: ``"min"`` or ``"max"``; may be None only for ``loss``/``val_loss``/``eval_loss``.
        min_delta: how much a value must beat the best by to count (>= 0).
        name: who is monitoring, for warning messages.

    Raises:
        InvalidArgumentError: an unknown or missing mode, or a negative ``min_delta``.

    Example:
        >>> m = Monitor("val_acc", mode="max", min_delta=0.01)
        >>> [m.update({"val_acc": v}).improved for v in (0.5, 0.505, 0.6, float("nan"))]
        [True, False, True, False]
        >>> m.best
        0.6
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str | None = None,
        min_delta: float = 0.0,
        name: str = "modelbook",
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise InvalidArgumentError(f"monitor must be a metric name, got {monitor!r}")
        number = isinstance(min_delta, (int, float)) and not isinstance(min_delta, bool)
        if not number or not math.isfinite(min_delta) or min_delta < 0:
            raise InvalidArgumentError(
                f"min_delta must be a finite number >= 0 (an int or a float), got {min_delta!r}"
            )
        self.monitor, self.mode, self.min_delta = monitor, resolve_mode(monitor, mode), min_delta
        self.name = name
        self.best: float | None = None
        self.best_step: int | None = None
        self.seen = False  # the key appeared at least once
        self._available: tuple[str, ...] = ()
        self._warned: set[Reason] = set()

    @property
    def key(self) -> dict[str, str]:
        """What a saved state is valid for: the same metric, the same direction."""
        return {"monitor": self.monitor, "mode": self.mode}

    def is_better(self, value: float, reference: float | None) -> bool:
        """Whether the finite ``value`` beats ``reference`` by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if reference is None:
            return True
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def check(self, metrics: Mapping[str, Any], step: int | None = None) -> Decision:
        """Classify ``metrics`` against the current best, without changing anything."""
        available = tuple(sorted(str(k) for k in metrics))
        if self.monitor not in metrics:
            return Decision(Reason.MISSING, None, self.best, step, available)
        value = as_scalar(metrics[self.monitor])
        if value is None:
            return Decision(Reason.NOT_SCALAR, None, self.best, step, available)
        if not math.isfinite(value):
            return Decision(Reason.NOT_FINITE, value, self.best, step, available)
        reason = Reason.IMPROVED if self.is_better(value, self.best) else Reason.NOT_IMPROVED
        return Decision(reason, value, self.best, step, available)

    def apply(self, decision: Decision) -> None:
        """Record a decision (possibly made by another rank): the new best, and what was seen."""
        self._available = decision.available or self._available
        if decision.reason is not Reason.MISSING:
            self.seen = True
        if decision.improved:
            self.best, self.best_step = decision.value, decision.step

    def update(self, metrics: Mapping[str, Any], step: int | None = None) -> Decision:
        """Check, apply and warn (once per kind of problem). Returns the decision."""
        decision = self.check(metrics, step)
        self.apply(decision)
        self._warn(decision)
        return decision

    def seed(self, best: float | None, step: int | None = None) -> bool:
        """Adopt ``best`` (from a checkpoint or the registry) if it beats the current best.

        The comparison is strict and ignores ``min_delta``: the seeded value is a best that was
        really reached. Returns whether the best changed.
        """
        if best is None or not math.isfinite(best):
            return False
        if self.best is not None and not self._strictly_better(best, self.best):
            return False
        self.best, self.best_step = best, step
        return True

    def raise_if_never_seen(self) -> None:
        """Raise :class:`MetricNotFoundError` if the metric never appeared."""
        if not self.seen:
            raise MetricNotFoundError(self.monitor, list(self._available))

    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-friendly state (best, step, whether the key was seen) and its key."""
        return {**self.key, "best": self.best, "best_step": self.best_step, "seen": self.seen}

    def load_state_dict(self, state: Mapping[str, Any]) -> bool:
        """Restore a :meth:`state_dict` if it was saved for the same monitor and mode.

        Returns False (and changes nothing) when the key differs.
        """
        if state.get("monitor") != self.monitor or state.get("mode") != self.mode:
            return False
        self.best, self.best_step = state.get("best"), state.get("best_step")
        self.seen = bool(state.get("seen", self.best is not None))
        return True

    def _strictly_better(self, value: float, reference: float) -> bool:
        return value < reference if self.mode == "min" else value > reference

    def _warn(self, decision: Decision) -> None:
        if decision.reason in (Reason.IMPROVED, Reason.NOT_IMPROVED):
            return
        if decision.reason in self._warned:
            return
        self._warned.add(decision.reason)
        at = f" at step {decision.step}" if decision.step is not None else ""
        if decision.reason is Reason.MISSING:
            keys = ", ".join(repr(k) for k in decision.available) or "(none)"
            what = f"is not among the reported metrics{at} ({keys}); the step is skipped"
        elif decision.reason is Reason.NOT_FINITE:
            what = f"is {decision.value}{at}; a non-finite value is never the best"
        else:
            what = f"is not a single number{at}; the step is skipped"
        warnings.warn(
            f"{self.name}: monitored metric {self.monitor!r} {what} (warned once)",
            MonitorWarning,
            stacklevel=3,
        )

    def __repr__(self) -> str:
        fields = {**self.key, "min_delta": self.min_delta, "best": self.best}
        return f"Monitor({', '.join(f'{k}={v!r}' for k, v in fields.items())})"
