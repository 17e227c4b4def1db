"""The learning-rate schedule of every SAP task: linear warm-up, then cosine decay to zero.

The schedule is counted in optimiser steps and built from the Trainer's total step count, so a
run needs a finite length (:func:`check_training_length`). Resuming with the same length
continues the schedule exactly. Resuming with a larger ``max_epochs`` (extending a run)
continues as if the run had been planned that long from the start: the same warm-up, the
cosine stretched to end at the new last step. At the resume step the factor therefore jumps
from the old schedule's value to the stretched one's (upwards: a finished run restarts at the
factor the longer plan has there) and then decays to zero at the new end. Details:
docs/training.md.
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
    """Warm-up + cosine learning-rate factor per optimiser step.

    Args:
        warmup_steps: steps of linear warm-up.
        total_steps: step at which the factor reaches zero.

    >>> planned = WarmupCosineSchedule(warmup_steps=10, total_steps=100)
    >>> extended = WarmupCosineSchedule(warmup_steps=10, total_steps=190)
    >>> planned(100), round(extended(100), 3)  # resumed at step 100 with twice the epochs
    (0.0, 0.5)
    """

    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        return warmup_cosine_factor(step, self.warmup_steps, self.total_steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarmupCosineSchedule:
        return cls(warmup_steps=int(data["warmup_steps"]), total_steps=int(data["total_steps"]))


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
