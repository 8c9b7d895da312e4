"""The tokenizer's ceiling on the control measurement's figures.

A world's frames are the tokenizer's decodings, so even a dynamics model that predicted the
game's own tokens exactly would show the tokenizer's reconstruction of the game's frames. The
control measurement scores those reconstructions as if they were a world's rollouts (PSNR
against the game, and the scroll the estimator reads off them): reported beside the world's
figures, they say how much of a bar (standing still at 27 dB, a jump's landing at 24 dB, →
the same way as the game) the dynamics model can still win and how much only a better
tokenizer, or a better scroll estimator, can.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from opengenie.eval.held_keys import HeldKeyVideos
from opengenie.eval.rollout import to_uint8


@torch.no_grad()
def roundtrip(world: Any, videos: np.ndarray, precision: Any) -> np.ndarray:
    """uint8 clips (K, T, H, W, 3) -> the tokenizer's reconstruction of each, uint8, same shape."""
    video = torch.as_tensor(videos).to(world.device).float().div_(255)
    with precision or nullcontext():
        ids = world.tokenizer.encode(video)  # (K, T, h, w)
        recon = world.tokenizer.decode(ids)  # (K, T, H, W, 3) in [0, 1]
    return to_uint8(recon.float().clamp(0, 1))


def roundtrip_held(held: HeldKeyVideos, reconstructor: Any, batch: int = 64) -> np.ndarray:
    """The reconstruction of every valid held-key video: uint8, the shape of ``held.videos``
    (L, S, M, 1+F, H, W, 3), zeros where the episode ended while the key was held.
    ``reconstructor`` maps uint8 clips (K, T, H, W, 3) to their reconstructions."""
    out = np.zeros_like(held.videos)
    where = np.argwhere(held.valid)  # (K, 3): level, start, movement
    for i in range(0, len(where), batch):
        part = where[i : i + batch]
        game = held.videos[part[:, 0], part[:, 1], part[:, 2]]  # (b, 1+F, H, W, 3)
        out[part[:, 0], part[:, 1], part[:, 2]] = reconstructor(game)
    return out
