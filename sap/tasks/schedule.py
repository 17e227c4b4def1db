"""The learning-rate schedule of every SAP task: linear warm-up, then cosine decay to zero.

The schedule is counted in optimiser steps and built from the Trainer's total step count, so a
run needs a finite length (:func:`check_training_length`). When a run is resumed with a larger
``max_epochs`` (extending it), the decay is not restarted: from the resume step the factor
falls from the value it had reached, along a new cosine, to zero at the new end
(:meth:`WarmupCosineSchedule.extended`). Resuming with the same length continues the
original schedule exactly. Details: docs/training.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sap.errors import ConfigError


def warmup_cosine_factor(
    step: int, warmup_steps: int, total_steps: int, min_factor: float = 0.0
) -> float:
    """Learning-rate multiplier: linear warm-up from ~0 to 1, then cosine decay to ``min_factor``.

    >>> warmup_cosine_factor(0, 10, 100) < 0.2
    True
    >>> warmup_cosine_factor(10, 10, 100)
    1.0
    >>> round(warmup_cosine_factor(100, 10, 100), 6)
    0.0
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class WarmupCosineSchedule:
    """Warm-up + cosine factor per optimiser step, optionally continued from a resume point.

    Args:
        warmup_steps: steps of linear warm-up.
        total_steps: step at which the factor reaches zero.
        resume_step: step from which an extended run decays anew (0: never extended).
        resume_factor: factor reached at ``resume_step`` under the previous schedule.

    >>> schedule = WarmupCosineSchedule(warmup_steps=0, total_steps=100)
    >>> longer = schedule.extended(at_step=100, total_steps=200)  # finished, then extended
    >>> longer(100) == schedule(100), round(longer(150), 3)
    (True, 0.0)
    >>> mid = schedule.extended(at_step=50, total_steps=150)
    >>> mid(50) == schedule(50), round(mid(100), 3), mid(150)
    (True, 0.25, 0.0)
    """

    warmup_steps: int
    total_steps: int
    resume_step: int = 0
    resume_factor: float = 1.0

    def __call__(self, step: int) -> float:
        if self.resume_step <= 0 or step < self.resume_step:
            return warmup_cosine_factor(step, self.warmup_steps, self.total_steps)
        span = max(1, self.total_steps - self.resume_step)
        progress = min(1.0, (step - self.resume_step) / span)
        return self.resume_factor * 0.5 * (1.0 + math.cos(math.pi * progress))

    def extended(self, at_step: int, total_steps: int) -> WarmupCosineSchedule:
        """This schedule continued at ``at_step`` so that it ends at ``total_steps``.

        Before the warm-up ends, or when the length did not change, the schedule only gets
        its new length; otherwise the factor decays from its value at ``at_step`` to zero at
        ``total_steps`` (no restart, no jump).
        """
        if total_steps == self.total_steps or at_step < self.warmup_steps:
            return WarmupCosineSchedule(
                self.warmup_steps, total_steps, self.resume_step, self.resume_factor
            )
        return WarmupCosineSchedule(self.warmup_steps, total_steps, at_step, self(at_step))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarmupCosineSchedule:
        return cls(
            warmup_steps=int(data["warmup_steps"]),
            total_steps=int(data["total_steps"]),
            resume_step=int(data.get("resume_step", 0)),
            resume_factor=float(data.get("resume_factor", 1.0)),
        )


def check_training_length(max_epochs: int | None, max_steps: int | None) -> None:
    """Refuse a Trainer length the schedule cannot be built from (before any work is done).

    ``max_epochs`` must be a whole number >= 1, or ``max_steps`` >= 1 must bound the run:
    ``max_epochs=-1`` without ``max_steps`` trains forever, and 0 trains nothing.

    >>> check_training_length(12, -1)
    >>> check_training_length(-1, 500)
    >>> check_training_length(0, -1)
    Traceback (most recent call last):
    ...
    sap.errors.ConfigError: trainer.max_epochs is 0: ...
    """
    steps = -1 if max_steps is None else int(max_steps)
    epochs = -1 if max_epochs is None else int(max_epochs)
    if steps == 0 or steps < -1:
        problem = f"trainer.max_steps is {max_steps}: "
    elif epochs == 0 or epochs < -1:
        problem = f"trainer.max_epochs is {max_epochs}: "
    elif epochs == -1 and steps == -1:
        problem = f"trainer.max_epochs is {max_epochs} and no max_steps bounds the run: "
    else:
        return
    raise ConfigError(
        problem + "a SAP run needs a finite length (its learning-rate schedule is built from "
        "the total step count). Use --trainer.max_epochs N with N >= 1 (or --trainer.max_steps N)."
    )


__all__ = ["WarmupCosineSchedule", "check_training_length", "warmup_cosine_factor"]
