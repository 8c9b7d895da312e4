"""Cutting frames into square patches and putting them back (channel-last video)."""

from __future__ import annotations

import torch


def patchify(video: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, T, H, W, C) -> (B, T, h*w, patch*patch*C) with h = H/patch, w = W/patch."""
    b, t, height, width, c = video.shape
    h, w = height // patch, width // patch
    x = video.reshape(b, t, h, patch, w, patch, c).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, t, h * w, patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, h: int, w: int) -> torch.Tensor:
    """(B, T, h*w, patch*patch*C) -> (B, T, h*patch, w*patch, C)."""
    b, t, _, pp = patches.shape
    c = pp // (patch * patch)
    x = patches.reshape(b, t, h, w, patch, patch, c).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, t, h * patch, w * patch, c)
