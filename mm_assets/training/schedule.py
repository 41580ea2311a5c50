"""Learning-rate schedules with linear warm-up (no Dagster import).

``lr_at(step, total, base_lr, kind, warmup)`` is the learning rate used by optimizer step
``step`` (0-based) of a run of ``total`` optimizer steps:

* warm-up, ``step < warmup``: ``base_lr * (step + 1) / warmup`` (the first step already moves;
  the last warm-up step reaches ``base_lr``);
* then, with ``progress = (step - warmup) / max(1, total - warmup)`` in ``[0, 1)``:

  - ``constant``: ``base_lr``;
  - ``linear``: ``min_lr + (base_lr - min_lr) * (1 - progress)``;
  - ``cosine``: ``min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * progress))``.

The last step of a decaying schedule still has a positive learning rate (progress < 1).
"""

from __future__ import annotations

import math

KINDS = ("cosine", "linear", "constant")


def lr_at(step: int, total: int, base_lr: float, kind: str = "cosine", warmup: int = 0,
          min_lr: float = 0.0) -> float:
    if kind not in KINDS:
        raise ValueError(f"unknown LR schedule {kind!r}; expected one of {KINDS}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    warmup = max(0, int(warmup))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if kind == "constant":
        return base_lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return min_lr + (base_lr - min_lr) * (1.0 - progress)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps(total: int, warmup: int | float) -> int:
    """``warmup`` as a step count: an int is steps, a float in (0, 1) a fraction of ``total``."""
    if isinstance(warmup, float) and 0.0 < warmup < 1.0:
        return int(math.ceil(warmup * total))
    return int(warmup)
