"""CoinRun as the agents' test: one Procgen env per level, movements held for a world step.

Procgen ends an episode with reward 10 when the coin is reached, and with 0 when the player
dies or the 1,000-frame cap is hit, so "solved" is a positive reward on the episode's last frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opengenie.data.coinrun import procgen_env
from opengenie.errors import UserError

MODES = ("easy", "hard")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UserError(f"unknown --mode {mode!r}; use one of: {', '.join(MODES)}")
    return mode


def coinrun_env(level: int, mode: str = "easy") -> Any:
    """A single-level CoinRun env in this thread, seeded by the level (as `opengenie data`)."""
    return procgen_env("coinrun", level, check_mode(mode))


def observe(env: Any) -> np.ndarray:
    """The current frame, (64, 64, 3) uint8."""
    return env.observe()[1]["rgb"][0].copy()


def hold(env: Any, action: int, frames: int) -> tuple[list[np.ndarray], bool, bool]:
    """Apply Procgen action `action` for `frames` frames, stopping when the episode ends.

    Returns (the frames seen after each step, ended, solved). After the end the env shows the
    next episode's first frame, which is not returned."""
    seen: list[np.ndarray] = []
    act = np.array([action], dtype=np.int32)
    for _ in range(frames):
        env.act(act)
        reward, ob, first = env.observe()
        if first[0]:
            return seen, True, bool(reward[0] > 0)
        seen.append(ob["rgb"][0].copy())
    return seen, False, False
