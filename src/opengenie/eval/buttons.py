""" "What each button does": every latent action held for a few frames from a few prompts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from opengenie.eval.rollout import batch_generator, cached_rollout, decode_tokens, to_uint8
from opengenie.eval.settings import BUTTON_FRAMES, EvalSettings


@torch.no_grad()
def button_strips(
    world: Any,
    tokens: torch.Tensor,
    s: EvalSettings,
    window: int,
    device: torch.device,
    precision: Any,
) -> list[np.ndarray]:
    """For the first ``s.button_prompts`` clips' first frames (``tokens`` (N, T, N_tok)): each
    latent action repeated for BUTTON_FRAMES frames.

    Returns one uint8 array (A, 1 + BUTTON_FRAMES, H, W, 3) per start frame.
    """
    a = int(world.num_actions)
    still = world.guidance_reference() if s.guidance else None  # (1, A)
    out = []
    for p in range(min(s.button_prompts, tokens.shape[0])):
        prompt = tokens[p : p + 1, :1].to(device).expand(a, 1, -1)  # (A, 1, N_tok)
        codes = torch.arange(a, device=device)[:, None].expand(a, BUTTON_FRAMES)
        with precision:
            gen = batch_generator(s.seed, p, 2, device)
            x = cached_rollout(
                world.dynamics, prompt, world.lam.action_vectors(codes), s.steps,
                s.temperature, s.mode, gen, window, s.guidance, still, s.context_mask, s.min_p,
            )  # fmt: skip
        out.append(to_uint8(decode_tokens(world, x)))
    return out
