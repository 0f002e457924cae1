"""Hyperparameters that may be schedules of the update count.

A value in a config is either a number (constant) or a mapping::

    damping: 0.1
    damping: {schedule: exponential, start: 1.0, end: 0.01, steps: 500}

``linear`` and ``cosine`` interpolate from ``start`` to ``end`` over ``steps`` updates,
``exponential`` interpolates geometrically; all hold ``end`` afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCHEDULES = ("constant", "linear", "exponential", "cosine")


@dataclass(frozen=True)
class Schedule:
    """``value(step)`` for ``step = 0, 1, ...`` (the number of updates done so far)."""

    kind: str = "constant"
    start: float = 1.0
    end: float = 1.0
    steps: int = 1

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.start
        t = min(max(step, 0) / max(self.steps, 1), 1.0)
        if self.kind == "linear":
            return self.start + t * (self.end - self.start)
        if self.kind == "exponential":
            return self.start * (self.end / self.start) ** t
        return self.end + 0.5 * (self.start - self.end) * (1.0 + math.cos(math.pi * t))  # cosine


def as_schedule(value: Any, name: str, *, positive: bool = True) -> Schedule:
    """Turn a number or a ``{schedule, start, end, steps}`` mapping into a :class:`Schedule`.

    Raises ``ValueError`` naming ``name`` and the valid choices when the value is unusable.
    """
    if isinstance(value, Schedule):
        sched = value
    elif isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a number or a schedule mapping")
    elif isinstance(value, (int, float)):
        sched = Schedule("constant", float(value), float(value), 1)
    elif isinstance(value, Mapping):
        kind = value.get("schedule", "constant")
        if kind not in SCHEDULES:
            raise ValueError(f"{name}.schedule={kind!r} is not valid; choose one of {list(SCHEDULES)}")
        unknown = set(value) - {"schedule", "start", "end", "steps", "value"}
        if unknown:
            raise ValueError(f"{name} has unknown keys {sorted(unknown)}; valid: schedule, start, end, steps")
        start = float(value.get("start", value.get("value", 1.0)))
        sched = Schedule(kind, start, float(value.get("end", start)), int(value.get("steps", 1)))
        if sched.steps < 1:
            raise ValueError(f"{name}.steps={sched.steps} must be >= 1")
    else:
        raise ValueError(f"{name}={value!r} is not a number or a schedule mapping {{schedule, start, end, steps}}")
    if positive and not (sched.start > 0 and sched.end > 0 and math.isfinite(sched.start) and math.isfinite(sched.end)):
        raise ValueError(f"{name} must be > 0 and finite, got {value!r}")
    return sched
