"""Tiny synthetic datasets for tests and smoke runs: a bright square that the true action moves.

Actions: 0 left, 1 right, 2 up, 3 down, 4.. no-op. The background colour differs per episode, so a
tokenizer has something to reconstruct and a latent action model something to infer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from opengenie.data.sources import DEFAULT_LEVEL_RANGES
from opengenie.data.storage import DEFAULT_SHARD_BYTES, Dataset, DatasetWriter

SYNTHETIC_SOURCE = "synthetic:square"
_MOVES = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}  # action -> (dy, dx)


def synthetic_episode(
    length: int, size: int, num_actions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """frames uint8 (length, size, size, 3) and actions int64 (length,) (the last one is unused)."""
    sq = max(1, size // 8)  # square side
    actions = rng.integers(num_actions, size=length)
    bg = rng.integers(0, 96, size=3, dtype=np.uint8)
    colour = rng.integers(160, 256, size=3, dtype=np.uint8)
    y, x = (int(v) for v in rng.integers(0, size - sq + 1, size=2))
    frames = np.empty((length, size, size, 3), dtype=np.uint8)
    for t in range(length):
        frames[t] = bg
        frames[t, y : y + sq, x : x + sq] = colour
        dy, dx = _MOVES.get(int(actions[t]), (0, 0))
        step = max(1, sq // 2)
        y = int(np.clip(y + dy * step, 0, size - sq))
        x = int(np.clip(x + dx * step, 0, size - sq))
    return frames, actions


def make_synthetic_dataset(
    path: str | os.PathLike[str],
    episodes: int = 4,
    length: int | Sequence[int] = 32,
    size: int = 16,
    fps: float = 10.0,
    split: str = "train",
    num_actions: int = 5,
    seed: int = 0,
    with_actions: bool = True,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Dataset:
    """Create (or append to) a dataset of ``episodes`` synthetic episodes in ``split``; returns it
    opened. ``length`` is one length for all or one per episode. Level seeds continue from the
    split's default range, so repeated calls for different splits keep them disjoint."""
    lengths = [length] * episodes if isinstance(length, int) else list(length)
    if len(lengths) != episodes:
        raise ValueError(f"need {episodes} lengths, got {len(lengths)}")
    with DatasetWriter(path, fps=fps, size=size, shard_bytes=shard_bytes) as w:
        used = w.existing.levels(split, SYNTHETIC_SOURCE) if w.existing else np.zeros(0)
        first = int(used.max()) + 1 if used.size else DEFAULT_LEVEL_RANGES[split][0]
        names = ["left", "right", "up", "down"][:num_actions] + ["noop"] * (num_actions - 4)
        w.set_source_info(SYNTHETIC_SOURCE, {"action_names": names, "num_actions": num_actions})
        for i, n in enumerate(lengths):
            level = first + i
            frames, actions = synthetic_episode(
                n, size, num_actions, np.random.default_rng([seed, level])
            )
            w.add_episode(
                frames,
                actions if with_actions else None,
                source=SYNTHETIC_SOURCE,
                level_seed=level,
                split=split,
            )
    return Dataset(path)
