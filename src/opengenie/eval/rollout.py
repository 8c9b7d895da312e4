"""Frame-by-frame generation through the dynamics model's key/value cache, shared by eval's
protocol and its control measurement."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from opengenie.models.maskgit import guided, maskgit_fill


def _dtype_of(module: Any) -> torch.dtype:
    for p in getattr(module, "parameters", lambda: iter(()))():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


@torch.no_grad()
def cached_rollout(
    dynamics: Any,
    context: torch.Tensor,
    actions: torch.Tensor,
    steps: int,
    temperature: float,
    mode: str,
    generator: torch.Generator | None,
    window: int,
    guidance: float = 0.0,
    still: torch.Tensor | None = None,
    context_mask: float = 0.0,
    min_p: float = 0.0,
) -> torch.Tensor:
    """Feed real ``context`` frames, then generate frames one by one through the KV cache.

    context: tokens (B, t0, N); actions: code vectors (B, t0 - 1 + F, A), ``actions[:, j]``
    leading into frame j + 1. Returns tokens (B, t0 + F, N): the context, then F new frames.
    Same numbers as ``maskgit.rollout`` (which recomputes the window) while t0 + F <= window.
    With ``guidance`` > 0, sampling is guided against the still action's vector ``still``
    (1, A) (``maskgit.guided``). ``context_mask`` hides that share of each committed frame's
    tokens but the first's (``Dynamics.hide_context``); ``min_p`` truncates each token's codes
    (``maskgit_fill``).
    """
    b, t0, n = context.shape
    frames = actions.shape[1] + 1 - t0
    if frames < 0:
        raise ValueError(f"{actions.shape[1]} actions cannot follow {t0} context frames")
    actions = actions.to(_dtype_of(dynamics))
    if guidance and still is None:
        raise ValueError("guidance needs the still action's vector")
    cache = dynamics.transformer.new_cache(window)
    dynamics.commit(context[:, :1], None, cache)
    for j in range(1, t0):  # one frame at a time: each has its own action
        dynamics.commit(context[:, j : j + 1], actions[:, j - 1], cache, context_mask)
    out = [context]
    for f in range(frames):
        action = actions[:, t0 - 1 + f]  # (B, A)

        def logits_fn(current: torch.Tensor, action: torch.Tensor = action) -> torch.Tensor:
            return dynamics.step_logits(current[:, None], action, cache)[:, 0]  # (B, N, V)

        if guidance:
            reference = still.to(actions.dtype).expand(b, -1)  # (B, A)
            fill = guided(logits_fn, lambda cur, a=reference: logits_fn(cur, a), guidance)
        else:
            fill = logits_fn
        new = maskgit_fill(
            fill,
            b,
            n,
            dynamics.mask_id,
            steps,
            temperature,
            mode,
            generator,
            context.device,
            min_p,
        )  # (B, N)
        if f + 1 < frames:  # the last frame is never needed as context
            dynamics.commit(new[:, None], action, cache, context_mask)
        out.append(new[:, None])
    return torch.cat(out, dim=1)


def batch_generator(seed: int, batch: int, part: int, device: torch.device) -> torch.Generator:
    """A generator seeded by (seed, part, batch): independent streams, reproducible."""
    state = np.random.SeedSequence([seed, part, batch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & ((1 << 63) - 1))


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """Decoded frames in [0, 1] (any shape) -> uint8 on the CPU."""
    return (video.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def decode_tokens(world: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Flat token ids (B, T, N_tok) -> frames (B, T, H, W, 3) in [0, 1]."""
    grid = int(math.isqrt(tokens.shape[-1]))
    return world.tokenizer.decode(tokens.view(*tokens.shape[:2], grid, grid)).float().clamp(0, 1)
