"""Learning-rate schedules: linear warmup, then constant or cosine decay to a floor."""

from __future__ import annotations

import math

from opengenie.config import OptimConfig


def lr_at(step: int, cfg: OptimConfig) -> float:
    """The learning rate for optimiser step `step` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
