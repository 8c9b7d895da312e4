"""A few labelled transitions for the LAM (``lam.label_fraction``; REFERENCE.md §4).

Which transitions keep their true label is fixed by the data, not drawn per batch: a hash of
(episode, frame) below the fraction, so a run sees the same labelled subset at every step and
on resume, the way a small hand-labelled set would be. Labels are CoinRun's six movements
(``data.coinrun.COINRUN_GROUP_NAMES``): movement m teaches code m.
"""

from __future__ import annotations

import numpy as np
import torch

from opengenie.data.coinrun import coinrun_action_group

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive ids


def labelled_mask(episode: np.ndarray, frame: np.ndarray, fraction: float) -> np.ndarray:
    """True where transition (episode, frame) -> frame + 1 is labelled; any equal shapes."""
    key = episode.astype(np.uint64) * np.uint64(1_000_003) + frame.astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = (key * _MULTIPLIER) >> np.uint64(40)  # 24 well-mixed bits
    return mixed.astype(np.float64) / float(1 << 24) < fraction


def movement_labels(
    batch: dict[str, torch.Tensor], fraction: float, frame_skip: int = 1
) -> torch.Tensor:
    """A loader batch -> labels (B, T-1) int64: the movement of labelled transitions, else -1.
    With a frame skip k, transition t starts at game frame start + k*t."""
    actions = batch["actions"].numpy()  # (B, T-1) Procgen ids, -1 unknown
    b, t = actions.shape
    frame = batch["start"].numpy()[:, None] + frame_skip * np.arange(t)[None]  # (B, T-1)
    episode = np.broadcast_to(batch["episode"].numpy()[:, None], (b, t))
    keep = labelled_mask(episode, frame, fraction) & (actions >= 0)
    return torch.from_numpy(np.where(keep, coinrun_action_group(actions), -1))
