"""The tokenizer's ceiling on the control measurement's PSNR figures.

A world's frames are the tokenizer's decodings, so even a dynamics model that predicted the
game's own tokens exactly would score only the tokenizer's reconstruction PSNR against the
game's frames. Reported beside the world's figures, it says how much of a PSNR bar (standing
still at 27 dB, a jump's landing at 24 dB) the dynamics model can still win and how much only
a better tokenizer can.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from opengenie.eval.held_keys import HeldKeyVideos
from opengenie.eval.metrics import capped_psnr
from opengenie.eval.rollout import to_uint8


@torch.no_grad()
def roundtrip(world: Any, videos: np.ndarray, precision: Any) -> np.ndarray:
    """uint8 clips (K, T, H, W, 3) -> the tokenizer's reconstruction of each, uint8, same shape."""
    video = torch.as_tensor(videos).to(world.device).float().div_(255)
    with precision or nullcontext():
        ids = world.tokenizer.encode(video)  # (K, T, h, w)
        recon = world.tokenizer.decode(ids)  # (K, T, H, W, 3) in [0, 1]
    return to_uint8(recon.float().clamp(0, 1))


def ceiling_psnr(
    held: HeldKeyVideos,
    frames: list[int],
    reconstructor: Any,
    batch: int = 64,
) -> np.ndarray:
    """PSNR of the reconstruction of each valid held-key video against the game at ``frames``:
    float (L, S, M, len(frames)), NaN where the episode ended while the key was held.
    ``reconstructor`` maps uint8 clips (K, T, H, W, 3) to their reconstructions."""
    out = np.full((*held.valid.shape, len(frames)), np.nan)
    where = np.argwhere(held.valid)  # (K, 3): level, start, movement
    for i in range(0, len(where), batch):
        part = where[i : i + batch]
        game = held.videos[part[:, 0], part[:, 1], part[:, 2]]  # (b, 1+F, H, W, 3)
        recon = reconstructor(game)
        a = torch.as_tensor(recon[:, frames]).float().div(255)
        b = torch.as_tensor(game[:, frames]).float().div(255)
        out[part[:, 0], part[:, 1], part[:, 2]] = capped_psnr(a, b).numpy()  # (b, len(frames))
    return out
